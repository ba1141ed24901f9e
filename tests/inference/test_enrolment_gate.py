"""`--image` takes a ROI or a processed frame (through the face finder); the ROI quality score gates enrolment."""
from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from inference.bundle import load_bundle
from inference.gallery import Gallery
from inference.quality import enrolment_refusal
from inference.sources import ImageError, save_png_roi
from pipeline.rois import rois_from_image_files
from pipeline.settings import Settings
from processing.processor import FrameProcessor
from processing.roi import extract_face_roi
from processing.synthetic import make_raw_frame
from thz.cli import EXIT_INPUT, EXIT_OK, EXIT_REFUSED, cli
from thzcore.frameimage import FrameImageError, load_frame_image, save_frame_image

S = Settings()


def _head(x, y):
    """A head of glints: an ellipse 7.5 x 11 cm with bright blobs (forehead, nose, cheeks, chin)."""
    blobs = [(0.0, 0.06, 0.02), (0.0, 0.0, 0.015), (-0.04, -0.01, 0.015), (0.04, -0.01, 0.015), (0.0, -0.08, 0.015)]
    head = ((x / 0.075) ** 2 + ((y - 0.01) / 0.11) ** 2) <= 1.0
    return np.where(head, 0.15 + sum(0.8 * np.exp(-((x - bx) ** 2 + (y - by) ** 2) / w ** 2) for bx, by, w in blobs),
                    0.0)


@pytest.fixture(scope="module")
def db_frame() -> np.ndarray:
    raw = make_raw_frame(S.scanner, _head, feedback_delay_s=S.scanner.raster.feedback_delay_s, noise_counts=3.0, seed=2)
    f = FrameProcessor(S.scanner, S.processing).process(raw)
    assert f.scale == "db"
    return np.asarray(f.image, np.float64)


def test_frame_image_round_trip_within_its_quantisation(tmp_path, db_frame):
    db, fid = load_frame_image(save_frame_image(tmp_path / "f.png", db_frame, frame_id=17))
    step = (db_frame.max() - db_frame.min()) / 65535            # one count of the 16-bit PNG, in dB
    assert fid == 17 and db.shape == db_frame.shape
    assert np.abs(db - db_frame).max() <= 0.5 * step * (1 + 1e-9) + 1e-12
    Image.fromarray(db_frame.astype(np.float32)).save(tmp_path / "f.tiff")   # a lab's float TIFF of dB
    db, fid = load_frame_image(tmp_path / "f.tiff")
    assert fid is None and np.array_equal(db, db_frame.astype(np.float32).astype(np.float64))


@pytest.mark.parametrize("make, reason", [
    (lambda a: Image.fromarray((a * 65535).astype(np.uint16)), "no dB scale"),         # a 16-bit PNG without its scale
    (lambda a: Image.fromarray((np.dstack([a] * 3) * 255).astype(np.uint8)), "mode RGB"),
])
def test_a_frame_without_its_db_scale_is_refused(tmp_path, make, reason):
    p = tmp_path / "f.png"
    make(np.random.default_rng(0).random((64, 256))).save(p)
    with pytest.raises(FrameImageError, match=reason) as e:
        load_frame_image(p)
    assert "\n" not in str(e.value)


def test_a_frame_image_goes_through_the_face_finder(tmp_path, db_frame):
    want = extract_face_roi(db_frame, S.scanner, S.processing, scale="db")
    assert want.found, want.reason
    (got,) = rois_from_image_files([str(save_frame_image(tmp_path / "f.png", db_frame))], S, 64)
    assert got.source.startswith("frame:") and got.meta["roi"]["quality"] == pytest.approx(want.quality, abs=1e-3)
    # the 16-bit quantisation (~1 mdB) moves a normalised pixel by far less than one 8-bit level
    assert np.abs(got.image - want.image).max() < 1 / 255
    empty = save_frame_image(tmp_path / "empty.png", np.random.default_rng(1).normal(-40, 0.5, db_frame.shape))
    with pytest.raises(ImageError, match="found no face"):
        rois_from_image_files([str(empty)], S, 64)
    Image.fromarray(np.zeros((64, 100), np.uint8) + 9).save(tmp_path / "odd.png")
    with pytest.raises(ImageError, match=r"100x64 is not square; --image takes a 64x64 THz ROI .* or a 256x64"):
        rois_from_image_files([str(tmp_path / "odd.png")], S, 64)


def test_the_gate_refuses_low_quality_and_lets_unknown_quality_through():
    assert enrolment_refusal({"roi": {"quality": 0.30}}, 0.45).startswith("ROI quality 0.30 below")
    assert enrolment_refusal({"roi": {"quality": 0.45}}, 0.45) is None
    assert enrolment_refusal({}, 0.45) is None and enrolment_refusal({"roi": {"quality": "x"}}, 0.45) is None


def _roi_png(tmp_path, name: str, quality: float | None, seed: int):
    p = save_png_roi(tmp_path / f"{name}.png", np.random.default_rng(seed).random((64, 64)))
    if quality is not None:   # the sidecar the dataset builder writes beside each ROI
        p.with_suffix(".json").write_text(json.dumps({"roi": {"found": True, "quality": quality}}))
    return str(p)


def test_enroll_skips_low_quality_rois_and_refuses_when_none_is_left(bundle_dir, tmp_path, monkeypatch):
    monkeypatch.delenv("THZ_DEBUG", raising=False)
    g = tmp_path / "g.sqlite"
    poor, good, unknown = (_roi_png(tmp_path, "poor", 0.2, 0), _roi_png(tmp_path, "good", 0.8, 1),
                           _roi_png(tmp_path, "unknown", None, 2))
    base = ["enroll", "--subject", "bob", "--bundle", str(bundle_dir), "--gallery", str(g)]
    r = CliRunner().invoke(cli, [*base, "--image", poor])
    assert r.exit_code == EXIT_REFUSED, r.output
    assert "every ROI (1) below inference.enroll_min_quality=0.45" in r.stderr and "Traceback" not in r.output
    assert not g.exists()                                   # nothing enrolled, no gallery made
    r = CliRunner().invoke(cli, [*base, "--image", poor, "--image", good, "--image", unknown])
    assert r.exit_code == EXIT_OK, r.output
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["templates_added"] == 2 and out["refused_low_quality"] == 1
    assert "not enrolled from image:" in r.stderr and "quality unknown" in r.stderr
    with Gallery(g, out["model_id"], load_bundle(bundle_dir).manifest.embedding_size) as gal:
        assert sum(gal.templates_by_posture("bob").values()) == 2
    r = CliRunner().invoke(cli, [*base, "--image", str(tmp_path / "missing.png")])
    assert r.exit_code == EXIT_INPUT


def test_enroll_from_a_frame_image(bundle_dir, tmp_path, db_frame):
    frame = save_frame_image(tmp_path / "frame.png", db_frame, frame_id=5)
    r = CliRunner().invoke(cli, ["enroll", "--subject", "ann", "--image", str(frame), "--bundle", str(bundle_dir),
                                 "--gallery", str(tmp_path / "g.sqlite")])
    assert r.exit_code == EXIT_OK, r.output
    assert f"from frame:{frame}" in r.stderr and json.loads(r.stdout.strip().splitlines()[-1])["templates_added"] == 1

"""`thz bench parity`: the agreement measures against hand-computed values, image discovery, the CLI."""
from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from inference.engines.parity import contract_failures, image_paths, parity_stats, psnr
from thz.cli import cli


def _outputs(emb, logits, recon=None):
    out = {"embedding": np.asarray(emb, np.float32), "posture_logits": np.asarray(logits, np.float32)}
    if recon is not None:
        out["reconstruction"] = np.asarray(recon, np.float32)
    return out


def test_identical_outputs_agree_perfectly():
    rng = np.random.default_rng(0)
    e = rng.standard_normal((5, 8))
    e /= np.linalg.norm(e, axis=1, keepdims=True)
    ref = _outputs(e, rng.standard_normal((5, 5)), rng.random((5, 1, 4, 4)))
    s = parity_stats(ref, {k: v.copy() for k, v in ref.items()}, threshold=0.3)
    assert s["cosine_min"] == pytest.approx(1.0) and s["posture_flips"] == 0
    assert s["pairs"] == 10 and s["decision_flips"] == 0 and s["decision_agreement"] == 1.0
    assert s["distance_max_abs"] == pytest.approx(0, abs=1e-7)
    assert s["psnr_min_db"] == np.inf and contract_failures(s, "fp32") == []


def test_rotation_flip_and_threshold_crossing_are_measured():
    """Row 0 rotated by 3 deg in its plane: cosine cos(3 deg); the pair (0, 1) moves across the threshold."""
    a = np.deg2rad(3.0)
    ref_e = np.array([[1, 0, 0], [np.cos(0.5), np.sin(0.5), 0], [0, 0, 1]])  # d(0, 1) = 1 - cos 0.5 = 0.1224
    out_e = ref_e.copy()
    out_e[0] = [np.cos(-a), np.sin(-a), 0]  # d(0, 1) = 1 - cos(0.5 + a) = 0.1485
    logits = np.eye(3, 5) * 4
    flipped = logits.copy()
    flipped[2] = [0, 0, 1, 3, 0]  # argmax 2 -> 3
    s = parity_stats(_outputs(ref_e, logits), _outputs(out_e, flipped), threshold=0.13)
    assert s["cosine_min"] == pytest.approx(np.cos(a)) and s["cosine_median"] == pytest.approx(1.0)
    assert s["posture_flips"] == 1 and s["posture_agreement"] == pytest.approx(2 / 3)
    # (0, 1) accepted before, rejected after
    assert s["decision_flips"] == 1 and s["decision_agreement"] == pytest.approx(2 / 3)
    assert s["distance_max_abs"] == pytest.approx(np.cos(0.5) - np.cos(0.5 + a))
    fails = contract_failures(s, "fp16")
    assert any("cosine 0.998630 < 0.999" in f for f in fails) and any("posture differs on 1 of 3" in f for f in fails)
    assert "reconstruction" not in s and "psnr_min_db" not in s


def test_psnr_of_a_known_error():
    ref = np.full((2, 1, 8, 8), 0.5)
    out = ref.copy()
    out[0] += 0.01  # MSE 1e-4 -> 40 dB
    np.testing.assert_allclose(psnr(ref, out), [40.0, np.inf])


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="embedding shapes differ"):
        parity_stats(_outputs(np.ones((2, 4)), np.ones((2, 5))), _outputs(np.ones((3, 4)), np.ones((3, 5))), 0.1)


def test_image_paths_from_files_directories_and_a_dataset(tmp_path):
    from inference.sources import save_png_roi
    ds = tmp_path / "ds"
    for rel in ("thz/a.png", "thz/b.png", "visible/a.png"):
        save_png_roi(ds / rel, np.zeros((64, 64)))
    (ds / "manifest.csv").write_text("path,identity,posture,concealed,modality,capture,split\n"
                                     "thz/a.png,0,front-left,1,thz,0,test\nthz/b.png,0,front-left,0,thz,0,test\n"
                                     "visible/a.png,0,front-left,1,visible,0,test\n")
    assert [p.name for p in image_paths([str(ds)])] == ["a.png", "b.png"]  # the visible image is not a ROI
    assert len(image_paths([str(ds / "thz"), str(ds / "visible" / "a.png")])) == 3
    with pytest.raises(FileNotFoundError, match="neither an image file nor a directory"):
        image_paths([str(tmp_path / "nope")])
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no images found"):
        image_paths([str(tmp_path / "empty")])
    (ds / "manifest.csv").write_text("file,identity\nthz/a.png,0\n")
    with pytest.raises(ValueError, match="'path' and 'modality'"):
        image_paths([str(ds)])


def test_cli_reference_fp16_rows_and_tensorrt_skipped(bundle_dir, tmp_path):
    from inference.engines.choice import nvidia_gpu_present, tensorrt_installed
    from inference.sources import save_png_roi
    rng = np.random.default_rng(1)
    for i in range(6):
        save_png_roi(tmp_path / f"roi{i}.png", rng.random((64, 64)))
    r = CliRunner().invoke(cli, ["bench", "parity", "--bundle", str(bundle_dir), "--images", str(tmp_path),
                                 "--limit", "4", "--repeats", "2"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    lines = r.stdout.strip().splitlines()
    assert lines[-1] == "parity: ok"
    table = json.loads(lines[-2])
    assert "4 ROIs sampled from 6 images" in table["rois"]
    ref, half = table["rows"][:2]
    assert ref["reference"] and ref["precision"] == "fp32" and half["precision"] == "fp16"
    assert half["n_rois"] == 4 and half["pairs"] == 6 and half["cosine_min"] >= 0.999
    assert half["posture_flips"] == 0 and np.isfinite(half["psnr_min_db"]) and half["psnr_min_db"] > 30
    if not (nvidia_gpu_present() and tensorrt_installed()):
        assert table["skipped"][0]["engine"] == "tensorrt" and lines[-3].split()[:2] == ["tensorrt", "skipped:"]


def test_cli_exits_1_when_the_contract_breaks(bundle_dir, monkeypatch):
    """A cosine bound no real engine meets: the FP16 row fails, the command says which and exits 1."""
    monkeypatch.setitem(__import__("inference.engines.parity", fromlist=["MIN_COSINE"]).MIN_COSINE, "fp16", 1.5)
    r = CliRunner().invoke(cli, ["bench", "parity", "--bundle", str(bundle_dir), "--limit", "3", "--repeats", "1"])
    assert r.exit_code == 1, r.output
    last = r.stdout.strip().splitlines()[-1]
    assert last.startswith("parity: FAIL (onnxruntime fp16: embedding cosine") and "< 1.5" in last
    assert "random ROIs" in r.stdout

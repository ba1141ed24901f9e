"""`--image` takes THz ROIs only: what processing writes (square, the bundle's size, grayscale, a signal)."""
from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from inference.sources import ImageError, load_png_roi, save_png_roi
from thz.cli import EXIT_INPUT, cli


def _noise(shape=(64, 64), seed=0) -> np.ndarray:
    return np.random.default_rng(seed).random(shape)


def _save(tmp_path, name: str, a: np.ndarray, mode: str | None = None):
    p = tmp_path / name
    Image.fromarray(a, mode=mode).save(p)
    return p


@pytest.mark.parametrize("name, make, reason", [
    ("contact sheet (colour, not square)",
     lambda: (_noise((145, 209, 3)) * 255).astype(np.uint8), "not square"),
    ("colour 64x64", lambda: (_noise((64, 64, 3)) * 255).astype(np.uint8), "colour image"),
    ("transparent 64x64", lambda: np.dstack([(_noise() * 255).astype(np.uint8)] * 3
                                            + [np.full((64, 64), 100, np.uint8)]), "transparent"),
    ("1-bit", lambda: _noise() > 0.5, "1-bit"),
    ("flat", lambda: np.full((64, 64), 128, np.uint8), "flat"),
    ("float outside [0, 1]", lambda: (_noise() * 40).astype(np.float32), r"\[0, 1\]"),
    ("32-bit integers", lambda: (_noise() * 1e6).astype(np.int32), "32-bit integer"),
    ("128x128 without --resize", lambda: (_noise((128, 128)) * 255).astype(np.uint8), "--resize"),
])
def test_what_is_not_a_roi_is_refused_with_its_reason(tmp_path, name, make, reason):
    a = make()
    p = tmp_path / "x.tiff"
    Image.fromarray(a).save(p)
    with pytest.raises(ImageError, match=reason) as e:
        load_png_roi(p, 64)
    assert "\n" not in str(e.value)


def test_what_processing_writes_is_accepted(tmp_path):
    a = _noise()
    assert np.abs(load_png_roi(save_png_roi(tmp_path / "a.png", a)) - a).max() <= 0.5 / 255 + 1e-6
    assert load_png_roi(_save(tmp_path, "f.tiff", a.astype(np.float32), "F")).dtype == np.float32
    sixteen = (a * 65535).astype(np.uint16)
    assert np.abs(load_png_roi(_save(tmp_path, "s.png", sixteen)) - a).max() < 1e-4
    rgb = np.repeat((a * 255 + 0.5).astype(np.uint8)[..., None], 3, axis=-1)  # grayscale in an RGB container
    assert np.abs(load_png_roi(_save(tmp_path, "rgb.png", rgb)) - a).max() <= 0.5 / 255 + 1e-6
    assert load_png_roi(_save(tmp_path, "big.png", (_noise((128, 128)) * 255).astype(np.uint8)),
                        resize=True).shape == (64, 64)


def test_enroll_refuses_a_contact_sheet_in_one_line_with_exit_4(bundle_dir, tmp_path, monkeypatch):
    """The issue's case: a 2090x1452 colour contact sheet enrolled as `front-center`, exit 0."""
    monkeypatch.delenv("THZ_DEBUG", raising=False)
    sheet = _save(tmp_path, "contact_sheet.png", (_noise((1452, 2090, 3)) * 255).astype(np.uint8))
    g = tmp_path / "g.sqlite"
    for extra in ([], ["--resize"]):
        r = CliRunner().invoke(cli, ["enroll", "--subject", "bob", "--image", str(sheet), "--bundle", str(bundle_dir),
                                     "--gallery", str(g), *extra])
        assert r.exit_code == EXIT_INPUT, r.output
        err = [ln for ln in r.stderr.splitlines() if ln.strip()]
        assert len(err) == 1 and "2090x1452 is not square" in err[0] and "Traceback" not in r.output, r.output
        assert "enrolled" not in r.output
    color = _save(tmp_path, "colour.png", (_noise((64, 64, 3)) * 255).astype(np.uint8))
    r = CliRunner().invoke(cli, ["enroll", "--subject", "bob", "--image", str(color), "--bundle", str(bundle_dir),
                                 "--gallery", str(g)])
    assert r.exit_code == EXIT_INPUT and "colour image" in r.stderr
    assert not g.exists()  # nothing enrolled, no gallery created

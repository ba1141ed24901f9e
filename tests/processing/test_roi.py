"""Face ROI: finds a shifted head in the anisotropic frame, reports no face on an empty frame."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from processing.config import ProcessingConfig
from processing.processor import FrameProcessor
from processing.roi import FaceLocator, extract_face_roi, normalise_roi, resize_bicubic
from processing.synthetic import make_raw_frame
from thzcore.scanner import ScannerConfig

SC = ScannerConfig()
PX, PY = SC.raster.pixel_pitch_x_m, SC.raster.pixel_pitch_y_m  # 1.758 mm, 7.031 mm


def head_scene(hx: float, hy: float, texture_seed: int = 0):
    """Head: ellipse of semi-axes 7.5 x 11 cm centred at (hx, hy) with a speckled texture; neck below."""
    rng = np.random.default_rng(texture_seed)
    bumps = [(rng.uniform(-0.06, 0.06), rng.uniform(-0.09, 0.09), rng.uniform(0.01, 0.03)) for _ in range(8)]

    def refl(x, y):
        dx, dy = x - hx, y - hy
        head = (dx / 0.075) ** 2 + (dy / 0.11) ** 2 <= 1.0
        neck = (np.abs(dx) < 0.05) & (dy < -0.09) & (dy > -0.20)
        tex = 0.5 + 0.5 * sum(np.exp(-((dx - bx) ** 2 + (dy - by) ** 2) / bw ** 2) for bx, by, bw in bumps)
        return np.where(head, 0.6 * tex, 0.0) + np.where(neck & ~head, 0.3, 0.0)
    return refl


def frame_of(refl, seed=1):
    raw = make_raw_frame(SC, refl, feedback_delay_s=SC.raster.feedback_delay_s, noise_counts=3.0, seed=seed)
    return FrameProcessor(SC, ProcessingConfig()).process(raw)


@pytest.mark.parametrize("hx,hy", [(0.0, 0.03), (0.08, 0.05), (-0.09, -0.02)])
def test_roi_finds_shifted_head(hx, hy):
    f = frame_of(head_scene(hx, hy))
    roi = extract_face_roi(f, SC)
    assert roi.found, roi.reason
    assert roi.image.shape == (64, 64) and roi.image.dtype == np.float32
    assert 0.0 <= roi.image.min() and roi.image.max() <= 1.0 and roi.image.max() == 1.0
    x_left, y_top, w, h = roi.box_m
    assert (w, h) == (0.26, 0.30)
    # box centred on the head column (within 1 cm) and its top 2 cm above the crown (hy + 0.11), within a row
    assert x_left + w / 2 == pytest.approx(hx, abs=0.01)
    assert y_top == pytest.approx(min(hy + 0.11 + 0.02, 0.225), abs=PY + 0.005)
    assert roi.quality >= 0.5


def test_roi_reports_no_face_on_empty_frame():
    f = frame_of(lambda x, y: np.zeros_like(x))
    roi = extract_face_roi(f, SC)
    assert not roi.found and roi.image is None
    assert "no region" in roi.reason or "head needs" in roi.reason


def test_roi_reports_no_face_on_small_blob():
    f = frame_of(lambda x, y: 0.8 * (((x - 0.1) ** 2 + (y + 0.1) ** 2) < 0.02 ** 2))
    roi = extract_face_roi(f, SC)
    assert not roi.found and ("a head needs" in roi.reason or "single bright spot" in roi.reason)


def test_roi_on_linear_frame_equals_db_frame():
    raw = make_raw_frame(SC, head_scene(0.02, 0.0), noise_counts=3.0, seed=4)
    lin = FrameProcessor(SC, ProcessingConfig(output_scale="linear"), None).process(raw)
    db = FrameProcessor(SC, ProcessingConfig(output_scale="db")).process(raw)
    a, b = extract_face_roi(lin, SC), extract_face_roi(db, SC)
    assert a.found and b.found and a.box_px == b.box_px
    np.testing.assert_allclose(a.image, b.image, atol=1e-5)


def test_roi_rejects_wrong_shape():
    with pytest.raises(ValueError, match="differs from the scanner"):
        FaceLocator(SC).locate(np.zeros((32, 256), np.float32))


def test_resize_matches_pil_on_integer_box_and_box_geometry():
    # a linear ramp in x and y is reproduced by bicubic at the sample centres of the box:
    # output pixel (i, j) samples the frame at col = c0 + (j + 0.5) * w / 64 - 0.5, row likewise
    rows, cols = np.mgrid[0:64, 0:256].astype(np.float32)
    img = 3.0 * cols + 5.0 * rows
    r0, c0, h, w = 10.0, 50.0, 32.0, 128.0
    out = resize_bicubic(img, (r0, c0, h, w), 64)
    jj = c0 + (np.arange(64) + 0.5) * w / 64 - 0.5
    ii = r0 + (np.arange(64) + 0.5) * h / 64 - 0.5
    expect = 3.0 * jj[None, :] + 5.0 * ii[:, None]
    # interior (the widened antialias kernel clamps at the image edge only near the borders)
    np.testing.assert_allclose(out[4:-4, 4:-4], expect[4:-4, 4:-4], rtol=1e-4, atol=1e-2)
    pil = np.asarray(Image.fromarray(img, mode="F").resize((64, 64), Image.Resampling.BICUBIC,
                                                           box=(c0, r0, c0 + w, r0 + h)))
    np.testing.assert_array_equal(out, pil)


def test_normalise_roi_rule():
    x = np.linspace(0, 10, 64 * 64, dtype=np.float32).reshape(64, 64)
    n = normalise_roi(x, 1.0, 99.5)
    lo, hi = np.percentile(x, [1.0, 99.5])
    np.testing.assert_allclose(n, np.clip((x - lo) / (hi - lo), 0, 1), rtol=1e-6)
    assert np.all(normalise_roi(np.full((8, 8), 3.0)) == 0)


@pytest.mark.parametrize("seed, density", [(0, 0.002), (1, 0.05), (2, 0.3), (3, 0.9)])
def test_the_grouping_dilation_equals_scipys(seed, density):
    """dilate_rows paints the same set as ndimage.binary_dilation with the locator's ellipse (edges included)."""
    from scipy import ndimage

    from processing.morphology import dilate_rows, row_half_widths
    from processing.roi import FaceLocator
    from thzcore.scanner import ScannerConfig

    loc = FaceLocator(ScannerConfig())
    rng = np.random.default_rng(seed)
    mask = rng.random(loc.shape) < density
    mask[0, 0] = mask[-1, -1] = mask[0, -1] = True         # runs touching every border
    assert np.array_equal(dilate_rows(mask, loc._group_rows), ndimage.binary_dilation(mask, loc.group_element))
    for element in (np.ones((3, 5), bool), np.eye(1, 3, 1, dtype=bool) | np.zeros((1, 3), bool)):
        assert np.array_equal(dilate_rows(mask, row_half_widths(element)), ndimage.binary_dilation(mask, element))
    with pytest.raises(ValueError, match="centred"):
        row_half_widths(np.array([[1, 0, 0]], bool))

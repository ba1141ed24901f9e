"""Visible rendering of the same head: range, determinism, the balaclava covers all but the eyes."""
from __future__ import annotations

import numpy as np
import pytest

from sim.scanner import VirtualScanner
from sim.visible import BACKGROUND


@pytest.fixture(scope="module")
def vs(scanner_cfg, sim_cfg):
    return VirtualScanner(scanner_cfg, sim_cfg, seed=0)


def test_visible_image_shape_range_and_determinism(vs):
    a = vs.render_visible(3, "front-center", False)
    assert a.shape == (64, 64) and a.dtype == np.float32
    assert 0.0 <= a.min() and a.max() <= 1.0
    assert np.array_equal(a, vs.render_visible(3, "front-center", False))
    assert vs.render_visible(3, "front-center", False, size=96).shape == (96, 96)
    assert a[0, 0] == pytest.approx(BACKGROUND)                        # the wall in the corner
    with pytest.raises(ValueError):
        vs.render_visible(3, "front-center", False, size=4)


def test_balaclava_covers_all_but_the_eyes(vs):
    open_, hid = vs.render_visible(5, "front-center", False), vs.render_visible(5, "front-center", True)
    # lower face (mouth/chin rows) becomes the dark knit; the eye band keeps the skin around the eyes
    assert hid[38:50, 24:40].mean() < 0.6 * open_[38:50, 24:40].mean()
    diff = np.abs(hid - open_)
    eye_rows = diff[26:31, 22:40].mean()
    assert eye_rows < 0.5 * diff[38:50, 24:40].mean()


def test_identities_and_postures_look_different(vs):
    a = vs.render_visible(0, "front-center", False)
    b = vs.render_visible(1, "front-center", False)
    c = vs.render_visible(0, "full-left", False)
    assert np.abs(a - b).mean() > 0.01 and np.abs(a - c).mean() > 0.03
    jit = vs.render_visible(0, "front-center", False, capture_seed=3)
    assert 0 < np.abs(a - jit).mean() < np.abs(a - c).mean()

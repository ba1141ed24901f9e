"""The z-buffer rasteriser: skipping the back faces of a closed head changes nothing in the image."""
from __future__ import annotations

import math

import numpy as np
import pytest

from sim.head import head_mesh, head_outward_sign, rotation
from sim.mesh_raster import rasterize
from sim.population import Population


def _projected(yaw_deg: float, pitch_deg: float, identity: int):
    head = head_mesh(Population(20, 1234, 0.5).identity(identity))
    v = head.vertices @ rotation(yaw_deg, pitch_deg, 3.0).T
    rng_v = 0.6 - v[:, 2]
    pitch, s = 1.5e-3, 0.6
    px = ((v[:, 0] + 0.02) * s / rng_v + 0.16) / pitch
    py = ((v[:, 1] - 0.01) * s / rng_v + 0.2) / pitch
    return head, px, py, rng_v


@pytest.mark.parametrize("yaw, pitch, identity", [(0.0, 0.0, 0), (-35.0, 4.0, 3), (88.0, -5.0, 7), (180.0, 0.0, 1)])
def test_culling_the_heads_back_faces_keeps_the_image(yaw, pitch, identity):
    head, px, py, depth = _projected(yaw, pitch, identity)
    ny, nx = 267, 214
    full = rasterize(px, py, depth, head.attrs, head.triangles, ny, nx)
    culled = rasterize(px, py, depth, head.attrs, head.triangles, ny, nx, head.triangles.shape[0],
                       head_outward_sign())
    assert np.isfinite(full[0]).sum() > 5000
    np.testing.assert_array_equal(culled[0], full[0])
    np.testing.assert_array_equal(culled[1], full[1])


def test_the_outward_sign_is_the_one_that_keeps_the_face():
    # with the opposite sign only back faces are drawn: the visible surface is the far side of the head
    head, px, py, depth = _projected(0.0, 0.0, 0)
    full, _ = rasterize(px, py, depth, head.attrs, head.triangles, 267, 214)
    wrong, _ = rasterize(px, py, depth, head.attrs, head.triangles, 267, 214, head.triangles.shape[0],
                         -head_outward_sign())
    seen = np.isfinite(full) & np.isfinite(wrong)
    assert seen.sum() > 5000
    assert np.median(wrong[seen] - full[seen]) > 0.1   # ~ the head's depth behind the face
    assert math.isclose(abs(head_outward_sign()), 1.0)

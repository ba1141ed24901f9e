"""Multi-scan fusion: the weighted mean of unit embeddings, renormalised, and its weights."""
from __future__ import annotations

import numpy as np
import pytest

from thzcore.fusion import QUALITY_FLOOR, fuse, fusion_weights


def test_fuse_by_hand():
    e = np.array([[1.0, 0.0], [0.0, 1.0]])
    # equal weights: the bisector
    assert fuse(e) == pytest.approx([2 ** -0.5, 2 ** -0.5])
    # weights 3 : 1 -> (3, 1) / sqrt(10)
    assert fuse(e, np.array([0.3, 0.1])) == pytest.approx(np.array([3.0, 1.0]) / np.sqrt(10))
    # one embedding is returned as it is
    one = np.array([[0.6, 0.8]])
    assert fuse(one, np.array([0.2])) == pytest.approx([0.6, 0.8])


def test_fuse_refuses_what_has_no_direction():
    with pytest.raises(ValueError, match="cancel"):
        fuse(np.array([[1.0, 0.0], [-1.0, 0.0]]))
    with pytest.raises(ValueError, match="n >= 1"):
        fuse(np.zeros((0, 4)))
    with pytest.raises(ValueError, match="weights"):
        fuse(np.eye(2), np.array([1.0, -1.0]))


def test_weights_floor_unknown_and_uniform():
    q = np.array([0.9, 0.0, np.nan])
    assert fusion_weights(q, 3) == pytest.approx([0.9, QUALITY_FLOOR, 1.0])
    assert fusion_weights(q, 3, "uniform") == pytest.approx([1.0, 1.0, 1.0])
    assert fusion_weights(None, 2) == pytest.approx([1.0, 1.0])
    with pytest.raises(ValueError, match="choose from"):
        fusion_weights(q, 3, "posture")
    with pytest.raises(ValueError, match="3 qualities for 2"):
        fusion_weights(q, 2)

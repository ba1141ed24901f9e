"""Multi-scan fusion: one embedding from N consecutive ROIs of one person, weighted by each ROI's quality.

The one definition, used by the live inference stage (enrolment and verification) and by `thz evaluate
--fusion N` (training/fusion.py):

    fused = sum_i w_i e_i / || sum_i w_i e_i ||,   w_i = max(q_i, QUALITY_FLOOR)

e_i the L2-normalised embeddings, q_i each ROI's quality. The quality is the face locator's score
(processing/roi.py: contrast x coverage x containment x focus, in [0, 1]; `meta.roi.quality` of a live
`roi` message, the `roi.quality` of a dataset image's sidecar JSON): how well the scanner saw the face
in that scan, measured before and apart from the network. Weight "uniform" (or a ROI without a
quality) gives w_i = 1. The floor keeps a ROI that passed the locator's threshold from vanishing
(and a set of zero qualities from dividing by zero).
"""
from __future__ import annotations

from typing import Literal

import numpy as np

FusionWeight = Literal["roi_quality", "uniform"]
WEIGHTS: tuple[str, ...] = ("roi_quality", "uniform")
QUALITY_FLOOR = 0.05


def fusion_weights(quality: np.ndarray | None, n: int, weight: str = "roi_quality") -> np.ndarray:
    """(n,) non-negative weights of n ROIs: their qualities floored at QUALITY_FLOOR, or ones.

    A missing (None) or non-finite quality counts as 1, the weight of a ROI of unknown quality under
    "uniform", so a stream that carries no quality fuses with equal weights.
    """
    if weight not in WEIGHTS:
        raise ValueError(f"fusion weight {weight!r}: choose from {WEIGHTS}")
    if weight == "uniform" or quality is None:
        return np.ones(n, np.float64)
    q = np.asarray(quality, np.float64).reshape(-1)
    if q.shape != (n,):
        raise ValueError(f"{q.size} qualities for {n} ROIs")
    q = np.where(np.isfinite(q), q, 1.0)
    return np.maximum(q, QUALITY_FLOOR)


def fuse(embeddings: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """(n, E) unit embeddings and (n,) weights -> the (E,) unit vector of their weighted mean.

    n = 1 returns the embedding itself (renormalised). Opposite embeddings that cancel exactly
    have no direction: ValueError.
    """
    e = np.asarray(embeddings, np.float64)
    if e.ndim != 2 or len(e) == 0:
        raise ValueError(f"fusion needs a (n, E) array of n >= 1 embeddings, got shape {e.shape}")
    w = np.ones(len(e)) if weights is None else np.asarray(weights, np.float64).reshape(-1)
    if w.shape != (len(e),) or np.any(w < 0) or not np.all(np.isfinite(w)) or w.sum() <= 0:
        raise ValueError(f"fusion weights must be {len(e)} finite non-negative values, not all zero")
    m = w @ e
    norm = float(np.linalg.norm(m))
    if norm <= 1e-12:
        raise ValueError("the fused embeddings cancel out: no direction to verify")
    return m / norm

"""Class probabilities from logits: the one softmax of the NumPy side (posture head), shared by the live
stage (inference.matching re-exports it) and the evaluation (training.metrics)."""
from __future__ import annotations

import numpy as np


def softmax(logits: np.ndarray) -> np.ndarray:
    """p_k = exp(z_k - max z) / sum_j exp(z_j - max z) over the last axis, in float64 (the shift keeps exp finite)."""
    z = np.asarray(logits, np.float64)
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)

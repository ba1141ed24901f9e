"""Line-phase quality: how well forward and backward lines agree, as a function of the assumed line lag.

For a de-warped frame F (lines x width) with line directions d, the forward/backward agreement is
the mean Pearson correlation of each adjacent forward/backward row pair:

    rho = mean_pairs  sum_x (F_a - <F_a>)(F_b - <F_b>) / sqrt(sum (F_a - <F_a>)^2 sum (F_b - <F_b>)^2)

With the right lag both directions draw a target at the same x and rho peaks; the curve rho(tau)
over trial lags tau is the line-phase correlation plotted in the report. The lag itself is
estimated by the processor (FrameProcessor.estimate_line_lag, sub-pixel cross-correlation).
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np


def forward_backward_correlation(frame: np.ndarray, direction: np.ndarray) -> float:
    """rho of the module docstring; NaN when no pair has structure."""
    f = np.asarray(frame, dtype=np.float64)
    d = np.asarray(direction)
    if f.ndim != 2 or d.shape != (f.shape[0],):
        raise ValueError(f"frame {f.shape} and direction {d.shape} must be (lines, width) and (lines,)")
    z = f - f.mean(axis=1, keepdims=True)
    norms = np.sqrt(np.sum(z * z, axis=1))
    rs = []
    for a in range(f.shape[0] - 1):
        b = a + 1
        if d[a] == d[b] or norms[a] == 0 or norms[b] == 0:
            continue
        rs.append(float(np.dot(z[a], z[b]) / (norms[a] * norms[b])))
    return float(np.mean(rs)) if rs else float("nan")


def lag_scan(trial_lags_s: np.ndarray, image_at_lag: Callable[[float], np.ndarray],
             direction: np.ndarray) -> np.ndarray:
    """rho at each trial lag; `image_at_lag(tau)` de-warps the same chirp powers with lag tau."""
    return np.array([forward_backward_correlation(image_at_lag(float(t)), direction) for t in trial_lags_s])

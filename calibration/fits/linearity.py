"""Field of view and scan linearity: a grid target of known pitch maps drive (image) position to true position.

The processor places each output column at a nominal position x_nom (its feedback mapping). Grid
lines of pitch p sit at true positions x_k = x_first + k p. A straight-line fit

    x_true = g x_nom + c

gives the scale g (the true field is g * nominal field) and the offset c; the residual
non-linearity is max |x_true - (g x_nom + c)| over the lines, as a percentage of the full scale
(the span of the fitted lines), the usual definition for galvo scanners.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from calibration.fits.fitting import FitError
from calibration.values import Measured


@dataclass(frozen=True)
class LinearityFit:
    scale: Measured                  # g, true metres per nominal metre
    offset: Measured                 # c (m)
    nonlinearity_pct: float          # max |residual| / full scale * 100
    residuals: np.ndarray            # x_true - fit (m), one per line
    drive: np.ndarray                # x_nom of each line (m)
    position: np.ndarray             # x_true of each line (m)


def fit_linearity(drive: np.ndarray, position: np.ndarray) -> LinearityFit:
    d = np.asarray(drive, dtype=np.float64).ravel()
    x = np.asarray(position, dtype=np.float64).ravel()
    if d.shape != x.shape:
        raise ValueError(f"linearity: {d.size} drive values but {x.size} positions")
    if d.size < 3:
        raise FitError(f"linearity: need at least 3 grid lines, got {d.size}")
    A = np.column_stack([d, np.ones_like(d)])
    coef, *_ = np.linalg.lstsq(A, x, rcond=None)
    res = x - A @ coef
    dof = d.size - 2
    s2 = float(res @ res) / dof if dof > 0 else 0.0
    cov = np.linalg.pinv(A.T @ A) * s2
    span = float(np.ptp(x))
    if span <= 0:
        raise FitError("linearity: all grid lines at the same position")
    return LinearityFit(scale=Measured.of(coef[0], math.sqrt(max(cov[0, 0], 0.0))),
                        offset=Measured.of(coef[1], math.sqrt(max(cov[1, 1], 0.0)), "m"),
                        nonlinearity_pct=float(np.max(np.abs(res)) / span * 100.0),
                        residuals=res, drive=d, position=x)


def find_peaks_subpixel(profile: np.ndarray, min_separation: int, rel_height: float = 0.5) -> np.ndarray:
    """Indices (fractional) of local maxima above `rel_height` of the profile's range, parabola-refined.

    A maximum at i with neighbours (a, b, c) lies at i + (a - c) / (2 (a - 2b + c)).
    Within `min_separation` samples only the highest maximum is kept.
    """
    p = np.asarray(profile, dtype=np.float64)
    if p.ndim != 1 or p.size < 3:
        raise ValueError(f"profile must be 1-D with >= 3 samples, got shape {p.shape}")
    if min_separation < 1:
        raise ValueError(f"{min_separation=} must be >= 1")
    lo, hi = np.nanmin(p), np.nanmax(p)
    thr = lo + rel_height * (hi - lo)
    cand = [i for i in range(1, p.size - 1) if p[i] >= thr and p[i] >= p[i - 1] and p[i] > p[i + 1]]
    cand.sort(key=lambda i: -p[i])
    kept: list[int] = []
    for i in cand:
        if all(abs(i - j) >= min_separation for j in kept):
            kept.append(i)
    out = []
    for i in sorted(kept):
        a, b, c = p[i - 1], p[i], p[i + 1]
        den = a - 2 * b + c
        out.append(i + (0.5 * (a - c) / den if den != 0 else 0.0))
    return np.asarray(out, dtype=np.float64)


def assign_grid_lines(found_m: np.ndarray, pitch_m: float, first_true_m: float) -> np.ndarray:
    """True position of each found line: the nearest x_first + k p to the found (nominal) position.

    Valid while the field error is below half a pitch everywhere, which the tolerance check ensures.
    """
    if pitch_m <= 0:
        raise ValueError(f"{pitch_m=} must be > 0")
    k = np.round((np.asarray(found_m) - first_true_m) / pitch_m)
    return first_true_m + k * pitch_m

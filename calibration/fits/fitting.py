"""Least-squares plumbing shared by the fits: parameter covariance from the Jacobian."""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy.optimize import OptimizeResult, least_squares


class FitError(RuntimeError):
    """A fit did not converge or the data cannot constrain the model; the message says which."""


def fit_least_squares(residuals: Callable[[np.ndarray], np.ndarray], p0: np.ndarray, what: str,
                      bounds: tuple = (-np.inf, np.inf),
                      clusters: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, OptimizeResult]:
    """Minimise sum(residuals(p)^2); return (p, cov, result).

    cov = s^2 (J^T J)^-1 with s^2 = chi^2 / (n - p): the residual scatter sets the scale, as
    `curve_fit(absolute_sigma=False)` does, so uncertainties are 1 sigma for unknown noise.

    clusters: an integer label per residual (e.g. the scan line a chirp belongs to). Residuals of
    one cluster may be correlated (a line's gain drift moves all its chirps together), so the
    cluster-robust sandwich is used instead: cov = B M B * G / (G - 1), B = (J^T J)^-1,
    M = sum_g (J_g^T r_g)(J_g^T r_g)^T over the G clusters (Liang & Zeger 1986).
    """
    p0 = np.asarray(p0, dtype=np.float64)
    res = least_squares(residuals, p0, bounds=bounds, x_scale="jac", method="trf")
    if not res.success:
        raise FitError(f"{what}: least squares did not converge ({res.message})")
    n, k = res.fun.size, p0.size
    if n <= k:
        raise FitError(f"{what}: {n} samples cannot constrain {k} parameters")
    J = np.asarray(res.jac)
    try:
        bread = np.linalg.pinv(J.T @ J)
    except np.linalg.LinAlgError as exc:  # pragma: no cover - pinv rarely fails
        raise FitError(f"{what}: singular Jacobian ({exc})") from exc
    if clusters is None:
        return res.x, bread * (2.0 * res.cost / (n - k)), res
    labels = np.unique(np.asarray(clusters), return_inverse=True)[1]
    g = int(labels.max()) + 1
    if g < k + 2:
        raise FitError(f"{what}: {g} clusters are too few for a cluster-robust covariance of {k} parameters")
    score = np.zeros((g, k))
    np.add.at(score, labels, J * res.fun[:, None])
    meat = score.T @ score
    return res.x, bread @ meat @ bread * (g / (g - 1)), res


def sigmas(cov: np.ndarray) -> np.ndarray:
    return np.sqrt(np.clip(np.diag(cov), 0.0, None))


def finite_xyv(x: np.ndarray, y: np.ndarray, values: np.ndarray,
               what: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """2-D samples as flat float64 arrays plus the mask of the finite ones; ValueError naming `what` when
    the sizes differ."""
    x = np.asarray(x, dtype=np.float64).ravel()
    y = np.asarray(y, dtype=np.float64).ravel()
    v = np.asarray(values, dtype=np.float64).ravel()
    if not (x.shape == y.shape == v.shape):
        raise ValueError(f"{what}: x, y, values sizes differ ({x.size}, {y.size}, {v.size})")
    return x, y, v, np.isfinite(x) & np.isfinite(y) & np.isfinite(v)

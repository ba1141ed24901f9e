"""Least-squares plumbing shared by the fits: parameter covariance from the Jacobian."""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy.optimize import OptimizeResult, least_squares


class FitError(RuntimeError):
    """A fit did not converge or the data cannot constrain the model; the message says which."""


def fit_least_squares(residuals: Callable[[np.ndarray], np.ndarray], p0: np.ndarray, what: str,
                      bounds: tuple = (-np.inf, np.inf)) -> tuple[np.ndarray, np.ndarray, OptimizeResult]:
    """Minimise sum(residuals(p)^2); return (p, cov, result).

    cov = s^2 (J^T J)^-1 with s^2 = chi^2 / (n - p): the residual scatter sets the scale, as
    `curve_fit(absolute_sigma=False)` does, so uncertainties are 1 sigma for unknown noise.
    """
    p0 = np.asarray(p0, dtype=np.float64)
    res = least_squares(residuals, p0, bounds=bounds, x_scale="jac", method="trf")
    if not res.success:
        raise FitError(f"{what}: least squares did not converge ({res.message})")
    n, k = res.fun.size, p0.size
    if n <= k:
        raise FitError(f"{what}: {n} samples cannot constrain {k} parameters")
    jtj = res.jac.T @ res.jac
    try:
        cov = np.linalg.pinv(jtj) * (2.0 * res.cost / (n - k))
    except np.linalg.LinAlgError as exc:  # pragma: no cover - pinv rarely fails
        raise FitError(f"{what}: singular Jacobian ({exc})") from exc
    return res.x, cov, res


def sigmas(cov: np.ndarray) -> np.ndarray:
    return np.sqrt(np.clip(np.diag(cov), 0.0, None))

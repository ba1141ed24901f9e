"""Point-target beam profiling: elliptical 2-D Gaussian fit of an image of a small reflector.

    I(x, y) = c + A exp(-2 (u^2 / wu^2 + v^2 / wv^2)),
    u =  (x - x0) cos(theta) + (y - y0) sin(theta),  v = -(x - x0) sin(theta) + (y - y0) cos(theta)

wu, wv are the 1/e^2 radii of the *image* along its principal axes (theta = 0: u = x, v = y).
How they relate to the one-way beam radius depends on the detection: for a monostatic coherent
system the received amplitude of a point reflector follows the product of the transmit and
receive fields, exp(-2 r^2 / w^2), so its detected *power* image has radius w / sqrt(2)
(see calibration.response).

Reference: ISO 11146-1 (second-moment and fitted beam widths).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from calibration.fits.fitting import FitError, finite_xyv, fit_least_squares, sigmas
from calibration.values import Measured


def gaussian_2d(x: np.ndarray, y: np.ndarray, c: float, A: float, x0: float, y0: float, wu: float, wv: float,
                theta: float = 0.0) -> np.ndarray:
    dx, dy = x - x0, y - y0
    ct, st = math.cos(theta), math.sin(theta)
    u = dx * ct + dy * st
    v = -dx * st + dy * ct
    return c + A * np.exp(-2.0 * (u * u / (wu * wu) + v * v / (wv * wv)))


@dataclass(frozen=True)
class SpotFit:
    offset: Measured
    amplitude: Measured
    x0: Measured
    y0: Measured
    radius_x: Measured      # 1/e^2 radius along the first principal axis (x when theta = 0)
    radius_y: Measured
    theta_rad: Measured
    residual_rms: float
    n: int

    @property
    def ellipticity(self) -> float:
        """min/max radius (1 = round), as ISO 11146 defines it."""
        a, b = self.radius_x.value, self.radius_y.value
        return min(a, b) / max(a, b)


def _moments(x: np.ndarray, y: np.ndarray, v: np.ndarray) -> tuple[float, float, float, float, float, float]:
    c = float(np.percentile(v, 10))
    wts = np.clip(v - c, 0, None)
    if wts.sum() <= 0:
        raise FitError("2-D Gaussian: no positive signal above the background")
    wts = np.where(wts >= 0.3 * wts.max(), wts, 0.0)  # the core only: the background inflates moments
    tot = wts.sum()
    x0, y0 = float((wts * x).sum() / tot), float((wts * y).sum() / tot)
    # second moment sigma^2 of exp(-2 r^2/w^2) is w^2/4; the 30 % clip cuts it, so inflate a little
    sx = math.sqrt(max(float((wts * (x - x0) ** 2).sum() / tot), 1e-30))
    sy = math.sqrt(max(float((wts * (y - y0) ** 2).sum() / tot), 1e-30))
    # a core that spans one row/column has zero second moment: start from the sample spacing instead
    ux, uy = np.unique(x), np.unique(y)
    dx = float(np.median(np.diff(ux))) if ux.size > 1 else float(np.ptp(y)) or 1.0
    dy = float(np.median(np.diff(uy))) if uy.size > 1 else float(np.ptp(x)) or 1.0
    return c, max(float(v.max() - c), 0.0), x0, y0, max(2.6 * sx, dx), max(2.6 * sy, dy)


def fit_gaussian_2d(x: np.ndarray, y: np.ndarray, values: np.ndarray, rotate: bool = False,
                    unit: str = "m", groups: np.ndarray | None = None,
                    clusters: np.ndarray | None = None) -> SpotFit:
    """Fit I(x, y) to samples; x, y, values of equal size (e.g. meshgrids of an image and the image).

    rotate=False fixes theta = 0 (axes along the raster), which a technician compares with the spec.
    groups: a label per sample; each group gets its own amplitude A_g (scans at different gain),
    the rest is shared; the reported amplitude is the mean. clusters: see fit_least_squares.
    """
    x, y, v, ok = finite_xyv(x, y, values, "2-D Gaussian")
    gidx = (np.zeros(int(ok.sum()), dtype=np.int64) if groups is None
            else np.unique(np.asarray(groups).ravel()[ok], return_inverse=True)[1])
    cl = None if clusters is None else np.asarray(clusters).ravel()[ok]
    x, y, v = x[ok], y[ok], v[ok]
    if x.size < 10:
        raise FitError(f"2-D Gaussian: need at least 10 finite samples, got {x.size}")
    n_g = int(gidx.max()) + 1
    c0, a0, x0, y0, wu0, wv0 = _moments(x, y, v)
    # parameter vector: c, x0, y0, wu, wv, [theta], A_0 .. A_{G-1}
    p0 = [c0, x0, y0, wu0, wv0]
    lo = [-np.inf, -np.inf, -np.inf, 1e-9, 1e-9]
    hi = [np.inf] * 5
    if rotate:
        p0.append(0.0)
        lo.append(-math.pi / 2)
        hi.append(math.pi / 2)
    na = len(p0)
    p0 += [a0] * n_g
    lo += [0.0] * n_g
    hi += [np.inf] * n_g

    def resid(p: np.ndarray) -> np.ndarray:
        th = p[5] if rotate else 0.0
        return p[0] + p[na:][gidx] * gaussian_2d(x, y, 0.0, 1.0, p[1], p[2], p[3], p[4], th) - v

    p, cov, res = fit_least_squares(resid, np.array(p0), "2-D Gaussian", bounds=(lo, hi), clusters=cl)
    s = sigmas(cov)
    theta = Measured.of(p[5], s[5], "rad") if rotate else Measured.of(0.0, 0.0, "rad")
    gvec = np.full(n_g, 1.0 / n_g)
    amp = Measured.of(float(np.mean(p[na:])), float(np.sqrt(max(gvec @ cov[na:, na:] @ gvec, 0.0))))
    return SpotFit(offset=Measured.of(p[0], s[0]), amplitude=amp,
                   x0=Measured.of(p[1], s[1], unit), y0=Measured.of(p[2], s[2], unit),
                   radius_x=Measured.of(p[3], s[3], unit), radius_y=Measured.of(p[4], s[4], unit),
                   theta_rad=theta, residual_rms=float(np.sqrt(np.mean(res.fun**2))), n=int(x.size))

"""Knife-edge beam profiling: erf fit of an edge-spread profile, 10-90 % and 1/e^2 widths.

A Gaussian intensity profile I(x) = exp(-2 x^2 / w^2) (w the 1/e^2 radius) swept across a
knife edge integrates to the edge-spread function

    P(x) = a + b/2 [1 + erf(sqrt(2) (x - x0) / w)]

so P rises from 10 % to 90 % over dx_10_90 = sqrt(2) erfinv(0.8) w = 1.2816 w (erf(sqrt2 u / w) = +-0.8
at u = +-erfinv(0.8) w / sqrt2), and the 1/e^2 diameter is D = 2 w = 1.5607 dx_10_90.

A slanted edge (tilted a few degrees from a raster axis) crosses every row at a different
sub-pixel position; projecting each pixel on the edge normal gives an over-sampled profile
(the ISO 12233 slanted-edge idea), which is how the coarse slow axis is resolved.

References: Siegman, "Lasers" (1986) ch. 17; ISO 11146-1 (beam widths); ISO 12233 (slanted edge).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.interpolate import PchipInterpolator
from scipy.special import erf, erfinv

from calibration.fits.fitting import FitError, finite_xyv, fit_least_squares, sigmas
from calibration.values import Measured

K_10_90 = math.sqrt(2.0) * float(erfinv(0.8))  # dx_10_90 = K_10_90 * w  (= 1.28155)
SQRT2 = math.sqrt(2.0)


def edge_profile(x: np.ndarray, a: float, b: float, x0: float, w: float) -> np.ndarray:
    """P(x) = a + b/2 [1 + erf(sqrt2 (x - x0) / w)]; b < 0 for a falling edge."""
    return a + 0.5 * b * (1.0 + erf(SQRT2 * (np.asarray(x, dtype=np.float64) - x0) / w))


def edge_profile_power(x: np.ndarray, a: float, b: float, x0: float, w: float) -> np.ndarray:
    """Detected power of a coherent edge response: a + (b/2 [1 + erf(sqrt2 (x - x0) / w)])^2.

    The amplitude follows the erf; the power is its square plus the noise power a (incoherent
    noise adds in power on average, E|s + n|^2 = |s|^2 + sigma^2, not in amplitude).
    """
    return a + edge_profile(x, 0.0, b, x0, w) ** 2


@dataclass(frozen=True)
class EdgeFit:
    """Fitted edge: offset a, step b, edge position x0, 1/e^2 radius w; widths derived from w."""

    offset: Measured
    step: Measured
    position: Measured
    radius_1e2: Measured            # w
    diameter_1e2: Measured          # 2 w
    width_10_90: Measured           # K_10_90 w, from the fit
    width_10_90_direct: float       # from interpolating the normalised data (model-free), NaN if not monotone enough
    residual_rms: float
    n: int
    angle_rad: Measured | None = None  # slanted edge: direction of the edge normal (rad), x toward y

    def values(self, prefix: str = "") -> dict[str, Measured]:
        out = {f"{prefix}diameter_1e2": self.diameter_1e2, f"{prefix}width_10_90": self.width_10_90,
               f"{prefix}edge_position": self.position}
        if self.angle_rad is not None:
            out[f"{prefix}edge_angle"] = Measured.of(math.degrees(self.angle_rad.value),
                                                     math.degrees(self.angle_rad.uncertainty), "deg")
        return out


def _guess(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float, float]:
    order = np.argsort(x)
    xs, ys = x[order], y[order]
    k = max(3, xs.size // 10)
    lo, hi = float(np.median(ys[:k])), float(np.median(ys[-k:]))
    b = hi - lo
    if b == 0.0:
        raise FitError("knife edge: the profile is flat (no edge in the data)")
    frac = (ys - lo) / b
    x0 = float(xs[np.argmin(np.abs(frac - 0.5))])
    x10 = float(xs[np.argmin(np.abs(frac - 0.1))])
    x90 = float(xs[np.argmin(np.abs(frac - 0.9))])
    span = float(xs[-1] - xs[0])
    w = abs(x90 - x10) / K_10_90
    w = min(max(w, span / max(xs.size, 1)), span)
    return lo, b, x0, w


def width_10_90_direct(x: np.ndarray, y: np.ndarray, offset: float, step: float, power: bool = False,
                       n_bins: int = 400) -> float:
    """Model-free 10-90 % width: where the binned, normalised profile first crosses 0.1 and 0.9.

    The samples are averaged per distinct position, or in `n_bins` equal-width bins when there
    are more positions (noise averages in the detected quantity: power when power=True, then
    amplitude = sqrt(mean power - offset)); the crossings are read off a monotone cubic (PCHIP)
    through the bins. A falling edge (step < 0) is mirrored. NaN when a level is never crossed.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if step < 0:
        x, step = -x, -step
    ux = np.unique(x)
    if ux.size <= n_bins:  # few distinct positions (rows, a sampled profile): group by position
        idx = np.searchsorted(ux, x)
        centres = ux
    else:
        nb = int(max(8, min(n_bins, x.size // 4)))
        edges = np.linspace(x.min(), x.max(), nb + 1)
        idx = np.clip(np.searchsorted(edges, x, side="right") - 1, 0, nb - 1)
        centres = 0.5 * (edges[:-1] + edges[1:])
    cnt = np.bincount(idx, minlength=centres.size)
    sums = np.bincount(idx, weights=y, minlength=centres.size)
    have = cnt > 0
    xc = centres[have]
    m = sums[have] / cnt[have]
    frac = (np.sqrt(np.clip(m - offset, 0.0, None)) if power else m - offset) / step
    if xc.size < 4:
        return float("nan")
    # shape-preserving cubic through the binned profile: linear interpolation between samples a
    # quarter of the width apart would bias the curved erf tails
    fine = np.linspace(xc[0], xc[-1], 20 * xc.size)
    f = PchipInterpolator(xc, frac)(fine)
    crossings = []
    for level in (0.1, 0.9):
        above = np.nonzero(f >= level)[0]
        if above.size == 0 or above[0] == 0:
            return float("nan")
        i = above[0]
        f0, f1 = f[i - 1], f[i]
        t = 0.0 if f1 == f0 else (level - f0) / (f1 - f0)
        crossings.append(fine[i - 1] + t * (fine[i] - fine[i - 1]))
    return float(crossings[1] - crossings[0])


def fit_knife_edge(x: np.ndarray, y: np.ndarray, unit: str = "m", power: bool = False,
                   groups: np.ndarray | None = None, clusters: np.ndarray | None = None) -> EdgeFit:
    """Fit P(x) to an edge-spread profile (any order of samples, rising or falling).

    x: positions (unit), y: detected values proportional to the integrated intensity
    (power=False), or the power of a coherent detection whose amplitude is (power=True,
    model `edge_profile_power`; offset = noise power, step = signed amplitude step).
    groups: an integer label per sample; each group gets its own step b_g (scans taken at
    different times with different receiver gain), the offset, position and width are shared;
    the reported step is the mean of the b_g.
    clusters: labels of samples whose errors are correlated (see fit_least_squares).
    """
    x = np.asarray(x, dtype=np.float64).ravel()
    y = np.asarray(y, dtype=np.float64).ravel()
    if x.shape != y.shape:
        raise ValueError(f"knife edge: x has {x.size} samples but y has {y.size}")
    ok = np.isfinite(x) & np.isfinite(y)
    if groups is not None:
        groups = np.asarray(groups).ravel()
        if groups.shape != x.shape:
            raise ValueError(f"knife edge: {groups.size} group labels for {x.size} samples")
        gidx = np.unique(groups[ok], return_inverse=True)[1]
    else:
        gidx = np.zeros(int(ok.sum()), dtype=np.int64)
    cl = None if clusters is None else np.asarray(clusters).ravel()[ok]
    x, y = x[ok], y[ok]
    if x.size < 8:
        raise FitError(f"knife edge: need at least 8 finite samples, got {x.size}")
    n_g = int(gidx.max()) + 1
    span = float(np.ptp(x))
    # the squared model cannot tell a rising from a falling edge by the sign of b: fit in the
    # mirrored coordinate -x when the edge falls, then mirror the position back
    floor = float(np.percentile(y, 2))
    shape_of = np.sqrt(np.clip(y - floor, 0.0, None)) if power else y
    _, b_dir, _, _ = _guess(x, shape_of)
    sgn = 1.0 if b_dir > 0 else -1.0
    xs = sgn * x
    a0, b0, x00, w0 = _guess(xs, shape_of)
    if power:
        a0 = floor
    profile = edge_profile_power if power else edge_profile

    if power:
        # detected power carries multiplicative noise (gain drift) on the bright side and additive
        # noise on the dark side: sigma_i = rho |m_i| + sigma_d, both read off the data (relative
        # scatter of the brightest fifth, scatter of the darkest fifth), so neither the plateau's
        # scatter nor the floor's decides the fit alone
        lo_q, hi_q = np.percentile(y, [20, 80])
        dark, bright = y[y <= lo_q], y[y >= hi_q]
        sigma_d = max(float(np.std(dark)), 1e-12 * float(np.abs(y).max()) + 1e-300)
        rho = float(np.std(bright) / max(abs(float(np.mean(bright))), 1e-300))

        def resid(p: np.ndarray) -> np.ndarray:
            m = profile(xs, p[0], p[3:][gidx], p[1], p[2])
            return (m - y) / (rho * np.abs(m) + sigma_d)
    else:
        def resid(p: np.ndarray) -> np.ndarray:
            return profile(xs, p[0], p[3:][gidx], p[1], p[2]) - y

    p0 = np.array([a0, x00, w0] + [b0] * n_g)
    lo = [-np.inf, xs.min() - span, span * 1e-6] + [0.0] * n_g
    hi = [np.inf, xs.max() + span, 10 * span] + [np.inf] * n_g
    p, cov, res = fit_least_squares(resid, p0, "knife edge", bounds=(lo, hi), clusters=cl)
    s = sigmas(cov)
    a, x0, w = p[:3]
    b = float(np.mean(p[3:]))
    gvec = np.full(n_g, 1.0 / n_g)
    b_u = float(np.sqrt(max(gvec @ cov[3:, 3:] @ gvec, 0.0)))
    # model-free width on the profile with every group scaled to the mean step
    scale = (b / p[3:])[gidx]
    y_common = a + (y - a) * (scale**2 if power else scale)
    direct = width_10_90_direct(xs, y_common, a, b, power=power)
    return EdgeFit(
        offset=Measured.of(a, s[0]), step=Measured.of(sgn * b, b_u), position=Measured.of(sgn * x0, s[1], unit),
        radius_1e2=Measured.of(w, s[2], unit), diameter_1e2=Measured.of(2 * w, 2 * s[2], unit),
        width_10_90=Measured.of(K_10_90 * w, K_10_90 * s[2], unit), width_10_90_direct=direct,
        residual_rms=float(np.sqrt(np.mean((profile(xs, a, p[3:][gidx], x0, w) - y) ** 2))), n=int(x.size),
    )


def slanted_edge_model(xy: tuple[np.ndarray, np.ndarray], a: float, b: float, phi: float, d: float,
                       w: float) -> np.ndarray:
    """a + b/2 [1 + erf(sqrt2 (x cos(phi) + y sin(phi) - d) / w)]: edge normal at angle phi."""
    x, y = xy
    return edge_profile(x * math.cos(phi) + y * math.sin(phi), a, b, d, w)


def fit_slanted_edge(x: np.ndarray, y: np.ndarray, values: np.ndarray,
                     unit: str = "m") -> tuple[EdgeFit, np.ndarray, np.ndarray]:
    """Fit a straight edge of unknown angle to 2-D samples (x, y, value), e.g. an image of a tilted knife edge.

    Returns (fit, s, v): s the signed distance of every finite sample to the fitted edge along its
    normal (unit) and v its value, the over-sampled edge-spread profile for plotting.
    The fitted w is the 1/e^2 radius along the edge normal.
    """
    x, y, v, ok = finite_xyv(x, y, values, "slanted edge")
    x, y, v = x[ok], y[ok], v[ok]
    if x.size < 16:
        raise FitError(f"slanted edge: need at least 16 finite samples, got {x.size}")
    # direction of steepest increase from a plane fit v ~ c0 + cx x + cy y
    A = np.column_stack([np.ones_like(x), x - x.mean(), y - y.mean()])
    coef, *_ = np.linalg.lstsq(A, v, rcond=None)
    if coef[1] == 0 and coef[2] == 0:
        raise FitError("slanted edge: the image is flat (no edge in the data)")
    phi0 = math.atan2(coef[2], coef[1])
    s0 = x * math.cos(phi0) + y * math.sin(phi0)
    a0, b0, d0, w0 = _guess(s0, v)  # b0 > 0 by construction of phi0
    p, cov, res = fit_least_squares(lambda p: slanted_edge_model((x, y), *p) - v,
                                    np.array([a0, b0, phi0, d0, w0]), "slanted edge",
                                    bounds=([-np.inf] * 4 + [w0 * 1e-4], [np.inf] * 4 + [np.inf]))
    a, b, phi, d, w = p
    s = sigmas(cov)
    dist = x * math.cos(phi) + y * math.sin(phi) - d
    fit = EdgeFit(
        offset=Measured.of(a, s[0]), step=Measured.of(b, s[1]), position=Measured.of(d, s[3], unit),
        radius_1e2=Measured.of(abs(w), s[4], unit), diameter_1e2=Measured.of(2 * abs(w), 2 * s[4], unit),
        width_10_90=Measured.of(K_10_90 * abs(w), K_10_90 * s[4], unit),
        width_10_90_direct=width_10_90_direct(dist, v, a, b),
        residual_rms=float(np.sqrt(np.mean(res.fun**2))), n=int(x.size), angle_rad=Measured.of(phi, s[2], "rad"),
    )
    return fit, dist, v

"""Depth of focus: fit of the Gaussian-beam caustic w(z) to spot radii measured at several ranges.

    w(z) = w0 sqrt(1 + ((z - z0) / z_R)^2)

w0 waist radius (1/e^2), z0 waist position, z_R Rayleigh range; depth of focus DoF = 2 z_R (the
range over which w <= sqrt(2) w0). With wavelength lambda the beam quality follows from the fit,
M^2 = pi w0^2 / (lambda z_R) (1 for an ideal Gaussian beam).

Since w^2 = w0^2 + (w0/z_R)^2 (z - z0)^2 is a parabola in z, a quadratic fit of w^2 gives the
starting point in closed form: w^2 = c2 z^2 + c1 z + c0 -> z0 = -c1 / 2c2,
w0^2 = c0 - c1^2 / 4c2, z_R = w0 / sqrt(c2).

Reference: ISO 11146-1 section 9 (hyperbolic fit of the caustic); Siegman, "Lasers" ch. 17.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from calibration.fits.fitting import FitError, fit_least_squares, sigmas
from calibration.values import Measured


def beam_radius(z: np.ndarray, w0: float, z0: float, z_r: float) -> np.ndarray:
    return w0 * np.sqrt(1.0 + ((np.asarray(z, dtype=np.float64) - z0) / z_r) ** 2)


@dataclass(frozen=True)
class CausticFit:
    waist_radius: Measured        # w0 (m)
    waist_position: Measured      # z0 (m)
    rayleigh_range: Measured      # z_R (m)
    depth_of_focus: Measured      # 2 z_R (m)
    m_squared: Measured | None    # pi w0^2 / (lambda z_R), when lambda is given
    residual_rms: float
    n: int

    def values(self) -> dict[str, Measured]:
        out = {"waist_radius": self.waist_radius, "waist_diameter": Measured.of(
            2 * self.waist_radius.value, 2 * self.waist_radius.uncertainty, self.waist_radius.unit),
            "waist_position": self.waist_position, "rayleigh_range": self.rayleigh_range,
            "depth_of_focus": self.depth_of_focus}
        if self.m_squared is not None:
            out["m_squared"] = self.m_squared
        return out


def caustic_start(z: np.ndarray, w: np.ndarray) -> tuple[float, float, float]:
    """Closed-form (w0, z0, z_R) from a quadratic fit of w^2 over z (see module docstring)."""
    c2, c1, c0 = np.polyfit(z, w * w, 2)
    if c2 <= 0:
        raise FitError(f"caustic: w^2 does not open upward over z (curvature {c2:.3g}); "
                       "measure on both sides of the waist or farther from it")
    z0 = -c1 / (2 * c2)
    w0_sq = c0 - c1 * c1 / (4 * c2)
    if w0_sq <= 0:
        w0_sq = float(np.min(w)) ** 2
    w0 = math.sqrt(w0_sq)
    return w0, float(z0), w0 / math.sqrt(c2)


def fit_caustic(z: np.ndarray, w: np.ndarray, sigma_w: np.ndarray | None = None,
                wavelength_m: float | None = None) -> CausticFit:
    """Weighted fit of w(z) (both in metres). sigma_w: 1-sigma of each w (None = equal weights)."""
    z = np.asarray(z, dtype=np.float64).ravel()
    w = np.asarray(w, dtype=np.float64).ravel()
    if z.shape != w.shape:
        raise ValueError(f"caustic: z has {z.size} samples but w has {w.size}")
    if z.size < 4:
        raise FitError(f"caustic: need at least 4 ranges to fit 3 parameters with a residual, got {z.size}")
    if np.any(w <= 0):
        raise ValueError(f"caustic: beam radii must be > 0, got min {w.min()}")
    if sigma_w is None:
        sw = np.ones_like(w)
    else:
        sw = np.asarray(sigma_w, dtype=np.float64).ravel()
        if sw.shape != w.shape or np.any(~(sw > 0)):
            raise ValueError("caustic: sigma_w must be > 0 and one per radius")
    w0, z0, zr = caustic_start(z, w)
    span = float(np.ptp(z))
    zr = min(max(zr, 1e-3 * span), 1e3 * span)
    p, cov, res = fit_least_squares(lambda p: (beam_radius(z, *p) - w) / sw, np.array([w0, z0, zr]), "caustic",
                                    bounds=([1e-12, -np.inf, 1e-9], [np.inf, np.inf, np.inf]))
    s = sigmas(cov)
    w0, z0, zr = p
    m2 = None
    if wavelength_m is not None:
        m2v = math.pi * w0 * w0 / (wavelength_m * zr)
        # first-order propagation with the w0-z_R covariance: dM2/M2 = 2 dw0/w0 - dzR/zR
        g = np.array([2 / w0, 0.0, -1 / zr]) * m2v
        m2 = Measured.of(m2v, math.sqrt(max(float(g @ cov @ g), 0.0)))
    return CausticFit(waist_radius=Measured.of(w0, s[0], "m"), waist_position=Measured.of(z0, s[1], "m"),
                      rayleigh_range=Measured.of(zr, s[2], "m"), depth_of_focus=Measured.of(2 * zr, 2 * s[2], "m"),
                      m_squared=m2, residual_rms=float(np.sqrt(np.mean((res.fun * sw) ** 2))), n=int(z.size))

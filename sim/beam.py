"""Gaussian beam optics of the scanner: spot size, focus loss and the coupling of a surface back into the beam.

Symbols (SI):
    lambda       wavelength c / f_c
    w0           waist radius (1/e^2 of intensity), z_w the waist range
    z_R          Rayleigh range pi w0^2 / lambda; depth of focus 2 z_R
    w(z)         w0 sqrt(1 + ((z - z_w)/z_R)^2), the 1/e^2 intensity radius at range z
    theta0       far-field divergence lambda / (pi w0)
    k            2 pi / lambda

One-way intensity across the beam I(r) = exp(-2 r^2 / w^2). The two-way (transmit x receive)
amplitude response to a point scatterer offset r from the beam axis is the same function,
g(r) = exp(-2 r^2 / w^2), so its power response is exp(-4 r^2 / w^2) (1/e^2 radius w / sqrt(2)).

Coupling of a smooth surface back into the receive mode (power, relative to a flat mirror
facing the beam in the waist), the closed forms the calibration targets use (a subject's surface
is summed facet by facet: sim.physical_optics):
    tilt alpha:              eta_tilt = exp(-(2 alpha / theta0)^2)                (DESIGN.md)
    defocus (extended):      eta_focus = (w0 / w(z))^2     (mode overlap of the mirrored beam)
    point scatterer:         power ~ (w0 / w(z))^4         (intensity on target x receive coupling)

References: Goldsmith, "Quasioptical Systems" (1998), ch. 2 and 4 (Gaussian beam coupling).
"""
from __future__ import annotations

import math

import numpy as np

from thzcore.scanner import SPEED_OF_LIGHT


def rayleigh_range(w0_m: float, wavelength_m: float) -> float:
    """z_R = pi w0^2 / lambda."""
    return math.pi * w0_m * w0_m / wavelength_m


def beam_radius(range_m: float | np.ndarray, w0_m: float, waist_range_m: float,
                wavelength_m: float) -> float | np.ndarray:
    """w(z) = w0 sqrt(1 + ((z - z_w)/z_R)^2), the 1/e^2 intensity radius (m)."""
    z_r = rayleigh_range(w0_m, wavelength_m)
    dz = np.asarray(range_m, dtype=np.float64) - waist_range_m
    w = w0_m * np.sqrt(1.0 + (dz / z_r) ** 2)
    return float(w) if np.ndim(w) == 0 else w


def divergence(w0_m: float, wavelength_m: float) -> float:
    """theta0 = lambda / (pi w0) (rad)."""
    return wavelength_m / (math.pi * w0_m)


def tilt_coupling(alpha_rad: float | np.ndarray, theta0_rad: float) -> float | np.ndarray:
    """Power coupling of a flat mirror tilted by alpha: exp(-(2 alpha / theta0)^2)."""
    return np.exp(-(2.0 * np.asarray(alpha_rad) / theta0_rad) ** 2)


def carrier_phase(range_m: np.ndarray | float, carrier_hz: float, reference_range_m: float) -> np.ndarray | float:
    """Phase of the dechirped return at the start of a chirp: 4 pi f_c (R - R_ref) / c (rad)."""
    return 4.0 * math.pi * carrier_hz * (np.asarray(range_m) - reference_range_m) / SPEED_OF_LIGHT

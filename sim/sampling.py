"""Per-chirp sampling of the scene maps (complex field, phase and beat ranges) at the true beam positions."""
from __future__ import annotations

import math

import numpy as np
from numba import njit


@njit(inline="always", nogil=True)
def _cell(ny: int, nx: int, fy: float, fx: float) -> tuple[int, int, float, float]:
    """(i, j, dy, dx) of the grid cell holding (fy, fx); off the interior the nearest node, with dy = -1."""
    i = int(math.floor(fy))
    j = int(math.floor(fx))
    if i < 0 or j < 0 or i >= ny - 1 or j >= nx - 1:
        return min(max(int(round(fy)), 0), ny - 1), min(max(int(round(fx)), 0), nx - 1), -1.0, 0.0
    return i, j, fy - i, fx - j


@njit(cache=True, nogil=True)
def _bilinear(a: np.ndarray, fy: float, fx: float) -> float:
    i, j, dy, dx = _cell(a.shape[0], a.shape[1], fy, fx)
    if dy < 0.0:
        return a[i, j]
    return ((1 - dy) * ((1 - dx) * a[i, j] + dx * a[i, j + 1])
            + dy * ((1 - dx) * a[i + 1, j] + dx * a[i + 1, j + 1]))


@njit(cache=True, nogil=True)
def _bilinear_part(a: np.ndarray, fy: float, fx: float, imag: bool) -> float:
    """_bilinear of the real or imaginary part of a complex map (in float64)."""
    i, j, dy, dx = _cell(a.shape[0], a.shape[1], fy, fx)
    if dy < 0.0:
        z = a[i, j]
        return np.float64(z.imag if imag else z.real)
    if imag:
        a00, a01, a10, a11 = a[i, j].imag, a[i, j + 1].imag, a[i + 1, j].imag, a[i + 1, j + 1].imag
    else:
        a00, a01, a10, a11 = a[i, j].real, a[i, j + 1].real, a[i + 1, j].real, a[i + 1, j + 1].real
    a00, a01, a10, a11 = np.float64(a00), np.float64(a01), np.float64(a10), np.float64(a11)
    return (1 - dy) * ((1 - dx) * a00 + dx * a01) + dy * ((1 - dx) * a10 + dx * a11)


@njit(cache=True, nogil=True)
def _inside(ny: int, nx: int, fy: float, fx: float) -> bool:
    return 0.0 <= fy <= ny - 1 and 0.0 <= fx <= nx - 1


@njit(cache=True, nogil=True)
def sample_layers(u: np.ndarray, v: np.ndarray, dr: np.ndarray, u0: float, v0: float, pitch: float,
                  amps: np.ndarray, phase_r: np.ndarray, beat_r: np.ndarray,
                  phase_per_m: float, cyc_per_m: float, r_ref: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Tones of each chirp from L layers sampled at the beam positions.

    u, v:      (C,) beam position at the standoff plane (m); dr: (C,) range offset (breathing, sway; m)
    amps:      (L, ny, nx) complex64 field coupled back (plate = 1) on the map grid (u0, v0, pitch)
    phase_r:   (L, ny, nx) range whose carrier phase multiplies the field; beat_r: range of the beat (m)
    returns amp, phase, cyc: (C, L); tone = |A| cos(2 pi cyc n + arg A + phi(R_p + dr)),
    phi(R) = 4 pi f_c (R - R_ref) / c = phase_per_m (R - R_ref); beat cyc = cyc_per_m (R_b + dr - R_ref)
    """
    n_c = u.shape[0]
    n_l, ny, nx = amps.shape
    amp = np.zeros((n_c, n_l))
    phase = np.zeros((n_c, n_l))
    cyc = np.zeros((n_c, n_l))
    for c in range(n_c):
        fx = (u[c] - u0) / pitch
        fy = (v[c] - v0) / pitch
        inside = _inside(ny, nx, fy, fx)
        for l in range(n_l):
            rb = _bilinear(beat_r[l], fy, fx) + dr[c]
            cyc[c, l] = cyc_per_m * (rb - r_ref)
            if not inside:
                continue
            re = _bilinear_part(amps[l], fy, fx, False)
            im = _bilinear_part(amps[l], fy, fx, True)
            ph = phase_per_m * (_bilinear(phase_r[l], fy, fx) + dr[c] - r_ref)
            amp[c, l] = math.sqrt(re * re + im * im)
            phase[c, l] = math.atan2(im, re) + ph
    return amp, phase, cyc

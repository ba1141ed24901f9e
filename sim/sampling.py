"""Per-chirp sampling of the scene maps at the true beam positions, and the per-frame speckle fields."""
from __future__ import annotations

import math

import numpy as np
import scipy.fft
from numba import njit

from sim import beam


@njit(cache=True)
def _bilinear(a: np.ndarray, fy: float, fx: float) -> float:
    ny, nx = a.shape
    i = int(math.floor(fy))
    j = int(math.floor(fx))
    if i < 0 or j < 0 or i >= ny - 1 or j >= nx - 1:
        ii = min(max(int(round(fy)), 0), ny - 1)
        jj = min(max(int(round(fx)), 0), nx - 1)
        return a[ii, jj]
    dy = fy - i
    dx = fx - j
    return ((1 - dy) * ((1 - dx) * a[i, j] + dx * a[i, j + 1])
            + dy * ((1 - dx) * a[i + 1, j] + dx * a[i + 1, j + 1]))


@njit(cache=True)
def _inside(ny: int, nx: int, fy: float, fx: float) -> bool:
    return 0.0 <= fy <= ny - 1 and 0.0 <= fx <= nx - 1


@njit(cache=True)
def sample_layers(u: np.ndarray, v: np.ndarray, dr: np.ndarray, u0: float, v0: float, pitch: float,
                  amps: np.ndarray, ranges: np.ndarray, su0: float, sv0: float, spitch: float,
                  spk_re: np.ndarray, spk_im: np.ndarray,
                  phase_per_m: float, cyc_per_m: float, r_ref: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Tones of each chirp from L layers sampled at the beam positions.

    u, v:      (C,) beam position at the standoff plane (m); dr: (C,) range offset (breathing, m)
    amps, ranges: (L, ny, nx) specular amplitude and range on the map grid (u0, v0, pitch)
    spk_re, spk_im: (L, my, mx) speckle field (complex) on its own grid (su0, sv0, spitch)
    returns amp, phase, cyc: (C, L); a layer's return is amp e^{j phi(R)} + S e^{j phi(dr)},
    phi(R) = 4 pi f_c (R - R_ref) / c = phase_per_m (R - R_ref); beat cyc = cyc_per_m (R - R_ref)
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
            r = _bilinear(ranges[l], fy, fx) + dr[c]
            cyc[c, l] = cyc_per_m * (r - r_ref)
            if not inside:
                continue
            a = _bilinear(amps[l], fy, fx)
            gx = (u[c] - su0) / spitch
            gy = (v[c] - sv0) / spitch
            sr = _bilinear(spk_re[l], gy, gx)
            si = _bilinear(spk_im[l], gy, gx)
            ph = phase_per_m * (r - r_ref)
            pb = phase_per_m * dr[c]
            re = a * math.cos(ph) + sr * math.cos(pb) - si * math.sin(pb)
            im = a * math.sin(ph) + sr * math.sin(pb) + si * math.cos(pb)
            amp[c, l] = math.sqrt(re * re + im * im)
            phase[c, l] = math.atan2(im, re)
    return amp, phase, cyc


class SpeckleSynth:
    """Fresh diffuse (speckle) fields: complex white noise x density, convolved with the two-way pattern.

    S = conv(sqrt(sigma_d) z, g / sqrt(sum g^2)),  z ~ CN(0, 1) per cell, so that a uniform density
    sigma_d gives E|S|^2 = sigma_d for any pitch; the grain size is the beam footprint. The field is
    band-limited by g (sigma w/2), so it is drawn on a grid `factor` times coarser than the maps,
    each coarse cell carrying the mean power density of the fine cells it covers.
    """

    def __init__(self, shape: tuple[int, int], w_map_m: float, pitch_m: float, factor: int = 2) -> None:
        self.factor = f = max(1, int(factor))
        self.pitch = pitch_m * f
        self.offset = 0.5 * (f - 1) * pitch_m          # centre of coarse cell 0 relative to fine cell 0
        g = beam.two_way_kernel(w_map_m, self.pitch)
        g /= math.sqrt(float((g * g).sum()))
        self.half = g.shape[0] // 2
        self.fine_shape = shape
        self.shape = (-(-shape[0] // f), -(-shape[1] // f))
        self.fshape = (scipy.fft.next_fast_len(self.shape[0] + 2 * self.half),
                       scipy.fft.next_fast_len(self.shape[1] + 2 * self.half))
        k = np.zeros(self.fshape)
        k[:g.shape[0], :g.shape[1]] = g
        self.kf = scipy.fft.fft2(k, workers=1)

    def coarse_density(self, density: np.ndarray) -> np.ndarray:
        """sqrt of the mean power density over each factor x factor block."""
        f = self.factor
        if f == 1:
            return density
        ny, nx = self.shape
        pad = np.zeros((ny * f, nx * f))
        pad[:density.shape[0], :density.shape[1]] = density * density
        return np.sqrt(pad.reshape(ny, f, nx, f).mean(axis=(1, 3)))

    def draw(self, density: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """A complex speckle field on the coarse grid (shape self.shape)."""
        ny, nx = self.shape
        d = self.coarse_density(density)
        z = np.zeros(self.fshape, dtype=np.complex128)
        white = rng.standard_normal((2, ny, nx)) * math.sqrt(0.5)
        z[:ny, :nx] = d * (white[0] + 1j * white[1])
        out = scipy.fft.ifft2(scipy.fft.fft2(z, workers=1) * self.kf, workers=1)
        return out[self.half:self.half + ny, self.half:self.half + nx]

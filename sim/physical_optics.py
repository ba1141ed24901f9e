"""Physical optics of the monostatic Gaussian beam on a surface: the received field as a facet sum.

Under a beam centred at u (standoff-plane coordinates, metres), the field coupled back into the
receive mode is the coherent sum over the illuminated surface (paraxial physical optics):

    E(u) = (2 / (pi w^2)) sum_facets h^2 rho(x) G(u - x),                              (1)
    rho(x) = Gamma_eff(x) sinc^2(k R_u h) sinc^2(k R_v h) exp(+j 2 k (R(x) - R_s)),      (2)
    G(r) = exp(-2 r^2 / w^2 + j k r^2 / R_c)   (two-way Gaussian beam, wavefront radius R_c)

normalised so that a flat mirror facing the beam in the waist returns E = Gamma. R(x) is the range
of the surface seen at x, R_s the scene's reference range, R_u, R_v its slopes per map pixel
(dR/du, dR/dv), and the sinc^2 factors (sinc t = sin t / t) are the exact integral of a planar
facet's linear phase against the tent function of its pixel (the tents add up to one, so a flat
surface is summed exactly, and the sampled phase ramp's aliases fall as sinc^2): a surface tilted
away from the beam cancels itself instead of returning a bright edge. Gamma_eff holds the Fresnel reflection, the transmission of whatever lies
on the skin, the roughness loss of the coherent part, and (as a random complex part fixed per
capture) the weak diffuse return of sub-millimetre roughness.

(1) is a convolution: E = IFFT(FFT(rho) Ghat(kappa)), with the closed-form transfer function

    Ghat(kappa) = (2 / (w^2 a)) exp(-|kappa|^2 / (4 a)),   a = 2 / w^2 - j k / R_c.        (3)

At the waist (1 / R_c = 0) a plate returns 1; off the waist |Ghat(0)|^2 = (w0 / w)^2, the focus
loss of an extended surface, comes out of (3) by itself. A small rotation of the head by
(yaw, pitch) multiplies rho by exp(j q.(x - u_c)), q = 2 k (R / s) (yaw, pitch) (the range of a
point changes by its lateral offset x the angle); its field is

    E_q(u) = exp(j q.(u - u_c)) IFFT(FFT(rho) Ghat(kappa + q)),                           (4)

one inverse FFT per frame: this is how micro-motion changes which glints appear and how they
interfere. The depth of the contributions enters the beat through the coherent range moment

    R_eff(u) = R_s + Re(E1 conj(E0)) / (|E0|^2 + eps^2),   E1 = conv(rho (R - R_s), G),   (5)

which is the range of the dominant stationary point under the beam (the first-order expansion of
E over the chirp's frequencies).

Closed forms (paraxial) for the tests: a plate tilted by alpha returns exp(-(k w tan alpha)^2 / 2);
a quadric surface z = kappa x^2 / 2 per principal direction (1 + j beta)^(-1/2), beta = k kappa w^2 / 2;
an off-axis beam d on a sphere of radius rc: per axis sqrt(2 / (w^2 A)) exp(-2 d^2 / w^2 + (2 d / w^2)^2 / A),
A = 2 / w^2 + j k / rc.

References: Goldsmith, "Quasioptical Systems" (1998) ch. 2 (Gaussian beams, wavefront radius);
Knott, Shaeffer, Tuley, "Radar Cross Section" (2004) ch. 5 (physical optics facet integrals).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import scipy.fft
from numba import njit

from sim import beam


def wavefront_inverse_radius(z_m: float, rayleigh_m: float) -> float:
    """1 / R_c of a Gaussian beam at distance z from its waist: z / (z^2 + z_R^2) (1/m, signed)."""
    return z_m / (z_m * z_m + rayleigh_m * rayleigh_m)


@njit(cache=True, nogil=True)
def fresnel_power_at(cos_i: float, n: float) -> float:
    """Mean of the s and p power reflectivities of a half-space of index n at incidence cos_i."""
    c = min(max(cos_i, 1e-6), 1.0)
    s2 = 1.0 - c * c
    ct = math.sqrt(max(1.0 - s2 / (n * n), 0.0))
    rs = (c - n * ct) / (c + n * ct)
    rp = (n * c - ct) / (n * c + ct)
    return 0.5 * (rs * rs + rp * rp)


@njit(cache=True, nogil=True)
def _fresnel_array(c: np.ndarray, n: float) -> np.ndarray:
    out = np.empty_like(c)
    for i in range(c.size):
        out[i] = fresnel_power_at(c[i], n)
    return out


def fresnel_power(cos_i: np.ndarray, n: float) -> np.ndarray:
    """fresnel_power_at over an array."""
    c = np.asarray(cos_i, dtype=np.float64)
    return _fresnel_array(np.ascontiguousarray(c).ravel(), float(n)).reshape(c.shape)


@njit(cache=True, nogil=True)
def rough_backscatter_at(cos_i: float, gamma2: float, k: float, rms_height_m: float, corr_length_m: float) -> float:
    """sigma0 of a slightly rough surface (first-order Kirchhoff / physical optics, Gaussian correlation):

        sigma0(theta) = |Gamma|^2 (2 k sigma cos theta)^2 (k l)^2 exp(-(k l sin theta)^2)

    sigma the rms height, l the correlation length (Ulaby, Moore, Fung, Microwave Remote Sensing II,
    ch. 12: the incoherent term for k sigma << 1). Per unit area, dimensionless.
    """
    c = min(max(cos_i, 0.0), 1.0)
    kl2 = (k * corr_length_m) ** 2
    return gamma2 * (2.0 * k * rms_height_m * c) ** 2 * kl2 * math.exp(-kl2 * (1.0 - c * c))


def diffuse_pixel_variance(wavelength_m: float, pixel_m: float) -> float:
    """E|rho_d|^2 per map pixel and per unit sigma0: the received diffuse power is sigma0 lambda^2 / (4 pi^2 w^2).

    The received power of an incoherent surface under a monostatic Gaussian beam is
    P / P_plate = sigma0 lambda^2 / (4 pi^2 w^2) (radar equation with the beam's on-axis gain); a
    white field of variance D per pixel of physical side h_phys gives D h_phys^2 / (pi w^2) through
    eq. (1), so D = sigma0 lambda^2 / (4 pi h_phys^2).
    """
    return wavelength_m ** 2 / (4.0 * math.pi * pixel_m ** 2)


def index_from_reflectivity(power_reflectivity: float) -> float:
    """Real index n with ((n - 1) / (n + 1))^2 = |Gamma|^2 at normal incidence."""
    g = math.sqrt(power_reflectivity)
    return (1.0 + g) / (1.0 - g)


def facet_phase_factors(range_m: np.ndarray, valid: np.ndarray, pitch: float, k: float,
                        ref_range_m: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(exp(j 2k (R - R_s)) sinc^2 sinc^2, slope_u, slope_v) of each map pixel's facet, eq. (2).

    Slopes are dR/du and dR/dv in metres of range per metre of map; pixels whose neighbour lies on
    another surface (a depth jump of more than 5 pixels' worth, the silhouette) take the one-sided
    difference on their own side, and a pixel with no neighbour on its surface (the rim, seen at
    grazing) the steepest slope. Empty pixels are 0.
    """
    rho, _, du, dv = facet_phasors(range_m, valid, pitch, k, ref_range_m)
    return rho, du, dv


def facet_phasors(range_m: np.ndarray, valid: np.ndarray, pitch: float, k: float,
                  ref_range_m: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """facet_phase_factors plus the bare carrier phasor exp(j 2k (R - R_s)) (for the diffuse field)."""
    return _facet_kernel(np.ascontiguousarray(range_m, dtype=np.float64), np.ascontiguousarray(valid),
                         float(pitch), float(k), float(ref_range_m), 5.0)


@njit(cache=True, nogil=True)
def _facet_kernel(r, valid, h, k, ref, edge):
    ny, nx = r.shape
    rho = np.zeros((ny, nx), dtype=np.complex128)
    phasor = np.zeros((ny, nx), dtype=np.complex128)
    du = np.zeros((ny, nx))
    dv = np.zeros((ny, nx))
    for i in range(ny):
        for j in range(nx):
            if valid[i, j]:
                su, sv, p, tent = facet_at(r, valid, i, j, h, k, ref, edge)
                du[i, j] = su
                dv[i, j] = sv
                phasor[i, j] = p
                rho[i, j] = p * tent
    return rho, phasor, du, dv


@njit(inline="always", nogil=True)
def facet_at(r, valid, i, j, h, k, ref, edge):
    """(slope_u, slope_v, exp(j 2k (R - R_s)), sinc^2 sinc^2) of the facet at pixel (i, j), eq. (2): the
    tent-weighted facet integral of the linear phase is sinc^2 per axis (sinc t = sin t / t)."""
    su = facet_slope(r, valid, i, j, 0, 1, 1.0 / h, edge)
    sv = facet_slope(r, valid, i, j, 1, 0, 1.0 / h, edge)
    tu = k * su * h
    tv = k * sv * h
    cu = 1.0 if tu == 0.0 else math.sin(tu) / tu
    cv = 1.0 if tv == 0.0 else math.sin(tv) / tv
    ph = 2.0 * k * (r[i, j] - ref)
    return su, sv, complex(math.cos(ph), math.sin(ph)), (cu * cv) ** 2


@njit(inline="always", nogil=True)
def facet_slope(r, valid, i, j, di, dj, inv_h, edge):
    """dR/du (dj = 1) or dR/dv (di = 1) at pixel (i, j), inv_h = 1 / pitch: the central difference where both
    neighbours lie on this surface (a step of at most `edge`), one-sided otherwise, else `edge` (the rim, seen
    at grazing). Written as selects, not branches: this is the inner loop of every facet kernel."""
    ny, nx = r.shape
    i1, j1 = i + di, j + dj
    i0, j0 = i - di, j - dj
    up = i1 < ny and j1 < nx
    down = i0 >= 0 and j0 >= 0
    fwd = (r[i1, j1] - r[i, j]) * inv_h if up else 0.0
    bwd = (r[i, j] - r[i0, j0]) * inv_h if down else 0.0
    has_fwd = up and valid[i1, j1] and abs(fwd) <= edge
    has_bwd = down and valid[i0, j0] and abs(bwd) <= edge
    return 0.5 * (fwd + bwd) if has_fwd and has_bwd else (fwd if has_fwd else (bwd if has_bwd else edge))


@dataclass(frozen=True)
class BeamGeometry:
    """The two-way Gaussian beam in map coordinates at the scene: radius w, wavefront 1/R_c, k."""

    w_map_m: float        # 1/e^2 intensity radius in standoff-plane metres
    inv_rc_map: float     # 1 / R_c in map metres (physical 1/R_c x (R/s)^2)
    k: float              # wavenumber 2 pi / lambda (rad/m)

    @staticmethod
    def at_range(range_m: float, w0_m: float, waist_range_m: float, wavelength_m: float,
                 standoff_m: float) -> "BeamGeometry":
        w = float(beam.beam_radius(range_m, w0_m, waist_range_m, wavelength_m))
        z_r = beam.rayleigh_range(w0_m, wavelength_m)
        scale = standoff_m / range_m                 # map metres per physical metre
        inv_rc = wavefront_inverse_radius(range_m - waist_range_m, z_r)
        return BeamGeometry(w * scale, inv_rc / (scale * scale), 2.0 * math.pi / wavelength_m)

    @property
    def a(self) -> complex:
        """exp(-a r^2) is the two-way kernel G(r) of eq. (1)."""
        return 2.0 / self.w_map_m ** 2 - 1j * self.k * self.inv_rc_map

    def kernel(self, r2: np.ndarray) -> np.ndarray:
        """(2 / (pi w^2)) G(r) sampled at squared map distances r2 (the brute-force sum's weight)."""
        return (2.0 / (math.pi * self.w_map_m ** 2)) * np.exp(-self.a * r2)

    def transfer(self, kx: np.ndarray, ky: np.ndarray) -> np.ndarray:
        """Ghat(kappa) of eq. (3) on spatial angular frequencies (rad per map metre)."""
        a = self.a
        return (2.0 / (self.w_map_m ** 2 * a)) * np.exp(-(kx * kx + ky * ky) / (4.0 * a))

    def reach_px(self, pitch: float) -> int:
        """Kernel radius that matters (3 w: G is below 1.5e-8 beyond) in pixels."""
        return int(math.ceil(3.0 * self.w_map_m / pitch))


class FacetConvolver:
    """Eq. (1), (4), (5) by FFT on one rectangular block of the map grid (zero-padded against wrap).

    `spectra` of rho and rho (R - R_s) are computed once per capture; `field(q)` returns E0 and E1 on
    the block for the micro-rotation ramp q (rad per map metre) about the map point `centre`.
    """

    def __init__(self, rho: np.ndarray, rho_range: np.ndarray, pitch: float, geom: BeamGeometry,
                 origin: tuple[float, float], centre: tuple[float, float]) -> None:
        ny, nx = rho.shape
        pad = geom.reach_px(pitch)
        self.shape = (ny, nx)
        self.fshape = (scipy.fft.next_fast_len(ny + 2 * pad), scipy.fft.next_fast_len(nx + 2 * pad))
        self.geom = geom
        self.pitch = pitch
        stack = np.zeros((2, *self.fshape), dtype=np.complex64)
        stack[0, :ny, :nx] = rho
        stack[1, :ny, :nx] = rho_range
        self.spectra = scipy.fft.fft2(stack, workers=1)
        self.kx = (2.0 * math.pi * scipy.fft.fftfreq(self.fshape[1], pitch)).astype(np.float64)
        self.ky = (2.0 * math.pi * scipy.fft.fftfreq(self.fshape[0], pitch)).astype(np.float64)
        u0, v0 = origin
        self.u = u0 + pitch * np.arange(nx)
        self.v = v0 + pitch * np.arange(ny)
        self.centre = centre
        self._cache: tuple[tuple[float, float], tuple[np.ndarray, np.ndarray]] | None = None

    def field(self, q: tuple[float, float] = (0.0, 0.0)) -> tuple[np.ndarray, np.ndarray]:
        """(E0, E1) on the block, complex64, for the rotation ramp q = (q_u, q_v)."""
        qu, qv = float(q[0]), float(q[1])
        if self._cache is not None and self._cache[0] == (qu, qv):
            return self._cache[1]
        # separable transfer: Ghat(kx + qu, ky + qv) = C exp(-(kx+qu)^2/4a) exp(-(ky+qv)^2/4a)
        a = self.geom.a
        c = 2.0 / (self.geom.w_map_m ** 2 * a)
        tx = np.exp(-((self.kx + qu) ** 2) / (4.0 * a)).astype(np.complex64)
        ty = (c * np.exp(-((self.ky + qv) ** 2) / (4.0 * a))).astype(np.complex64)
        prod = self.spectra * (ty[:, None] * tx[None, :])[None]
        out = scipy.fft.ifft2(prod, workers=1, overwrite_x=True)
        ny, nx = self.shape
        e0, e1 = out[0, :ny, :nx], out[1, :ny, :nx]
        if qu != 0.0 or qv != 0.0:
            ramp = (np.exp(1j * qv * (self.v - self.centre[1]))[:, None]
                    * np.exp(1j * qu * (self.u - self.centre[0]))[None, :]).astype(np.complex64)
            e0 = e0 * ramp
            e1 = e1 * ramp
        res = (np.ascontiguousarray(e0), np.ascontiguousarray(e1))
        self._cache = ((qu, qv), res)
        return res


def effective_range(e0: np.ndarray, e1: np.ndarray, ref_range_m: float, eps: float = 1e-4,
                    max_offset_m: float = 0.3) -> np.ndarray:
    """Eq. (5): the range of the dominant contribution under the beam (m)."""
    num = (e1 * np.conj(e0)).real
    den = (e0 * np.conj(e0)).real + eps * eps
    return ref_range_m + np.clip(num / den, -max_offset_m, max_offset_m)


def brute_force_field(rho: np.ndarray, pitch: float, geom: BeamGeometry, origin: tuple[float, float],
                      u: float, v: float) -> complex:
    """Eq. (1) summed directly for one beam position (the tests' reference; O(pixels))."""
    ny, nx = rho.shape
    x = origin[0] + pitch * np.arange(nx) - u
    y = origin[1] + pitch * np.arange(ny) - v
    r2 = y[:, None] ** 2 + x[None, :] ** 2
    return complex(np.sum(rho * geom.kernel(r2)) * pitch * pitch)


# -- closed forms (paraxial) ------------------------------------------------------------------------
def plate_field(tilt_rad: float, w_m: float, k: float) -> float:
    """A flat mirror tilted by alpha under a beam in its waist: exp(-(k w tan alpha)^2 / 2)."""
    return math.exp(-0.5 * (k * w_m * math.tan(tilt_rad)) ** 2)


def sphere_field(radius_m: float, offset_m: tuple[float, float], w_m: float, k: float) -> complex:
    """Beam in its waist offset by d from the apex of a sphere (or the axis of a paraboloid) of radius rc."""
    out = 1.0 + 0j
    for d in offset_m:
        out *= _quadric_axis(1.0 / radius_m, d, w_m, k)
    return out


def cylinder_field(radius_m: float, offset_m: float, w_m: float, k: float) -> complex:
    """Beam in its waist offset by d across a cylinder of radius rc (axis along v, curved along u)."""
    return _quadric_axis(1.0 / radius_m, offset_m, w_m, k)


def _quadric_axis(kappa: float, d: float, w_m: float, k: float) -> complex:
    """One principal direction of z = kappa x^2 / 2 under exp(-2 (x - d)^2 / w^2), normalised.

    With the surface phase exp(+j 2k z) = exp(j k kappa x^2): integral of exp(-2 (x-d)^2/w^2 + j k kappa x^2)
    over sqrt(pi w^2 / 2) = sqrt(2 / (w^2 A)) exp(-2 d^2 / w^2 + (2 d / w^2)^2 / A), A = 2/w^2 - j k kappa.
    """
    A = 2.0 / (w_m * w_m) - 1j * k * kappa
    b = 2.0 * d / (w_m * w_m)
    return complex(np.sqrt(2.0 / (w_m * w_m * A)) * np.exp(-2.0 * d * d / (w_m * w_m) + b * b / A))

"""What each facet of the posed subject returns: one pass over the z-buffered map (Numba, `nogil`).

For every map pixel on the skin (or on hair, an eye, the shirt) the facet factor rho of eq. (2) of
sim.physical_optics, with

    Gamma_eff = sqrt(|Gamma(theta)|^2) t exp(-(2 k sigma cos theta)^2 / 2) sinc^2 sinc^2 exp(j 2k (R - R_s))
              + sqrt(D(theta)) t w exp(j 2k (R - R_s))

|Gamma(theta)|^2 the Fresnel power reflectivity of skin or of the eye scaled to the configured
normal-incidence value, t the two-way amplitude transmission of hair, shirt and balaclava,
exp(-(2 k sigma cos)^2 / 2) the roughness (Debye-Waller) loss of the coherent part, and the
diffuse part: w a unit complex Gaussian fixed per capture, D the per-pixel variance that gives the
rough surface's sigma0 (sim.physical_optics.rough_backscatter_at, diffuse_pixel_variance; hair has
its own sigma0). The fabric's front face of a balaclava is `fabric_facets`: its echo modulated by the
knit. Each kernel also returns rho (R - R_s), the range moment of eq. (5).
"""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from numba import njit

from sim.physical_optics import facet_at, fresnel_power_at, rough_backscatter_at


class SkinOptics(NamedTuple):
    """The constants of the skin pass (built once per scene by sim.maps)."""

    pitch: float                 # map pitch (m)
    k: float                     # wavenumber (rad/m)
    ref_range_m: float           # R_s
    scale2: float                # (R / s)^2: physical slope^2 per map slope^2
    n_skin: float
    skin_r0: float               # |Gamma|^2 at normal incidence / Fresnel at normal incidence (skin)
    n_eye: float
    eye_r0: float
    hair_t: float                # two-way amplitude transmission of full hair, of the shirt, of the balaclava
    cloth_t: float
    cover_t: float
    rms_height_m: float
    corr_length_m: float
    hair_sigma0: float           # hair's sigma0 at normal incidence (linear)
    diffuse_per_sigma0: float    # D / sigma0 = lambda^2 / (4 pi h_phys^2)


@njit(cache=True, nogil=True)
def skin_facets(r, valid, hair, eye, cloth, covered, white_re, white_im, o):
    """(rho, rho (R - R_s)) complex128 (ny, nx) of the skin layer; `o` a SkinOptics; w = (white_re + j white_im) / sqrt 2."""
    ny, nx = r.shape
    h, k, ref = o.pitch, o.k, o.ref_range_m
    rho = np.zeros((ny, nx), dtype=np.complex128)
    rho_r = np.zeros((ny, nx), dtype=np.complex128)
    ln_hair, ln_cloth, ln_cover = math.log(o.hair_t), math.log(o.cloth_t), math.log(o.cover_t)
    for i in range(ny):
        for j in range(nx):
            if not valid[i, j]:
                continue
            su, sv, carrier, tent = facet_at(r, valid, i, j, h, k, ref, 5.0)
            cos_i = 1.0 / math.sqrt(1.0 + (su * su + sv * sv) / o.scale2)
            e = eye[i, j]
            hr = hair[i, j]
            gamma2 = o.skin_r0 * fresnel_power_at(cos_i, o.n_skin)
            if e != 0.0:
                gamma2 = gamma2 * (1.0 - e) + o.eye_r0 * fresnel_power_at(cos_i, o.n_eye) * e
            # t = hair_t^hair cloth_t^cloth (cover_t): the two-way transmission of what lies on the skin
            ln_t = hr * ln_hair + cloth[i, j] * ln_cloth
            if covered[i, j]:
                ln_t += ln_cover
            t = math.exp(ln_t) if ln_t != 0.0 else 1.0
            kc = 2.0 * k * o.rms_height_m * cos_i
            coherent = math.sqrt(gamma2) * t * math.exp(-0.5 * kc * kc)
            sigma0 = rough_backscatter_at(cos_i, gamma2, k, o.rms_height_m, o.corr_length_m)
            if hr != 0.0:
                sigma0 = sigma0 * (1.0 - hr) + hr * o.hair_sigma0 * cos_i
            diffuse = math.sqrt(0.5 * sigma0 * o.diffuse_per_sigma0) * t
            val = carrier * (coherent * tent + diffuse * complex(white_re[i, j], white_im[i, j]))
            rho[i, j] = val
            rho_r[i, j] = val * (r[i, j] - ref)
    return rho, rho_r


@njit(cache=True, nogil=True)
def fabric_facets(r, valid, tex_u, tex_v, grain, h, k, ref, amplitude, cos_a, sin_a, shift_u, shift_v, period,
                  depth):
    """(rho, rho (R - R_s)) of a balaclava's front face: the echo amplitude times the knit.

    The knit modulates the echo by 1 + depth cos(2 pi u' / p) cos(2 pi v' / (0.8 p)) in the stitch
    coordinates (u', v') (the texture turned by the knit angle and shifted: how it sits this
    capture), times the uneven thickness 1 + 0.3 grain; never below zero.
    """
    ny, nx = r.shape
    rho = np.zeros((ny, nx), dtype=np.complex128)
    rho_r = np.zeros((ny, nx), dtype=np.complex128)
    for i in range(ny):
        for j in range(nx):
            if not valid[i, j]:
                continue
            _, _, carrier, tent = facet_at(r, valid, i, j, h, k, ref, 5.0)
            u = cos_a * tex_u[i, j] - sin_a * tex_v[i, j] + shift_u
            v = sin_a * tex_u[i, j] + cos_a * tex_v[i, j] + shift_v
            knit = ((1.0 + depth * math.cos(2.0 * math.pi * u / period) * math.cos(2.0 * math.pi * v / (0.8 * period)))
                    * (1.0 + 0.3 * grain[i, j]))
            val = carrier * (amplitude * max(knit, 0.0) * tent)
            rho[i, j] = val
            rho_r[i, j] = val * (r[i, j] - ref)
    return rho, rho_r

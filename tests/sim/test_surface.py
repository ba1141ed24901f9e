"""The one-pass facet kernels (sim.surface) against the same physics written with whole-array NumPy."""
from __future__ import annotations

import math

import numpy as np
import pytest

from sim.physical_optics import facet_phase_factors, facet_phasors, index_from_reflectivity
from sim.surface import SkinOptics, fabric_facets, skin_facets

PITCH, K, R0 = 1.5e-3, 2 * math.pi / 0.88e-3, 0.6


def _scene(seed: int):
    rng = np.random.default_rng(seed)
    ny, nx = 40, 56
    v, u = np.mgrid[0:ny, 0:nx] * PITCH
    r = R0 + 0.03 * np.cos(30 * u) * np.sin(25 * v) + 2e-4 * rng.standard_normal((ny, nx))
    r[:, 40:] += 0.04                                   # a depth jump: the silhouette
    valid = rng.random((ny, nx)) > 0.1                  # holes and isolated pixels
    attrs = {name: np.clip(rng.random((ny, nx)) * 1.4 - 0.2, 0.0, 1.0) for name in ("hair", "eye", "cloth")}
    covered = valid & (rng.random((ny, nx)) > 0.3)
    return r, valid, attrs, covered, rng


def _fresnel_numpy(cos_i, n):
    """Mean of the s and p Fresnel power reflectivities, whole-array (independent of the kernel's scalar form)."""
    c = np.clip(cos_i, 1e-6, 1.0)
    ct = np.sqrt(np.maximum(1.0 - (1.0 - c * c) / (n * n), 0.0))
    return 0.5 * (((c - n * ct) / (c + n * ct)) ** 2 + ((n * c - ct) / (n * c + ct)) ** 2)


def _skin_numpy(r, valid, hair, eye, cloth, covered, w_re, w_im, o: SkinOptics, cover_t: float):
    """The skin layer as whole-array NumPy: Fresnel x transmission x Debye-Waller, plus the rough diffuse part."""
    phasor, carrier, du, dv = facet_phasors(np.where(valid, r, o.ref_range_m), valid, o.pitch, o.k, o.ref_range_m)
    cos_i = 1.0 / np.sqrt(1.0 + (du * du + dv * dv) / o.scale2)
    gamma2 = (o.skin_r0 * _fresnel_numpy(cos_i, o.n_skin) * (1.0 - eye)
              + o.eye_r0 * _fresnel_numpy(cos_i, o.n_eye) * eye)
    trans = o.hair_t ** hair * o.cloth_t ** cloth * np.where(covered, cover_t, 1.0)
    coherent = np.sqrt(gamma2) * trans * np.exp(-0.5 * (2.0 * o.k * o.rms_height_m * cos_i) ** 2)
    kl2 = (o.k * o.corr_length_m) ** 2
    sigma0 = gamma2 * (2.0 * o.k * o.rms_height_m * cos_i) ** 2 * kl2 * np.exp(-kl2 * (1.0 - cos_i ** 2))
    sigma0 = sigma0 * (1.0 - hair) + hair * o.hair_sigma0 * cos_i
    white = (w_re + 1j * w_im) * math.sqrt(0.5)
    rho = np.where(valid, coherent * phasor + np.sqrt(sigma0 * o.diffuse_per_sigma0) * trans * white * carrier, 0.0)
    return rho, rho * np.where(valid, r - o.ref_range_m, 0.0)


def _tolerance(r, o_k: float) -> float:
    # the carrier phase 2k |R - R_s| reaches ~1e3 rad: libm and NumPy's SIMD sin/cos differ by that argument x eps
    return 64 * np.finfo(np.float64).eps * (1.0 + 2 * o_k * np.abs(r - R0).max())


@pytest.mark.parametrize("seed", [0, 1])
def test_skin_kernel_matches_the_numpy_form(seed):
    r, valid, a, covered, rng = _scene(seed)
    n_skin, n_eye = index_from_reflectivity(0.155), index_from_reflectivity(0.25)
    o = SkinOptics(pitch=PITCH, k=K, ref_range_m=R0, scale2=1.02 ** 2, n_skin=n_skin,
                   skin_r0=0.155 / float(_fresnel_numpy(1.0, n_skin)), n_eye=n_eye,
                   eye_r0=0.25 / float(_fresnel_numpy(1.0, n_eye)), hair_t=0.7, cloth_t=0.8, cover_t=0.6,
                   rms_height_m=30e-6, corr_length_m=0.25e-3, hair_sigma0=0.1, diffuse_per_sigma0=0.027)
    w_re, w_im = rng.standard_normal(r.shape), rng.standard_normal(r.shape)
    got = skin_facets(r, valid, a["hair"], a["eye"], a["cloth"], covered, w_re, w_im, o)
    want = _skin_numpy(r, valid, a["hair"], a["eye"], a["cloth"], covered, w_re, w_im, o, 0.6)
    peak = np.abs(want[0]).max()
    for g, w in zip(got, want):
        assert np.abs(g - w).max() <= _tolerance(r, K) * peak
    assert np.all(got[0][~valid] == 0)
    # the coherent part is there: a surface facing the beam returns ~ sqrt(|Gamma|^2) t, not the diffuse level
    assert np.abs(got[0][valid]).max() > 0.1


def test_fabric_kernel_matches_the_numpy_form():
    r, _, _, covered, rng = _scene(3)
    tu, tv = rng.uniform(-0.1, 0.1, r.shape), rng.uniform(-0.1, 0.1, r.shape)
    grain = np.clip(rng.standard_normal(r.shape), -1, 1)
    ang, su, sv, p, depth, amp = math.radians(17.0), 1.2e-3, -0.7e-3, 6e-3, 0.6, 0.02
    got = fabric_facets(r, covered, tu, tv, grain, PITCH, K, R0, amp, math.cos(ang), math.sin(ang), su, sv, p, depth)
    fphasor, _, _ = facet_phase_factors(r, covered, PITCH, K, R0)
    u = math.cos(ang) * tu - math.sin(ang) * tv + su
    v = math.sin(ang) * tu + math.cos(ang) * tv + sv
    knit = (1.0 + depth * np.cos(2 * np.pi * u / p) * np.cos(2 * np.pi * v / (0.8 * p))) * (1.0 + 0.3 * grain)
    rho = np.where(covered, amp * np.clip(knit, 0.0, None) * fphasor, 0.0)
    want = (rho, rho * np.where(covered, r - R0, 0.0))
    for g, w in zip(got, want):
        assert np.abs(g - w).max() <= _tolerance(r, K) * amp * 2

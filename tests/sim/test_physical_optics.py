"""Physical optics of the beam on a surface: the FFT facet sum against a brute-force sum and closed forms.

References computed independently of the method under test: the paraxial closed forms (Gaussian
integrals of a plate, sphere and cylinder, sim.physical_optics docstring) and a direct facet sum at
0.1 mm pitch (phase sampled 15x finer than the simulator's 1.5 mm facets).
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from sim.physical_optics import (BeamGeometry, FacetConvolver, brute_force_field, cylinder_field, effective_range,
                                 facet_phase_factors, fresnel_power, index_from_reflectivity, plate_field,
                                 sphere_field)

LAM = 0.8817e-3
K = 2 * math.pi / LAM
W0 = 7.5e-3
R0 = 6.0
PITCH = 1.5e-3          # the simulator's default map pitch


def _grid(pitch: float, half: float):
    n = int(round(2 * half / pitch)) + 1
    ax = -half + pitch * np.arange(n)
    return ax, *np.meshgrid(ax, ax)


def _surface(kind: str, radius: float, pitch: float, half: float = 0.04):
    ax, U, V = _grid(pitch, half)
    r2 = U ** 2 + V ** 2 if kind == "sphere" else U ** 2
    valid = r2 < 0.999 * radius ** 2
    rng = R0 + radius - np.sqrt(np.maximum(radius ** 2 - r2, 0.0))   # the exact surface, not its paraxial form
    rho, _, _ = facet_phase_factors(rng, valid, pitch, K, R0)
    return ax, rho, rng, valid


def _fft_field(rho, ax, pitch, geom, extra=None):
    conv = FacetConvolver(rho, rho * 0 if extra is None else extra, pitch, geom, (ax[0], ax[0]), (0.0, 0.0))
    return conv


@pytest.fixture(scope="module")
def waist():
    return BeamGeometry.at_range(R0, W0, R0, LAM, R0)


def test_plate_in_the_waist_returns_unity_and_tilt_follows_the_closed_form(waist):
    ax, U, V = _grid(PITCH, 0.05)
    c = len(ax) // 2
    for tilt_deg, tol_db in ((0.0, 0.01), (1.0, 0.15), (2.0, 0.6)):
        rng = R0 + U * math.tan(math.radians(tilt_deg))
        rho, _, _ = facet_phase_factors(rng, np.ones_like(rng, bool), PITCH, K, R0)
        e0, _ = _fft_field(rho, ax, PITCH, waist).field()
        got_db = 20 * math.log10(abs(e0[c, c]))
        want_db = 20 * math.log10(plate_field(math.radians(tilt_deg), W0, K))   # -(2 alpha/theta0)^2 in nepers
        assert got_db == pytest.approx(want_db, abs=tol_db)
    # a steep facet cancels itself: no bright edge from grazing surfaces (the head's outline)
    rng = R0 + U * math.tan(math.radians(30.0))
    rho, _, _ = facet_phase_factors(rng, np.ones_like(rng, bool), PITCH, K, R0)
    e0, _ = _fft_field(rho, ax, PITCH, waist).field()
    assert 20 * np.log10(np.abs(e0[c, c])) < -60.0


@pytest.mark.parametrize("radius, offset, tol", [(0.09, 0.0, 0.05), (0.09, 0.004, 0.05), (0.09, 0.008, 0.05),
                                                 (0.04, 0.0, 0.05), (0.04, 0.004, 0.05), (0.01, 0.0, 0.08)])
def test_sphere_magnitude_against_brute_force_and_closed_form(waist, radius, offset, tol):
    ax, rho, _, _ = _surface("sphere", radius, PITCH)
    e0, _ = _fft_field(rho, ax, PITCH, waist).field()
    j = int(round((offset - ax[0]) / PITCH))
    i = int(round(-ax[0] / PITCH))
    u = ax[0] + j * PITCH
    fine_ax, fine_rho, _, _ = _surface("sphere", radius, 1e-4, half=0.03)
    ref = brute_force_field(fine_rho, 1e-4, waist, (fine_ax[0], fine_ax[0]), u, 0.0)
    closed = sphere_field(radius, (u, 0.0), W0, K)
    assert abs(ref) == pytest.approx(abs(closed), rel=0.01)          # the reference agrees with the paraxial form
    assert abs(e0[i, j]) == pytest.approx(abs(ref), rel=tol)        # the simulator's facets, 1.5 mm


def test_sphere_phase_is_right_for_face_scale_curvature(waist):
    """Relative phases decide how glints interfere: for a forehead-like radius the complex field is right."""
    ax, rho, _, _ = _surface("sphere", 0.09, PITCH)
    e0, _ = _fft_field(rho, ax, PITCH, waist).field()
    fine_ax, fine_rho, _, _ = _surface("sphere", 0.09, 1e-4, half=0.03)
    i = int(round(-ax[0] / PITCH))
    for d in (0.0, 0.004):
        j = int(round((d - ax[0]) / PITCH))
        ref = brute_force_field(fine_rho, 1e-4, waist, (fine_ax[0], fine_ax[0]), ax[0] + j * PITCH, 0.0)
        assert abs(e0[i, j] - ref) / abs(ref) < 0.08


def test_cylinder_curves_one_direction_only(waist):
    ax, rho, _, _ = _surface("cylinder", 0.05, PITCH)
    e0, _ = _fft_field(rho, ax, PITCH, waist).field()
    c = len(ax) // 2
    beta = K * 0.5 * W0 ** 2 / 0.05
    assert abs(e0[c, c]) == pytest.approx((1 + beta ** 2) ** -0.25, rel=0.05)
    assert abs(e0[c, c]) == pytest.approx(abs(cylinder_field(0.05, 0.0, W0, K)), rel=0.05)


def test_defocus_gives_the_extended_surface_focus_loss():
    """Off the waist the two-way kernel's wavefront curvature alone gives |E|^2 = (w0 / w)^2."""
    zr = math.pi * W0 ** 2 / LAM
    for dz in (0.1, zr, -zr):
        geom = BeamGeometry.at_range(R0 + dz, W0, R0, LAM, R0)
        g0 = abs(geom.transfer(np.zeros(1), np.zeros(1))[0]) ** 2
        assert g0 == pytest.approx(1.0 / (1.0 + (dz / zr) ** 2), rel=1e-9)


def test_rotation_ramp_equals_rotating_the_facets(waist):
    """Eq. (4): the spectral shift gives the field of the ramp-multiplied facets."""
    ax, rho, _, _ = _surface("sphere", 0.06, PITCH)
    q = (300.0, -120.0)
    _, U, V = _grid(PITCH, 0.04)
    ramped = rho * np.exp(1j * (q[0] * (U - 0.01) + q[1] * (V + 0.005)))
    conv = FacetConvolver(rho, rho * 0, PITCH, waist, (ax[0], ax[0]), (0.01, -0.005))
    direct = FacetConvolver(ramped, rho * 0, PITCH, waist, (ax[0], ax[0]), (0.0, 0.0))
    a, _ = conv.field(q)
    b, _ = direct.field()
    eps = np.finfo(np.complex64).eps * 64 * np.abs(b).max()
    assert np.abs(a - b).max() < max(eps, 1e-5 * np.abs(b).max())


def test_effective_range_finds_the_glint_depth(waist):
    ax, rho, rng, valid = _surface("sphere", 0.09, PITCH)
    rho_r = rho * np.where(valid, rng - 5.99, 0.0)      # reference range 1 cm in front of the apex
    e0, e1 = FacetConvolver(rho, rho_r, PITCH, waist, (ax[0], ax[0]), (0.0, 0.0)).field()
    c = len(ax) // 2
    r_eff = effective_range(e0, e1, 5.99)
    # the apex glint is at 6.0 m; the beam-weighted depth of a sphere is within w^2 / (4 rc) of it
    assert r_eff[c, c] == pytest.approx(6.0, abs=W0 ** 2 / (4 * 0.09) + 1e-4)


def test_fresnel_matches_normal_incidence_and_grows_to_grazing():
    n = index_from_reflectivity(0.155)
    assert fresnel_power(np.ones(1), n)[0] == pytest.approx(0.155, rel=1e-12)
    r = fresnel_power(np.cos(np.radians([0.0, 30.0, 60.0, 89.0])), n)
    assert r[-1] > r[0] and r[-1] < 1.0


def _facets_numpy(range_m, valid, pitch, k, ref, edge=5.0):
    """The facet factors written with whole-array NumPy (the reference of the Numba kernel)."""
    r = np.where(valid, range_m, np.nan)

    def slope(axis):
        fwd = (np.roll(r, -1, axis=axis) - r) / pitch
        bwd = (r - np.roll(r, 1, axis=axis)) / pitch
        fwd = np.where(np.abs(fwd) > edge, np.nan, fwd)
        bwd = np.where(np.abs(bwd) > edge, np.nan, bwd)
        if axis == 1:
            fwd[:, -1] = np.nan
            bwd[:, 0] = np.nan
        else:
            fwd[-1, :] = np.nan
            bwd[0, :] = np.nan
        both = np.isfinite(fwd) & np.isfinite(bwd)
        out = np.where(both, 0.5 * (fwd + bwd), np.where(np.isfinite(fwd), fwd, bwd))
        return np.where(valid, np.where(np.isfinite(out), out, edge), 0.0)

    du, dv = slope(1), slope(0)
    s = (np.sinc(k * du * pitch / math.pi) * np.sinc(k * dv * pitch / math.pi)) ** 2
    phase = np.exp(1j * 2.0 * k * (np.where(valid, range_m, ref) - ref))
    return np.where(valid, phase * s, 0.0), du, dv


def test_facet_kernel_matches_the_numpy_form_on_a_rough_surface_with_holes_and_jumps():
    rng = np.random.default_rng(4)
    _, U, V = _grid(PITCH, 0.03)
    surf = R0 + 0.02 * np.sin(40 * U) * np.cos(30 * V) + 1e-4 * rng.standard_normal(U.shape)
    surf[:, 25:] += 0.05                                  # a depth jump (one surface behind another)
    valid = rng.random(U.shape) > 0.1                      # holes, slivers, isolated pixels
    got = facet_phase_factors(surf, valid, PITCH, K, R0)
    want = _facets_numpy(surf, valid, PITCH, K, R0)
    # the carrier phase reaches 2k |R - R_s| ~ 1e3 rad: libm and NumPy's SIMD sin/cos may differ by
    # that argument times eps
    atol = 64 * np.finfo(np.float64).eps * (1.0 + 2 * K * np.abs(surf - R0).max())
    for g, w in zip(got, want):
        assert np.abs(g - w).max() <= atol

"""Fitting kernels on synthetic data with known truth."""
import math

import numpy as np
import pytest
from scipy.special import erf

from calibration.fits.caustic import beam_radius, caustic_start, fit_caustic
from calibration.fits.edge import K_10_90, edge_profile, fit_knife_edge, fit_slanted_edge
from calibration.fits.fitting import FitError
from calibration.fits.linearity import assign_grid_lines, find_peaks_subpixel, fit_linearity
from calibration.fits.spot import fit_gaussian_2d, gaussian_2d


def test_k_10_90_closed_form():
    # erf(u) = 0.8 at u = 0.906194 -> dx = 2 * 0.906194 / sqrt(2) w = 1.28155 w
    assert K_10_90 == pytest.approx(1.28155, abs=1e-5)
    x = np.array([-K_10_90 / 2, K_10_90 / 2])
    assert edge_profile(x, 0.0, 1.0, 0.0, 1.0) == pytest.approx([0.1, 0.9], abs=1e-9)


def test_knife_edge_noiseless_exact():
    x = np.linspace(-0.03, 0.03, 61)
    y = edge_profile(x, 0.2, 3.0, 0.004, 0.0075)
    f = fit_knife_edge(x, y)
    assert f.radius_1e2.value == pytest.approx(0.0075, rel=1e-6)
    assert f.diameter_1e2.value == pytest.approx(0.015, rel=1e-6)
    assert f.width_10_90.value == pytest.approx(0.0075 * 1.28155, rel=1e-5)
    assert f.position.value == pytest.approx(0.004, abs=1e-9)
    # the model-free width agrees within the sample spacing (1 mm)
    assert f.width_10_90_direct == pytest.approx(f.width_10_90.value, abs=1e-3)


def test_knife_edge_falling_noisy_recovers_within_uncertainty():
    rng = np.random.default_rng(1)
    x = rng.permutation(np.linspace(-0.04, 0.04, 400))  # order must not matter
    y = edge_profile(x, 1.0, -1.0, -0.002, 0.006) + rng.normal(0, 0.01, x.size)
    f = fit_knife_edge(x, y)
    assert f.step.value < 0
    assert abs(f.radius_1e2.value - 0.006) < 4 * f.radius_1e2.uncertainty
    assert f.radius_1e2.uncertainty < 3e-4
    assert f.residual_rms == pytest.approx(0.01, rel=0.15)


def test_knife_edge_errors():
    with pytest.raises(ValueError, match="samples"):
        fit_knife_edge(np.zeros(10), np.zeros(9))
    with pytest.raises(FitError, match="flat"):
        fit_knife_edge(np.linspace(0, 1, 20), np.ones(20))
    with pytest.raises(FitError, match="at least 8"):
        fit_knife_edge(np.arange(5.0), np.arange(5.0))


def test_slanted_edge_resolves_coarse_rows():
    # rows 7 mm apart (as the slow axis), edge tilted 5 deg from the x axis: rows still resolve a 6 mm radius
    xs = np.arange(-0.05, 0.05, 0.0018)
    ys = np.arange(-0.05, 0.05, 0.007)
    X, Y = np.meshgrid(xs, ys)
    phi = math.radians(90 + 5)  # normal ~ +y
    s = X * math.cos(phi) + Y * math.sin(phi) - 0.003
    w = 0.006
    rng = np.random.default_rng(2)
    V = 0.1 + 2.0 * 0.5 * (1 + erf(math.sqrt(2) * s / w)) + rng.normal(0, 0.01, X.shape)
    f, dist, vals = fit_slanted_edge(X, Y, V)
    assert f.radius_1e2.value == pytest.approx(w, rel=0.03)
    assert math.degrees(f.angle_rad.value) == pytest.approx(95.0, abs=0.3)
    assert dist.shape == vals.shape == (X.size,)


def test_gaussian_2d_elliptical():
    xs = np.arange(-0.03, 0.03, 0.0018)
    ys = np.arange(-0.03, 0.03, 0.004)
    X, Y = np.meshgrid(xs, ys)
    V = gaussian_2d(X, Y, 0.05, 1.0, 0.002, -0.003, 0.0053, 0.0071)
    f = fit_gaussian_2d(X, Y, V)
    assert f.radius_x.value == pytest.approx(0.0053, rel=1e-5)
    assert f.radius_y.value == pytest.approx(0.0071, rel=1e-5)
    assert (f.x0.value, f.y0.value) == pytest.approx((0.002, -0.003), abs=1e-8)
    assert f.ellipticity == pytest.approx(0.0053 / 0.0071, rel=1e-4)


def test_gaussian_2d_rotated_noisy():
    rng = np.random.default_rng(3)
    xs = np.linspace(-0.03, 0.03, 60)
    X, Y = np.meshgrid(xs, xs)
    V = gaussian_2d(X, Y, 0.0, 1.0, 0.0, 0.0, 0.008, 0.004, math.radians(30)) + rng.normal(0, 0.02, X.shape)
    f = fit_gaussian_2d(X, Y, V, rotate=True)
    assert f.radius_x.value == pytest.approx(0.008, rel=0.03)
    assert f.radius_y.value == pytest.approx(0.004, rel=0.03)
    assert math.degrees(f.theta_rad.value) == pytest.approx(30, abs=2)


def test_caustic_closed_form_start_is_exact_without_noise():
    z = np.linspace(5.7, 6.3, 7)
    w = beam_radius(z, 0.0075, 6.02, 0.2)
    w0, z0, zr = caustic_start(z, w)
    assert (w0, z0, zr) == pytest.approx((0.0075, 6.02, 0.2), rel=1e-9)


def test_caustic_fit_recovers_truth_with_uncertainties():
    rng = np.random.default_rng(4)
    z = np.linspace(5.72, 6.28, 9)
    truth = (0.0075, 5.98, 0.2004)
    sig = 0.0002
    w = beam_radius(z, *truth) + rng.normal(0, sig, z.size)
    f = fit_caustic(z, w, np.full(z.size, sig), wavelength_m=0.000881742)
    for m, t in zip((f.waist_radius, f.waist_position, f.rayleigh_range), truth):
        assert abs(m.value - t) < 4 * m.uncertainty, (m, t)
    assert f.depth_of_focus.value == pytest.approx(2 * f.rayleigh_range.value)
    assert f.m_squared.value == pytest.approx(1.0, abs=4 * f.m_squared.uncertainty + 0.05)


def test_caustic_errors():
    with pytest.raises(FitError, match="at least 4"):
        fit_caustic(np.array([1.0, 2, 3]), np.array([1.0, 1, 1]))
    with pytest.raises(FitError, match="upward"):
        fit_caustic(np.linspace(0, 1, 5), 1 - 0.1 * (np.linspace(0, 1, 5) - 0.5) ** 2)
    with pytest.raises(ValueError, match="> 0"):
        fit_caustic(np.linspace(0, 1, 5), np.array([1.0, 1, 0, 1, 1]))


def test_linearity_known_cubic():
    d = np.linspace(-0.2, 0.2, 9)
    x = 1.02 * d + 0.001 + 0.05 * d**3  # 1.02 scale, +1 mm offset, cubic bow
    f = fit_linearity(d, x)
    # least squares of a cubic on symmetric points: residual is odd, max at the ends
    assert f.scale.value == pytest.approx(1.02 + 0.05 * np.sum(d**4) / np.sum(d**2), rel=1e-9)
    assert f.offset.value == pytest.approx(0.001, abs=1e-12)
    assert f.nonlinearity_pct == pytest.approx(np.max(np.abs(f.residuals)) / np.ptp(x) * 100)
    assert 0.01 < f.nonlinearity_pct < 1.0


def test_peaks_subpixel_and_assignment():
    i = np.arange(200, dtype=float)
    true = np.array([20.3, 70.7, 121.25, 171.5])
    prof = sum(np.exp(-0.5 * ((i - c) / 3.0) ** 2) for c in true)
    found = find_peaks_subpixel(prof, min_separation=10)
    assert found == pytest.approx(true, abs=0.05)
    assert assign_grid_lines(np.array([-0.098, 0.003, 0.052]), 0.05, 0.0) == pytest.approx([-0.1, 0.0, 0.05])


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_knife_edge_power_detection_unbiased_by_noise_floor(sign):
    # coherent detection: amplitude erf, power = amplitude^2 + noise power (here exactly its mean)
    from calibration.fits.edge import edge_profile_power
    x = np.linspace(-0.04, 0.04, 200)
    y = edge_profile_power(sign * x, 0.05, 1.0, 0.003, 0.0075)
    f = fit_knife_edge(x, y, power=True)
    assert f.radius_1e2.value == pytest.approx(0.0075, rel=1e-6)
    assert f.position.value == pytest.approx(sign * 0.003, abs=1e-9)
    assert f.offset.value == pytest.approx(0.05, rel=1e-6)
    assert np.sign(f.step.value) == sign
    assert f.width_10_90_direct == pytest.approx(K_10_90 * 0.0075, abs=5e-4)

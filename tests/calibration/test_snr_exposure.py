"""SNR, dynamic range and exposure against closed forms."""
import math

import numpy as np
import pytest

from calibration.fits.power_density import (ExposureLimitError, assert_exposure_allowed, exposure_checks,
                                  peak_power_density_mw_cm2, power_from_peak_density, raster_exposure)
from calibration.fits.dynamic_range import dynamic_range_db, measure_snr, to_linear_power


def test_to_linear_power():
    assert to_linear_power(np.array([0.0, 10.0, -3.0]), "db") == pytest.approx([1.0, 10.0, 10 ** -0.3])
    with pytest.raises(ValueError, match="'db' or 'linear'"):
        to_linear_power(np.zeros(2), "amplitude")


def test_snr_closed_form():
    # plate 101 (power), floor 1: (101 - 1) / 1 = 100 -> 20 dB of power (= 20 log10 of amplitude ratio 10)
    rng = np.random.default_rng(0)
    s = 101.0 + rng.normal(0, 1.0, 4000)
    n = 1.0 + rng.normal(0, 0.01, 4000)
    r = measure_snr(s, n)
    assert r.snr_db.value == pytest.approx(20.0, abs=0.02)
    assert 0 < r.snr_db.uncertainty < 0.02
    assert r.stability_db.value == pytest.approx(10 * math.log10(101.0), abs=0.1)  # mean/std = 101


def test_snr_errors():
    with pytest.raises(ValueError, match="linear power"):
        measure_snr(np.array([-30.0, -20.0]), np.array([1.0, 1.0]))
    assert measure_snr(np.ones(5), np.ones(5) * 2).snr_db.value == -99.0


def test_dynamic_range_two_levels():
    # 20 % of pixels at 10x power, the rest at 1: 1st/99th percentiles 1 and 10 -> 10 dB
    p = np.ones((10, 10))
    p[:2] = 10.0
    dr = dynamic_range_db(p, n_boot=50)
    assert dr.value == pytest.approx(10.0)
    mask = np.zeros_like(p, dtype=bool)
    mask[5:] = True
    assert dynamic_range_db(p, mask, n_boot=0).value == pytest.approx(0.0)
    with pytest.raises(ValueError, match="percentiles"):
        dynamic_range_db(p, lo_pct=50, hi_pct=10)
    with pytest.raises(ValueError, match="mask shape"):
        dynamic_range_db(p, mask[:3])


def test_peak_density_design_values():
    # I0 = 2 P / (pi w^2): 2 mW/cm^2 at w0 = 7.5 mm needs P = 20 W/m^2 * pi * (7.5e-3)^2 / 2 = 1.767 mW
    p = power_from_peak_density(2.0, 0.0075)
    assert p == pytest.approx(20 * math.pi * 0.0075**2 / 2)
    assert peak_power_density_mw_cm2(p, 0.0075) == pytest.approx(2.0)
    assert peak_power_density_mw_cm2(p, 0.0075 / 2) == pytest.approx(8.0)  # half the radius, 4x the density


def test_raster_exposure_conserves_energy_and_dwell():
    P, w, A, fy = 1.767e-3, 0.0075, 0.2366, 0.45
    e = raster_exposure(P, w, A, fy, fast_hz=32.0, frame_s=1.0)
    # energy per frame over the map = P * T (the margins hold the whole beam)
    assert e.energy_map_j_cm2.sum() == pytest.approx(P * 1.0, rel=1e-3)
    assert e.peak_mw_cm2 == pytest.approx(2.0, rel=1e-3)
    assert e.average_field_mw_cm2 == pytest.approx(P / (2 * A * fy) * 0.1)
    # time density near the centre: T / (fov_y pi A) per m^2 -> 1e-4 / (0.45 pi 0.2366) = 2.99e-4 s per cm^2
    expect = 1e-4 * 1.0 / (fy * math.pi * A)
    assert e.dwell_centre_s_per_cm2 == pytest.approx(expect, rel=0.05)
    assert e.dwell_map_s.sum() == pytest.approx(1.0)  # the whole frame is spent somewhere
    assert e.dwell_max_s_per_cm2 > 3 * e.dwell_centre_s_per_cm2  # turnarounds dwell longest
    assert e.average_max_mw_cm2 > e.average_field_mw_cm2


def test_exposure_refusal():
    e = raster_exposure(1.767e-3, 0.0075, 0.2366, 0.45, 32.0, 1.0)
    ok = exposure_checks(e, limit_peak_mw_cm2=4.0, limit_average_mw_cm2=1.0)
    assert all(c.passed for c in ok)
    assert_exposure_allowed(ok)
    bad = exposure_checks(e, limit_peak_mw_cm2=1.5, limit_average_mw_cm2=1.0)
    with pytest.raises(ExposureLimitError, match="refusing to scan: exposure_peak"):
        assert_exposure_allowed(bad)

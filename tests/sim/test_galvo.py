"""Galvo dynamics: 2nd-order servo lag and gain vs the closed form; feedback = delayed true position."""
from __future__ import annotations

import math

import numpy as np
import pytest

from sim import galvo
from sim.scanner import RasterDrive


@pytest.mark.parametrize("fn, zeta", [(300.0, 0.6), (150.0, 0.8), (500.0, 0.4)])
def test_servo_steady_state_matches_second_order_phase(fn, zeta):
    f, a, dt = 32.0, 0.2, 5e-6
    t = np.arange(0.0, 0.25, dt)
    x = galvo.simulate_servo(a * np.sin(2 * np.pi * f * t), dt, fn, zeta)
    # after the transient, fit x = a_out sin(w t - phi) on the last 3 periods
    sel = t > 0.25 - 3 / f
    m = np.stack([np.sin(2 * np.pi * f * t[sel]), np.cos(2 * np.pi * f * t[sel])], 1)
    c_s, c_c = np.linalg.lstsq(m, x[sel], rcond=None)[0]
    phi = math.atan2(-c_c, c_s)
    r = f / fn
    phi_ref = math.atan2(2 * zeta * r, 1 - r * r)          # 2nd-order phase
    gain_ref = 1 / math.sqrt((1 - r * r) ** 2 + (2 * zeta * r) ** 2)
    assert phi / (2 * np.pi * f) == pytest.approx(phi_ref / (2 * np.pi * f), abs=2e-7)   # lag within 0.2 us
    assert math.hypot(c_s, c_c) / a == pytest.approx(gain_ref, rel=1e-5)
    assert galvo.servo_phase_lag_s(f, fn, zeta) == pytest.approx(phi_ref / (2 * np.pi * f))


def test_default_servo_lag_is_the_configured_one(scanner_cfg):
    # thzcore derives the same lag: 32 Hz, 300 Hz, zeta 0.6 -> 0.640 ms
    assert galvo.servo_phase_lag_s(32.0, 300.0, 0.6) == pytest.approx(scanner_cfg.raster.servo_lag_s)
    assert scanner_cfg.raster.servo_lag_s == pytest.approx(0.6404e-3, rel=1e-3)


def test_step_response_overshoot():
    # 2nd-order step overshoot exp(-pi zeta / sqrt(1 - zeta^2)) = 9.48 % for zeta = 0.6
    dt = 2e-6
    u = np.ones(20000)
    x = galvo.simulate_servo(u, dt, 300.0, 0.6, x0=0.0)
    assert x.max() - 1.0 == pytest.approx(math.exp(-math.pi * 0.6 / math.sqrt(1 - 0.36)), rel=1e-3)


def test_feedback_is_the_true_position_delayed(quiet_scanner, scanner_cfg):
    vs = quiet_scanner
    vs.set_galvo(feedback_delay_s=120e-6)
    raw = vs.acquire_frame(3)
    r = scanner_cfg.raster
    a, f = r.fast_amplitude_m, r.fast_axis_hz
    gain = galvo.servo_gain(f, r.servo_natural_hz, r.servo_damping)
    lag = galvo.servo_phase_lag_s(f, r.servo_natural_hz, r.servo_damping)
    t_line = r.line_duration_s
    t_chirp = scanner_cfg.chirp_period_s
    t0 = 3 * 64 * t_line
    # line 10, all chirps: feedback = a |H| sin(w (t - t0 - lag - d) - pi/2)
    t = t0 + 10 * t_line + t_chirp * np.arange(512)
    expect = a * gain * np.sin(2 * np.pi * f * (t - t0 - lag - 120e-6) - np.pi / 2)
    assert np.abs(raw.feedback_x[10] - expect).max() < 2e-6
    assert vs.true_line_lag_s == pytest.approx(120e-6 + 0.5 * scanner_cfg.fmcw.chirp_duration_s)
    assert vs.true_servo_lag_s == pytest.approx(lag)
    # slow axis: line centres step down by fov_y / 64 = 7.03 mm from the top
    dy = np.diff(raw.feedback_y[8:56])
    assert np.allclose(dy, -r.fov_y_m / 64, atol=2e-5)
    assert list(raw.direction[:4]) == [1, -1, 1, -1]


def test_drive_limits_are_enforced(quiet_scanner, scanner_cfg):
    bad = RasterDrive.from_config(scanner_cfg).model_copy(update={"fast_amplitude_m": 0.5})
    with pytest.raises(ValueError, match="max_fast_amplitude_m"):
        quiet_scanner.acquire_frame(0, drive=bad)
    bad = RasterDrive.from_config(scanner_cfg).model_copy(update={"slow_offset_m": 0.2})
    with pytest.raises(ValueError, match="max_slow_amplitude_m"):
        quiet_scanner.acquire_frame(0, drive=bad)
    with pytest.raises(ValueError, match="servo_natural_hz"):
        quiet_scanner.set_galvo(servo_natural_hz=0.0)


def test_drive_by_position_and_static_mirror(quiet_scanner):
    d = RasterDrive(0.0, 0.01, 32.0, 0.0, -0.02, 1.0)     # parked beam at (+10 mm, -20 mm)
    assert d.fast_offset_m == 0.01 and d.slow_offset_m == -0.02
    raw = quiet_scanner.acquire_frame(0, drive=d)
    assert np.allclose(raw.feedback_x, 0.01, atol=1e-6) and np.allclose(raw.feedback_y, -0.02, atol=1e-6)
    with pytest.raises(TypeError):
        RasterDrive(0.1, 0.0, 32.0, 0.1, 0.0, 1.0, 5.0)

"""Closed-form raw frames for tests, benchmarks and calibration checks (no sim package needed).

A scene is a reflectivity map r(x, y) (amplitude, 0..1) on a plane at range R. The beam follows
x(t) = -A cos(pi (t - tau) / T_line) (line 0 forward, the mirror trailing the command by tau),
line l at y_l = fov_y/2 - (l + 1/2) pitch_y (top line first). Chirp c of line l starts at
t = l T_line + c T_p and sees the beam at the chirp centre t + T_c/2; its dechirped IF is the tone
    s[n] = a r(x, y_l) cos(2 pi f_b n / f_s + phi),   f_b = 2 S (R - R_ref) / c,
plus Gaussian noise, rounded to int16. The recorded feedback is the true position d seconds late:
feedback_x(t) = x(t - d), sampled at chirp starts. In ProcessingConfig's convention the true line
lag is therefore d + T_c/2 with position_source = "feedback" and T_c/2 - tau with "model"
(the same timing as sim.scanner.VirtualScanner).
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from thzcore.frames import RawFrame
from thzcore.scanner import ScannerConfig

Reflectivity = Callable[[np.ndarray, np.ndarray], np.ndarray]


def point_target(x0_m: float, y0_m: float, radius_m: float) -> Reflectivity:
    """Gaussian spot of 1/e^2 radius radius_m at (x0, y0): the beam footprint on a point reflector."""
    def r(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return np.exp(-2.0 * ((x - x0_m) ** 2 + (y - y0_m) ** 2) / radius_m ** 2)
    return r


def beam_positions(scanner: ScannerConfig, servo_lag_s: float) -> tuple[np.ndarray, np.ndarray]:
    """(true x at chirp centres (lines, chirps), chirp start times (lines, chirps)) in s from frame start."""
    ra, fm = scanner.raster, scanner.fmcw
    lines, chirps, _ = scanner.raw_frame_shape
    t = np.arange(lines)[:, None] * ra.line_duration_s + np.arange(chirps)[None, :] * scanner.chirp_period_s
    x = -ra.fast_amplitude_m * np.cos(np.pi * (t + 0.5 * fm.chirp_duration_s - servo_lag_s) / ra.line_duration_s)
    return x, t


def make_raw_frame(scanner: ScannerConfig, reflectivity: Reflectivity, range_m: float | None = None,
                   amplitude: float = 2000.0, servo_lag_s: float = 0.0, feedback_delay_s: float = 0.0,
                   noise_counts: float = 0.0, seed: int = 0, frame_id: int = 0,
                   phase: float | None = None) -> RawFrame:
    """A raw frame of `reflectivity` on a plane at range_m (default: the standoff)."""
    ra, fm = scanner.raster, scanner.fmcw
    rng = np.random.default_rng(seed)
    lines, chirps, n = scanner.raw_frame_shape
    r_m = scanner.optics.standoff_m if range_m is None else range_m
    x, t = beam_positions(scanner, servo_lag_s)
    y = 0.5 * ra.fov_y_m - (np.arange(lines) + 0.5) * ra.pixel_pitch_y_m
    a = amplitude * reflectivity(x, np.broadcast_to(y[:, None], x.shape))  # (lines, chirps)
    fb_hz = fm.beat_hz(r_m)
    ph = rng.uniform(0, 2 * np.pi, (lines, chirps, 1)) if phase is None else phase
    tone = np.cos(2 * np.pi * fb_hz * np.arange(n) / fm.sample_rate_hz + ph)  # (lines|1, chirps|1, n)
    s = a[:, :, None] * tone
    if noise_counts > 0:
        s = s + rng.normal(0.0, noise_counts, s.shape)
    if_samples = np.clip(np.rint(s), -32768, 32767).astype(np.int16)
    # feedback is sampled at chirp starts, not centres: move back by T_c / 2
    x_fb = -ra.fast_amplitude_m * np.cos(np.pi * (t - servo_lag_s - feedback_delay_s) / ra.line_duration_s)
    direction = np.where(np.arange(lines) % 2 == 0, 1, -1).astype(np.int8)
    return RawFrame(frame_id, float(frame_id) * ra.frame_duration_s, scanner.scanner_id, if_samples,
                    x_fb.astype(np.float32), y.astype(np.float32), direction, {})

"""FMCW beat synthesis against closed forms: beat frequency, range resolution, thermal noise, ADC (sim.receiver)."""
from __future__ import annotations


import numpy as np
import pytest

from sim.config import NoiseConfig
from sim.fmcw import beat_cycles_per_sample
from sim.receiver import FrameDraws, receive
from tests.sim.conftest import QUIET
from thzcore.scanner import SPEED_OF_LIGHT


def _synth(cfg, ranges, amps, thermal=0.0, n_chirps=4, seed=0):
    f = cfg.fmcw
    k = len(ranges)
    cyc = np.tile([beat_cycles_per_sample(r, f.slope_hz_per_s, f.reference_range_m, f.sample_rate_hz) for r in ranges],
                  (n_chirps, 1))
    amp = np.tile(amps, (n_chirps, 1)).astype(float)
    phase = np.zeros((n_chirps, k))
    noise = NoiseConfig(**{**QUIET, "thermal_counts": thermal})
    adc_max = 2 ** (f.adc_bits - 1) - 1
    return receive(amp, phase, cyc, f.samples_per_chirp, adc_max / 2.0, adc_max, noise=noise,
                   draws=FrameDraws.draw(np.random.default_rng(seed), noise))


def test_beat_frequency_of_point_target_lands_in_its_bin(scanner_cfg):
    f = scanner_cfg.fmcw
    # R = 6.0 m: f_b = 2 S (R - R_ref)/c = 2 * 5.859375e14 * 0.32 / 299792458 = 1.2508 MHz;
    # bin width f_s/N = 5e6/128 = 39062.5 Hz -> bin 32.02
    r = 6.0
    fb = 2 * f.slope_hz_per_s * (r - f.reference_range_m) / SPEED_OF_LIGHT
    assert fb == pytest.approx(1.2508e6, rel=1e-4)
    iq = _synth(scanner_cfg, [r], [0.5])
    assert iq.dtype == np.int16 and iq.shape == (4, 128)
    spec = np.abs(np.fft.rfft(iq[0] * np.hanning(128)))
    assert int(np.argmax(spec)) == 32
    # sub-bin: the quadratic peak interpolation finds the fractional bin 32.02 within 0.05
    k = int(np.argmax(spec))
    a, b, c = np.log(spec[k - 1:k + 2])
    frac = k + 0.5 * (a - c) / (a - 2 * b + c)
    assert frac == pytest.approx(f.range_bin(r), abs=0.05)


def test_tone_is_a_cosine_with_the_carrier_phase(scanner_cfg):
    f = scanner_cfg.fmcw
    cyc = beat_cycles_per_sample(5.9, f.slope_hz_per_s, f.reference_range_m, f.sample_rate_hz)
    amp = np.array([[1.0]])
    ph = np.array([[0.7]])
    adc_max = 8191
    iq = receive(amp, ph, np.array([[cyc]]), 128, adc_max / 2.0, adc_max)
    n = np.arange(128)
    expect = np.round(adc_max / 2.0 * np.cos(2 * np.pi * cyc * n + 0.7))
    assert np.max(np.abs(iq[0] - expect)) <= 1


def test_range_resolution_two_targets(scanner_cfg):
    f = scanner_cfg.fmcw
    dr = f.range_resolution_m
    assert dr == pytest.approx(SPEED_OF_LIGHT / (2 * 15e9))   # 9.993 mm
    counts_per_amp = 8191 / 2.0
    # two reflectors exactly dR apart sit on adjacent FFT bins and are orthogonal over the chirp:
    # without a window |X_k| = a_k * counts_per_amp * N / 2 and no leakage into each other
    r1 = f.reference_range_m + 30 * dr
    spec = np.abs(np.fft.rfft(_synth(scanner_cfg, [r1, r1 + dr], [0.4, 0.2])[0].astype(float)))
    assert spec[30] == pytest.approx(0.4 * counts_per_amp * 64, rel=2e-3)
    assert spec[31] == pytest.approx(0.2 * counts_per_amp * 64, rel=2e-3)
    assert np.delete(spec, [30, 31]).max() < 1e-3 * spec[30]
    # with the Hann window, targets 3 dR apart show two peaks with a dip whatever their phases
    w = np.hanning(128)
    for dphi in (0.0, 1.0, 2.0, 3.0):
        cyc = [beat_cycles_per_sample(r, f.slope_hz_per_s, f.reference_range_m, f.sample_rate_hz)
               for r in (r1, r1 + 3 * dr)]
        x = receive(np.array([[0.4, 0.4]]), np.array([[0.0, dphi]]), np.array([cyc]), 128, counts_per_amp, 8191)
        spec = np.abs(np.fft.rfft(x[0] * w))
        assert spec[30] > 1.2 * min(spec[31], spec[32]) and spec[33] > 1.2 * min(spec[31], spec[32])


def test_thermal_noise_power(scanner_cfg):
    sigma = 6.0
    iq = _synth(scanner_cfg, [6.0], [0.0], thermal=sigma, n_chirps=400).astype(float)
    # rounding adds 1/12 count^2 of quantisation noise
    assert iq.var() == pytest.approx(sigma**2 + 1 / 12, rel=0.05)
    assert abs(iq.mean()) < 0.1


def test_adc_clips_at_full_scale(scanner_cfg):
    iq = _synth(scanner_cfg, [6.0], [5.0])   # 2.5 x full scale
    assert iq.max() == 8191 and iq.min() == -8192


def test_leakage_phase_noise_raises_the_floor(scanner_cfg):
    f = scanner_cfg.fmcw
    n_ch = 64
    cyc_l = beat_cycles_per_sample(5.70, f.slope_hz_per_s, f.reference_range_m, f.sample_rate_hz)
    z = np.zeros((n_ch, 1))
    out = {}
    for pn in (0.0, 0.03):
        noise = NoiseConfig(**{**QUIET, "leakage_amplitude": 0.3, "phase_noise_rad": pn})
        draws = FrameDraws.draw(np.random.default_rng(1), noise)
        out[pn] = receive(z, z, z, 128, 4000.0, 8191, noise=noise, draws=draws, leak_cyc=cyc_l).astype(float)
    w = np.hanning(128)
    floor = lambda x: np.mean(np.abs(np.fft.rfft(x * w, axis=1))[:, 20:40] ** 2)  # noqa: E731
    assert floor(out[0.03]) > 10 * floor(out[0.0])
    # the leakage tone itself sits in bin (5.70 - 5.68) / dR = 2
    assert int(np.argmax(np.abs(np.fft.rfft(out[0.0] * w, axis=1)).mean(axis=0))) == 2

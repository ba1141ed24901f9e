"""Kernels against their NumPy references and closed forms (range bin, de-warp pixel, line lag)."""
from __future__ import annotations

import numpy as np
import pytest

from processing.dewarp import (dewarp, dewarp_reference, lag_shift_chirps, positions_from_feedback,
                               positions_from_feedback_reference)
from processing.range_gate import gate_bins, make_window, range_gate, range_gate_reference
from thzcore.scanner import SPEED_OF_LIGHT, ScannerConfig

SC = ScannerConfig()


def tone_frame(bin_k: float, lines: int = 4, chirps: int = 32, n: int = 128, amp: float = 1000.0,
               seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    ph = rng.uniform(0, 2 * np.pi, (lines, chirps, 1))
    s = amp * np.cos(2 * np.pi * bin_k * np.arange(n) / n + ph)
    return np.rint(s).astype(np.int16)


def test_gate_bins_default_config():
    # f_b(5.75 m) = 2 * 5.859375e14 * 0.07 / c = 273.6 kHz -> bin 7.005 (bin = 39.0625 kHz) -> first bin 8;
    # f_b(6.25 m) = 2228.1 kHz -> bin 57.04 -> last bin 57
    k0, k1 = gate_bins(SC.fmcw, 5.75, 6.25)
    assert (k0, k1) == (8, 57)
    with pytest.raises(ValueError, match="holds no FFT bin"):
        gate_bins(SC.fmcw, 5.7501, 5.751)


def test_point_reflector_lands_in_its_range_bin():
    # range R = R_ref + 30 dR -> beat 2 S (R - R_ref)/c = 30 bins exactly; peak power (a/2)^2
    fm = SC.fmcw
    r = fm.reference_range_m + 30 * fm.range_resolution_m
    fb = 2 * fm.slope_hz_per_s * (r - fm.reference_range_m) / SPEED_OF_LIGHT
    assert fb / fm.bin_hz == pytest.approx(30.0)
    x = tone_frame(30.0)
    w = make_window("hann", 128)
    # gate of one bin at a time: the power is in bin 30, Hann leaks (1/2)^2 into 29 and 31 and nothing beyond
    p30 = range_gate(x, w, 30, 30)
    p29 = range_gate(x, w, 29, 29)
    p27 = range_gate(x, w, 27, 27)
    np.testing.assert_allclose(p30, (1000 / 2) ** 2, rtol=2e-3)
    np.testing.assert_allclose(p29, (1000 / 2) ** 2 / 4, rtol=5e-3)
    assert p27.max() < 1e-4 * p30.min()


@pytest.mark.parametrize("rule", ["peak", "sum"])
@pytest.mark.parametrize("window", ["hann", "rect", "blackman"])
def test_range_gate_matches_reference(rule, window):
    rng = np.random.default_rng(1)
    x = rng.integers(-8000, 8000, (3, 40, 128)).astype(np.int16)
    w = make_window(window, 128)
    ref = range_gate_reference(x, w, 8, 57, rule)
    got = range_gate(x, w, 8, 57, rule)
    # measured max relative error ~4e-7 (float32 FFT, rocket-fft vs pocketfft in NumPy)
    assert np.max(np.abs(got - ref)) / np.max(ref) < 1e-5
    par = range_gate(x, w, 8, 57, rule, parallel=True)
    assert np.max(np.abs(par - ref)) / np.max(ref) < 1e-5


def test_parallel_range_gate_releases_the_gil_only_under_a_threadsafe_layer():
    """After the first parallel region the layer is known; under omp/tbb the nogil kernel runs, equal to the
    serial one, and two Python threads may run it at once (workqueue would abort the process)."""
    import threading

    import numba

    from processing import range_gate as rg

    rng = np.random.default_rng(2)
    x = rng.integers(-8000, 8000, (6, 40, 128)).astype(np.int16)
    w = make_window("hann", 128)
    serial = range_gate(x, w, 8, 57)
    first = range_gate(x, w, 8, 57, parallel=True)      # chooses the threading layer if nothing did yet
    layer = rg.threadsafe_layer()
    assert layer == (numba.threading_layer() if numba.threading_layer() in ("omp", "tbb") else None)
    np.testing.assert_allclose(first, serial, rtol=1e-6)
    if layer is None:
        pytest.skip(f"threading layer {numba.threading_layer()}: the parallel kernel keeps the GIL")
    assert not rg._range_gate_parallel.targetoptions.get("nogil")
    assert rg._range_gate_parallel_nogil.targetoptions["nogil"]
    outs: list[np.ndarray] = []
    threads = [threading.Thread(target=lambda: outs.extend(range_gate(x, w, 8, 57, parallel=True)
                                                          for _ in range(20))) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(outs) == 40 and all(np.allclose(o, serial, rtol=1e-6) for o in outs)
    assert rg._range_gate_parallel_nogil.signatures       # the nogil kernel is the one that ran


def test_range_gate_rect_window_tone_power():
    # rect window, tone centred on bin 10: |X_10|^2 / N^2 = (a/2)^2
    x = tone_frame(10.0, lines=1, chirps=1)
    w = make_window("rect", 128)
    p = range_gate(x, w, 10, 10)
    assert p[0, 0] == pytest.approx((1000 / 2) ** 2, rel=2e-3)


def test_range_gate_bad_arguments():
    w = make_window("hann", 128)
    with pytest.raises(ValueError, match="int16"):
        range_gate(np.zeros((2, 2, 128), np.float32), w, 1, 2)
    with pytest.raises(ValueError, match="window has shape"):
        range_gate(np.zeros((2, 2, 128), np.int16), w[:64], 1, 2)
    with pytest.raises(ValueError, match="k0=9, k1=8"):
        range_gate(np.zeros((2, 2, 128), np.int16), w, 9, 8)
    with pytest.raises(ValueError, match="pixel rule"):
        range_gate(np.zeros((2, 2, 128), np.int16), w, 1, 2, rule="mean")
    with pytest.raises(ValueError, match="unknown window"):
        make_window("kaiser", 128)


def test_range_gate_empty_input():
    w = make_window("hann", 128)
    out = range_gate(np.zeros((0, 5, 128), np.int16), w, 8, 57)
    assert out.shape == (0, 5)


def test_positions_from_feedback_matches_reference_and_interpolates():
    rng = np.random.default_rng(2)
    fb = np.cumsum(rng.normal(size=(3, 50)), axis=1).astype(np.float32)
    for shift in (-1.7, 0.0, 2.06, 3.5):
        a = positions_from_feedback(fb, shift, 1.01, 0.002)
        b = positions_from_feedback_reference(fb, shift, 1.01, 0.002)
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    # a linear ramp is reproduced exactly at a fractional shift (and extrapolated at the ends)
    ramp = np.tile(np.arange(10, dtype=np.float32), (1, 1))
    np.testing.assert_allclose(positions_from_feedback(ramp, 0.25)[0], np.arange(10) + 0.25, atol=1e-6)


def test_lag_shift_chirps():
    # feedback 50 us late, chirp 25.6 us in a 30.52 us period: L = 50 + 12.8 us -> 2.058 chirps
    s = lag_shift_chirps(62.8e-6, SC.chirp_period_s)
    assert s == pytest.approx(62.8e-6 / 30.517578125e-6)
    with pytest.raises(ValueError, match="chirp_period_s"):
        lag_shift_chirps(1e-6, 0.0)


def test_dewarp_matches_reference_and_bins():
    rng = np.random.default_rng(3)
    lines, chirps, n_out, fov = 4, 512, 64, 0.45
    t = np.arange(chirps) / chirps
    x = -0.236 * np.cos(np.pi * t)
    pos = np.stack([x, -x, x, -x]).astype(np.float32)
    d = np.array([1, -1, 1, -1], np.float32)
    inten = rng.uniform(0, 1, (lines, chirps)).astype(np.float32)
    a, ea = dewarp(inten, pos, d, fov, n_out)
    b, eb = dewarp_reference(inten, pos, d, fov, n_out)
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert ea == eb == 0
    # intensity equal to the position reproduces the pixel centres to within half a pitch
    a, _ = dewarp(pos.copy(), pos, d, fov, n_out)
    centres = -fov / 2 + (np.arange(n_out) + 0.5) * fov / n_out
    assert np.max(np.abs(a - centres)) < 0.5 * fov / n_out


def test_dewarp_drops_wrong_direction_and_reports_empty_lines():
    pos = np.tile(np.linspace(-0.2, 0.2, 100, dtype=np.float32), (2, 1))
    inten = np.ones_like(pos)
    # line 0 moves forward as its direction says; line 1 claims backward but moves forward: all dropped
    out, empty = dewarp(inten, pos, np.array([1, -1], np.float32), 0.45, 32)
    assert empty == 1
    assert np.all(out[1] == 0) and np.all(out[0] == 1)
    with pytest.raises(ValueError, match="must be equal"):
        dewarp(inten[:, :5], pos, np.array([1, -1], np.float32), 0.45, 32)


def test_power_spectrum_equals_numpys():
    from processing.range_gate import power_spectrum

    rng = np.random.default_rng(3)
    x = rng.integers(-8000, 8000, (50, 128)).astype(np.int16)
    w = make_window("hann", 128)
    spec = np.fft.rfft(x.astype(np.float64) * w, axis=-1)
    ref = spec.real ** 2 + spec.imag ** 2
    got = power_spectrum(x, w)
    assert got.dtype == np.float32 and got.shape == (50, 65)
    assert np.max(np.abs(got - ref)) / ref.max() < 1e-5

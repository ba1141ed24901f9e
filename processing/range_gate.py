"""Beat signal -> range-gated power per chirp: window, range FFT, peak or summed power in the gate.

Symbols (thzcore.scanner): a dechirped target at range R is a beat tone f_b = 2 S (R - R_ref) / c;
with N samples at f_s one FFT bin spans f_s / N Hz = dR = c / 2B metres, so bin k holds ranges
R_ref + k dR. The gate [R_min, R_max] keeps bins k0 = ceil((R_min - R_ref)/dR) .. k1 = floor(...).

Power of bin k of chirp x[n] with window w[n]:  P_k = |sum_n w[n] x[n] e^{-2 pi i k n / N}|^2 / (sum_n w[n])^2,
so a real tone of amplitude a centred on bin k reads P_k = (a/2)^2 (ADC counts^2).
Pixel rule "peak": max_k P_k over the gate; "sum": sum_k P_k.

Choice of the range transform (measured on one 64x512x128 frame, one core; docs/processing.md):
rocket-fft's rfft inside njit 5.0 ms; zoom DFT as one sgemm (windowed DFT matrix of the 51 gate
bins) 15.6 ms from NumPy, 10.1 ms from Numba; DFT/Goertzel loops in Numba 36 ms; NumPy reference
(np.fft.rfft) 45 ms. The gate covers 51 of 65 bins, so restricting the transform saves little and
the O(N log N) FFT wins.
"""
from __future__ import annotations

import math

import numba
import numpy as np
from numba import njit, prange

from thzcore.scanner import FmcwConfig

# fastmath without `nnan`/`ninf`: NaN and inf must survive to be detected downstream
FASTMATH = {"nsz", "arcp", "contract", "afn", "reassoc"}
PIXEL_RULES = {"peak": 0, "sum": 1}


def make_window(name: str, n: int) -> np.ndarray:
    """Periodic window of n samples (float32); 'rect' is all ones."""
    if n < 2:
        raise ValueError(f"window length n={n} must be >= 2")
    t = 2.0 * np.pi * np.arange(n) / n
    if name == "hann":
        w = 0.5 - 0.5 * np.cos(t)
    elif name == "hamming":
        w = 0.54 - 0.46 * np.cos(t)
    elif name == "blackman":
        w = 0.42 - 0.5 * np.cos(t) + 0.08 * np.cos(2 * t)
    elif name == "rect":
        w = np.ones(n)
    else:
        raise ValueError(f"unknown window {name!r}; choose hann, hamming, blackman or rect")
    return w.astype(np.float32)


def gate_bins(fmcw: FmcwConfig, gate_min_m: float, gate_max_m: float) -> tuple[int, int]:
    """First and last (inclusive) FFT bins inside [gate_min_m, gate_max_m]; ValueError if none."""
    lo = fmcw.range_bin(gate_min_m)
    hi = fmcw.range_bin(gate_max_m)
    k0 = max(0, math.ceil(lo - 1e-9))
    k1 = min(fmcw.samples_per_chirp // 2, math.floor(hi + 1e-9))
    if k1 < k0:
        raise ValueError(
            f"range gate [{gate_min_m}, {gate_max_m}] m holds no FFT bin (bins {lo:.2f}..{hi:.2f} of "
            f"{fmcw.samples_per_chirp // 2}); widen processing.gate_min_m/gate_max_m")
    return k0, k1


def range_gate_reference(if_samples: np.ndarray, window: np.ndarray, k0: int, k1: int,
                         rule: str = "peak") -> np.ndarray:
    """NumPy reference: (lines, chirps, N) int16 -> (lines, chirps) float32 gated power."""
    x = if_samples.astype(np.float32) * window
    spec = np.fft.rfft(x, axis=-1)[..., k0:k1 + 1]
    p = (spec.real ** 2 + spec.imag ** 2) / np.float32(window.sum()) ** 2
    return (p.max(axis=-1) if rule == "peak" else p.sum(axis=-1)).astype(np.float32)


@njit(cache=True, nogil=True, fastmath=FASTMATH)
def _gate_line(x_line, window, k0, k1, rule, scale, buf, out_line):
    """One line: x_line (C, N) int16 -> out_line (C,) gated power. buf (C, N) float32 scratch."""
    n_chirps, n = x_line.shape
    for c in range(n_chirps):
        for i in range(n):
            buf[c, i] = x_line[c, i] * window[i]
    spec = np.fft.rfft(buf)  # (C, N//2+1) complex64, rocket-fft over the last axis
    for c in range(n_chirps):
        acc = np.float32(0.0)
        for k in range(k0, k1 + 1):
            v = spec[c, k]
            p = v.real * v.real + v.imag * v.imag
            if rule == 0:
                if p > acc:
                    acc = p
            else:
                acc += p
        out_line[c] = acc * scale


@njit(cache=True, nogil=True, fastmath=FASTMATH)
def power_spectrum(chirps, window):
    """(n, N) int16 chirps -> (n, N // 2 + 1) float32 |rfft(window x chirp)|^2, without the GIL (the
    rangefinder's spectra: NumPy's rfft of the same chirps kept the GIL, docs/processing.md "The GIL")."""
    n_chirps, n = chirps.shape
    buf = np.empty((n_chirps, n), np.float32)
    for c in range(n_chirps):
        for i in range(n):
            buf[c, i] = chirps[c, i] * window[i]
    spec = np.fft.rfft(buf)
    out = np.empty(spec.shape, np.float32)
    for c in range(n_chirps):
        for k in range(spec.shape[1]):
            v = spec[c, k]
            out[c, k] = v.real * v.real + v.imag * v.imag
    return out


@njit(cache=True, nogil=True, fastmath=FASTMATH)
def _range_gate_serial(if_samples, window, k0, k1, rule, scale):
    n_lines, n_chirps, n = if_samples.shape
    out = np.empty((n_lines, n_chirps), np.float32)
    buf = np.empty((n_chirps, n), np.float32)
    for line in range(n_lines):
        _gate_line(if_samples[line], window, k0, k1, rule, scale, buf, out[line])
    return out


@njit(cache=True, fastmath=FASTMATH, parallel=True)  # keeps the GIL (see range_gate)
def _range_gate_parallel(if_samples, window, k0, k1, rule, scale):
    n_lines, n_chirps, n = if_samples.shape
    out = np.empty((n_lines, n_chirps), np.float32)
    for line in prange(n_lines):
        buf = np.empty((n_chirps, n), np.float32)
        _gate_line(if_samples[line], window, k0, k1, rule, scale, buf, out[line])
    return out


# The same body as _range_gate_parallel, written twice on purpose: njit(...) of one Python function with two
# sets of flags would share Numba's on-disk cache, whose index key is the signature, the CPU and the function's
# bytecode and closure, not the flags (numba.core.caching._CacheImpl._index_key), so one variant could load
# the other's machine code.
@njit(cache=True, nogil=True, fastmath=FASTMATH, parallel=True)  # only under a thread-safe layer (range_gate)
def _range_gate_parallel_nogil(if_samples, window, k0, k1, rule, scale):
    n_lines, n_chirps, n = if_samples.shape
    out = np.empty((n_lines, n_chirps), np.float32)
    for line in prange(n_lines):
        buf = np.empty((n_chirps, n), np.float32)
        _gate_line(if_samples[line], window, k0, k1, rule, scale, buf, out[line])
    return out


def threadsafe_layer() -> str | None:
    """Numba's threading layer when it is one that several Python threads may enter at once (tbb, omp), else
    None (workqueue, or no parallel region has run yet: the layer is chosen at the first one)."""
    try:
        layer = numba.threading_layer()
    except ValueError:
        return None
    return layer if layer in ("tbb", "omp") else None


def range_gate(if_samples: np.ndarray, window: np.ndarray, k0: int, k1: int, rule: str = "peak",
               parallel: bool = False) -> np.ndarray:
    """(lines, chirps, N) int16 IF samples -> (lines, chirps) float32 power in bins k0..k1 (inclusive).

    `parallel=True` spreads lines over Numba threads. Under the `workqueue` threading layer that kernel
    keeps the GIL (the serial ones release it): workqueue aborts the process when two threads enter a
    parallel region at once, and the GIL is what serialises them. Under a thread-safe layer (`omp`, `tbb`:
    Numba picks tbb, then omp, then workqueue, whichever loads) a kernel that releases the GIL runs instead,
    from the second call on (the first parallel region is what chooses the layer).
    """
    if if_samples.ndim != 3 or if_samples.dtype != np.int16:
        raise ValueError(f"if_samples must be int16 (lines, chirps, N), got {if_samples.dtype} {if_samples.shape}")
    n = if_samples.shape[2]
    if window.shape != (n,):
        raise ValueError(f"window has shape {window.shape}, chirps have {n} samples")
    if not 0 <= k0 <= k1 <= n // 2:
        raise ValueError(f"gate bins k0={k0}, k1={k1} must satisfy 0 <= k0 <= k1 <= N/2 = {n // 2}")
    if rule not in PIXEL_RULES:
        raise ValueError(f"pixel rule {rule!r}; choose 'peak' or 'sum'")
    w = np.ascontiguousarray(window, dtype=np.float32)
    scale = np.float32(1.0 / float(w.sum()) ** 2)
    x = np.ascontiguousarray(if_samples)
    if parallel:
        kernel = _range_gate_parallel_nogil if threadsafe_layer() else _range_gate_parallel
    else:
        kernel = _range_gate_serial
    return kernel(x, w, k0, k1, PIXEL_RULES[rule], scale)

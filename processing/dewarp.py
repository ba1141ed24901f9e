"""Fast-axis de-warp: per-chirp beam positions -> samples on a uniform grid across the field of view.

The fast axis is a sinusoid x(t) = A sin(2 pi f t): chirps are evenly spaced in time, not in x.
Each line is resampled onto n_out pixel bins of pitch fov_x / n_out centred on
x_j = -fov_x/2 + (j + 1/2) pitch. Chirps whose beam position falls in a bin are averaged (this
uses every chirp, so the slow turnaround ends, with several chirps per bin, gain SNR); a bin no
chirp fell in (the fast centre moves ~1.45 mm per chirp against a 1.76 mm pitch, so rarely) is
linearly interpolated from its filled neighbours.

Turnarounds are dropped by the fill fraction: the kept span +-fov_x/2 = +-A sin(pi fill / 2) is by
construction (ScannerConfig.raster.fast_amplitude_m) the central fill fraction of the line time,
so a chirp outside +-fov_x/2, or moving against the line's direction, is discarded.

Beam positions. Chirp c of a line starts at t_c = c T_p (T_p the chirp period) and integrates
over the chirp duration T_c, so its effective time is t_c + T_c / 2. The line lag L says when the
position source (feedback or commanded waveform) shows that position: x_beam(chirp c) =
source(t_c + L), i.e. the source read at the fractional chirp index c + s, s = L / T_p.
Delayed feedback (sensor delay d): L = d + T_c / 2 (the simulator's `true_line_lag_s`);
commanded sinusoid with a servo lagging by tau (phase / omega of the 2nd-order servo):
L = T_c / 2 - tau.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit

from processing.range_gate import FASTMATH


def lag_shift_chirps(line_lag_s: float, chirp_period_s: float) -> float:
    """Fractional chirp index offset s = L / T_p at which the source gives each chirp's position."""
    if chirp_period_s <= 0:
        raise ValueError(f"chirp_period_s={chirp_period_s} must be > 0")
    return line_lag_s / chirp_period_s


@njit(cache=True, nogil=True, fastmath=FASTMATH)
def _positions_from_feedback(feedback_x, shift, gain, offset):
    n_lines, n_chirps = feedback_x.shape
    out = np.empty((n_lines, n_chirps), np.float32)
    for line in range(n_lines):
        for c in range(n_chirps):
            u = c + shift
            i0 = int(math.floor(u))
            # linear interpolation, linear extrapolation past the ends (those are turnarounds)
            if i0 < 0:
                i0 = 0
            elif i0 > n_chirps - 2:
                i0 = n_chirps - 2
            f = u - i0
            v = feedback_x[line, i0] * (1.0 - f) + feedback_x[line, i0 + 1] * f
            out[line, c] = gain * v + offset
    return out


def positions_from_feedback(feedback_x: np.ndarray, shift_chirps: float, gain: float = 1.0,
                            offset_m: float = 0.0) -> np.ndarray:
    """Beam position (m) of every chirp: gain * feedback read at chirp index c + shift_chirps + offset_m."""
    if feedback_x.ndim != 2 or feedback_x.shape[1] < 2:
        raise ValueError(f"feedback_x must be (lines, chirps >= 2), got {feedback_x.shape}")
    fb = np.ascontiguousarray(feedback_x, dtype=np.float32)
    return _positions_from_feedback(fb, float(shift_chirps), float(gain), float(offset_m))


def positions_from_feedback_reference(feedback_x: np.ndarray, shift_chirps: float, gain: float = 1.0,
                                      offset_m: float = 0.0) -> np.ndarray:
    """NumPy reference of positions_from_feedback."""
    n_chirps = feedback_x.shape[1]
    u = np.arange(n_chirps) + shift_chirps
    i0 = np.clip(np.floor(u).astype(np.int64), 0, n_chirps - 2)
    f = (u - i0).astype(np.float32)
    fb = feedback_x.astype(np.float32)
    v = fb[:, i0] * (1 - f) + fb[:, i0 + 1] * f
    return (gain * v + offset_m).astype(np.float32)


def positions_from_model(direction: np.ndarray, n_chirps: int, amplitude_m: float, line_duration_s: float,
                         chirp_period_s: float, shift_chirps: float) -> np.ndarray:
    """Beam positions (lines, chirps) from the commanded sinusoid.

    Line convention (turnaround to turnaround): a forward line (+1) runs x = -A cos(pi t / T_line)
    from -A to +A over its duration, a backward line (-1) the mirror image.
    """
    t = (np.arange(n_chirps) + shift_chirps) * chirp_period_s
    x = -amplitude_m * np.cos(np.pi * t / line_duration_s)
    return (np.asarray(direction, dtype=np.float32)[:, None] * x[None, :]).astype(np.float32)


@njit(cache=True, nogil=True, fastmath=FASTMATH)
def _dewarp(intensity, positions, direction, x_min, pitch, n_out):
    n_lines, n_chirps = intensity.shape
    out = np.zeros((n_lines, n_out), np.float32)
    acc = np.zeros(n_out, np.float64)
    cnt = np.zeros(n_out, np.int64)
    empty_lines = 0
    for line in range(n_lines):
        acc[:] = 0.0
        cnt[:] = 0
        d = direction[line]
        for c in range(n_chirps):
            cp = c + 1 if c + 1 < n_chirps else c
            cm = c - 1 if c > 0 else c
            if (positions[line, cp] - positions[line, cm]) * d <= 0.0:
                continue  # turnaround or moving against the line's direction
            u = (positions[line, c] - x_min) / pitch
            if u < 0.0 or u >= n_out:
                continue
            j = int(u)
            acc[j] += intensity[line, c]
            cnt[j] += 1
        # fill: average the filled bins, interpolate the empty ones between filled neighbours
        prev = -1
        for j in range(n_out):
            if cnt[j] > 0:
                out[line, j] = acc[j] / cnt[j]
                if prev < 0:
                    for q in range(j):
                        out[line, q] = out[line, j]
                elif j - prev > 1:
                    for q in range(prev + 1, j):
                        f = (q - prev) / (j - prev)
                        out[line, q] = out[line, prev] * (1.0 - f) + out[line, j] * f
                prev = j
        if prev < 0:
            empty_lines += 1
        else:
            for q in range(prev + 1, n_out):
                out[line, q] = out[line, prev]
    return out, empty_lines


def dewarp(intensity: np.ndarray, positions: np.ndarray, direction: np.ndarray, fov_x_m: float,
           n_out: int) -> tuple[np.ndarray, int]:
    """(lines, chirps) intensity at (lines, chirps) positions -> ((lines, n_out) frame, number of empty lines).

    Pixel j covers [-fov/2 + j pitch, -fov/2 + (j+1) pitch). A line with no valid chirp is all zero.
    """
    if intensity.shape != positions.shape or intensity.ndim != 2:
        raise ValueError(f"intensity {intensity.shape} and positions {positions.shape} must be equal (lines, chirps)")
    if direction.shape != (intensity.shape[0],):
        raise ValueError(f"direction shape {direction.shape} != ({intensity.shape[0]},)")
    if fov_x_m <= 0 or n_out < 2:
        raise ValueError(f"fov_x_m={fov_x_m} must be > 0 and n_out={n_out} >= 2")
    pitch = fov_x_m / n_out
    out, empty = _dewarp(np.ascontiguousarray(intensity, dtype=np.float32),
                         np.ascontiguousarray(positions, dtype=np.float32),
                         np.ascontiguousarray(direction, dtype=np.float32), -0.5 * fov_x_m, pitch, n_out)
    return out, int(empty)


def dewarp_reference(intensity: np.ndarray, positions: np.ndarray, direction: np.ndarray, fov_x_m: float,
                     n_out: int) -> tuple[np.ndarray, int]:
    """NumPy reference of dewarp (bincount per line, np.interp over the empty bins)."""
    pitch = fov_x_m / n_out
    n_lines = intensity.shape[0]
    out = np.zeros((n_lines, n_out), np.float32)
    nxt = np.concatenate([positions[:, 1:], positions[:, -1:]], axis=1)
    prv = np.concatenate([positions[:, :1], positions[:, :-1]], axis=1)
    moving = (nxt - prv) * direction.astype(np.float32)[:, None] > 0
    u = (positions - (-0.5 * fov_x_m)) / pitch
    ok = moving & (u >= 0) & (u < n_out)
    empty = 0
    for line in range(n_lines):
        j = u[line, ok[line]].astype(np.int64)
        if j.size == 0:
            empty += 1
            continue
        s = np.bincount(j, weights=intensity[line, ok[line]].astype(np.float64), minlength=n_out)
        n = np.bincount(j, minlength=n_out)
        filled = np.nonzero(n)[0]
        out[line] = np.interp(np.arange(n_out), filled, s[filled] / n[filled])
    return out, empty

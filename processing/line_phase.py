"""Bidirectional line phase: shift between forward and backward lines, measured and applied.

If the de-warp reads the position source at t_c + L + eps while the true line lag is L (see
processing.dewarp), every chirp is placed at x + v eps (v the signed fast-axis speed): forward lines
are drawn eps |v| to the right, backward lines eps |v| to the left, so backward rows appear shifted by
    s = -2 |v| eps / pitch   pixels relative to forward rows.
Near the line centre |v| = v0 = 2 pi f_fast A, so the lag correction is + s pitch / (2 v0) (first
order; FrameProcessor.estimate_line_lag iterates it with the exact sinusoidal positions).

The shift is measured by cross-correlating each backward row with its forward neighbours
(mean removed, Tukey-tapered), summed over the frame, peak refined by a parabola through the
three samples around the maximum, and re-measured after undoing the estimate so the parabola's
bias (which vanishes at zero shift) does not remain.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class LineShift:
    """shift_px: backward rows relative to forward rows (+ = drawn to larger x); score: normalised
    correlation at the peak (1 = identical rows); pairs: forward/backward row pairs used."""

    shift_px: float
    score: float
    pairs: int


def _tukey(n: int, alpha: float = 0.25) -> np.ndarray:
    w = np.ones(n)
    m = int(alpha * n / 2)
    if m > 0:
        r = 0.5 * (1 - np.cos(np.pi * np.arange(m) / m))
        w[:m], w[-m:] = r, r[::-1]
    return w


def shift_rows(frame: np.ndarray, rows: np.ndarray, shift_px: float) -> np.ndarray:
    """Copy of frame with the selected rows moved by shift_px pixels along x (linear interpolation, edges held)."""
    out = np.array(frame, dtype=np.float32, copy=True)
    x = np.arange(frame.shape[1], dtype=np.float64)
    for r in np.nonzero(rows)[0]:
        out[r] = np.interp(x - shift_px, x, frame[r].astype(np.float64))
    return out


def _correlate_pairs(frame: np.ndarray, direction: np.ndarray, max_shift: int) -> tuple[np.ndarray, float, int]:
    """Summed cross-correlation c[k] = sum_pairs sum_x F(x) B(x + k), k = -max_shift..max_shift."""
    n_lines, width = frame.shape
    taper = _tukey(width)
    rows = frame.astype(np.float64)
    rows = (rows - rows.mean(axis=1, keepdims=True)) * taper
    nfft = 1 << int(math.ceil(math.log2(2 * width)))
    spec = np.fft.rfft(rows, nfft, axis=1)
    acc = np.zeros(nfft)
    energy = 0.0
    pairs = 0
    for a in range(n_lines - 1):
        b = a + 1
        if direction[a] == direction[b]:
            continue
        fwd, bwd = (a, b) if direction[a] > 0 else (b, a)
        acc += np.fft.irfft(np.conj(spec[fwd]) * spec[bwd], nfft)
        energy += math.sqrt(float(np.sum(rows[fwd] ** 2) * np.sum(rows[bwd] ** 2)))
        pairs += 1
    lags = np.arange(-max_shift, max_shift + 1)
    return acc[lags % nfft], energy, pairs


def estimate_line_shift(frame: np.ndarray, direction: np.ndarray, max_shift_px: int = 40,
                        refine: int = 2) -> LineShift:
    """Measure the backward-vs-forward row shift of a de-warped frame (lines, width), sub-pixel.

    Raises ValueError when the frame has no forward/backward pair or no structure to correlate.
    """
    frame = np.asarray(frame)
    direction = np.asarray(direction)
    if frame.ndim != 2 or direction.shape != (frame.shape[0],):
        raise ValueError(f"frame {frame.shape} and direction {direction.shape} must be (lines, width) and (lines,)")
    if not np.all(np.isfinite(frame)):
        raise ValueError("frame holds NaN or inf; cannot measure the line shift")
    max_shift = int(min(max_shift_px, frame.shape[1] // 2 - 1))
    if max_shift < 1:
        raise ValueError(f"max_shift_px={max_shift_px} too small for width {frame.shape[1]}")
    total = 0.0
    score = 0.0
    pairs = 0
    work = frame.astype(np.float32)
    for it in range(refine + 1):
        c, energy, pairs = _correlate_pairs(work, direction, max_shift)
        if pairs == 0:
            raise ValueError("frame has no adjacent forward/backward line pair (is the scan bidirectional?)")
        if energy <= 0:
            raise ValueError("frame rows are flat; nothing to correlate")
        k = int(np.argmax(c))
        frac = 0.0
        if 0 < k < c.size - 1:
            den = c[k - 1] - 2 * c[k] + c[k + 1]
            if den < 0:
                frac = 0.5 * (c[k - 1] - c[k + 1]) / den
        step = (k - max_shift) + frac
        total += step
        score = float(c[k] / energy)
        if abs(step) < 1e-3 or it == refine:
            break
        back = direction < 0
        work = shift_rows(frame, back, -total)
    return LineShift(float(total), score, pairs)


def lag_correction_s(shift_px: float, pitch_m: float, centre_speed_m_s: float) -> float:
    """First-order correction (s) to add to the line lag used, from a measured shift: s pitch / (2 v0)."""
    if centre_speed_m_s <= 0:
        raise ValueError(f"centre_speed_m_s={centre_speed_m_s} must be > 0")
    return shift_px * pitch_m / (2.0 * centre_speed_m_s)

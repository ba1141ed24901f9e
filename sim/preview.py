"""A PREVIEW image former for the demo and sim's own checks (the real one lives in processing/).

Hann window, range FFT, peak power in the range gate per chirp, then each chirp's power is put in
the column of its (lag-corrected) feedback position and averaged: rows = lines, columns = `n_cols`
across the field of view. No de-warp refinement, no flat field; good enough to look at.
"""
from __future__ import annotations

import numpy as np

from thzcore.frames import RawFrame
from thzcore.scanner import ScannerConfig


def gate_bins(cfg: ScannerConfig, gate_min_m: float, gate_max_m: float) -> tuple[int, int]:
    """FFT bins [lo, hi) of the range gate: bin k <-> range R_ref + k dR."""
    lo = int(np.floor(cfg.fmcw.range_bin(gate_min_m)))
    hi = int(np.ceil(cfg.fmcw.range_bin(gate_max_m))) + 1
    return max(lo, 0), min(hi, cfg.fmcw.samples_per_chirp // 2 + 1)


def peak_in_gate(if_samples: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """Peak |FFT|^2 (Hann window) within bins [lo, hi) of each chirp: (..., N) int16 -> (...) float64."""
    n = if_samples.shape[-1]
    w = np.hanning(n + 2)[1:-1]
    spec = np.fft.rfft(if_samples.astype(np.float32) * w, axis=-1)[..., lo:hi]
    return (spec.real ** 2 + spec.imag ** 2).max(axis=-1)


def preview_image(raw: RawFrame, cfg: ScannerConfig, gate_min_m: float = 5.75, gate_max_m: float = 6.25,
                  lag_s: float = 0.0, n_cols: int = 256) -> np.ndarray:
    """(lines, n_cols) peak-in-gate power over the field of view (NaN where no chirp landed)."""
    lo, hi = gate_bins(cfg, gate_min_m, gate_max_m)
    p = peak_in_gate(raw.if_samples, lo, hi)                     # (L, C)
    shift = int(round(lag_s / cfg.chirp_period_s))
    x = np.roll(raw.feedback_x, -shift, axis=1)                   # position of the beam at each chirp
    half = 0.5 * cfg.raster.fov_x_m
    col = np.floor((x + half) / cfg.raster.fov_x_m * n_cols).astype(int)
    ok = (col >= 0) & (col < n_cols)
    if shift > 0:
        ok[:, -shift:] = False
    img = np.zeros((p.shape[0], n_cols))
    cnt = np.zeros((p.shape[0], n_cols))
    rows = np.broadcast_to(np.arange(p.shape[0])[:, None], p.shape)
    np.add.at(img, (rows[ok], col[ok]), p[ok])
    np.add.at(cnt, (rows[ok], col[ok]), 1)
    with np.errstate(invalid="ignore"):
        return img / np.where(cnt > 0, cnt, np.nan)

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


def mask_on_image(mask: np.ndarray, u0: float, v0: float, pitch: float, cfg: ScannerConfig,
                  shape: tuple[int, int]) -> np.ndarray:
    """Resample a map-grid mask (row i <-> v0 + i pitch) onto the (lines, cols) image of the field of view.

    Image row 0 is the top line (v = +fov_y/2), column 0 the left edge (u = -fov_x/2).
    """
    n_rows, n_cols = shape
    fx, fy = cfg.raster.fov_x_m, cfg.raster.fov_y_m
    u = -0.5 * fx + (np.arange(n_cols) + 0.5) * fx / n_cols
    v = 0.5 * fy - (np.arange(n_rows) + 0.5) * fy / n_rows
    j = np.clip(np.round((u - u0) / pitch).astype(int), 0, mask.shape[1] - 1)
    i = np.clip(np.round((v - v0) / pitch).astype(int), 0, mask.shape[0] - 1)
    return mask[np.ix_(i, j)]


def face_dynamic_range_db(power: np.ndarray, face_mask: np.ndarray, q: float = 90.0) -> float:
    """Face dynamic range: 10 log10(P_q / P_(100-q)) of the power (not amplitude) over the face pixels.

    With q = 90: the central 80 % of the face's pixel powers span this many dB. Fully developed
    speckle alone, averaged over 3 frames, gives 6.8 dB; the target of the design is 8.3 dB.
    """
    p = power[face_mask & np.isfinite(power)]
    if p.size < 10:
        raise ValueError(f"face mask holds {p.size} finite pixels; need at least 10")
    return float(10.0 * np.log10(np.percentile(p, q) / np.percentile(p, 100.0 - q)))

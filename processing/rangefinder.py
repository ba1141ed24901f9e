"""Subject range from the face's own echoes: is the person standing in the focus of the beam?

For the chirps aimed at the middle of the face box, the windowed range spectrum is searched for
its peak inside the range gate; a parabola through the log power of the peak bin and its two
neighbours refines it (a Hann-windowed tone's main lobe is close to a Gaussian, whose log is a
parabola), and the bin maps back to range: R = R_ref + k dR with dR = c / 2B
(thzcore.scanner.FmcwConfig.range_bin inverted). The subject range is the median over the
brightest tenth of those chirps (the face's glints; at 340 GHz most of the face returns little and
those chirps read the noise floor), `spread_m` half their inter-quartile range.

Focus (Gaussian beam, docs/scanner_physics.md): the spot grows as w(R) = w0 sqrt(1 + ((R - z_w)/z_R)^2),
so the resolution left is focus = w0 / w(R) in (0, 1]; at the edge of the depth of focus
(|R - z_w| = z_R) it is 1/sqrt(2).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from processing.range_gate import power_spectrum
from thzcore.scanner import ScannerConfig

# the part of the ROI box that holds the face, as fractions of the box (x from the left, y from the top):
# the box has a margin above the crown and reaches below the chin
FACE_X = (0.3, 0.7)
FACE_Y = (0.25, 0.7)
EDGE_BINS = 1.5  # a median peak this close to a gate edge (bins of c/2B) is reported as a bound


@dataclass(frozen=True)
class RangeEstimate:
    range_m: float    # median range of the face echoes (m)
    spread_m: float   # half the inter-quartile range of the chirps used (m)
    chirps: int       # chirps used
    focus: float      # w0 / w(range): 1 in the waist, 1/sqrt(2) at the edge of the depth of focus
    gate_edge: str | None = None  # "near" / "far": the face echoes peak at the gate's edge, so range_m is
    #                               only a bound (the subject stands at or beyond processing.gate_*_m)

    def meta(self) -> dict:
        return {"range_m": round(self.range_m, 4), "range_spread_m": round(self.spread_m, 4),
                "range_chirps": self.chirps, "focus": round(self.focus, 4), "range_gate_edge": self.gate_edge}

    def describe(self) -> str:
        where = {"near": "at or nearer than", "far": "at or beyond"}.get(self.gate_edge or "", "at")
        return f"subject {where} {self.range_m:.2f} m, focus factor {self.focus:.2f}"


def face_chirps(x_m: np.ndarray, y_m: np.ndarray, box_m: tuple[float, float, float, float]) -> np.ndarray:
    """(lines, chirps) mask of the chirps aimed at the face part of box_m = (x_left, y_top, width, height).

    x_m: (lines, chirps) beam x of each chirp; y_m: (lines,) beam y of each line (m, y up)."""
    x0, y_top, w, h = box_m
    in_x = (x_m >= x0 + FACE_X[0] * w) & (x_m <= x0 + FACE_X[1] * w)
    in_y = (y_m <= y_top - FACE_Y[0] * h) & (y_m >= y_top - FACE_Y[1] * h)
    return in_x & in_y[:, None]


def peak_bins(chirps: np.ndarray, window: np.ndarray, k0: int, k1: int) -> tuple[np.ndarray, np.ndarray]:
    """(n, N) IF samples -> fractional peak bin in [k0, k1] and its power, per chirp."""
    p = power_spectrum(np.ascontiguousarray(chirps), np.ascontiguousarray(window, dtype=np.float32))
    gate = p[:, k0:k1 + 1]
    k = np.argmax(gate, axis=1)
    peak = gate[np.arange(len(k)), k]
    kk = k + k0
    lo = np.maximum(kk - 1, 0)
    hi = np.minimum(kk + 1, p.shape[1] - 1)
    a, b, c = (np.log(np.maximum(p[np.arange(len(k)), i], 1e-30)) for i in (lo, kk, hi))
    den = a - 2.0 * b + c
    # vertex of the parabola through (-1, a), (0, b), (1, c); none at the spectrum's edges or on a flat top
    delta = np.where((den < 0) & (lo < kk) & (hi > kk), 0.5 * (a - c) / np.where(den < 0, den, -1.0), 0.0)
    return kk + np.clip(delta, -0.5, 0.5), peak


def subject_range(if_samples: np.ndarray, x_m: np.ndarray, y_m: np.ndarray, box_m: tuple[float, float, float, float],
                  window: np.ndarray, k0: int, k1: int, scanner: ScannerConfig,
                  min_chirps: int = 16) -> RangeEstimate | None:
    """The subject's range and focus from one raw frame, or None when fewer than min_chirps aim at the face."""
    mask = face_chirps(x_m, y_m, box_m)
    if int(mask.sum()) < min_chirps:
        return None
    bins, power = peak_bins(if_samples[mask], window, k0, k1)
    # the face's echoes are its glints: the brightest tenth of the box's chirps (the rest is the noise floor)
    bright = bins[power >= np.percentile(power, 90)]
    k_med = float(np.median(bright))
    # a face beyond the gate leaves only its main lobe's flank and the head's farther parts inside it:
    # a median peak within EDGE_BINS of the edge means "at or beyond", not a measurement
    edge = "near" if k_med <= k0 + EDGE_BINS else "far" if k_med >= k1 - EDGE_BINS else None
    fm = scanner.fmcw
    ranges = fm.range_of_beat(bright * fm.bin_hz)  # R = R_ref + k f_s/N c / (2 S): range_bin inverted
    q1, med, q3 = np.percentile(ranges, [25, 50, 75])
    o = scanner.optics
    focus = 1.0 / math.sqrt(1.0 + ((med - o.waist_range_m) / o.rayleigh_range_m) ** 2)
    return RangeEstimate(float(med), float(0.5 * (q3 - q1)), int(len(bright)), focus, edge)

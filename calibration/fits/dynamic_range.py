"""SNR and dynamic range in dB of power, from images of linear power.

Every dB here is of *power*: 10 log10(P1 / P0). For amplitudes A ~ sqrt(P) the same number is
20 log10(A1 / A0); a figure quoted as '10 log10 of an amplitude ratio' would be half as large.

    SNR         = 10 log10((<P_ref> - <P_empty>) / <P_empty>)   reference plate over the empty-scene floor
    stability   = 10 log10(<P_ref> / std(P_ref))                pixel-to-pixel (speckle, gain) scatter on the plate
    DR(face)    = 10 log10(P_hi / P_lo), P_hi, P_lo the `hi_pct` and `lo_pct` percentiles of the power over the face

The percentiles keep single speckle spikes and dead pixels from setting the range.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from calibration.values import Measured

DB_PER_NEPER_POWER = 10.0 / math.log(10.0)  # d(10 log10 P) = 4.343 dP / P


def to_linear_power(image: np.ndarray, scale: str) -> np.ndarray:
    """A processed frame in 'db' (10 log10 power) or 'linear' (power) -> linear power (float64)."""
    a = np.asarray(image, dtype=np.float64)
    if scale == "db":
        return np.power(10.0, a / 10.0)
    if scale == "linear":
        return a
    raise ValueError(f"image scale {scale!r}: expected 'db' or 'linear'")


@dataclass(frozen=True)
class SnrResult:
    snr_db: Measured
    signal_power: Measured       # mean power on the reference (linear, processor units)
    floor_power: Measured        # mean power of the empty scene
    stability_db: Measured
    n_signal: int
    n_floor: int


def _mean_sem(a: np.ndarray) -> tuple[float, float]:
    a = a[np.isfinite(a)]
    if a.size == 0:
        raise ValueError("no finite pixels to average")
    sem = float(a.std(ddof=1) / math.sqrt(a.size)) if a.size > 1 else 0.0
    return float(a.mean()), sem


def measure_snr(signal_power: np.ndarray, empty_power: np.ndarray) -> SnrResult:
    """SNR of a reference reflector over the empty scene; both arrays of linear power (any shape).

    Uncertainty: standard errors of the two means propagated to dB (first order).
    """
    s = np.asarray(signal_power, dtype=np.float64).ravel()
    n = np.asarray(empty_power, dtype=np.float64).ravel()
    if np.any(s[np.isfinite(s)] < 0) or np.any(n[np.isfinite(n)] < 0):
        raise ValueError("measure_snr needs linear power (>= 0); convert dB images with to_linear_power")
    ms, ss = _mean_sem(s)
    mn, sn = _mean_sem(n)
    if mn <= 0:
        raise ValueError(f"empty-scene mean power is {mn}; the noise floor must be > 0")
    excess = ms - mn
    if excess <= 0:  # no signal above the floor: report a sentinel far below any spec (JSON has no -inf)
        snr = Measured.of(-99.0, 0.0, "dB")
    else:
        rel = math.sqrt((math.hypot(ss, sn) / excess) ** 2 + (sn / mn) ** 2)
        snr = Measured.of(10 * math.log10(excess / mn), DB_PER_NEPER_POWER * rel, "dB")
    s_fin = s[np.isfinite(s)]
    sd = float(s_fin.std(ddof=1)) if s_fin.size > 1 else 0.0
    stab = 10 * math.log10(ms / sd) if sd > 0 and ms > 0 else math.inf
    # std of a std estimate ~ sd / sqrt(2(n-1)) -> in dB
    stab_u = DB_PER_NEPER_POWER / math.sqrt(2 * max(s_fin.size - 1, 1))
    return SnrResult(snr_db=snr, signal_power=Measured.of(ms, ss), floor_power=Measured.of(mn, sn),
                     stability_db=Measured.of(stab if math.isfinite(stab) else 99.0, stab_u, "dB"),
                     n_signal=int(s_fin.size), n_floor=int(np.isfinite(n).sum()))


def dynamic_range_db(power: np.ndarray, mask: np.ndarray | None = None, lo_pct: float = 1.0,
                     hi_pct: float = 99.0, n_boot: int = 200, seed: int = 0) -> Measured:
    """10 log10(P_hi / P_lo) over the pixels in `mask` (all when None), with a bootstrap 1-sigma."""
    if not (0 <= lo_pct < hi_pct <= 100):
        raise ValueError(f"percentiles must satisfy 0 <= lo_pct < hi_pct <= 100, got {lo_pct=}, {hi_pct=}")
    p = np.asarray(power, dtype=np.float64)
    if mask is not None:
        m = np.asarray(mask, dtype=bool)
        if m.shape != p.shape:
            raise ValueError(f"mask shape {m.shape} differs from the image shape {p.shape}")
        p = p[m]
    p = p[np.isfinite(p)].ravel()
    if p.size < 4:
        raise ValueError(f"dynamic range needs at least 4 finite pixels, got {p.size}")
    if np.any(p <= 0):
        raise ValueError("dynamic range needs power > 0 (linear power, not dB)")

    def dr(a: np.ndarray) -> float:
        lo, hi = np.percentile(a, [lo_pct, hi_pct])
        return 10 * math.log10(hi / lo)

    rng = np.random.default_rng(seed)
    boot = [dr(p[rng.integers(0, p.size, p.size)]) for _ in range(n_boot)]
    return Measured.of(dr(p), float(np.std(boot, ddof=1)) if n_boot > 1 else 0.0, "dB")

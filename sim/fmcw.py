"""FMCW beat synthesis: the dechirped IF samples a digitizer returns for each chirp.

A reflector at range R, mixed with the reference delayed to R_ref, gives the real beat

    s[n] = a cos(2 pi f_b n / f_s + phi),   f_b = 2 S (R - R_ref) / c,   phi = 4 pi f_c (R - R_ref) / c

with S = B / T_c the chirp slope, n = 0..N-1 and f_s the IF sample rate. In FFT bins of N samples
f_b / (f_s / N) = (R - R_ref) / dR, dR = c / (2 B): one bin per range cell.

The receiver that turns these tones into ADC samples (IF filter, gain drift, leakage with phase
noise, thermal noise, quantisation) is one kernel, sim.receiver.receive.
"""
from __future__ import annotations

import numpy as np

from thzcore.scanner import SPEED_OF_LIGHT


def beat_cycles_per_sample(range_m: np.ndarray | float, slope_hz_per_s: float, reference_range_m: float,
                           sample_rate_hz: float) -> np.ndarray | float:
    """f_b / f_s = 2 S (R - R_ref) / (c f_s)."""
    return 2.0 * slope_hz_per_s * (np.asarray(range_m) - reference_range_m) / (SPEED_OF_LIGHT * sample_rate_hz)

"""The receiver chain in one kernel: tones -> IF filter -> gain drift -> leakage with phase noise -> thermal -> ADC.

For chirp c (start time t_c = c T_p, T_p the chirp period) and IF sample n = 0..N-1:

    x[c, n] = G_c ( sum_k H(f_k) a_k cos(2 pi f_k n + phi_k)                      scene tones (f in cycles/sample)
                    + a_L [cos(theta_c + 2 pi f_L n) - eps_c[n] sin(theta_c + 2 pi f_L n)] )   leakage, small-angle
              + sigma_th z_th[c, n]                                                thermal (ADC counts)
    y[c, n] = clip(floor(x[c, n] + 1/2), -adc_max - 1, adc_max)                   ADC

    H(f)     = (1 + (|f| / f_corner)^(2 order))^(-1/2)       anti-alias low-pass of the IF chain
    G_c      = counts_per_amp 10^(delta(t_c) / 20),  delta(t) = sum_m A_m sin(2 pi F_m t + P_m)  (dB)
    theta_c  = theta_0 + 0.1 z_c                              leakage phase of chirp c (rad)
    eps_c[n] = sigma_pn sum_{i=1..n} z_pn[c, i]               random-walk phase noise, eps_c[0] = 0

The z are unit-variance draws generated in registers instead of read from stored banks: every chirp
has its own xorshift64 stream (13, 7, 17; shifts and xors only, so it vectorises on AVX2 as on
AVX-512), seeded by SplitMix64's output function of (frame key, chirp index) and stepped once per
sample. Of each 64-bit state, four 12-bit fields summed (Irwin-Hall) and shaped by y = z (a + b z^2)
give the thermal draw: unit variance and the Gaussian kurtosis 3 exactly, |y| <= 4.06; bits 4..15
give a uniform phase-noise increment of unit variance (the walk of 1..127 such steps is Gaussian
to the central limit; its variance sigma_pn^2 n and its 1/f^2 spectrum are those of Gaussian steps).
The draws depend only on (key, c, n): a frame is the same whatever the order, thread or process
that computes it, and any chirp can be computed alone. The key is drawn per frame from the
scanner's (seed, frame_id, scene) generator.

Evaluation: chirps are processed in blocks of 32 lanes so that the sample recurrences (the Chebyshev
recurrence of each tone, the phase-noise walk, the generator) vectorise across chirps; tones whose
amplitude is zero in a whole block are skipped. Tones run in float64 (the Chebyshev recurrence
loses n eps / sin(2 pi f) of relative accuracy near f = 0, too much for float32 at 14 bits). Sines
of the phases come from a polynomial (Cody-Waite reduction to [-pi/4, pi/4], Taylor to degree 14)
that vectorises. `receive_reference` is the independent NumPy form of the same equations (direct
cosines, cumulative sums), used by the tests.

References: Steele, Lea, Flood, "Fast splittable pseudorandom number generators", OOPSLA 2014
(SplitMix64); Marsaglia, "Xorshift RNGs", J. Stat. Software 8(14), 2003; Salmon et al., "Parallel
random numbers: as easy as 1, 2, 3", SC 2011 (streams keyed by counters).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from numba import njit

# fastmath without `nnan`/`ninf`: NaN and inf must survive to be detected downstream
FASTMATH = {"nsz", "arcp", "contract", "afn", "reassoc"}
LEAK_PHASE_JITTER_RAD = 0.1   # rms chirp-to-chirp jitter of the leakage phase (rad)
GAIN_DRIFT_TERMS = 6          # sinusoids in the gain drift
_LANES = 32                   # chirps per block (vector lanes of the recurrences)
_GAMMA = 0x9E3779B97F4A7C15   # SplitMix64 golden gamma
_M1 = 0xBF58476D1CE4E5B9
_M2 = 0x94D049BB133111EB


# Irwin-Hall sum of four 12-bit uniforms (0..4095 each): mean 4 x 4095 / 2, variance 4 (4096^2 - 1) / 12;
# the cubic y = z (a + b z^2) of the standardised sum has unit variance and the Gaussian kurtosis 3
# (solved on the exact distribution; tests/sim/test_receiver.py checks both): sixth moment 14.46
# (Gaussian 15), P(|y| > 2) = 4.74 % (4.55 %), P(|y| > 3) = 0.24 % (0.27 %), |y| <= 4.06.
_IH_MEAN = 8190.0
_IH_INV_SD = 1.0 / math.sqrt(4.0 * (4096.0**2 - 1.0) / 12.0)
_CF_A = 0.949035512891906
_CF_B = 0.018641509399469864
_U_MEAN = 2047.5
_U_INV_SD = 1.0 / math.sqrt((4096.0**2 - 1.0) / 12.0)


# ---------------------------------------------------------------- the generator
@njit(inline="always", nogil=True)
def _mix64(z):
    """SplitMix64 output function (a bijection of uint64 with full avalanche)."""
    z = (z ^ (z >> np.uint64(30))) * np.uint64(_M1)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(_M2)
    return z ^ (z >> np.uint64(31))


@njit(inline="always", nogil=True)
def _seed(key, counter):
    """Nonzero xorshift state of stream `counter` of a key (SplitMix64 seeding)."""
    return _mix64(key + np.uint64(counter + 1) * np.uint64(_GAMMA)) | np.uint64(1)


@njit(inline="always", nogil=True)
def _step(s):
    """xorshift64 (13, 7, 17): period 2^64 - 1, only shifts and xors, so it vectorises on any x86-64."""
    s ^= s << np.uint64(13)
    s ^= s >> np.uint64(7)
    s ^= s << np.uint64(17)
    return s


@njit(inline="always", nogil=True, fastmath=FASTMATH)
def _normal(s):
    """Unit Gaussian from the top 48 bits of s: four 12-bit uniforms summed (Irwin-Hall), then y = z (a + b z^2)."""
    m = np.uint64(0xFFF)
    t = ((s >> np.uint64(52)) & m) + ((s >> np.uint64(40)) & m) + ((s >> np.uint64(28)) & m) + ((s >> np.uint64(16)) & m)
    z = (np.float64(np.int64(t)) - _IH_MEAN) * _IH_INV_SD
    return z * (_CF_A + _CF_B * z * z)


@njit(inline="always", nogil=True, fastmath=FASTMATH)
def _uniform(s):
    """Zero-mean, unit-variance uniform from bits 4..15 of s (the phase-noise increments)."""
    return (np.float64(np.int64((s >> np.uint64(4)) & np.uint64(0xFFF))) - _U_MEAN) * _U_INV_SD


@njit(cache=True, nogil=True)
def _draws(key, n_chirps, n_samples):
    th = np.empty((n_chirps, n_samples))
    pn = np.empty((n_chirps, n_samples))
    lk = np.empty(n_chirps)
    for c in range(n_chirps):
        s = _seed(key, c)
        lk[c] = _normal(s)
        for n in range(n_samples):
            s = _step(s)
            th[c, n] = _normal(s)
            pn[c, n] = _uniform(s)
    return th, pn, lk


def noise_draws(key: int, n_chirps: int, n_samples: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The unit-variance draws of a key: thermal (C, N), phase-noise increments (C, N), leakage phase (C,).

    Chirp c's stream starts from the SplitMix64 hash of (key, c) and steps a xorshift64 generator once
    per sample; the top 48 bits give the thermal draw (`_normal`), bits 4..15 the phase-noise increment
    (`_uniform`; the increment of sample 0 is not used: eps[0] = 0); the seed itself gives the chirp's
    leakage phase jitter (`_normal`).
    """
    return _draws(np.uint64(key), int(n_chirps), int(n_samples))


def _mix64_np(z: np.ndarray) -> np.ndarray:
    z = z.astype(np.uint64)
    with np.errstate(over="ignore"):
        z = (z ^ (z >> np.uint64(30))) * np.uint64(_M1)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(_M2)
    return z ^ (z >> np.uint64(31))


def _normal_np(s: np.ndarray) -> np.ndarray:
    m = np.uint64(0xFFF)
    t = sum(((s >> np.uint64(k)) & m).astype(np.int64) for k in (52, 40, 28, 16))
    z = (t - _IH_MEAN) * _IH_INV_SD
    return z * (_CF_A + _CF_B * z * z)


def _draws_reference(key: int, n_chirps: int, n_samples: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """NumPy form of noise_draws."""
    with np.errstate(over="ignore"):
        s = _mix64_np(np.uint64(key) + (np.arange(n_chirps, dtype=np.uint64) + np.uint64(1)) * np.uint64(_GAMMA))
    s = s | np.uint64(1)
    lk = _normal_np(s)
    th = np.empty((n_chirps, n_samples))
    pn = np.empty((n_chirps, n_samples))
    for n in range(n_samples):
        s = s ^ (s << np.uint64(13))
        s = s ^ (s >> np.uint64(7))
        s = s ^ (s << np.uint64(17))
        th[:, n] = _normal_np(s)
        pn[:, n] = (((s >> np.uint64(4)) & np.uint64(0xFFF)).astype(np.int64) - _U_MEAN) * _U_INV_SD
    return th, pn, lk


# ---------------------------------------------------------------- per-frame draws
@dataclass(frozen=True)
class FrameDraws:
    """The random quantities of one frame's receiver: generator key, gain-drift sinusoids, leakage phase.

    gain_db, gain_hz, gain_phase: (M,) amplitude (dB), frequency (Hz) and phase (rad) of the drift terms;
    the amplitudes are normalised so that the drift has rms gain_drift_db over many frames.
    """

    key: int
    gain_db: np.ndarray
    gain_hz: np.ndarray
    gain_phase: np.ndarray
    leak_phase_rad: float

    @classmethod
    def draw(cls, rng: np.random.Generator, noise: Any) -> "FrameDraws":
        """Draw from the frame's generator; `noise` is a sim.config.NoiseConfig."""
        m = GAIN_DRIFT_TERMS
        f = rng.uniform(0.05, 1.0, m) * noise.gain_drift_hz
        ph = rng.uniform(0, 2 * math.pi, m)
        a = rng.standard_normal(m)
        a *= noise.gain_drift_db * math.sqrt(2.0) / math.sqrt(float((a * a).sum()))
        theta0 = float(rng.uniform(0, 2 * math.pi))
        key = int(rng.integers(0, 2**64, dtype=np.uint64))
        return cls(key, a, f, ph, theta0)

    @classmethod
    def none(cls) -> "FrameDraws":
        z = np.zeros(0)
        return cls(0, z, z, z, 0.0)


def gain_drift_db(t: np.ndarray, draws: FrameDraws) -> np.ndarray:
    """delta(t) = sum_m A_m sin(2 pi F_m t + P_m) in dB (NumPy, for tests and references)."""
    t = np.asarray(t, dtype=np.float64)
    if draws.gain_db.size == 0:
        return np.zeros(t.shape)
    return (draws.gain_db * np.sin(2 * math.pi * t[..., None] * draws.gain_hz + draws.gain_phase)).sum(axis=-1)


# ---------------------------------------------------------------- the kernel
_INV_FACT = [1.0 / math.factorial(i) for i in range(16)]
_PIO2_HI = 1.5707963267341256       # pi/2 split for the Cody-Waite reduction
_PIO2_LO = 6.077100506506192e-11
_TWO_OVER_PI = 2.0 / math.pi
_S3, _S5, _S7, _S9, _S11, _S13 = (-_INV_FACT[3], _INV_FACT[5], -_INV_FACT[7], _INV_FACT[9], -_INV_FACT[11],
                                  _INV_FACT[13])
_C2, _C4, _C6, _C8, _C10, _C12, _C14 = (-_INV_FACT[2], _INV_FACT[4], -_INV_FACT[6], _INV_FACT[8], -_INV_FACT[10],
                                        _INV_FACT[12], -_INV_FACT[14])


@njit(inline="always", nogil=True, fastmath=FASTMATH)
def _sincos(x):
    """(sin x, cos x), branch-free so that loops over it vectorise; |error| < 3e-15 for |x| < 1e4."""
    k = math.floor(x * _TWO_OVER_PI + 0.5)
    r = (x - k * _PIO2_HI) - k * _PIO2_LO
    r2 = r * r
    s = r + r * r2 * (_S3 + r2 * (_S5 + r2 * (_S7 + r2 * (_S9 + r2 * (_S11 + r2 * _S13)))))
    c = 1.0 + r2 * (_C2 + r2 * (_C4 + r2 * (_C6 + r2 * (_C8 + r2 * (_C10 + r2 * (_C12 + r2 * _C14))))))
    q = int(k) & 3
    swap = q & 1
    sign_s = 1.0 - 2.0 * ((q >> 1) & 1)
    sign_c = 1.0 - 2.0 * (((q + 1) >> 1) & 1)
    sn = sign_s * (c if swap else s)
    cs = sign_c * (s if swap else c)
    return sn, cs


@njit(cache=True, nogil=True, fastmath=FASTMATH)
def _receive(amp_t, phase_t, cyc_t, if_corner, if_order, chirp_period, gd_db, gd_hz, gd_phase,
             leak_amp, leak_cyc, leak_phase0, leak_jitter, pn_sigma, th_sigma, key,
             counts_per_amp, adc_max, quantise, out):
    """Fill out (C, N) with the receiver's samples (see the module docstring); tones given as (K, C)."""
    n_tones, n_chirps = amp_t.shape
    n_samp = out.shape[1]
    two_pi = 2.0 * math.pi
    lo = -adc_max - 1.0
    hi = float(adc_max)
    ukey = np.uint64(key)
    n_gd = gd_db.shape[0]
    db_to_ln = math.log(10.0) / 20.0
    noisy = th_sigma != 0.0 or (leak_amp != 0.0 and pn_sigma != 0.0)
    inv_corner = 1.0 / if_corner if if_corner > 0.0 else 0.0
    # leakage carrier a_L cos/sin(2 pi f_L n), the same for every chirp
    lc = np.empty(n_samp)
    ls = np.empty(n_samp)
    for n in range(n_samp):
        sn, cn = _sincos(two_pi * leak_cyc * n)
        lc[n] = leak_amp * cn
        ls[n] = leak_amp * sn
    acc = np.empty((n_samp, _LANES))
    q = np.empty((n_samp, _LANES))
    ab = np.empty(_LANES)
    s0 = np.empty(_LANES)
    s1 = np.empty(_LANES)
    tw = np.empty(_LANES)
    g = np.empty(_LANES)
    cth = np.empty(_LANES)
    sth = np.empty(_LANES)
    eps = np.empty(_LANES)
    st = np.empty(_LANES, np.uint64)
    gs = np.empty(n_gd)
    gc = np.empty(n_gd)
    rs = np.empty(n_gd)
    rc = np.empty(n_gd)
    for m in range(n_gd):
        rs[m], rc[m] = _sincos(two_pi * gd_hz[m] * chirp_period)
    for c0 in range(0, n_chirps, _LANES):
        nl = min(_LANES, n_chirps - c0)
        # ---- scene tones: Chebyshev recurrence s_{n+1} = 2 cos(w) s_n - s_{n-1}, lanes = chirps
        for n in range(n_samp):
            for j in range(_LANES):
                acc[n, j] = 0.0
        for k in range(n_tones):
            tot = 0.0
            for j in range(nl):
                a = amp_t[k, c0 + j]
                if inv_corner > 0.0:   # IF low-pass |H| = (1 + (f / f_corner)^(2 order))^(-1/2)
                    x = cyc_t[k, c0 + j] * inv_corner
                    x = x * x
                    xp = 1.0
                    for _ in range(if_order):
                        xp *= x
                    a = a / math.sqrt(1.0 + xp)
                ab[j] = a
                tot += abs(a)
            if tot == 0.0:
                continue                       # a tone missing from the whole block
            for j in range(nl):
                sp, cp = _sincos(phase_t[k, c0 + j])
                sw, cw = _sincos(two_pi * cyc_t[k, c0 + j])
                s0[j] = ab[j] * cp
                s1[j] = ab[j] * (cp * cw - sp * sw)
                tw[j] = 2.0 * cw
            for j in range(nl):
                acc[0, j] += s0[j]
            n = 1
            if n_samp > 1:
                for j in range(nl):
                    acc[1, j] += s1[j]
                n = 2
            # four samples per pass: the state is loaded and stored once per four samples
            while n + 3 < n_samp:
                for j in range(nl):
                    t2 = tw[j]
                    a0 = s0[j]
                    a1 = s1[j]
                    a2 = t2 * a1 - a0
                    a3 = t2 * a2 - a1
                    a4 = t2 * a3 - a2
                    a5 = t2 * a4 - a3
                    acc[n, j] += a2
                    acc[n + 1, j] += a3
                    acc[n + 2, j] += a4
                    acc[n + 3, j] += a5
                    s0[j] = a4
                    s1[j] = a5
                n += 4
            while n < n_samp:
                for j in range(nl):
                    a2 = tw[j] * s1[j] - s0[j]
                    acc[n, j] += a2
                    s0[j] = s1[j]
                    s1[j] = a2
                n += 1
        # ---- per chirp: gain drift (rotated from the block's first chirp), generator state, leakage phase
        for m in range(n_gd):
            gs[m], gc[m] = _sincos(two_pi * gd_hz[m] * (c0 * chirp_period) + gd_phase[m])
        for j in range(nl):
            d = 0.0
            for m in range(n_gd):
                d += gd_db[m] * gs[m]
                s_new = gs[m] * rc[m] + gc[m] * rs[m]
                gc[m] = gc[m] * rc[m] - gs[m] * rs[m]
                gs[m] = s_new
            g[j] = counts_per_amp * math.exp(d * db_to_ln)
            eps[j] = 0.0
            st[j] = _seed(ukey, c0 + j)
        for j in range(nl):
            sth[j], cth[j] = _sincos(leak_phase0 + leak_jitter * _normal(st[j]))
        # ---- leakage with the phase-noise walk, gain, thermal noise; lanes = chirps
        if noisy:
            for n in range(n_samp):
                w_pn = pn_sigma if n > 0 else 0.0
                for j in range(nl):
                    s = _step(st[j])
                    st[j] = s
                    e = eps[j] + w_pn * _uniform(s)
                    eps[j] = e
                    cl = cth[j] * lc[n] - sth[j] * ls[n]
                    sl = sth[j] * lc[n] + cth[j] * ls[n]
                    q[n, j] = g[j] * (acc[n, j] + cl - e * sl) + th_sigma * _normal(s)
        else:
            for n in range(n_samp):
                for j in range(nl):
                    q[n, j] = g[j] * (acc[n, j] + cth[j] * lc[n] - sth[j] * ls[n])
        # ---- ADC: round to the nearest count, clip at full scale
        if quantise:
            for n in range(n_samp):
                for j in range(nl):
                    q[n, j] = min(max(math.floor(q[n, j] + 0.5), lo), hi)
        for j in range(nl):
            for n in range(n_samp):
                out[c0 + j, n] = q[n, j]


def receive(amp: np.ndarray, phase: np.ndarray, cyc: np.ndarray, n_samples: int, counts_per_amp: float,
            adc_max: int, *, noise: Any = None, draws: FrameDraws | None = None, leak_cyc: float = 0.0,
            chirp_period_s: float = 0.0, if_filter: tuple[float, int] | None = None,
            quantise: bool = True) -> np.ndarray:
    """IF samples of C chirps from their scene tones: one call of the receiver kernel.

    amp, phase, cyc: (C, K) tone amplitude (flat plate in the waist = 1), phase at n = 0 (rad) and beat
                     (cycles/sample); a zero amplitude is a missing tone (K = 2..8 is typical)
    noise:           sim.config.NoiseConfig (leakage_amplitude, phase_noise_rad, gain_drift_db,
                     thermal_counts are used); None = a noiseless receiver with unit gain
    draws:           this frame's FrameDraws (required when noise is given)
    leak_cyc:        beat of the leakage tone (cycles/sample); chirp_period_s: T_p, for the gain drift
    if_filter:       (corner in cycles/sample, order) of the IF low-pass, None = none
    returns (C, n_samples) int16 ADC counts clipped to [-adc_max - 1, adc_max], or float32 before the
    ADC when quantise is False.
    """
    amp = np.ascontiguousarray(amp, dtype=np.float64)
    phase = np.ascontiguousarray(phase, dtype=np.float64)
    cyc = np.ascontiguousarray(cyc, dtype=np.float64)
    if amp.ndim != 2 or amp.shape != phase.shape or amp.shape != cyc.shape:
        raise ValueError(f"amp, phase, cyc must be equal (C, K) arrays, got {amp.shape}, {phase.shape}, {cyc.shape}")
    if n_samples < 1:
        raise ValueError(f"{n_samples=} must be >= 1")
    if not 1 <= adc_max <= 32767:
        raise ValueError(f"{adc_max=} must be in 1..32767 (int16 samples)")
    corner, order = (0.0, 0) if if_filter is None else (float(if_filter[0]), int(if_filter[1]))
    if if_filter is not None and not (corner > 0 and order >= 1):
        raise ValueError(f"{if_filter=} must be (corner > 0 cycles/sample, order >= 1)")
    if noise is None:
        draws = FrameDraws.none()
        leak_amp = pn = th = 0.0
    else:
        if draws is None:
            raise ValueError("receive(noise=...) needs the frame's draws (FrameDraws.draw(rng, noise))")
        leak_amp, pn, th = float(noise.leakage_amplitude), float(noise.phase_noise_rad), float(noise.thermal_counts)
    gd = draws.gain_db if noise is not None and noise.gain_drift_db != 0 else np.zeros(0)
    out = np.empty((amp.shape[0], int(n_samples)), np.int16 if quantise else np.float32)
    _receive(np.ascontiguousarray(amp.T), np.ascontiguousarray(phase.T), np.ascontiguousarray(cyc.T), corner, order,
             float(chirp_period_s),
             np.ascontiguousarray(gd, np.float64), np.ascontiguousarray(draws.gain_hz[:gd.size], np.float64),
             np.ascontiguousarray(draws.gain_phase[:gd.size], np.float64),
             leak_amp, float(leak_cyc), float(draws.leak_phase_rad), LEAK_PHASE_JITTER_RAD, pn, th,
             np.uint64(draws.key), float(counts_per_amp), int(adc_max),
             bool(quantise), out)
    return out


def receive_reference(amp: np.ndarray, phase: np.ndarray, cyc: np.ndarray, n_samples: int, counts_per_amp: float,
                      adc_max: int, *, noise: Any = None, draws: FrameDraws | None = None, leak_cyc: float = 0.0,
                      chirp_period_s: float = 0.0, if_filter: tuple[float, int] | None = None,
                      quantise: bool = True) -> np.ndarray:
    """NumPy reference of `receive` (same arguments and draws; direct cosines, cumulative sums)."""
    amp, phase, cyc = (np.asarray(a, dtype=np.float64) for a in (amp, phase, cyc))
    n_c = amp.shape[0]
    n = np.arange(n_samples)
    a = amp if if_filter is None else amp / np.sqrt(1.0 + (np.abs(cyc) / if_filter[0]) ** (2 * if_filter[1]))
    x = np.einsum("ck,ckn->cn", a, np.cos(2 * np.pi * cyc[..., None] * n + phase[..., None]))
    gain = np.full(n_c, float(counts_per_amp))
    th = np.zeros((n_c, n_samples))
    if noise is not None:
        assert draws is not None
        z_th, z_pn, z_lk = _draws_reference(draws.key, n_c, n_samples)
        if noise.gain_drift_db != 0:
            gain = gain * 10.0 ** (gain_drift_db(np.arange(n_c) * chirp_period_s, draws) / 20.0)
        if noise.leakage_amplitude != 0:
            theta = draws.leak_phase_rad + LEAK_PHASE_JITTER_RAD * z_lk
            arg = theta[:, None] + 2 * np.pi * leak_cyc * n
            z_pn[:, 0] = 0.0
            eps = noise.phase_noise_rad * np.cumsum(z_pn, axis=1)
            x = x + noise.leakage_amplitude * (np.cos(arg) - eps * np.sin(arg))
        th = noise.thermal_counts * z_th
    v = gain[:, None] * x + th
    if not quantise:
        return v.astype(np.float32)
    return np.clip(np.floor(v + 0.5), -adc_max - 1, adc_max).astype(np.int16)

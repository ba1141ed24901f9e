"""Galvo dynamics: the commanded raster, the second-order servo response, the sampled trajectory.

Each axis is a second-order servo from command u(t) to position x(t) (metres at the standoff):

    x'' + 2 zeta omega_n x' + omega_n^2 x = omega_n^2 u(t)

For the sinusoidal fast axis u = A sin(omega t) the steady state lags by the phase
phi = atan2(2 zeta r, 1 - r^2), r = omega / omega_n, i.e. by the time phi / omega, and its gain is
|H| = 1 / sqrt((1 - r^2)^2 + (2 zeta r)^2). The slow axis is a sawtooth whose flyback excites a
decaying transient at the start of each frame.

The ODE is discretised exactly for a command that is piecewise linear between time steps
(first-order hold, via the matrix exponential of the augmented system), so the lag of the
simulated trajectory matches the analytic phase to the step's interpolation error.

A frame's raster response (`raster_response`) starts from rest at the command's value a run-in
before the frame, and both commands are functions of the time since the frame start: the
response is the same for every frame of a drive, so it is computed once per (drive, servo) and
only shifted by the frame's start time.
"""
from __future__ import annotations

import functools
import math

import numpy as np
from numba import njit
from scipy.linalg import expm


def servo_phase_lag_s(freq_hz: float, natural_hz: float, damping: float) -> float:
    """Steady-state time lag phi / omega of the 2nd-order servo at `freq_hz` (s)."""
    r = freq_hz / natural_hz
    return math.atan2(2.0 * damping * r, 1.0 - r * r) / (2.0 * math.pi * freq_hz)


def servo_gain(freq_hz: float, natural_hz: float, damping: float) -> float:
    """|H(j omega)| of the 2nd-order servo."""
    r = freq_hz / natural_hz
    return 1.0 / math.sqrt((1.0 - r * r) ** 2 + (2.0 * damping * r) ** 2)


@functools.lru_cache(maxsize=32)
def foh_matrices(natural_hz: float, damping: float, dt_s: float) -> np.ndarray:
    """(2, 4) matrix M so that [x, v]_{k+1} = M @ [x_k, v_k, u_k, (u_{k+1} - u_k)/dt].

    Augmented state [x, v, u, u'] with u' constant over the step; exact for piecewise-linear u.
    """
    if natural_hz <= 0 or damping <= 0 or dt_s <= 0:
        raise ValueError(f"servo needs natural_hz>0, damping>0, dt>0; got {natural_hz=}, {damping=}, {dt_s=}")
    wn = 2.0 * math.pi * natural_hz
    a = np.zeros((4, 4))
    a[0, 1] = 1.0
    a[1, 0] = -wn * wn
    a[1, 1] = -2.0 * damping * wn
    a[1, 2] = wn * wn
    a[2, 3] = 1.0
    e = expm(a * dt_s)
    return np.ascontiguousarray(e[:2, :])


@njit(cache=True, nogil=True)
def _servo_run(m: np.ndarray, u: np.ndarray, dt: float, x0: float, v0: float) -> np.ndarray:
    """Run the FOH-discretised servo over the command samples u (K,), returning positions (K,)."""
    k_n = u.shape[0]
    out = np.empty(k_n)
    x = x0
    v = v0
    out[0] = x
    for k in range(k_n - 1):
        du = (u[k + 1] - u[k]) / dt
        xn = m[0, 0] * x + m[0, 1] * v + m[0, 2] * u[k] + m[0, 3] * du
        vn = m[1, 0] * x + m[1, 1] * v + m[1, 2] * u[k] + m[1, 3] * du
        x = xn
        v = vn
        out[k + 1] = x
    return out


def simulate_servo(u: np.ndarray, dt_s: float, natural_hz: float, damping: float,
                   x0: float | None = None, v0: float = 0.0) -> np.ndarray:
    """Positions of the servo driven by command samples u (spacing dt_s), starting at rest at x0 (default u[0])."""
    u = np.ascontiguousarray(u, dtype=np.float64)
    if u.ndim != 1 or u.size < 2:
        raise ValueError(f"command must be 1-D with >= 2 samples, got shape {u.shape}")
    m = foh_matrices(natural_hz, damping, dt_s)
    return _servo_run(m, u, dt_s, float(u[0] if x0 is None else x0), float(v0))


@functools.lru_cache(maxsize=4)
def raster_response(fast_amplitude: float, fast_offset: float, fast_hz: float, slow_amplitude: float,
                    slow_offset: float, slow_hz: float, natural_hz: float, damping: float, duration_s: float,
                    dt_s: float, warmup_s: float) -> tuple[np.ndarray, np.ndarray]:
    """True (x, y) mirror positions of one frame on t = -warmup_s + k dt_s (time from the frame start).

    Both axes start at rest at their command's value warmup_s before the frame. Cached (a few drives,
    3 MB each at the defaults); the arrays are read-only.
    """
    n_t = int(math.ceil((warmup_s + duration_s) / dt_s)) + 1
    tt = -warmup_s + dt_s * np.arange(n_t)
    x = simulate_servo(fast_command(tt, fast_amplitude, fast_offset, fast_hz, 0.0), dt_s, natural_hz, damping)
    y = simulate_servo(slow_command(tt, slow_amplitude, slow_offset, slow_hz, 0.0), dt_s, natural_hz, damping)
    x.setflags(write=False)
    y.setflags(write=False)
    return x, y


def fast_command(t: np.ndarray, amplitude: float, offset: float, freq_hz: float, t_frame: float) -> np.ndarray:
    """Fast-axis command: a sinusoid that starts each frame at its left turnaround (x = offset - A).

    u(t) = offset + A sin(2 pi f (t - t_frame) - pi/2): even lines sweep forward (+x), odd backward.
    """
    return offset + amplitude * np.sin(2.0 * math.pi * freq_hz * (t - t_frame) - 0.5 * math.pi)


def slow_command(t: np.ndarray, amplitude: float, offset: float, freq_hz: float, t_frame: float) -> np.ndarray:
    """Slow-axis command: a sawtooth from offset + A (top, line 0) down to offset - A, flyback at frame start."""
    phase = np.mod((t - t_frame) * freq_hz, 1.0)
    return offset + amplitude * (1.0 - 2.0 * phase)


@njit(cache=True, nogil=True)
def interp_uniform(t: np.ndarray, t0: float, dt: float, x: np.ndarray) -> np.ndarray:
    """Linear interpolation of samples x (spacing dt from t0) at times t (clamped at the ends)."""
    out = np.empty(t.shape[0])
    n = x.shape[0]
    for i in range(t.shape[0]):
        f = (t[i] - t0) / dt
        if f <= 0.0:
            out[i] = x[0]
            continue
        k = int(f)
        if k >= n - 1:
            out[i] = x[n - 1]
            continue
        a = f - k
        out[i] = (1.0 - a) * x[k] + a * x[k + 1]
    return out

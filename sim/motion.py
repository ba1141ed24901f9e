"""Micro-motion of a standing subject between frames: postural sway of the head.

A person asked to stand still sways: the centre of pressure under the feet wanders by a few
millimetres (rms) at frequencies below ~1 Hz, and the head follows the body (head and
centre-of-pressure sway correlate: Sakaguchi et al., Auris Nasus Larynx 22 (1995) 151; COP sway
amplitudes and frequencies in quiet stance: Sarabon et al., J Sports Sci Med 9 (2010) 431). An
inverted pendulum of ~1 m turning a few millimetres is a few tenths of a degree; the head adds its
own small turns. Frames are 1 s apart, so consecutive frames see the head moved by tenths of a
millimetre and rotated by a fraction of a degree: at 340 GHz (two-way phase 2k = 14.3 rad/mm, and a
specular lobe of theta0 / 2 ~ 1 degree) that changes how the glints interfere, which is why
consecutive real frames differ and why averaging three of them helps.

Each coordinate is a sum of M random sinusoids (frequencies uniform in [0.05, 1] x the band,
random phases, amplitudes scaled to the configured rms), drawn from the capture's seed: a
continuous, deterministic function of time, so frame k of a capture always sees the same pose.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

_M = 5


@dataclass(frozen=True)
class Sway:
    """Head pose offsets from the capture pose as functions of time (s)."""

    freq_hz: np.ndarray      # (5, M): yaw, pitch, x, y, z
    phase: np.ndarray        # (5, M)
    amp: np.ndarray          # (5, M), rad for yaw/pitch, m for x/y/z

    @staticmethod
    def draw(seed: int, rotation_rms_deg: float, position_rms_m: float, band_hz: float) -> "Sway":
        rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, 0x5A4])
        f = rng.uniform(0.05, 1.0, (5, _M)) * band_hz
        ph = rng.uniform(0.0, 2.0 * math.pi, (5, _M))
        a = rng.standard_normal((5, _M))
        rms = np.array([math.radians(rotation_rms_deg)] * 2 + [position_rms_m] * 3)
        # sum of sinusoids a_i sin(...): mean square = sum a_i^2 / 2
        a *= (rms * math.sqrt(2.0) / np.sqrt((a * a).sum(axis=1)))[:, None]
        return Sway(f, ph, a)

    def at(self, t_s: float) -> tuple[float, float, float, float, float]:
        """(yaw rad, pitch rad, dx m, dy m, dz m) at time t."""
        v = (self.amp * np.sin(2.0 * math.pi * self.freq_hz * t_s + self.phase)).sum(axis=1)
        return float(v[0]), float(v[1]), float(v[2]), float(v[3]), float(v[4])

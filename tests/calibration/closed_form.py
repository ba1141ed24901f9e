"""A closed-form measurement source for the procedure tests, independent of the sim package.

Frames come from processing.synthetic.make_raw_frame (a tone per chirp whose amplitude is the
target's response at the beam position, exact servo lag and feedback delay, Gaussian noise).
The responses are the Gaussian-beam closed forms with w = w(z) (sim/beam.py's detection model):
  knife edge  A_m * 1/2 [1 + erf(sqrt2 (x - x_e) / w)]       (metal for x > x_e; or along y)
  point       A_p * exp(-2 r^2 / w^2)
  grid        sum of point responses at origin + k pitch
  plate       A_m (uniform)
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy.special import erf

from calibration.sources.base import scaled_fast_axis
from processing.synthetic import make_raw_frame
from thzcore.scanner import ScannerConfig


class ClosedFormSource:
    source_kind = "sim"
    description = "closed-form frames (tests/calibration/closed_form.py)"

    def __init__(self, scanner: ScannerConfig, w0_m: float = 0.0075, waist_range_m: float = 6.0,
                 feedback_delay_s: float = 50e-6, noise_counts: float = 20.0, metal_counts: float = 3000.0,
                 point_counts: float = 1500.0, feedback_scale: float = 1.0, seed: int = 0) -> None:
        self._base = self._scanner = scanner
        self.w0, self.z_w = w0_m, waist_range_m
        self.delay, self.noise = feedback_delay_s, noise_counts
        self.metal, self.point = metal_counts, point_counts
        self.feedback_scale = feedback_scale   # the position sensor reads feedback_scale x the true position
        self.seed = seed
        self.scene: dict[str, Any] | None = None
        self.frame_no = 0
        self.frames_made = 0

    @property
    def scanner(self) -> ScannerConfig:
        return self._scanner

    def w(self, z: float) -> float:
        zr = math.pi * self.w0**2 / self._scanner.optics.wavelength_m
        return self.w0 * math.sqrt(1 + ((z - self.z_w) / zr) ** 2)

    def place(self, scene):
        self.scene = scene

    def set_fast_amplitude(self, scale):
        self._scanner = self._base if scale == 1.0 else scaled_fast_axis(self._base, scale)
        return self._scanner

    def truth(self):
        zr = math.pi * self.w0**2 / self._scanner.optics.wavelength_m
        # processing's line lag L: the feedback read at t_c + L gives the beam of the chirp starting at
        # t_c; the sensor is `delay` late and the chirp integrates to its middle: L = d + T_c / 2
        lag = self.delay + 0.5 * self._scanner.fmcw.chirp_duration_s
        return {"w0_m": self.w0, "waist_range_m": self.z_w, "rayleigh_range_m": zr,
                "line_lag_s": lag, "noise_counts": self.noise, "feedback_scale": self.feedback_scale}

    def _reflectivity(self):
        s = self.scene
        if s is None:
            return None, lambda x, y: np.zeros_like(x)
        z = s["range_m"]
        w = self.w(z)
        ox, oy = s.get("offset_x_m", 0.0), s.get("offset_y_m", 0.0)
        k = s["kind"]
        if k == "knife_edge":
            if s.get("edge_axis", "x") == "x":
                return z, lambda x, y: self.metal * 0.5 * (1 + erf(math.sqrt(2) * (x - ox) / w))
            return z, lambda x, y: self.metal * 0.5 * (1 + erf(math.sqrt(2) * (y - oy) / w))
        if k == "point":
            return z, lambda x, y: self.point * np.exp(-2 * ((x - ox) ** 2 + (y - oy) ** 2) / w**2)
        if k == "plate":
            return z, lambda x, y: np.full_like(x, self.metal)
        if k == "grid":
            p = s.get("grid_pitch_m", 0.05)

            def grid(x, y):
                # nearest node only (pitch >> w): exp(-2 r^2/w^2) of the distance to it
                dx = x - ox - np.round((x - ox) / p) * p
                dy = y - oy - np.round((y - oy) / p) * p
                return self.point * np.exp(-2 * (dx**2 + dy**2) / w**2)
            return z, grid
        raise ValueError(f"closed-form source has no scene {k!r}")

    def acquire(self, n):
        z, refl = self._reflectivity()
        out = []
        for _ in range(n):
            raw = make_raw_frame(self._scanner, refl, range_m=z, amplitude=1.0, servo_lag_s=0.0,
                                 feedback_delay_s=self.delay, noise_counts=self.noise,
                                 seed=self.seed * 100003 + self.frame_no, frame_id=self.frame_no)
            raw.feedback_x = (raw.feedback_x * self.feedback_scale).astype(np.float32)
            out.append(raw)
            self.frame_no += 1
            self.frames_made += 1
        return out

    def close(self):
        pass

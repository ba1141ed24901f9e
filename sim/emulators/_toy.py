"""TEMPORARY stand-in for sim.scanner.VirtualScanner until it lands (same API, trivial frames)."""
from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np

from thzcore.frames import RawFrame


@dataclass(frozen=True)
class RasterDrive:
    fast_amplitude_m: float
    fast_offset_m: float
    fast_hz: float
    slow_amplitude_m: float
    slow_offset_m: float
    slow_hz: float


class VirtualScanner:
    def __init__(self, scanner_cfg, sim_cfg, seed):
        self.cfg, self.seed, self.scene = scanner_cfg, seed, None

    def set_scene(self, scene):
        self.scene = scene

    def set_noise(self, **kw):
        pass

    def set_beam(self, **kw):
        pass

    def acquire_frame(self, frame_id, drive):
        lines, chirps, samples = self.cfg.raw_frame_shape
        rng = np.random.default_rng([self.seed, frame_id])
        n = np.arange(samples)
        tone = (2000 * np.cos(2 * np.pi * 0.1 * n)).astype(np.int16)
        ifs = (rng.integers(-50, 50, (lines, chirps, samples)) + tone).astype(np.int16)
        t = (np.arange(lines)[:, None] + np.arange(chirps)[None, :] / chirps) / (2 * drive.fast_hz)
        fx = (drive.fast_offset_m + drive.fast_amplitude_m * np.sin(2 * math.pi * drive.fast_hz * t - math.pi / 2))
        fy = drive.slow_offset_m + drive.slow_amplitude_m * (1 - 2 * (np.arange(lines) + 0.5) / lines)
        d = np.where(np.arange(lines) % 2 == 0, 1, -1).astype(np.int8)
        return RawFrame(frame_id, time.time(), self.cfg.scanner_id, ifs, fx.astype(np.float32),
                        fy.astype(np.float32), d, {})

"""FrameProcessor: raw FMCW frame -> de-warped, phase-corrected, averaged (lines x 256) intensity frame.

Steps per raw frame (kernels in range_gate.py and dewarp.py, each with a NumPy reference):
  1. range gate    (lines, chirps, N) int16 -> (lines, chirps) power in the gate (peak or sum)
  2. positions     per-chirp beam position from feedback (gain, offset, lag) or the commanded sinusoid
  3. de-warp       -> (lines, samples_per_line) power on a uniform grid across fov_x
  4. flat field    (P - background) / flat_field, when the calibration has them
Then `average` takes the mean linear power of N frames and `to_scale` gives dB (10 log10 of
power + floor) or linear power.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Sequence

import numba
import numpy as np

from processing.calibration_model import ProcessingCalibration
from processing.config import ProcessingConfig
from processing.dewarp import (dewarp, dewarp_reference, lag_shift_chirps, positions_from_feedback,
                               positions_from_feedback_reference, positions_from_model)
from processing.line_phase import LineShift, estimate_line_shift, lag_correction_s
from processing.range_gate import gate_bins, make_window, range_gate, range_gate_reference, threadsafe_layer
from thzcore.frames import RawFrame
from thzcore.logs import get_logger
from thzcore.scanner import ScannerConfig

log = get_logger(__name__)


@dataclass
class ProcessedFrame:
    """A processed frame. power: (lines, samples_per_line) float32 linear power (ADC counts^2),
    image: the same in the configured output scale ('db' = 10 log10(power + floor), or 'linear').
    Rows are lines (slow axis, top = first line), columns the fast axis from -fov_x/2 to +fov_x/2."""

    frame_ids: list[int]
    t_acquired: float
    scanner_id: str
    power: np.ndarray
    image: np.ndarray
    scale: str
    direction: np.ndarray
    calibration_id: str | None
    empty_lines: int = 0
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def frame_id(self) -> int:
        return self.frame_ids[-1]

    @property
    def n_averaged(self) -> int:
        return len(self.frame_ids)

    def header_meta(self) -> dict[str, Any]:
        """JSON-able facts for the wire header and recordings."""
        m: dict[str, Any] = {"frame_ids": list(self.frame_ids), "n_averaged": self.n_averaged,
                             "calibration_id": self.calibration_id, "scale": self.scale,
                             "empty_lines": self.empty_lines}
        if "truth" in self.meta:
            m["truth"] = self.meta["truth"]
        t_complete = self.meta.get("t_complete")  # scan complete of the newest frame averaged (acquisition)
        if isinstance(t_complete, (int, float)) and not isinstance(t_complete, bool):
            m["timestamps"] = {"scan_complete": float(t_complete)}
        return m


class FrameProcessor:
    """Processes raw frames of one scanner configuration. With `threads != 1` under Numba's `workqueue`
    threading layer, call it from one Python thread only (range_gate.range_gate: its parallel kernel then
    keeps the GIL); under `omp` or `tbb` any thread may."""

    def __init__(self, scanner: ScannerConfig, config: ProcessingConfig | None = None,
                 calibration: ProcessingCalibration | None = None, calibration_dir: str | None = None) -> None:
        self.scanner = scanner
        self.config = config or ProcessingConfig()
        self.calibration = calibration
        cfg, fm, ra = self.config, scanner.fmcw, scanner.raster
        if calibration is not None and calibration.scanner_id != scanner.scanner_id:
            raise ValueError(f"calibration {calibration.calibration_id} is for scanner {calibration.scanner_id!r}, "
                             f"not {scanner.scanner_id!r}")
        gmin, gmax = cfg.gate_min_m, cfg.gate_max_m
        if calibration is not None and calibration.gate_min_m is not None:
            gmin, gmax = calibration.gate_min_m, calibration.gate_max_m  # type: ignore[assignment]
        self.gate_m = (gmin, gmax)
        self.k0, self.k1 = gate_bins(fm, gmin, gmax)
        self.window = make_window(cfg.window, fm.samples_per_chirp)
        if calibration is not None and calibration.line_lag_s is not None:
            self.line_lag_s = calibration.line_lag_s
        elif cfg.line_lag_s is not None:
            self.line_lag_s = cfg.line_lag_s
        else:
            half_chirp = 0.5 * fm.chirp_duration_s
            self.line_lag_s = (ra.feedback_delay_s + half_chirp if cfg.position_source == "feedback"
                               else half_chirp - ra.servo_lag_s)
        self.gain = calibration.feedback_gain if calibration is not None else 1.0
        self.offset_m = calibration.feedback_offset_m if calibration is not None else 0.0
        self.background, self.flat_field = (calibration.load_arrays(calibration_dir) if calibration is not None
                                            else (None, None))
        out_shape = (ra.lines_per_frame, ra.samples_per_line)
        for name, arr in (("background", self.background), ("flat_field", self.flat_field)):
            if arr is not None and arr.shape != out_shape:
                raise ValueError(f"calibration {calibration.calibration_id}: {name} shape {arr.shape} "  # type: ignore[union-attr]
                                 f"!= frame shape {out_shape}")
        self.parallel = cfg.threads != 1
        if self.parallel:
            n_max = numba.config.NUMBA_NUM_THREADS
            numba.set_num_threads(min(cfg.threads, n_max) if cfg.threads else n_max)

    # ---- derived facts
    @property
    def calibration_id(self) -> str | None:
        return self.calibration.calibration_id if self.calibration is not None else None

    @property
    def centre_speed_m_s(self) -> float:
        """Fast-axis beam speed at the line centre, v0 = 2 pi f_fast A (m/s)."""
        return 2.0 * math.pi * self.scanner.raster.fast_axis_hz * self.scanner.raster.fast_amplitude_m

    def shift_chirps(self, line_lag_s: float | None = None) -> float:
        lag = self.line_lag_s if line_lag_s is None else line_lag_s
        return lag_shift_chirps(lag, self.scanner.chirp_period_s)

    # ---- steps
    def _check(self, raw: RawFrame) -> None:
        n = self.scanner.fmcw.samples_per_chirp
        if raw.if_samples.shape[2] != n:
            raise ValueError(f"frame {raw.frame_id}: {raw.if_samples.shape[2]} samples per chirp, "
                             f"scanner.fmcw.samples_per_chirp is {n}")
        if raw.if_samples.dtype != np.int16:
            raise ValueError(f"frame {raw.frame_id}: if_samples dtype {raw.if_samples.dtype}, expected int16")

    def positions(self, raw: RawFrame, line_lag_s: float | None = None, reference: bool = False) -> np.ndarray:
        """Beam position (m) of each chirp of the frame."""
        s = self.shift_chirps(line_lag_s)
        if self.config.position_source == "model":
            ra = self.scanner.raster
            return positions_from_model(raw.direction, raw.if_samples.shape[1], ra.fast_amplitude_m,
                                        ra.line_duration_s, self.scanner.chirp_period_s, s)
        f = positions_from_feedback_reference if reference else positions_from_feedback
        return f(raw.feedback_x, s, self.gain, self.offset_m)

    def chirp_power(self, raw: RawFrame, reference: bool = False) -> np.ndarray:
        """(lines, chirps) gated power."""
        self._check(raw)
        if reference:
            return range_gate_reference(raw.if_samples, self.window, self.k0, self.k1, self.config.pixel_rule)
        return self.gate(raw.if_samples)

    def gate(self, if_samples: np.ndarray) -> np.ndarray:
        """(lines, chirps) gated power of any run of lines (int16 (lines, chirps, N)): each chirp is gated on
        its own, so the parts of a frame give the whole frame's values."""
        return range_gate(if_samples, self.window, self.k0, self.k1, self.config.pixel_rule, self.parallel)

    def power(self, raw: RawFrame, line_lag_s: float | None = None, reference: bool = False,
              chirp_power: np.ndarray | None = None) -> tuple[np.ndarray, int]:
        """(lines, samples_per_line) linear power of one frame after de-warp and flat field, and empty lines."""
        p = self.chirp_power(raw, reference) if chirp_power is None else chirp_power
        x = self.positions(raw, line_lag_s, reference)
        ra = self.scanner.raster
        f = dewarp_reference if reference else dewarp
        img, empty = f(p, x, raw.direction.astype(np.float32), ra.fov_x_m, ra.samples_per_line)
        if self.background is not None and img.shape == self.background.shape:
            img = img - self.background
        if self.flat_field is not None and img.shape == self.flat_field.shape:
            img = img / self.flat_field
        return img.astype(np.float32, copy=False), empty

    def to_scale(self, power: np.ndarray) -> np.ndarray:
        if self.config.output_scale == "linear":
            return power.astype(np.float32, copy=True)
        return (10.0 * np.log10(np.maximum(power, 0.0) + self.config.power_floor)).astype(np.float32)

    # ---- public API
    def process(self, raw: RawFrame, reference: bool = False, chirp_power: np.ndarray | None = None) -> ProcessedFrame:
        """One raw frame -> one ProcessedFrame (n_averaged = 1); `chirp_power`: its gated power when already
        computed (from the parts streamed during the scan)."""
        pw, empty = self.power(raw, reference=reference, chirp_power=chirp_power)
        if empty:
            log.warning("lines without a valid chirp (check feedback and line lag)",
                        extra={"frame_id": raw.frame_id, "empty_lines": empty})
        return ProcessedFrame([int(raw.frame_id)], float(raw.t_acquired), raw.scanner_id, pw, self.to_scale(pw),
                              self.config.output_scale, raw.direction.copy(), self.calibration_id, empty,
                              dict(raw.meta))

    def average(self, frames: Sequence[RawFrame | ProcessedFrame]) -> ProcessedFrame:
        """Mean linear power of several frames (raw ones are processed first); ids and count recorded."""
        if len(frames) == 0:
            raise ValueError("average needs at least one frame")
        done = [f if isinstance(f, ProcessedFrame) else self.process(f) for f in frames]
        shapes = {d.power.shape for d in done}
        if len(shapes) != 1:
            raise ValueError(f"cannot average frames of different shapes {sorted(shapes)}")
        pw = np.mean(np.stack([d.power for d in done]), axis=0).astype(np.float32)
        ids = [i for d in done for i in d.frame_ids]
        last = done[-1]
        return ProcessedFrame(ids, last.t_acquired, last.scanner_id, pw, self.to_scale(pw), self.config.output_scale,
                              last.direction, self.calibration_id, sum(d.empty_lines for d in done), dict(last.meta))

    def estimate_line_lag(self, raw: RawFrame | Sequence[RawFrame], iterations: int = 4,
                          start_lag_s: float | None = None, max_shift_px: int = 40) -> tuple[float, LineShift]:
        """Estimate the line lag (s) from scans: de-warp with a trial lag, measure the forward/backward
        shift, correct the lag by -s pitch / (2 v0), repeat. Returns (lag_s, residual shift)."""
        raws = [raw] if isinstance(raw, RawFrame) else list(raw)
        if not raws:
            raise ValueError("estimate_line_lag needs at least one frame")
        powers = [self.chirp_power(r) for r in raws]
        lag = self.line_lag_s if start_lag_s is None else float(start_lag_s)
        pitch = self.scanner.raster.pixel_pitch_x_m
        res = LineShift(0.0, 0.0, 0)
        for _ in range(max(1, iterations)):
            img = np.mean([self.power(r, lag, chirp_power=p)[0] for r, p in zip(raws, powers)], axis=0)
            res = estimate_line_shift(10.0 * np.log10(img + self.config.power_floor), raws[0].direction,
                                      max_shift_px)
            lag += lag_correction_s(res.shift_px, pitch, self.centre_speed_m_s)
            if abs(res.shift_px) < 0.02:
                break
        return lag, res

    def warm_up(self) -> float:
        """Compile (or load from the Numba cache) every kernel on a tiny frame; returns seconds spent."""
        t0 = time.perf_counter()
        n = self.scanner.fmcw.samples_per_chirp
        lines, chirps = 2, 16
        fb = np.tile(np.linspace(-0.3, 0.3, chirps, dtype=np.float32), (lines, 1))
        fb[1] = fb[1][::-1]
        tiny = RawFrame(-1, 0.0, self.scanner.scanner_id, np.zeros((lines, chirps, n), np.int16), fb,
                        np.zeros(lines, np.float32), np.array([1, -1], np.int8))
        p = self.chirp_power(tiny)
        if self.parallel:
            p = self.chirp_power(tiny)   # the first parallel region chose the threading layer: its kernel now
        ra = self.scanner.raster
        dewarp(p, self.positions(tiny), tiny.direction.astype(np.float32), ra.fov_x_m, ra.samples_per_line)
        dt = time.perf_counter() - t0
        log.info("processing kernels ready", extra={"warm_up_s": round(dt, 3), "parallel": self.parallel,
                                                    "threading_layer": threadsafe_layer() or "workqueue or none"
                                                    if self.parallel else None})
        return dt

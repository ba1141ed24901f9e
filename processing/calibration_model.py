"""The calibration values processing applies (ProcessingCalibration); no Numba import, so the
calibration store can read and write these records cheaply.

Applied by FrameProcessor as:
  beam position   x(chirp starting at t_c) = feedback_gain * feedback(t_c + line_lag_s) + feedback_offset_m
  range gate      gate_min_m / gate_max_m replace the config's gate when set
  flat field      P' = (P - background) / flat_field   (linear power, per 64x256 pixel, before averaging)
"""
from __future__ import annotations

import hashlib
import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class ProcessingCalibration(BaseModel):
    """One versioned set of processing calibration values. Arrays are (lines, samples_per_line) of
    linear power, given inline (lists) or as a path to a `.npy` file (read with allow_pickle=False);
    a relative path is resolved against the directory passed to `load_arrays`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    calibration_id: str = Field(min_length=1, description="unique id named by every frame processed with it")
    created: str = Field(default_factory=_now, description="ISO 8601 creation time (UTC)")
    scanner_id: str = Field(min_length=1, description="scanner the values were measured on")
    line_lag_s: float | None = Field(
        None, description="time after a chirp start at which the position source gives its beam position (s); "
                    "see ProcessingConfig.line_lag_s")
    gate_min_m: float | None = Field(None, gt=0, description="override of processing.gate_min_m (m)")
    gate_max_m: float | None = Field(None, gt=0, description="override of processing.gate_max_m (m)")
    feedback_gain: float = Field(1.0, gt=0, description="true position per feedback metre (m/m)")
    feedback_offset_m: float = Field(0.0, description="true position at zero feedback (m)")
    background: list[list[float]] | str | None = Field(
        None, description="background power subtracted per pixel: inline rows or a .npy path")
    flat_field: list[list[float]] | str | None = Field(
        None, description="per-pixel gain (1 = nominal) the power is divided by: inline rows or a .npy path")
    notes: dict[str, Any] = Field(default_factory=dict, description="how the values were measured")

    @model_validator(mode="after")
    def _gate(self) -> "ProcessingCalibration":
        if (self.gate_min_m is None) != (self.gate_max_m is None):
            raise ValueError("set both gate_min_m and gate_max_m, or neither")
        if self.gate_min_m is not None and self.gate_max_m <= self.gate_min_m:  # type: ignore[operator]
            raise ValueError(f"gate_max_m={self.gate_max_m} must exceed gate_min_m={self.gate_min_m}")
        return self

    def _array(self, value: list[list[float]] | str | None, name: str, base_dir: Path | None) -> np.ndarray | None:
        if value is None:
            return None
        if isinstance(value, str):
            p = Path(value)
            if not p.is_absolute() and base_dir is not None:
                p = base_dir / p
            if not p.is_file():
                raise FileNotFoundError(f"calibration {self.calibration_id}: {name} file {str(p)!r} not found")
            arr = np.load(p, allow_pickle=False)
        else:
            arr = np.asarray(value, dtype=np.float64)
        if arr.ndim != 2 or not np.all(np.isfinite(arr)):
            raise ValueError(f"calibration {self.calibration_id}: {name} must be a finite 2-D array, "
                             f"got shape {arr.shape}")
        if name == "flat_field" and np.any(arr <= 0):
            raise ValueError(f"calibration {self.calibration_id}: flat_field must be > 0 everywhere")
        return arr.astype(np.float32)

    def load_arrays(self, base_dir: str | Path | None = None) -> tuple[np.ndarray | None, np.ndarray | None]:
        """(background, flat_field) as float32 arrays or None."""
        b = Path(base_dir) if base_dir is not None else None
        return self._array(self.background, "background", b), self._array(self.flat_field, "flat_field", b)

    def content_hash(self) -> str:
        """sha256 (16 hex digits) of the record's JSON, for stores that version records by content."""
        return hashlib.sha256(json.dumps(self.model_dump(mode="json"), sort_keys=True).encode()).hexdigest()[:16]

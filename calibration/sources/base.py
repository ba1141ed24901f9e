"""The measurement source seam: where the calibration procedures get raw frames of a placed target.

A source places a scene (a calibration target or a head phantom, as the JSON the emulator
backdoor takes, or None for an empty scene), scans frames, and can change the fast-axis
amplitude for the lag table. Implementations:

  DaemonSource      the real acquisition daemon and drivers talking to the device emulators
                    (sim) or the hardware; targets placed through the emulator backdoor
  VirtualSource     sim.scanner.VirtualScanner in-process (no transports), for quick runs

`open_source(settings, kind)` builds one; procedures only use the protocol below.
"""
from __future__ import annotations

import math
from typing import Any, Protocol, runtime_checkable

from thzcore.frames import RawFrame
from thzcore.scanner import ScannerConfig


@runtime_checkable
class MeasurementSource(Protocol):
    source_kind: str                # "sim" or "hardware"
    description: str                # what frames pass through, for the report

    @property
    def scanner(self) -> ScannerConfig:
        """The scanner configuration the frames are taken with (changes with set_fast_amplitude)."""

    def place(self, scene: dict[str, Any] | None) -> None:
        """Put a target / phantom (Target or Subject as a JSON dict) in front of the scanner, None = empty."""

    def acquire(self, n_frames: int) -> list[RawFrame]:
        """The next n complete frames of the scene placed last."""

    def set_fast_amplitude(self, scale: float) -> ScannerConfig:
        """Scan the fast axis at `scale` x the operating amplitude (1.0 restores it); returns the config."""

    def truth(self) -> dict[str, Any]:
        """The simulator's true values (beam waist, lag, noise); empty for hardware."""

    def close(self) -> None:
        ...


def scaled_fast_axis(scanner: ScannerConfig, scale: float) -> ScannerConfig:
    """The scanner with the fast-axis amplitude times `scale`: fov_x scales with it (A = fov_x / 2 / sin(pi fill / 2))."""
    if not (scale > 0 and math.isfinite(scale)):
        raise ValueError(f"fast-axis amplitude scale={scale!r} must be a positive number")
    d = scanner.model_dump()
    d["raster"]["fov_x_m"] = scanner.raster.fov_x_m * scale
    return ScannerConfig.model_validate(d)  # refuses an amplitude above raster.max_fast_amplitude_m

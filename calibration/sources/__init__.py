"""Where the calibration procedures get raw frames of a placed target (the protocol: sources/base.py)."""
from __future__ import annotations

from typing import Any, Callable

from calibration.config import CalibrationSettings
from calibration.sources.base import MeasurementSource


def open_source(settings: CalibrationSettings, sim: bool = True, direct: bool = False, seed: int | None = None,
                ask: Callable[[str, dict[str, Any] | None], None] | None = None) -> MeasurementSource:
    """The measurement source `thz calibrate` uses.

    sim and not direct: the device emulators behind the real daemon and drivers (DaemonSource);
    sim and direct: the virtual scanner in-process (VirtualSource); not sim: the configured
    hardware (HardwareSource), which calls `ask(message, scene)` to have each target placed.
    """
    if not sim:
        from calibration.sources.daemon import HardwareSource
        if ask is None:
            raise ValueError("measuring the hardware needs ask(message, scene): someone must place each target")
        return HardwareSource(settings, ask)
    if direct:
        from calibration.sources.virtual import VirtualSource
        return VirtualSource(settings, seed=seed)
    from calibration.sources.daemon import DaemonSource
    return DaemonSource(settings, seed=seed)


__all__ = ["MeasurementSource", "open_source"]

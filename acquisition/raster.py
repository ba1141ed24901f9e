"""Raster plan: the per-axis galvo commands of a scan, in metres at the standoff plane, and their limits (pure).

Geometry. The fast axis X runs x(t) = x0 + A_x sin(2 pi f_x t); the slow axis Y is a sawtooth of
half amplitude A_y = fov_y / 2 at f_y = one frame per period. The controller takes optical scan
angles; a point x at the standoff D is reached at theta = atan(x / D), so the conversion between
metres and drive units is a callable (`optical_angle_mapping`) passed to the driver, not baked in.

Limits. An axis command is allowed when |offset| + amplitude <= the axis limit (scanner.raster
max_*_amplitude_m) and 0 < f <= the axis frequency limit (acquisition.galvo_max_*_hz). A command
that breaks one is refused on the host with GalvoLimitError naming the value and never sent.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

from acquisition.config import AcquisitionConfig
from acquisition.galvo_protocol import AXES, WAVEFORMS, GalvoLimitError
from thzcore.scanner import ScannerConfig

Mapping = Callable[[float], float]


@dataclass(frozen=True)
class AxisLimits:
    max_excursion_m: float  # |offset| + amplitude, at the standoff plane (m)
    max_hz: float           # highest frequency (Hz)


@dataclass(frozen=True)
class GalvoLimits:
    x: AxisLimits
    y: AxisLimits

    @classmethod
    def from_config(cls, scanner: ScannerConfig, acq: AcquisitionConfig) -> "GalvoLimits":
        r = scanner.raster
        return cls(AxisLimits(r.max_fast_amplitude_m, acq.galvo_max_fast_hz),
                   AxisLimits(r.max_slow_amplitude_m, acq.galvo_max_slow_hz))

    def axis(self, axis: str) -> AxisLimits:
        return self.x if axis == "X" else self.y


@dataclass(frozen=True)
class AxisCommand:
    """One axis' motion: waveform, half amplitude (m), offset (m) and frequency (Hz) at the standoff plane."""

    axis: str
    waveform: str
    amplitude_m: float
    offset_m: float
    frequency_hz: float

    def __post_init__(self) -> None:
        if self.axis not in AXES:
            raise ValueError(f"axis={self.axis!r}: expected one of {AXES}")
        if self.waveform not in WAVEFORMS:
            raise ValueError(f"waveform={self.waveform!r}: expected one of {WAVEFORMS}")
        for name in ("amplitude_m", "offset_m", "frequency_hz"):
            v = getattr(self, name)
            if not math.isfinite(v):
                raise ValueError(f"{self.axis} {name}={v!r} is not finite")


def check_axis(cmd: AxisCommand, limits: GalvoLimits, to_drive: Mapping | None = None) -> None:
    """Raise GalvoLimitError naming the value if `cmd` would drive the axis outside its limits.

    With `to_drive` (metres -> drive units) the excursion is also checked in drive units, where the
    controller adds offset and amplitude: atan is concave, so atan(a) + atan(b) > atan(a + b) and a
    command just inside the limit in metres can reach beyond it in angle.
    """
    lim = limits.axis(cmd.axis)
    if cmd.amplitude_m < 0:
        raise GalvoLimitError(f"{cmd.axis} amplitude_m={cmd.amplitude_m} is negative")
    excursion = abs(cmd.offset_m) + cmd.amplitude_m
    if excursion > lim.max_excursion_m * (1 + 1e-9):
        raise GalvoLimitError(
            f"{cmd.axis} |offset_m|+amplitude_m = {abs(cmd.offset_m)}+{cmd.amplitude_m} = {excursion:.4f} m exceeds "
            f"the axis limit {lim.max_excursion_m} m (scanner.raster.max_{'fast' if cmd.axis == 'X' else 'slow'}"
            "_amplitude_m); the command was not sent")
    if to_drive is not None:
        reach = to_drive(abs(cmd.offset_m)) + to_drive(cmd.amplitude_m)
        if reach > to_drive(lim.max_excursion_m):
            raise GalvoLimitError(
                f"{cmd.axis} offset {cmd.offset_m} m + amplitude {cmd.amplitude_m} m reach {reach:.5f} drive units, "
                f"beyond the limit {to_drive(lim.max_excursion_m):.5f} ({lim.max_excursion_m} m); the command was "
                "not sent")
    if cmd.waveform != "DC" and not (0 < cmd.frequency_hz <= lim.max_hz):
        raise GalvoLimitError(
            f"{cmd.axis} frequency_hz={cmd.frequency_hz} is outside (0, {lim.max_hz}] Hz "
            f"(acquisition.galvo_max_{'fast' if cmd.axis == 'X' else 'slow'}_hz); the command was not sent")


def check_position(axis: str, position_m: float, limits: GalvoLimits) -> None:
    """A static position (park) must lie within the axis excursion limit."""
    lim = limits.axis(axis)
    if not math.isfinite(position_m) or abs(position_m) > lim.max_excursion_m:
        raise GalvoLimitError(f"{axis} position {position_m} m is outside +-{lim.max_excursion_m} m; not sent")


@dataclass(frozen=True)
class RasterPlan:
    """The two axis commands of a raster scan and the park position (m at the standoff plane)."""

    fast: AxisCommand
    slow: AxisCommand
    park_x_m: float = 0.0
    park_y_m: float = 0.0

    @classmethod
    def from_config(cls, scanner: ScannerConfig, acq: AcquisitionConfig) -> "RasterPlan":
        r = scanner.raster
        return cls(
            AxisCommand("X", "SINE", r.fast_amplitude_m, acq.fast_offset_m, r.fast_axis_hz),
            AxisCommand("Y", "SAW", r.fov_y_m / 2.0, acq.slow_offset_m, r.slow_axis_hz),
            acq.park_x_m, acq.park_y_m,
        )

    def check(self, limits: GalvoLimits) -> None:
        check_axis(self.fast, limits)
        check_axis(self.slow, limits)
        check_position("X", self.park_x_m, limits)
        check_position("Y", self.park_y_m, limits)


def optical_angle_mapping(standoff_m: float) -> tuple[Mapping, Mapping]:
    """(metres -> optical degrees, optical degrees -> metres) at the standoff D: theta = atan(x / D)."""
    if not standoff_m > 0:
        raise ValueError(f"standoff_m={standoff_m} must be > 0")

    def to_deg(x_m: float) -> float:
        return math.degrees(math.atan(x_m / standoff_m))

    def to_m(theta_deg: float) -> float:
        return standoff_m * math.tan(math.radians(theta_deg))

    return to_deg, to_m

"""Exposure: peak power density of the measured spot and frame-averaged density of the raster, vs limits.

Gaussian beam of total power P and 1/e^2 radius w on target:

    I(r) = I0 exp(-2 r^2 / w^2),   I0 = 2 P / (pi w^2)          (peak incident power density)

The transmit power is not a config field; it follows from the design peak density at the design
waist, P = I0_design pi w0_design^2 / 2, so a measured spot smaller than designed raises I0.

Over one frame the beam centre follows x(t) = A sin(2 pi f_fast t) (fast axis) and a linear
slow-axis ramp over the field (fly-back neglected). The energy density per frame is the time
integral of I(x - x(t), y - y(t)); since the Gaussian separates, on a grid it is one matrix product
E = Gy diag(dt) Gx^T. Divided by the frame time it is the frame-averaged density; its worst
1 cm^2 cell (the turnarounds, where the sine dwells) is compared with the average limit. The dwell
time per cm^2 is the time per frame the beam centre spends inside each 1 cm^2 cell; near the
centre it is T / (fov_y pi A) per unit area (the sine's time density 1 / (pi sqrt(A^2 - x^2))).

1 W/m^2 = 0.1 mW/cm^2.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from calibration.values import Check

W_M2_TO_MW_CM2 = 0.1


class ExposureLimitError(RuntimeError):
    """Scanning would exceed a configured exposure limit; nothing is scanned."""


def peak_power_density_mw_cm2(power_w: float, radius_m: float) -> float:
    """I0 = 2 P / (pi w^2), in mW/cm^2."""
    if power_w < 0 or radius_m <= 0:
        raise ValueError(f"need power_w >= 0 and radius_m > 0, got {power_w=}, {radius_m=}")
    return 2.0 * power_w / (math.pi * radius_m**2) * W_M2_TO_MW_CM2


def power_from_peak_density(peak_mw_cm2: float, radius_m: float) -> float:
    """P = I0 pi w^2 / 2 (W) for a peak density in mW/cm^2."""
    return peak_mw_cm2 / W_M2_TO_MW_CM2 * math.pi * radius_m**2 / 2.0


@dataclass(frozen=True)
class RasterExposure:
    peak_mw_cm2: float                # instantaneous I0 on target
    average_max_mw_cm2: float         # worst 1 cm^2 cell of the frame-averaged density
    average_field_mw_cm2: float       # P / field area: the mean over the scanned field
    dwell_max_s_per_cm2: float        # longest time per frame the beam centre spends in one 1 cm^2 cell
    dwell_centre_s_per_cm2: float     # mean over the central 5 x 5 cells (fastest part of the sweep)
    dwell_map_s: np.ndarray           # time per frame of the beam centre in each 1 cm^2 cell (rows y, columns x)
    energy_map_j_cm2: np.ndarray      # per frame, 1 cm^2 cells (rows y, columns x)
    cell_m: float


def raster_exposure(power_w: float, radius_m: float, amplitude_x_m: float, fov_y_m: float, fast_hz: float,
                    frame_s: float, grid_m: float = 2e-3, cell_m: float = 0.01) -> RasterExposure:
    """Exposure of one frame of a sinusoidal fast axis (amplitude A) and linear slow ramp over fov_y."""
    if min(radius_m, amplitude_x_m, fov_y_m, fast_hz, frame_s, grid_m, cell_m) <= 0:
        raise ValueError("raster_exposure needs positive radius, amplitude, field, frequency, frame time and grids")
    k = max(1, int(round(cell_m / grid_m)))
    grid_m = cell_m / k
    # trajectory: the beam moves at most 2 pi f A dt per step; keep that below w/4
    vmax = 2 * math.pi * fast_hz * amplitude_x_m
    nt = int(math.ceil(frame_s * vmax / (radius_m / 4))) + 1
    t = (np.arange(nt) + 0.5) * (frame_s / nt)
    dt = frame_s / nt
    xt = amplitude_x_m * np.sin(2 * math.pi * fast_hz * t)
    yt = -fov_y_m / 2 + fov_y_m * t / frame_s
    margin = 2 * radius_m + cell_m
    nx = int(math.ceil((2 * (amplitude_x_m + margin)) / cell_m)) * k
    ny = int(math.ceil((fov_y_m + 2 * margin) / cell_m)) * k
    gx = (np.arange(nx) - nx / 2 + 0.5) * grid_m
    gy = (np.arange(ny) - ny / 2 + 0.5) * grid_m
    i0 = 2.0 * power_w / (math.pi * radius_m**2)  # W/m^2
    Gx = np.exp(-2.0 * (gx[:, None] - xt[None, :]) ** 2 / radius_m**2)  # (nx, nt)
    Gy = np.exp(-2.0 * (gy[:, None] - yt[None, :]) ** 2 / radius_m**2)  # (ny, nt)
    energy = i0 * dt * (Gy @ Gx.T)  # (ny, nx) J/m^2 per frame
    cells = energy.reshape(ny // k, k, nx // k, k).mean(axis=(1, 3))  # J/m^2, 1 cm^2 cells
    avg = cells / frame_s * W_M2_TO_MW_CM2
    # dwell: histogram of the beam centre over 1 cm^2 cells
    ex = np.arange(-(nx // k) / 2, (nx // k) / 2 + 1) * cell_m
    ey = np.arange(-(ny // k) / 2, (ny // k) / 2 + 1) * cell_m
    hist, _, _ = np.histogram2d(yt, xt, bins=[ey, ex])
    dwell = hist * dt
    # single cells alias with the line spacing (1 or 2 passes per cell): average the centre over 5 x 5
    cy, cx = dwell.shape[0] // 2, dwell.shape[1] // 2
    field_area = 2 * amplitude_x_m * fov_y_m
    return RasterExposure(
        peak_mw_cm2=i0 * W_M2_TO_MW_CM2, average_max_mw_cm2=float(avg.max()),
        average_field_mw_cm2=power_w / field_area * W_M2_TO_MW_CM2,
        dwell_max_s_per_cm2=float(dwell.max()), dwell_centre_s_per_cm2=float(dwell[cy - 2:cy + 3, cx - 2:cx + 3].mean()), dwell_map_s=dwell,
        energy_map_j_cm2=cells * 1e-4, cell_m=cell_m)


def exposure_checks(e: RasterExposure, limit_peak_mw_cm2: float, limit_average_mw_cm2: float) -> list[Check]:
    return [Check.at_most("exposure_peak", e.peak_mw_cm2, "mW/cm^2", limit_peak_mw_cm2),
            Check.at_most("exposure_average", e.average_max_mw_cm2, "mW/cm^2", limit_average_mw_cm2)]


def assert_exposure_allowed(checks: list[Check]) -> None:
    """Raise ExposureLimitError naming every exceeded limit; return quietly when all pass."""
    bad = [c for c in checks if not c.passed]
    if bad:
        what = "; ".join(f"{c.name} = {c.value:.3g} {c.unit} exceeds {c.spec}" if c.value is not None
                         else f"{c.name} could not be assessed" for c in bad)
        raise ExposureLimitError(f"refusing to scan: {what}. Reduce the transmit power, enlarge the spot "
                                 "or raise the limit in [calibration] only if your regulation allows it")

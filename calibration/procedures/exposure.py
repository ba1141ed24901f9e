"""Exposure: peak power density and dwell per cm^2 from the measured spot and the raster, vs the limits.

The spot comes from the current beam record (per axis the smaller of the knife-edge and
point-target radii, calibration.preflight; the design waist when there is none, said in the report). The transmit power follows from the design peak
density at the design waist (calibration.fits.power_density). No scan is needed, so this is also the
pre-flight check every scanning procedure runs first: it refuses to scan when a limit would be
exceeded (ExposureLimitError).
"""
from __future__ import annotations

import math

import numpy as np

from calibration.fits.power_density import assert_exposure_allowed
from calibration.preflight import assess_exposure, measured_radius
from calibration.procedures.common import Context, Outcome
from calibration.values import Measured


def assess(ctx: Context):
    w, origin = measured_radius(ctx.store, ctx.source.scanner, ctx.notes)
    e, checks, p = assess_exposure(ctx.source.scanner, ctx.cal, w)
    return e, checks, w, p, origin


def preflight(ctx: Context) -> None:
    """Raise ExposureLimitError before any scan that would exceed a limit."""
    _, checks, *_ = assess(ctx)
    assert_exposure_allowed(checks)


def run(ctx: Context) -> Outcome:
    e, checks, w, p, origin = assess(ctx)
    values = {"spot_radius": Measured.of(w, 0.0, "m"), "transmit_power": Measured.of(p * 1e3, 0.0, "mW"),
              "peak_power_density": Measured.of(e.peak_mw_cm2, 0.0, "mW/cm^2"),
              "average_power_density_max": Measured.of(e.average_max_mw_cm2, 0.0, "mW/cm^2"),
              "average_power_density_field": Measured.of(e.average_field_mw_cm2, 0.0, "mW/cm^2"),
              "dwell_max_per_cm2": Measured.of(e.dwell_max_s_per_cm2, 0.0, "s"),
              "dwell_centre_per_cm2": Measured.of(e.dwell_centre_s_per_cm2, 0.0, "s"),
              "energy_max_per_frame": Measured.of(float(e.energy_map_j_cm2.max()) * 1e3, 0.0, "mJ/cm^2")}
    ctx.note(f"spot from {origin}; transmit power from the design {ctx.source.scanner.optics.peak_power_density_mw_cm2}"
             f" mW/cm^2 peak at w0 = {ctx.source.scanner.optics.w0_m * 1e3:.2f} mm; frame-averaged density "
             f"over 1 cm^2 cells, dwell per frame of {ctx.source.scanner.raster.frame_duration_s:g} s")
    emap = e.energy_map_j_cm2

    def plot(d):
        from calibration.report import _plt, _save
        plt = _plt()
        fig, ax = plt.subplots(figsize=(5, 4))
        ext = np.array([-emap.shape[1], emap.shape[1], -emap.shape[0], emap.shape[0]]) * e.cell_m * 50
        im = ax.imshow(emap * 1e6 / ctx.source.scanner.raster.frame_duration_s, extent=ext, origin="lower",
                       cmap="magma")
        fig.colorbar(im, ax=ax, label="frame-averaged power density (uW/cm^2)")
        ax.set_xlabel("x (cm)")
        ax.set_ylabel("y (cm)")
        ax.set_title("exposure per 1 cm^2 cell")
        return {"exposure map": _save(fig, d / "exposure.png")}

    if not math.isfinite(e.peak_mw_cm2):
        raise ValueError("exposure: non-finite peak density")
    return Outcome("exposure", values, checks, {}, None, plot, meta={"spot_origin": origin})

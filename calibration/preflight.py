"""Exposure pre-flight: would scanning with these settings exceed a configured limit? (light imports only)

The spot is the current beam record's, conservatively the smaller of the knife-edge and
point-target radius per axis; without a usable record, the design waist. The raster is the
configured one; the transmit power follows from the design peak density (calibration.fits.power_density).
"""
from __future__ import annotations

import math

from calibration.config import CalibrationSettings
from calibration.config import CalibrationConfig
from calibration.fits.power_density import assert_exposure_allowed, exposure_checks, power_from_peak_density, raster_exposure
from calibration.store import CalibrationError, CalibrationStore
from thzcore.scanner import ScannerConfig

SPOT_KEYS = {"x": ("edge_x_diameter_1e2", "point_diameter_x"), "y": ("edge_y_diameter_1e2", "point_diameter_y")}


def measured_radius(store: CalibrationStore, scanner: ScannerConfig,
                    notes: list[str] | None = None) -> tuple[float, str]:
    """(effective 1/e^2 radius sqrt(w_x w_y) on target, where it came from).

    Conservative: along each axis the smaller of the knife-edge and point-target radii (a smaller
    spot means a higher peak density); the peak of an elliptical beam is 2 P / (pi w_x w_y).
    A missing, unreadable or other-scanner beam record falls back to the design waist.
    """
    try:
        rec = store.current("beam")
    except CalibrationError as exc:
        rec = None
        if notes is not None:
            notes.append(f"beam record not usable for exposure ({exc}); using the design waist")
    if rec is not None and rec.scanner_id == scanner.scanner_id and all(
            k in rec.values for keys in SPOT_KEYS.values() for k in keys):
        wx = 0.5 * min(rec.values[k].value for k in SPOT_KEYS["x"])
        wy = 0.5 * min(rec.values[k].value for k in SPOT_KEYS["y"])
        return math.sqrt(wx * wy), f"beam record {rec.record_id} (smaller of edge and point per axis)"
    return scanner.optics.w0_m, "design waist (no beam record)"


def assess_exposure(scanner: ScannerConfig, cal: CalibrationConfig, radius_m: float):
    """(RasterExposure, checks, transmit power W) of scanning `scanner`'s raster with a spot of radius_m."""
    o, ra = scanner.optics, scanner.raster
    p = power_from_peak_density(o.peak_power_density_mw_cm2, o.w0_m)
    e = raster_exposure(p, radius_m, ra.fast_amplitude_m, ra.fov_y_m, ra.fast_axis_hz, ra.frame_duration_s)
    return e, exposure_checks(e, cal.exposure_limit_peak_mw_cm2, cal.exposure_limit_average_mw_cm2), p


def exposure_preflight(settings: CalibrationSettings, store: CalibrationStore | None = None) -> None:
    """Raise ExposureLimitError if scanning with `settings` would exceed a limit (nothing is scanned).

    For any command that scans (`thz acquire`, `thz run`, every `thz calibrate`): the spot is the
    current beam record's (design waist without one), the raster is the configured one.
    """
    store = store or CalibrationStore(settings.calibration.store_dir)
    w, _ = measured_radius(store, settings.scanner)
    _, checks, _ = assess_exposure(settings.scanner, settings.calibration, w)
    assert_exposure_allowed(checks)

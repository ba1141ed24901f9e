"""What other commands need from calibration: the processing calibration in force and the exposure pre-flight.

    from calibration.api import current_processing_calibration, exposure_preflight
    exposure_preflight(settings)                       # raises ExposureLimitError: do not scan
    pc = current_processing_calibration(settings)      # ProcessingCalibration or None; raises if unusable
    FrameProcessor(settings.scanner, settings.processing, pc)   # frames then name pc.calibration_id

Light imports only (no numba, no sim): safe to call from `thz acquire` / `thz run` before they start.
"""
from __future__ import annotations


from calibration.config import CalibrationSettings
from calibration.store import CalibrationError, CalibrationStore
from processing.calibration_model import ProcessingCalibration


def current_processing_calibration(settings: CalibrationSettings, allow_stale: bool = False) -> ProcessingCalibration | None:
    """The store's current ProcessingCalibration for settings.scanner, or None when none was recorded.

    Raises CalibrationError (with `.problems`) for a tampered, unreadable, other-scanner or (unless
    allow_stale) stale record: such a record is reported, never silently used.
    """
    store = CalibrationStore(settings.calibration.store_dir)
    return store.processing_calibration(settings.scanner.scanner_id, settings.calibration.max_age_days,
                                        allow_stale=allow_stale)


def exposure_preflight(settings: CalibrationSettings) -> None:
    """Raise calibration.fits.power_density.ExposureLimitError when scanning would exceed a configured limit."""
    from calibration.preflight import exposure_preflight as _pf
    _pf(settings, CalibrationStore(settings.calibration.store_dir))


__all__ = ["CalibrationError", "current_processing_calibration", "exposure_preflight"]

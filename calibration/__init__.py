"""calibration package of thz-face: beam spot, depth of focus, SNR, line phase, field of view, exposure;
the versioned record store and the reports. See docs/calibration.md.

Light public names (no Numba import): the store, its record and errors, and the API other
commands use; the measurement procedures live in calibration.procedures and calibration.runner.
"""
from calibration.api import current_processing_calibration, exposure_preflight
from calibration.fits.power_density import ExposureLimitError
from calibration.store import CalibrationError, CalibrationRecord, CalibrationStore, Problem
from calibration.values import Check, Measured

__all__ = ["CalibrationError", "CalibrationRecord", "CalibrationStore", "Check", "ExposureLimitError", "Measured",
           "Problem", "current_processing_calibration", "exposure_preflight"]

"""The calibration API other commands call: processing calibration in force and exposure pre-flight."""
from datetime import datetime, timedelta, timezone

import pytest

from calibration.api import CalibrationError, current_processing_calibration, exposure_preflight
from calibration.fits.power_density import ExposureLimitError
from calibration.store import CalibrationRecord, CalibrationStore
from calibration.values import Measured
from processing.calibration_model import ProcessingCalibration
from pipeline.settings import Settings


def settings_with_store(path):
    s = Settings()
    return s.model_copy(update={"calibration": s.calibration.model_copy(update={"store": str(path)})})


def beam_record(diameter_m, created, scanner="thz340-sim-01"):
    v = {k: Measured.of(diameter_m, 1e-5, "m") for k in
         ("edge_x_diameter_1e2", "edge_y_diameter_1e2", "point_diameter_x", "point_diameter_y")}
    return CalibrationRecord(kind="beam", created=created.isoformat(), scanner_id=scanner, values=v)


def test_preflight_uses_measured_spot(tmp_path):
    s = settings_with_store(tmp_path)
    exposure_preflight(s)  # design waist: 2.0 mW/cm^2 <= 4.0
    store = CalibrationStore(tmp_path)
    # a 1 cm spot instead of 1.5 cm: peak 2.0 * (7.5 / 5)^2 = 4.5 mW/cm^2 > 4.0 -> refuse
    store.write(beam_record(0.010, datetime.now(timezone.utc)))
    with pytest.raises(ExposureLimitError, match=r"exposure_peak = 4.5 mW/cm\^2"):
        exposure_preflight(s)
    # a record of another scanner does not count
    store.write(beam_record(0.010, datetime.now(timezone.utc) + timedelta(seconds=1), scanner="other"))
    exposure_preflight(s)


def test_current_processing_calibration(tmp_path):
    s = settings_with_store(tmp_path)
    assert current_processing_calibration(s) is None
    old = datetime.now(timezone.utc) - timedelta(days=40)
    CalibrationStore(tmp_path).write(CalibrationRecord(
        kind="phase", created=old.isoformat(), scanner_id="thz340-sim-01",
        processing=ProcessingCalibration(calibration_id="x", scanner_id="thz340-sim-01", line_lag_s=6e-5)))
    with pytest.raises(CalibrationError, match="days old"):
        current_processing_calibration(s)
    assert current_processing_calibration(s, allow_stale=True).line_lag_s == 6e-5

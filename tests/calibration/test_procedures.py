"""Calibration procedures against closed-form frames with known truth (independent of sim).

Tolerances: the closed-form frames have no jitter, gain drift or map interpolation, so the fits
recover the truth to well under 1 %; the bounds below leave room for the 20-count noise.
"""
import math

import pytest

from calibration.fits.power_density import ExposureLimitError
from calibration.runner import run_calibration
from calibration.store import CalibrationStore
from tests.calibration.closed_form import ClosedFormSource
from pipeline.settings import Settings


@pytest.fixture(scope="module")
def settings():
    return Settings()


def run(kind, settings, src, tmp_path):
    store = CalibrationStore(tmp_path / "store")
    return run_calibration(kind, settings, src, store, tmp_path / "reports", quick=True)


def test_phase_recovers_feedback_lag(settings, tmp_path):
    src = ClosedFormSource(settings.scanner, feedback_delay_s=80e-6)
    rec, report, summ = run("phase", settings, src, tmp_path)
    true_lag = src.truth()["line_lag_s"]  # 80 us + 25.6 us / 2 = 92.8 us
    assert true_lag == pytest.approx(92.8e-6)
    assert rec.values["line_lag"].value == pytest.approx(true_lag, abs=1e-6)
    assert rec.passed and summ["passed"]
    # the processor applies it: the record carries a ProcessingCalibration named by the record id
    assert rec.processing.line_lag_s == rec.values["line_lag"].value
    assert rec.processing.calibration_id == rec.record_id
    assert report.is_file() and (report.parent / "plots" / rec.record_id / "line_phase.png").is_file()


def test_beam_recovers_waist_after_phase(settings, tmp_path):
    src = ClosedFormSource(settings.scanner, w0_m=0.0065, feedback_delay_s=80e-6)
    store = CalibrationStore(tmp_path / "store")
    run_calibration("phase", settings, src, store, tmp_path / "r", quick=True)
    rec, report, _ = run_calibration("beam", settings, src, store, tmp_path / "r", quick=True)
    for k in ("edge_x_diameter_1e2", "edge_y_diameter_1e2", "point_diameter_x", "point_diameter_y"):
        assert rec.values[k].value == pytest.approx(0.013, rel=0.01), k
    # 10-90 % width of an erf edge = 1.2816 w
    assert rec.values["edge_x_width_10_90"].value == pytest.approx(1.28155 * 0.0065, rel=0.01)
    assert rec.values["edge_x_width_10_90_direct"].value == pytest.approx(1.28155 * 0.0065, rel=0.05)
    assert all(c.passed for c in rec.checks)  # 13 mm is within 15 % of 15 mm
    text = report.read_text()
    assert "| spot_diameter_x_edge |" in text and "![knife edge, fast axis (x)]" in text
    # spot sizes in mm in the report's tables, as in its plots (the record keeps metres)
    row = next(ln for ln in text.splitlines() if ln.startswith("| spot_diameter_x_edge |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert float(cells[1]) == pytest.approx(13.0, rel=0.01) and cells[2] == "mm" and cells[3].startswith("15 mm +- ")
    row = next(ln for ln in text.splitlines() if ln.startswith("| edge_x_width_10_90 |"))
    assert float(row.split("|")[2]) == pytest.approx(1.28155 * 6.5, rel=0.01) and "| mm |" in row


def test_beam_without_phase_is_blurred_and_says_so(settings, tmp_path):
    # the configured lag assumes a 50 us sensor delay; the true one is 80 us: forward and backward
    # lines disagree by 2 v0 (30 us) ~ 2.9 mm, which widens the x edge
    src = ClosedFormSource(settings.scanner, w0_m=0.0065, feedback_delay_s=80e-6)
    rec, _, _ = run("beam", settings, src, tmp_path)
    assert rec.values["edge_x_diameter_1e2"].value > 0.0135
    assert any("no processing calibration" in n for n in rec.meta["notes"])


def test_focus_recovers_caustic(settings, tmp_path):
    src = ClosedFormSource(settings.scanner, w0_m=0.007, waist_range_m=6.05)
    rec, _, _ = run("focus", settings, src, tmp_path)
    zr = math.pi * 0.007**2 / settings.scanner.optics.wavelength_m  # 0.1746 m
    assert rec.values["waist_radius"].value == pytest.approx(0.007, rel=0.01)
    assert rec.values["waist_position"].value == pytest.approx(6.05, abs=0.005)
    assert rec.values["rayleigh_range"].value == pytest.approx(zr, rel=0.03)
    assert rec.values["depth_of_focus"].value == pytest.approx(2 * zr, rel=0.03)
    assert rec.values["m_squared"].value == pytest.approx(1.0, abs=0.05)
    assert rec.meta["target"] == "point"


def test_fov_measures_feedback_scale_and_corrects_it(settings, tmp_path):
    # the sensor reads 2 % long: the processor's image spans 0.45 / 1.02 m of true field
    src = ClosedFormSource(settings.scanner, feedback_scale=1.02)
    store = CalibrationStore(tmp_path / "store")
    rec, _, _ = run_calibration("fov", settings, src, store, tmp_path / "r", quick=True)
    assert rec.values["scale_x"].value == pytest.approx(1 / 1.02, rel=1e-3)
    assert rec.values["fov_x"].value == pytest.approx(0.45 / 1.02, rel=1e-3)
    assert rec.values["fov_y"].value == pytest.approx(0.45, rel=1e-3)
    assert rec.values["nonlinearity_x"].value < 0.2
    assert rec.processing.feedback_gain == pytest.approx(1 / 1.02, rel=1e-3)
    # a second run applies the new mapping: the field is now true
    rec2, _, _ = run_calibration("fov", settings, src, store, tmp_path / "r", quick=True)
    assert rec2.values["scale_x"].value == pytest.approx(1.0, abs=1e-3)
    assert rec2.supersedes == rec.record_id


def test_exposure_refuses_to_scan(settings, tmp_path):
    strict = settings.model_copy(update={"calibration": settings.calibration.model_copy(
        update={"exposure_limit_peak_mw_cm2": 1.5})})  # design peak is 2.0 mW/cm^2
    src = ClosedFormSource(settings.scanner)
    with pytest.raises(ExposureLimitError, match="refusing to scan: exposure_peak = 2 mW/cm"):
        run("beam", strict, src, tmp_path)
    assert src.frames_made == 0  # nothing was scanned
    rec, _, summ = run("exposure", strict, src, tmp_path)  # the exposure record itself is written, failing
    assert not rec.passed and summ["checks"]["exposure_peak"] is False
    assert rec.values["peak_power_density"].value == pytest.approx(2.0)

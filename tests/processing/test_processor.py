"""FrameProcessor on closed-form raw frames: point target pixel, lag estimation, averaging, calibration."""
from __future__ import annotations

import numpy as np
import pytest

from processing.calibration_model import ProcessingCalibration
from processing.config import ProcessingConfig
from processing.line_phase import estimate_line_shift, shift_rows
from processing.processor import FrameProcessor
from processing.synthetic import make_raw_frame, point_target
from thzcore.scanner import ScannerConfig

SC = ScannerConfig()
PITCH_X = SC.raster.pixel_pitch_x_m  # 0.45 / 256 = 1.758 mm
PITCH_Y = SC.raster.pixel_pitch_y_m  # 0.45 / 64 = 7.03 mm
SERVO_LAG = 0.64e-3
FB_DELAY = 50e-6
HALF_CHIRP = 0.5 * SC.fmcw.chirp_duration_s  # 12.8 us
LAG_FEEDBACK = FB_DELAY + HALF_CHIRP  # line lag L with feedback positions: 62.8 us
LAG_MODEL = HALF_CHIRP - SERVO_LAG  # with the commanded sinusoid: -627.2 us


def pixel_centre(col: int, row: int) -> tuple[float, float]:
    return -0.225 + (col + 0.5) * PITCH_X, 0.225 - (row + 0.5) * PITCH_Y


def blobs_scene(seed: int = 3):
    rng = np.random.default_rng(seed)
    blobs = [(rng.uniform(-0.2, 0.2), rng.uniform(-0.2, 0.2), rng.uniform(0.01, 0.04)) for _ in range(25)]

    def refl(x, y):
        r = np.zeros_like(x)
        for bx, by, bw in blobs:
            r += np.exp(-((x - bx) ** 2 + (y - by) ** 2) / bw ** 2)
        return np.minimum(r, 1) * 0.9 + 0.1
    return refl


@pytest.fixture(scope="module")
def point_raw():
    x0, y0 = pixel_centre(180, 20)
    return make_raw_frame(SC, point_target(x0, y0, 0.0075), servo_lag_s=SERVO_LAG, feedback_delay_s=FB_DELAY,
                          noise_counts=5, seed=1)


@pytest.fixture(scope="module")
def blobs_raw():
    return make_raw_frame(SC, blobs_scene(), servo_lag_s=SERVO_LAG, feedback_delay_s=FB_DELAY, noise_counts=20,
                          seed=2)


@pytest.mark.parametrize("source,lag", [("feedback", LAG_FEEDBACK), ("model", LAG_MODEL)])
def test_point_target_lands_in_its_pixel(point_raw, source, lag):
    fp = FrameProcessor(SC, ProcessingConfig(position_source=source, line_lag_s=lag, output_scale="linear"))
    f = fp.process(point_raw)
    assert f.image.shape == (64, 256)
    row, col = np.unravel_index(np.argmax(f.power), f.power.shape)
    assert (row, col) == (20, 180)
    # forward (row 20) and backward neighbours (19, 21) peak on the same column: phase corrected
    assert np.argmax(f.power[19]) == 180 and np.argmax(f.power[21]) == 180
    # peak power (a/2)^2 = 1e6 counts^2 for a = 2000
    assert f.power.max() == pytest.approx(1e6, rel=0.02)


def test_uncorrected_lag_splits_forward_and_backward(point_raw):
    # no lag correction with the commanded model: each direction is drawn v0 tau = 47.6 m/s * 0.64 ms
    # = 30.5 mm = 17.3 px off, in opposite directions
    fp = FrameProcessor(SC, ProcessingConfig(position_source="model", line_lag_s=HALF_CHIRP))
    f = fp.process(point_raw)
    c_fwd, c_bwd = np.argmax(f.power[20]), np.argmax(f.power[19])
    assert 30 < c_fwd - c_bwd < 38


def test_default_lag_follows_the_scanner_config():
    # no line_lag_s anywhere: derived from scanner.raster (feedback delay 50 us, servo lag 0.640 ms)
    assert FrameProcessor(SC, ProcessingConfig()).line_lag_s == pytest.approx(LAG_FEEDBACK)
    model = FrameProcessor(SC, ProcessingConfig(position_source="model"))
    assert model.line_lag_s == pytest.approx(HALF_CHIRP - SC.raster.servo_lag_s)


def test_reference_pipeline_matches_numba(blobs_raw):
    fp = FrameProcessor(SC, ProcessingConfig())
    a = fp.process(blobs_raw).power
    b = fp.process(blobs_raw, reference=True).power
    # measured max relative error ~1e-7
    assert np.max(np.abs(a - b)) / np.max(b) < 1e-5


def test_injected_image_shift_estimated_within_quarter_pixel(blobs_raw):
    fp = FrameProcessor(SC, ProcessingConfig())
    f = fp.process(blobs_raw)
    base = estimate_line_shift(f.image, f.direction).shift_px
    assert abs(base) < 0.25
    for injected in (0.3, 1.7, -4.2, 12.6):
        got = estimate_line_shift(shift_rows(f.image, f.direction < 0, injected), f.direction).shift_px
        assert got == pytest.approx(base + injected, abs=0.25)


@pytest.mark.parametrize("source,true_lag,error", [("feedback", LAG_FEEDBACK, 100e-6), ("model", LAG_MODEL, -300e-6)])
def test_line_lag_estimated_from_a_frame(blobs_raw, source, true_lag, error):
    fp = FrameProcessor(SC, ProcessingConfig(position_source=source, line_lag_s=true_lag + error))
    lag, res = fp.estimate_line_lag(blobs_raw)
    # 0.25 px at the centre speed is 0.25 * 1.758 mm / 47.6 m/s / 2 = 4.6 us of lag
    assert abs(lag - true_lag) < 4.6e-6
    assert abs(res.shift_px) < 0.25 and res.score > 0.9


def test_average_records_count_and_means_power(blobs_raw):
    fp = FrameProcessor(SC, ProcessingConfig(output_scale="db"))
    raws = [make_raw_frame(SC, blobs_scene(), servo_lag_s=SERVO_LAG, feedback_delay_s=FB_DELAY, noise_counts=20,
                           seed=s, frame_id=s) for s in (10, 11, 12)]
    singles = [fp.process(r) for r in raws]
    avg = fp.average(raws)
    assert avg.frame_ids == [10, 11, 12] and avg.n_averaged == 3
    np.testing.assert_allclose(avg.power, np.mean([s.power for s in singles], axis=0), rtol=1e-5)
    np.testing.assert_allclose(avg.image, 10 * np.log10(avg.power + fp.config.power_floor), rtol=1e-5)
    assert fp.average(singles[:2]).n_averaged == 2
    with pytest.raises(ValueError, match="at least one"):
        fp.average([])


def test_calibration_applied(point_raw, tmp_path):
    bg = np.full((64, 256), 10.0)
    flat = np.full((64, 256), 2.0)
    np.save(tmp_path / "flat.npy", flat)
    cal = ProcessingCalibration(calibration_id="cal-7", scanner_id=SC.scanner_id, line_lag_s=LAG_FEEDBACK,
                                background=bg.tolist(), flat_field="flat.npy")
    plain = FrameProcessor(SC, ProcessingConfig(output_scale="linear")).process(point_raw)
    f = FrameProcessor(SC, ProcessingConfig(output_scale="linear"), cal, str(tmp_path)).process(point_raw)
    np.testing.assert_allclose(f.power, (plain.power - 10.0) / 2.0, rtol=1e-5, atol=1e-3)
    assert f.calibration_id == "cal-7" and f.header_meta()["calibration_id"] == "cal-7"


def test_calibration_feedback_gain_and_gate_override(point_raw):
    # feedback reading 2% low with a 3 mm offset: the calibrated mapping restores the pixel
    raw = point_raw
    bad = type(raw)(raw.frame_id, raw.t_acquired, raw.scanner_id, raw.if_samples,
                    ((raw.feedback_x - 0.003) / 1.02).astype(np.float32), raw.feedback_y, raw.direction, {})
    cal = ProcessingCalibration(calibration_id="c", scanner_id=SC.scanner_id, feedback_gain=1.02,
                                feedback_offset_m=0.003, gate_min_m=5.9, gate_max_m=6.1)
    fp = FrameProcessor(SC, ProcessingConfig(), cal)
    assert (fp.k0, fp.k1) == (23, 42)  # (5.9 - 5.68) / 9.993 mm = 22.01 -> 23; 42.02 -> 42
    f = fp.process(bad)
    assert np.unravel_index(np.argmax(f.power), f.power.shape) == (20, 180)


def test_calibration_errors(tmp_path):
    with pytest.raises(ValueError, match="both gate_min_m and gate_max_m"):
        ProcessingCalibration(calibration_id="c", scanner_id="s", gate_min_m=5.8)
    with pytest.raises(ValueError, match="for scanner 'other'"):
        FrameProcessor(SC, ProcessingConfig(), ProcessingCalibration(calibration_id="c", scanner_id="other"))
    cal = ProcessingCalibration(calibration_id="c", scanner_id=SC.scanner_id, flat_field=[[1.0, 0.0]])
    with pytest.raises(ValueError, match="flat_field must be > 0"):
        FrameProcessor(SC, ProcessingConfig(), cal)
    cal = ProcessingCalibration(calibration_id="c", scanner_id=SC.scanner_id, background=[[1.0, 2.0]])
    with pytest.raises(ValueError, match=r"shape \(1, 2\)"):
        FrameProcessor(SC, ProcessingConfig(), cal)
    cal = ProcessingCalibration(calibration_id="c", scanner_id=SC.scanner_id, background="missing.npy")
    with pytest.raises(FileNotFoundError, match="missing.npy"):
        FrameProcessor(SC, ProcessingConfig(), cal, str(tmp_path))


@pytest.mark.integration
def test_calibration_model_imports_without_numba():
    import subprocess
    import sys
    code = ("import sys; import processing.calibration_model as m; "
            "assert 'numba' not in sys.modules, 'numba imported'; print(m.ProcessingCalibration.__name__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "ProcessingCalibration" in out.stdout


def test_wrong_samples_per_chirp_rejected(point_raw):
    raw = point_raw
    bad = type(raw)(0, 0.0, "s", raw.if_samples[:, :, :64].copy(), raw.feedback_x, raw.feedback_y, raw.direction)
    with pytest.raises(ValueError, match="64 samples per chirp"):
        FrameProcessor(SC, ProcessingConfig()).process(bad)

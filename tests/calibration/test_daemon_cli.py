"""End to end through the real transports: `thz calibrate` -> AcquisitionDaemon -> drivers -> device emulators."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from calibration.sources.daemon import DaemonSource
from calibration.runner import run_calibration
from calibration.store import CalibrationStore
from pipeline.settings import Settings

pytestmark = pytest.mark.integration
THZ = [sys.executable, "-m", "thz.cli", "--log-level", "WARNING"]


def thz(*args, cwd):
    env = {k: v for k, v in os.environ.items() if k != "THZ_CONFIG"}
    return subprocess.run(THZ + list(args), cwd=cwd, capture_output=True, text=True, timeout=300, env=env)


def test_cli_phase_through_daemon_then_status(tmp_path):
    store = tmp_path / "store"
    r = thz("calibrate", "phase", "--sim", "--quick", "--store", str(store), "--out", str(tmp_path / "rep"),
            cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    # the emulator's default sensor delay 50 us + T_c / 2 = 62.8 us (docs/scanner_physics.md)
    assert out["values"]["line_lag"]["value"] == pytest.approx(62.8e-6, abs=2e-6)
    assert out["passed"] and out["applied_by_processor"]
    assert Path(out["report"]).is_file()
    rec = CalibrationStore(store).load(out["record_id"])
    assert rec.meta["source"].startswith("AcquisitionDaemon")
    st = thz("calibrate", "status", "--store", str(store), cwd=tmp_path)
    assert st.returncode == 1, st.stderr[-2000:]  # not all current (beam, focus, ... missing): the answer is no
    status = json.loads(st.stdout.strip().splitlines()[-1])
    assert status["processing_calibration"] == out["record_id"]
    rows = {i["kind"]: i for i in status["items"]}
    assert rows["phase"]["state"] == "ok" and rows["beam"]["state"] == "missing" and not status["all_ok"]


def test_cli_exposure_refusal_exit_code(tmp_path):
    cfg = tmp_path / "strict.toml"
    cfg.write_text("[calibration]\nexposure_limit_peak_mw_cm2 = 1.0\n")
    r = thz("--config", str(cfg), "calibrate", "beam", "--sim", "--direct", "--store", str(tmp_path / "s"),
            cwd=tmp_path)
    assert r.returncode == 3
    last = json.loads(r.stdout.strip().splitlines()[-1])
    assert last["passed"] is False and "refusing to scan" in last["refused"]


def test_daemon_beam_with_backdoor_waist(tmp_path):
    s = Settings()
    src = DaemonSource(s, seed=5)
    try:
        src.set_beam(waist_diameter_m=0.014)
        store = CalibrationStore(tmp_path / "store")
        run_calibration("phase", s, src, store, tmp_path / "r", quick=True)
        rec, _, _ = run_calibration("beam", s, src, store, tmp_path / "r", quick=True)
    finally:
        src.close()
    assert rec.values["point_diameter_x"].value == pytest.approx(0.014, rel=0.05)
    assert rec.values["point_diameter_y"].value == pytest.approx(0.014, rel=0.05)
    assert rec.meta["truth"]["beam_override"] == {"waist_diameter_m": 0.014}


def test_daemon_phase_recovers_backdoor_feedback_delay(tmp_path):
    """A true feedback delay set through the emulator backdoor is measured through the real drivers."""
    s = Settings()
    src = DaemonSource(s, seed=7)
    try:
        src.set_galvo(feedback_delay_s=120e-6)
        rec, _, _ = run_calibration("phase", s, src, CalibrationStore(tmp_path / "store"), tmp_path / "r",
                                    quick=True)
    finally:
        src.close()
    true_lag = 120e-6 + 0.5 * s.scanner.fmcw.chirp_duration_s  # delay + T_c / 2 = 132.8 us
    assert rec.values["line_lag"].value == pytest.approx(true_lag, abs=3e-6)
    assert rec.meta["truth"]["galvo_override"] == {"feedback_delay_s": 120e-6}


def test_hardware_source_asks_for_each_target_and_measures_the_configured_devices(tmp_path):
    """Without --sim: the emulator stands in for the lab's devices (configured addresses only); the
    technician's answer to each placement prompt is played by placing the target through its backdoor."""
    from sim.emulators.client import SimScanner
    from calibration.sources.daemon import HardwareSource, patient_settings

    s = patient_settings(Settings(), 30.0)
    lab = SimScanner.start(s, seed=11, realtime=False)
    asked: list[str] = []

    def technician(message, scene):
        asked.append(message)
        lab.backdoor.set_scene(scene)

    try:
        src = HardwareSource(lab.settings_for(s), ask=technician)
        rec, _, _ = run_calibration("phase", s, src, CalibrationStore(tmp_path / "store"), tmp_path / "r",
                                    quick=True)
    finally:
        lab.stop()
    assert asked and all(m.startswith(("Place", "Clear")) for m in asked)
    assert len(asked) == len(set(asked))  # asked once per placement, not once per acquisition
    assert rec.source == "hardware" and "truth" not in rec.meta  # nothing known but what was measured
    assert rec.values["line_lag"].value == pytest.approx(62.8e-6, abs=3e-6)

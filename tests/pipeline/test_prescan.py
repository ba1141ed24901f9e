"""The pre-scan gate: an exposure refusal scans nothing; a tampered calibration record is refused."""
import pytest
import json

import h5py
import subprocess
import sys

pytestmark = pytest.mark.integration  # runs `thz` in subprocesses


def _thz(*args, cwd):
    return subprocess.run([sys.executable, "-m", "thz.cli", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=120)


def test_acquire_refuses_above_exposure_limit(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[calibration]\nstore = "{tmp_path / "cal"}"\nexposure_limit_peak_mw_cm2 = 1.0\n')
    r = _thz("--config", str(cfg), "acquire", "--sim", "--frames", "1", "--out", str(tmp_path / "o"), cwd=tmp_path)
    assert r.returncode == 3, r.stderr
    assert "exposure" in r.stderr
    assert not (tmp_path / "o").exists()  # nothing scanned, nothing recorded


def test_acquire_names_calibration_and_refuses_tampered_one(tmp_path):
    from calibration.store import CalibrationStore

    store_dir = tmp_path / "cal"
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[calibration]\nstore = "{store_dir}"\n')
    # make a real phase record quickly through the in-process virtual scanner
    r = _thz("--config", str(cfg), "calibrate", "phase", "--sim", "--direct", "--quick", "--out",
             str(tmp_path / "rep"), cwd=tmp_path)
    assert r.returncode in (0, 1), r.stderr  # 1 = out of tolerance, still a record
    rid = CalibrationStore(store_dir).current_processing_id()
    assert rid is not None
    # a good record is applied: the recording names its id
    r = _thz("--config", str(cfg), "acquire", "--sim", "--fast", "--frames", "1", "--out", str(tmp_path / "ok"),
             cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    with h5py.File(json.loads(r.stdout.strip().splitlines()[-1])["recording"], "r") as f:
        assert f["entry"].attrs["calibration_id"] == rid
    # tamper with the record's fitted values on disk: the gate must refuse it, not use it
    rec_file = store_dir / "records" / f"{rid}.json"
    rec = json.loads(rec_file.read_text())
    rec["processing"]["line_lag_s"] = 1e-3
    rec_file.write_text(json.dumps(rec))
    r = _thz("--config", str(cfg), "acquire", "--sim", "--frames", "1", "--out", str(tmp_path / "o"), cwd=tmp_path)
    assert r.returncode == 3, (r.stdout, r.stderr)
    assert "refused" in r.stderr


def test_calibration_hints_run_as_printed_with_sim(tmp_path):
    """A --sim job's refusal names `thz calibrate KIND --sim` (the hardware command would ask for targets)."""
    from pipeline.prescan import ScanRefused, calibrate_hint, prepare_scan
    from pipeline.settings import Settings
    from calibration.store import CalibrationStore
    from tests.calibration.test_store import phase_record

    assert calibrate_hint("run `thz calibrate phase` (and `thz calibrate fov --out x`)", True) == \
        "run `thz calibrate phase --sim` (and `thz calibrate fov --sim --out x`)"
    assert calibrate_hint("`thz calibrate phase --out y --sim`", True) == "`thz calibrate phase --out y --sim`"
    assert calibrate_hint("run `thz calibrate phase`", False) == "run `thz calibrate phase`"
    s = Settings.model_validate({"calibration": {"store": str(tmp_path / "cal")}})
    CalibrationStore(tmp_path / "cal").write(phase_record(scanner=s.scanner.scanner_id))  # dated 2026-03-01: stale
    for sim, want in ((True, "`thz calibrate phase --sim` (and `thz calibrate fov --sim`)"),
                      (False, "`thz calibrate phase` (and `thz calibrate fov`)")):
        with pytest.raises(ScanRefused) as ei:
            prepare_scan(s, sim=sim)
        assert want in str(ei.value) and "days old" in str(ei.value)

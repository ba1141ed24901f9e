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

"""Record store: sealing, current pointer, validation (tamper, scanner mismatch, stale)."""
import json
from datetime import datetime, timedelta, timezone

import pytest

from calibration.store import CalibrationError, CalibrationRecord, CalibrationStore, KINDS
from calibration.values import Check, Measured
from processing.calibration_model import ProcessingCalibration

T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=timezone.utc)


def phase_record(lag=-5e-5, scanner="thz340-sim-01", created=T0):
    return CalibrationRecord(
        kind="phase", created=created.isoformat(), scanner_id=scanner, software_version="test",
        values={"line_lag": Measured.of(lag, 1e-6, "s")},
        checks=[Check.at_most("lag_residual", 1e-6, "s", 2e-5)],
        tables={"lag_vs_amplitude": [{"amplitude_m": 0.2, "lag_s": lag}]},
        processing=ProcessingCalibration(calibration_id="pending", scanner_id=scanner, line_lag_s=lag,
                                         created=created.isoformat()))


def test_write_seal_load_roundtrip(tmp_path):
    store = CalibrationStore(tmp_path)
    rec = store.write(phase_record())
    assert rec.record_id.startswith("phase-20260301T120000Z-")
    assert rec.record_id.endswith(rec.content_hash[:8])
    assert rec.processing.calibration_id == rec.record_id  # the processor names the record id
    back = store.load(rec.record_id)
    assert back == rec
    assert store.current_ids() == {"phase": rec.record_id}
    assert store.current_processing_id() == rec.record_id
    pc = store.processing_calibration("thz340-sim-01", 30, now=T0 + timedelta(days=1))
    assert pc.line_lag_s == -5e-5 and pc.calibration_id == rec.record_id


def test_hash_is_content_only_and_versions_chain(tmp_path):
    store = CalibrationStore(tmp_path)
    a = store.write(phase_record(lag=-5e-5))
    b = store.write(phase_record(lag=-6e-5, created=T0 + timedelta(hours=1)))
    assert a.content_hash != b.content_hash
    assert b.supersedes == a.record_id and a.supersedes is None
    assert store.history("phase") == [a.record_id, b.record_id]
    assert store.current("phase").record_id == b.record_id


def test_tampered_record_is_refused(tmp_path):
    store = CalibrationStore(tmp_path)
    rec = store.write(phase_record())
    path = store.path_of(rec.record_id)
    d = json.loads(path.read_text())
    d["values"]["line_lag"]["value"] = -9e-5  # someone "fixes" the lag by hand
    path.write_text(json.dumps(d))
    with pytest.raises(CalibrationError, match="altered") as ei:
        store.load(rec.record_id)
    assert ei.value.problems[0].code == "tampered"
    with pytest.raises(CalibrationError):
        store.processing_calibration("thz340-sim-01", 30, now=T0)
    row = {r["kind"]: r for r in store.status("thz340-sim-01", 30, now=T0)}["phase"]
    assert row["state"] == "invalid"


def test_tampered_processing_id_is_refused(tmp_path):
    store = CalibrationStore(tmp_path)
    rec = store.write(phase_record())
    path = store.path_of(rec.record_id)
    d = json.loads(path.read_text())
    d["processing"]["calibration_id"] = "something-else"
    path.write_text(json.dumps(d))
    with pytest.raises(CalibrationError, match="embedded processing calibration id"):
        store.load(rec.record_id)


def test_unreadable_record(tmp_path):
    store = CalibrationStore(tmp_path)
    rec = store.write(phase_record())
    store.path_of(rec.record_id).write_text("{not json")
    with pytest.raises(CalibrationError, match="not a valid calibration record"):
        store.load(rec.record_id)


def test_scanner_mismatch_is_refused(tmp_path):
    store = CalibrationStore(tmp_path)
    store.write(phase_record(scanner="thz340-lab-02"))
    with pytest.raises(CalibrationError, match="scanner 'thz340-lab-02'") as ei:
        store.processing_calibration("thz340-sim-01", 30, now=T0)
    assert ei.value.problems[0].code == "scanner_mismatch"


def test_stale_is_refused_unless_allowed(tmp_path, caplog):
    store = CalibrationStore(tmp_path)
    rec = store.write(phase_record())
    later = T0 + timedelta(days=31)
    with pytest.raises(CalibrationError, match="31.0 days old") as ei:
        store.processing_calibration("thz340-sim-01", 30, now=later)
    assert ei.value.problems[0].code == "stale"
    pc = store.processing_calibration("thz340-sim-01", 30, allow_stale=True, now=later)
    assert pc.calibration_id == rec.record_id
    assert any("despite a problem" in r.getMessage() for r in caplog.records)


def test_status_rows(tmp_path):
    store = CalibrationStore(tmp_path)
    store.write(phase_record())
    bad = CalibrationRecord(kind="beam", created=T0.isoformat(), scanner_id="thz340-sim-01",
                            values={"diameter_x": Measured.of(0.02, 1e-4, "m")},
                            checks=[Check.relative("spot_diameter_x", 0.02, "m", 0.015, 0.15)])
    store.write(bad)
    rows = {r["kind"]: r for r in store.status("thz340-sim-01", 30, now=T0)}
    assert set(rows) == set(KINDS)
    assert rows["phase"]["state"] == "ok" and rows["phase"]["applied_by_processor"]
    assert rows["beam"]["state"] == "out_of_tolerance" and rows["beam"]["failed"] == ["spot_diameter_x"]
    assert rows["focus"]["state"] == "missing"


def test_no_processing_record_gives_none(tmp_path):
    assert CalibrationStore(tmp_path).processing_calibration("x", 30) is None


def test_bad_ids_and_pointer(tmp_path):
    store = CalibrationStore(tmp_path)
    with pytest.raises(ValueError, match="not of the form"):
        store.path_of("../../etc/passwd")
    tmp_path.joinpath("current.json").write_text("[]")
    with pytest.raises(CalibrationError, match="malformed"):
        store.current_ids()


def test_records_are_immutable(tmp_path):
    store = CalibrationStore(tmp_path)
    store.write(phase_record(), make_current=False)
    # the same content at the same time has the same id: a second write must not overwrite it
    with pytest.raises(FileExistsError):
        store.write(phase_record(), make_current=False)
    assert store.current_ids() == {}


def test_unmeasured_items_seal_as_strict_json(tmp_path):
    with pytest.raises(ValueError, match="must be finite"):
        Measured.of(float("nan"), 0.0, "m")
    c = Check.within("face_dynamic_range", float("nan"), "dB", None, None, "face found")
    assert c.value is None and not c.passed
    store = CalibrationStore(tmp_path)
    rec = store.write(CalibrationRecord(kind="snr", created=T0.isoformat(), scanner_id="s", checks=[c]))
    back = store.load(rec.record_id)
    assert back.checks[0].value is None and not back.passed
    assert "NaN" not in store.path_of(rec.record_id).read_text()

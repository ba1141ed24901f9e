"""HDF5 recordings: round trip, layout, permissions, gaps; a writer killed with SIGKILL, then recover()."""
from __future__ import annotations

import os
import stat
import subprocess
import sys
import textwrap

import h5py
import numpy as np
import pytest

from acquisition.recover import recover
from thzcore.frames import RawFrame
from thzcore.recording import Recorder, iter_frames, read_recording

SHAPE = (4, 16, 8)


def _frame(i: int) -> RawFrame:
    rng = np.random.default_rng(i)
    return RawFrame(10 + i, 1000.0 + i, "sc1", rng.integers(-8000, 8000, SHAPE, dtype=np.int16),
                    rng.random(SHAPE[:2], dtype=np.float32), rng.random(SHAPE[0], dtype=np.float32),
                    np.array([1, -1, 1, -1], np.int8))


def test_round_trip_layout_and_mode(tmp_path):
    rec = Recorder(tmp_path / "s.h5", SHAPE, {"config_json": "{}", "calibration_id": "cal-1", "sim_seed": 5,
                                              "scanner_id": "sc1"}, grow=2,
                   instrument={"galvo": {"idn": "G"}, "receiver": {"idn": "R"}})
    for i in range(5):  # grows 2 -> 4 -> 6 and is trimmed to 5 on close
        rec.write(_frame(i), seq=i, instrument_frame_no=100 + i)
    rec.gap(11, 13, 1001.5, 1002.5, "ReceiverTimeoutError: x")
    with pytest.raises(ValueError, match="shape"):
        rec.write(RawFrame(0, 0.0, "sc1", np.zeros((2, 16, 8), np.int16), np.zeros((2, 16), np.float32),
                           np.zeros(2, np.float32), np.ones(2, np.int8)), seq=9)
    rec.close("closed")
    assert stat.S_IMODE(os.stat(tmp_path / "s.h5").st_mode) == 0o600
    r = read_recording(tmp_path / "s.h5")
    assert r.frames == 5 and r.attrs["status"] == "closed" and r.attrs["frames"] == 5
    assert r.attrs["calibration_id"] == "cal-1" and r.attrs["sim_seed"] == 5 and len(r.attrs["config_sha256"]) == 64
    for i in range(5):
        f = _frame(i)
        np.testing.assert_array_equal(r.data["if_samples"][i], f.if_samples)
        np.testing.assert_array_equal(r.data["feedback_x"][i], f.feedback_x)
    np.testing.assert_array_equal(r.data["instrument_frame_no"], np.arange(100, 105))
    assert list(r.gaps["after_frame_id"]) == [11] and r.gaps["reason"][0].startswith("ReceiverTimeout")
    g = r.raw_frame(2)
    assert g.frame_id == 12 and g.meta["calibration_id"] == "cal-1"
    with h5py.File(tmp_path / "s.h5", "r") as f:
        assert f.attrs["NX_class"] == "NXroot" and f["entry/instrument/galvo/idn"].asstr()[()] == "G"
        assert f["entry/data/if_samples"].chunks == (1, *SHAPE)
    assert recover(tmp_path / "s.h5").status_before == "closed"  # a closed file is left alone
    with pytest.raises(FileExistsError):
        Recorder(tmp_path / "s.h5", SHAPE, {})


_WRITER = textwrap.dedent("""
    import os, signal, sys
    import numpy as np
    sys.path.insert(0, {root!r})
    from thzcore.recording import Recorder
    from thzcore.frames import RawFrame
    rec = Recorder({path!r}, (4, 16, 8), {{"scanner_id": "sc1"}}, grow=16)
    for i in range(3):
        rng = np.random.default_rng(i)
        rec.write(RawFrame(i, float(i), "sc1", rng.integers(-8000, 8000, (4, 16, 8), dtype=np.int16),
                  np.zeros((4, 16), np.float32), np.zeros(4, np.float32), np.ones(4, np.int8),
                  {{"truth": {{"identity": i}}, "t_complete": 10.0 + i}}), seq=i)
    # a fourth frame half written: data but no `complete` flag
    rec._d["if_samples"][3] = 7
    rec._f.flush()
    os.kill(os.getpid(), signal.SIGKILL)
""")


@pytest.mark.integration
def test_sigkill_mid_session_then_recover(tmp_path):
    path = tmp_path / "crash.h5"
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    p = subprocess.run([sys.executable, "-c", _WRITER.format(root=root, path=str(path))], capture_output=True)
    assert p.returncode == -9, p.stderr.decode()
    with h5py.File(path, "r", swmr=True) as f:  # readable by a SWMR reader before any repair
        assert int(f["entry/data/count"][0]) == 3
    res = recover(path)
    assert res.frames == 3 and res.status_before == "running" and res.backup.exists()
    with h5py.File(path, "r") as f:  # a plain reader, no SWMR flag
        assert f["entry"].attrs["status"] == "recovered"
        assert f["entry/data/if_samples"].shape == (3, 4, 16, 8)
        np.testing.assert_array_equal(f["entry/data/frame_id"][:], [0, 1, 2])
        np.testing.assert_array_equal(f["entry/data/if_samples"][1],
                                      np.random.default_rng(1).integers(-8000, 8000, (4, 16, 8), dtype=np.int16))
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert recover(path).status_before == "recovered"
    r = read_recording(path)  # per-frame meta and scan-complete stamps survive the repair
    assert [r.raw_frame(i).meta["truth"] for i in range(3)] == [{"identity": i} for i in range(3)]
    np.testing.assert_array_equal(r.data["t_complete"], [10.0, 11.0, 12.0])


def test_frame_meta_round_trip_through_both_readers(tmp_path):
    rec = Recorder(tmp_path / "m.h5", SHAPE, {"scanner_id": "sc1", "calibration_id": "cal-2"}, grow=4)
    truth = {"scene": {"kind": "subject", "identity": 3, "posture": "full-left", "concealed": True},
             "identity": 3, "posture": "full-left", "concealed": True}
    for i in range(3):
        f = _frame(i)
        f.meta = {"session_id": "s-1", "truth": {**truth, "identity": i}, "t_complete": 2000.5 + i,
                  "note": "µ-unicode"}
        rec.write(f, seq=i)
    plain = _frame(3)  # a source that stamps nothing
    rec.write(plain, seq=3)
    rec.close()
    r = read_recording(tmp_path / "m.h5")
    np.testing.assert_array_equal(r.data["t_complete"], [2000.5, 2001.5, 2002.5, 0.0])
    for i in range(3):
        m = r.raw_frame(i).meta
        assert m["truth"] == {**truth, "identity": i} and m["t_complete"] == 2000.5 + i
        assert m["session_id"] == "s-1" and m["note"] == "µ-unicode" and m["calibration_id"] == "cal-2"
    assert "t_complete" not in r.raw_frame(3).meta and "truth" not in r.raw_frame(3).meta
    # the streaming reader gives the same frames (what `thz verify --recording` and offline evaluation use)
    frames = list(iter_frames(tmp_path / "m.h5"))
    assert [f.meta.get("truth", {}).get("identity") for f in frames] == [0, 1, 2, None]
    assert frames[1].meta["t_complete"] == 2001.5 and frames[1].meta["calibration_id"] == "cal-2"


def test_oversized_frame_meta_drops_whole_keys_never_truncates(tmp_path):
    from thzcore.recording import META_LEN, frame_meta_bytes, frame_meta_from_bytes

    f = _frame(0)
    f.meta = {"calibration_id": "cal-1", "huge": "x" * (2 * META_LEN), "truth": {"identity": 4}}
    blob = frame_meta_bytes(f)
    assert len(blob) <= META_LEN
    assert frame_meta_from_bytes(blob) == {"calibration_id": "cal-1", "truth": {"identity": 4},
                                           "meta_dropped": ["huge"]}
    assert frame_meta_from_bytes(b"") == {} and frame_meta_from_bytes(b"{not json") == {}


def test_recording_without_meta_datasets_still_reads(tmp_path):
    """Files written before t_complete / meta existed: read and recovered without them."""
    rec = Recorder(tmp_path / "old.h5", SHAPE, {"scanner_id": "sc1"}, grow=4)
    rec.write(_frame(0), seq=0)
    rec.close()
    with h5py.File(tmp_path / "old.h5", "r+") as fh:
        del fh["entry/data/meta"], fh["entry/data/t_complete"]
    r = read_recording(tmp_path / "old.h5")
    assert r.frames == 1 and "meta" not in r.data and r.raw_frame(0).meta == {"calibration_id": ""}


def test_recover_rejects_foreign_files(tmp_path):
    p = tmp_path / "x.h5"
    with h5py.File(p, "w") as f:
        f["a"] = 1
    with pytest.raises(ValueError, match="not a thz-face recording"):
        recover(p)
    q = tmp_path / "junk.h5"
    q.write_bytes(b"not hdf5")
    from thzcore.recording import RecordingError
    with pytest.raises(RecordingError, match="cannot open"):
        recover(q)

"""The daemon against the emulator over real pty/TCP/ZMQ/HDF5: sessions, every injected fault, stop, config errors."""
from __future__ import annotations

import json
import os
import stat
import threading
import time

import h5py
import numpy as np
import pytest
import zmq

from acquisition.daemon import EXIT_CONFIG, EXIT_FAILED, EXIT_INTERRUPTED, AcquisitionDaemon
from thzcore.recording import read_recording
from acquisition.runlog import read_runlog
from thzcore.frames import RawFrame
from thzcore.wire import decode

from .conftest import crc_le, point_at, run_daemon, small_settings, true_crcs

pytestmark = pytest.mark.integration


def _check_clean(rec, emu, frames: int) -> None:
    """Every recorded frame is one the emulator produced, bit for bit; ids grow; seq is 0..n-1."""
    assert rec.frames == frames
    truth = true_crcs(emu)
    for i in range(rec.frames):
        assert crc_le(rec.data["if_samples"][i]) in truth, f"frame {i} was not produced by the instrument"
    assert np.all(np.diff(rec.data["frame_id"]) >= 1)
    np.testing.assert_array_equal(rec.data["seq"], np.arange(frames))


def _run_bound(d: AcquisitionDaemon, frames: int) -> tuple[threading.Thread, list]:
    """Run the daemon in a thread (its RunResult lands in the list) once its ZMQ endpoints are bound."""
    res: list = []
    t = threading.Thread(target=lambda: res.append(d.run(frames=frames)))
    t.start()
    for _ in range(200):
        if d.endpoints:
            break
        threading.Event().wait(0.02)
    return t, res


def test_session_records_and_publishes_matching_frames(emu, tmp_path):
    s = point_at(small_settings(), emu.endpoints())
    ctx = zmq.Context.instance()
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.LINGER, 0)
    sub.setsockopt(zmq.SUBSCRIBE, b"raw")
    status = ctx.socket(zmq.SUB)
    status.setsockopt(zmq.LINGER, 0)
    status.setsockopt(zmq.SUBSCRIBE, b"status")
    received: list[RawFrame] = []
    states: list[dict] = []
    first = threading.Event()

    def on_frame(_f):
        first.wait(5)  # hold the first frame until the subscribers are connected

    d = AcquisitionDaemon(s, out_dir=tmp_path, on_frame=on_frame, sim_seed=3)
    t, res = _run_bound(d, 6)
    sub.connect(d.endpoints["raw"])
    status.connect(d.endpoints["status"])
    threading.Event().wait(0.3)  # slow joiner: the first frame is held until the SUB is connected
    first.set()
    poller = zmq.Poller()
    poller.register(sub, zmq.POLLIN)
    poller.register(status, zmq.POLLIN)
    while t.is_alive() or poller.poll(200):
        ev = dict(poller.poll(200))
        if sub in ev:
            received.append(RawFrame.from_message(decode(sub.recv_multipart(), "raw")))
        if status in ev:
            states.append(decode(status.recv_multipart(), "status").meta)
    t.join()
    t_end = time.time()
    sub.close()
    status.close()
    r = res[0]
    assert r.exit_code == 0 and r.status == "closed" and r.frames == 6 and r.gaps == 0
    rec = read_recording(r.recording)
    _check_clean(rec, emu, 6)
    # the frames on ZMQ are the recorded ones, with matching seq and frame_id
    assert len(received) >= 5
    by_id = {int(fid): i for i, fid in enumerate(rec.data["frame_id"])}
    for f in received:
        i = by_id[f.frame_id]
        np.testing.assert_array_equal(f.if_samples, rec.data["if_samples"][i])
        np.testing.assert_array_equal(f.feedback_x, rec.data["feedback_x"][i])
        assert f.meta["calibration_id"] == "" and f.meta["session_id"] == rec.attrs["session_id"]
        # scan complete: stamped when *OPC? returned, after the frame began and before it was published
        assert f.t_acquired < f.meta["t_complete"] < t_end
    # status: state changes and heartbeats were published
    names = [m["state"] for m in states]
    assert "scanning" in names and names[-1] == "disconnected"
    assert any(m["heartbeat"] for m in states)
    # attributes, permissions, run log
    assert stat.S_IMODE(os.stat(r.recording).st_mode) == 0o600
    assert rec.attrs["status"] == "closed" and rec.attrs["sim_seed"] == 3 and rec.attrs["frames"] == 6
    cfg = json.loads(rec.attrs["config_json"])
    assert cfg["scanner"]["raster"]["slow_axis_hz"] == 8.0
    assert "thz-face" in rec.attrs["software_version"] and rec.attrs["calibration_id"] == ""
    with h5py.File(r.recording, "r") as f:
        assert f["entry"].attrs["NX_class"] == "NXentry" and f["entry/data"].attrs["signal"] == "if_samples"
        assert "GSC-2" in f["entry/instrument/galvo/idn"].asstr()[()]
        assert f["entry/instrument/receiver/resource"].asstr()[()] == s.acquisition.receiver_resource
    events = read_runlog(r.runlog)
    kinds = [e["event"] for e in events]
    assert kinds[0] == "start" and kinds[-1] == "stop" and kinds.count("frame") == 6
    assert events[-1]["exit_code"] == 0 and events[-1]["galvo_parked"] is True
    assert emu.galvo.state == "PARKED"


FAULTS = [
    # (id, backdoor fault request, what the gap's reason names)
    ("rx-delay", {"device": "receiver", "kind": "delay", "seconds": 1.0, "match": "FETC:FRAM?"}, "ReceiverTimeout"),
    ("rx-drop", {"device": "receiver", "kind": "drop", "match": "*OPC?"}, "ReceiverTimeout"),
    ("rx-disconnect", {"device": "receiver", "kind": "disconnect"}, "Receiver"),
    ("rx-truncate", {"device": "receiver", "kind": "truncate", "match": "FETC:FRAM?"}, "ReceiverTimeout"),
    ("rx-corrupt-header", {"device": "receiver", "kind": "corrupt", "mode": "header", "match": "FETC:FRAM?"},
     "BlockError"),
    ("rx-corrupt-payload", {"device": "receiver", "kind": "corrupt", "mode": "payload", "match": "FETC:FRAM?"},
     "FrameCorruptError"),
    ("rx-error", {"device": "receiver", "kind": "error", "code": -310, "text": "System error"},
     "ReceiverInstrumentError"),
    ("galvo-error", {"device": "galvo", "kind": "error", "code": 201, "text": "Coil current limit"}, "GalvoFault"),
    ("galvo-unplug", {"device": "galvo", "kind": "unplug", "replug_after_s": 0.3}, "GalvoLink"),
    ("galvo-delay", {"device": "galvo", "kind": "delay", "seconds": 1.0, "match": "STAT?"}, "GalvoTimeout"),
    ("galvo-drop", {"device": "galvo", "kind": "drop", "match": "STAT?"}, "GalvoTimeout"),
    ("galvo-stall", {"device": "galvo", "kind": "stall", "seconds": 0.3}, "Fault"),
]


# frames read in parts of 3 lines (FETC:PART?; 8-line frames: parts 3, 3, 2): a fault of a part is classified as
# that of the whole-frame read; a corrupted part fails the CRC carried over the parts against the head's
STREAM_FAULTS = [
    ("part-delay", {"device": "receiver", "kind": "delay", "seconds": 1.0, "match": "FETC:PART?"}, "ReceiverTimeout"),
    ("part-truncate", {"device": "receiver", "kind": "truncate", "match": "FETC:PART?"}, "ReceiverTimeout"),
    ("part-corrupt-header", {"device": "receiver", "kind": "corrupt", "mode": "header", "match": "FETC:PART?"},
     "BlockError"),
    ("part-corrupt-payload", {"device": "receiver", "kind": "corrupt", "mode": "payload", "match": "FETC:PART?"},
     "FrameCorruptError"),
    ("streamed-galvo-stall", {"device": "galvo", "kind": "stall", "seconds": 0.3}, "Fault"),
]


@pytest.mark.parametrize("fault, reason, stream_lines",
                         [(f, r, 0) for _, f, r in FAULTS] + [(f, r, 3) for _, f, r in STREAM_FAULTS],
                         ids=[i for i, _, _ in FAULTS + STREAM_FAULTS])
def test_fault_recovers_with_gap_and_no_bad_frame(emu, tmp_path, fault, reason, stream_lines):
    s = point_at(small_settings(stream_lines=stream_lines), emu.endpoints())
    served = emu.receiver.frames_served

    def inject(n):
        if n == 2:
            emu.handle({"cmd": "fault", **fault})

    r, d, _ = run_daemon(s, tmp_path, 5, inject)
    assert r.exit_code == 0, r.reason
    assert r.frames == 5 and r.gaps >= 1
    rec = read_recording(r.recording)
    _check_clean(rec, emu, 5)
    assert rec.gaps["after_frame_id"][0] == rec.data["frame_id"][1]
    assert rec.gaps["resume_frame_id"][0] == rec.data["frame_id"][2]
    assert reason in rec.gaps["reason"][0]
    events = read_runlog(r.runlog)
    gaps = [e for e in events if e["event"] == "gap"]
    assert gaps and reason in gaps[0]["reason"]
    assert gaps[0]["after_frame_id"] == int(rec.data["frame_id"][1])
    states = [e["new"] for e in events if e["event"] == "state"]
    assert ("reconnecting" in states) or ("degraded" in states)
    assert emu.galvo.state == "PARKED"
    if stream_lines:
        assert emu.receiver.frames_served == served          # no frame was read whole (FETC:FRAM?)


def test_streamed_parts_are_published_before_their_frame(emu, tmp_path):
    """`lines` parts on ZMQ under the seq of the `raw` frame that follows them, in order; together they are its
    samples; the frame is never fetched whole (FETC:FRAM?)."""
    s = point_at(small_settings(stream_lines=3), emu.endpoints())
    served = emu.receiver.frames_served
    ctx = zmq.Context.instance()
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.LINGER, 0)
    for topic in (b"raw", b"lines"):
        sub.setsockopt(zmq.SUBSCRIBE, topic)
    first = threading.Event()
    d = AcquisitionDaemon(s, out_dir=tmp_path, on_frame=lambda _f: first.wait(5), record=False)
    t, res = _run_bound(d, 4)
    sub.connect(d.endpoints["raw"])
    threading.Event().wait(0.3)  # slow joiner: the first frame is held until the SUB is connected
    first.set()
    got = []
    while t.is_alive() or sub.poll(200):
        if sub.poll(200):
            got.append(decode(sub.recv_multipart()))
    t.join()
    sub.close()
    assert res[0].exit_code == 0, res[0].reason
    raws = [m for m in got if m.topic == "raw"]
    assert len(raws) >= 2 and emu.receiver.frames_served == served
    for m in raws[1:]:          # the first frame's parts may have left before the SUB was connected
        parts = [p for p in got[:got.index(m)] if p.topic == "lines" and p.seq == m.seq]
        assert [p.meta["first_line"] for p in parts] == [0, 3, 6] and all(p.meta["lines"] == 8 for p in parts)
        np.testing.assert_array_equal(np.concatenate([p.arrays["if_samples"] for p in parts]),
                                      m.arrays["if_samples"])


def test_link_fault_goes_through_reconnecting_and_reidentifies(emu, tmp_path):
    s = point_at(small_settings(), emu.endpoints())
    r, d, _ = run_daemon(s, tmp_path, 4, lambda n: n == 1 and emu.handle(
        {"cmd": "fault", "device": "receiver", "kind": "drop", "match": "FETC:HEAD?"}))
    assert r.exit_code == 0
    seq = [(t.old.value, t.new.value) for t in d.sm.history]
    i = seq.index(("scanning", "reconnecting"))
    assert seq[i + 1] == ("reconnecting", "connecting") and seq[i + 2] == ("connecting", "ready")
    assert sum(e["event"] == "identified" for e in read_runlog(r.runlog)) == 2


def test_unrecoverable_link_fails_after_capped_backoff(emu, tmp_path):
    """The receiver never answers again: the daemon backs off (capped), gives up, parks, exits 3."""
    s = point_at(small_settings(reconnect_max_attempts=4), emu.endpoints())
    slept: list[float] = []

    def inject(n):
        if n == 1:
            emu.handle({"cmd": "fault", "device": "receiver", "kind": "drop", "match": "*IDN?", "count": 100})
            emu.handle({"cmd": "fault", "device": "receiver", "kind": "drop", "match": "*OPC?"})

    r, d, _ = run_daemon(s, tmp_path, 3, inject, sleep=slept.append)
    assert r.exit_code == EXIT_FAILED and r.status == "failed" and "recovery attempts" in r.reason
    assert slept == [0.05, 0.1, 0.2, 0.2]  # initial 0.05, doubled, capped at reconnect_max_s = 0.2
    assert d.state.value == "disconnected" and [t.new.value for t in d.sm.history][-2] == "failed"
    rec = read_recording(r.recording)
    assert rec.attrs["status"] == "failed" and rec.frames == 1
    assert rec.gaps["resume_frame_id"][0] == -1  # never resumed
    assert emu.galvo.state == "PARKED"


def test_request_stop_from_another_thread(emu, tmp_path):
    s = point_at(small_settings(), emu.endpoints())
    d = AcquisitionDaemon(s, out_dir=tmp_path, publish=False)
    res: list = []
    t = threading.Thread(target=lambda: res.append(d.run()))
    t.start()
    for _ in range(500):
        if d.frames >= 3:
            break
        threading.Event().wait(0.01)
    d.request_stop("test")
    t.join(30)
    r = res[0]
    assert r.exit_code == EXIT_INTERRUPTED and r.status == "interrupted" and r.frames >= 3
    rec = read_recording(r.recording)
    assert rec.attrs["status"] == "interrupted" and rec.frames == r.frames
    assert emu.galvo.state == "PARKED"


def test_out_of_range_raster_is_fatal_and_never_sent(emu, tmp_path):
    """fast_offset 0.2 m + amplitude 0.237 m > 0.40 m limit: refused on the host before any byte is sent."""
    emu.galvo.log.clear()
    s = point_at(small_settings(fast_offset_m=0.2), emu.endpoints())
    r, d, _ = run_daemon(s, tmp_path, 2)
    assert r.exit_code == EXIT_CONFIG and "max_fast_amplitude_m" in r.reason
    assert list(emu.galvo.log) == [] and emu.galvo.out_of_range == 0


def test_non_loopback_bind_refused(emu, tmp_path):
    s = point_at(small_settings(raw_endpoint="tcp://0.0.0.0:5599"), emu.endpoints())
    r, d, _ = run_daemon(s, tmp_path, 2)
    assert r.exit_code == EXIT_CONFIG and "CURVE" in r.reason and "curve_secret_key_file" in r.reason


def test_receiver_refusing_settings_is_fatal(emu, tmp_path):
    """A line-trigger timeout the receiver cannot do (TRIG:TIM max 60 s): -222 from the instrument, fatal."""
    s = point_at(small_settings(line_trigger_timeout_s=100.0), emu.endpoints())
    r, d, _ = run_daemon(s, tmp_path, 1)
    assert r.exit_code == EXIT_CONFIG and "-222" in r.reason and "TRIG:TIM" in r.reason
    assert d.sm.history[-2].new.value == "failed"


def test_curve_configured_session_runs_and_shuts_down(emu, tmp_path):
    import zmq.auth
    (tmp_path / "k").mkdir()
    (tmp_path / "c").mkdir()
    _, secret = zmq.auth.create_certificates(str(tmp_path / "k"), "server")
    zmq.auth.create_certificates(str(tmp_path / "c"), "client")
    s = point_at(small_settings(curve_secret_key_file=secret, curve_clients_dir=str(tmp_path / "c")),
                 emu.endpoints())
    r, d, _ = run_daemon(s, tmp_path / "out", 2)
    assert r.exit_code == 0 and r.frames == 2


def test_watchdog_shorter_than_a_frame_wait_is_a_config_error(emu, tmp_path):
    s = point_at(small_settings(galvo_watchdog_s=0.3), emu.endpoints())  # frame wait 2 x 0.125 + 0.5 s
    r, d, _ = run_daemon(s, tmp_path, 1)
    assert r.exit_code == EXIT_CONFIG and "galvo_watchdog_s" in r.reason and "0.75" in r.reason

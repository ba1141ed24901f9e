"""ProcessingStage: memory, HDF5 recording and real ZMQ in/out; averaging windows; malformed input."""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import zmq

from processing.config import ProcessingConfig
from thzcore.recording import RecordingError, iter_frames, write_recording
from thzcore.stage import StageRunner
from processing.stage import ProcessingStage, check_local_endpoint
from processing.synthetic import make_raw_frame
from tests.processing.test_roi import head_scene
from thzcore.scanner import ScannerConfig
from thzcore.wire import Message, decode, encode

SC = ScannerConfig()


@pytest.fixture(scope="module")
def raws():
    out = []
    for i in range(4):
        r = make_raw_frame(SC, head_scene(0.03, 0.02), feedback_delay_s=SC.raster.feedback_delay_s, noise_counts=3,
                           seed=i, frame_id=100 + i)
        r.meta["truth"] = {"identity": 3, "posture": "front-center", "concealed": False}
        out.append(r)
    return out


def test_sliding_and_block_averaging(raws):
    st = ProcessingStage(SC, ProcessingConfig(frames_averaged=3, averaging="sliding"))
    outs = list(st.run(raws))
    assert [o.frame.frame_ids for o in outs] == [[100, 101, 102], [101, 102, 103]]
    assert all(o.roi.found for o in outs)
    assert outs[0].meta()["truth"]["identity"] == 3 and outs[0].meta()["n_averaged"] == 3
    blk = ProcessingStage(SC, ProcessingConfig(frames_averaged=2, averaging="block"), warm_up=False)
    assert [o.frame.frame_ids for o in blk.run(raws)] == [[100, 101], [102, 103]]


def test_window_restarts_on_dropped_frame(raws):
    st = ProcessingStage(SC, ProcessingConfig(frames_averaged=2), warm_up=False)
    seq = [raws[0], raws[2], raws[3]]  # 101 was lost
    outs = list(st.run(seq))
    assert [o.frame.frame_ids for o in outs] == [[102, 103]]
    assert st.counters.window_restarts == 1


def test_recording_round_trip(raws, tmp_path):
    p = write_recording(tmp_path / "session.h5", raws[:3])
    back = list(iter_frames(p))
    assert [r.frame_id for r in back] == [100, 101, 102]
    np.testing.assert_array_equal(back[1].if_samples, raws[1].if_samples)
    assert back[0].meta["truth"]["identity"] == 3
    st = ProcessingStage(SC, ProcessingConfig(frames_averaged=3), warm_up=False)
    outs = list(st.run_recording(p))
    assert len(outs) == 1 and outs[0].frame.frame_ids == [100, 101, 102]
    with pytest.raises(RecordingError, match="does not exist"):
        list(iter_frames(tmp_path / "none.h5"))
    import h5py
    with h5py.File(tmp_path / "bad.h5", "w") as fh:
        fh["x"] = np.zeros(3)
    with pytest.raises(RecordingError, match="not a thz-face recording"):
        list(iter_frames(tmp_path / "bad.h5"))


@pytest.mark.integration
def _serving(cfg: ProcessingConfig, max_outputs: int):
    """A PUB socket standing in for acquisition, and a stage serving it until max_outputs (started)."""
    raw_pub = zmq.Context.instance().socket(zmq.PUB)
    raw_pub.setsockopt(zmq.LINGER, 0)
    raw_pub.bind("tcp://127.0.0.1:*")
    raw_ep = raw_pub.getsockopt_string(zmq.LAST_ENDPOINT)
    st = ProcessingStage(SC, cfg, warm_up=True)
    runner = StageRunner("processing", lambda stop, ready: st.serve(raw_ep, "tcp://127.0.0.1:*", stop=stop,
                                                                     max_outputs=max_outputs, ready=ready))
    runner.start(timeout_s=10)
    return raw_pub, st, runner


def test_zmq_raw_in_frame_and_roi_out(raws):
    ctx = zmq.Context.instance()
    raw_pub, st, runner = _serving(ProcessingConfig(frames_averaged=3), max_outputs=1)
    endpoint = runner.endpoint  # the port the stage bound
    sub = None
    try:
        sub = ctx.socket(zmq.SUB)
        sub.setsockopt(zmq.LINGER, 0)
        sub.setsockopt(zmq.SUBSCRIBE, b"")
        sub.connect(endpoint)
        # wait until the stage's SUB is connected: send malformed messages until one is counted
        for _ in range(200):
            raw_pub.send_multipart([b"raw", b"{not json"])
            if st.counters.dropped_malformed:
                break
            threading.Event().wait(0.02)
        assert st.counters.dropped_malformed >= 1
        threading.Event().wait(0.2)  # the test subscriber's connection settles too
        t_sent = time.time()
        for i, r in enumerate(raws[:3]):
            r.meta["t_complete"] = t_sent - 0.5 + i * 0.1  # acquisition's scan-complete stamp
            raw_pub.send_multipart(encode(r.to_message(seq=i)))
        got = {}
        while len(got) < 2 and sub.poll(20000):
            m = decode(sub.recv_multipart())
            got[m.topic] = m
        assert set(got) == {"frame", "roi"}
        f, roi = got["frame"], got["roi"]
        assert f.arrays["frame"].shape == (64, 256) and f.arrays["frame"].dtype == np.float32
        assert roi.arrays["roi"].shape == (64, 64) and 0 <= roi.arrays["roi"].min() <= roi.arrays["roi"].max() <= 1
        assert f.meta["frame_ids"] == [100, 101, 102] and f.frame_id == 102
        assert f.meta["roi"]["found"] and f.meta["truth"]["identity"] == 3
        assert roi.meta["calibration_id"] is None
        # the newest frame's scan-complete stamp travels on, with the stage's own times after it
        ts = roi.meta["timestamps"]
        assert ts["scan_complete"] == pytest.approx(t_sent - 0.3)
        assert t_sent <= ts["processing_received"] <= ts["processing_done"] <= time.time()
    finally:
        runner.stop(timeout_s=10)
        raw_pub.close(0)
        if sub is not None:
            sub.close(0)
    assert not runner.alive
    runner.check()  # it ended without an error


def test_refuses_public_bind():
    with pytest.raises(ValueError, match="refusing to publish"):
        check_local_endpoint("tcp://0.0.0.0:5557")
    check_local_endpoint("tcp://127.0.0.1:5557")
    check_local_endpoint("ipc:///tmp/x")


def test_recording_skips_incomplete_and_unwritten_frames(raws, tmp_path):
    # the acquisition recorder's crash markers: `complete` per frame, `count` written last, ids on /entry
    import h5py
    p = write_recording(tmp_path / "crashed.h5", raws[:3])
    with h5py.File(p, "a") as fh:
        g = fh["entry/data"]
        g["complete"][1] = 0
        g["count"][0] = 2
        fh["entry"].attrs["calibration_id"] = "cal-3"
    back = list(iter_frames(p))
    assert [r.frame_id for r in back] == [100]
    assert back[0].meta["calibration_id"] == "cal-3"


def test_config_rejects_public_publish_endpoint():
    with pytest.raises(ValueError, match="loopback"):
        ProcessingConfig(publish_endpoint="tcp://192.168.1.5:5557")
    assert ProcessingConfig(publish_endpoint="tcp://localhost:1").publish_endpoint == "tcp://localhost:1"


def test_parts_gated_as_they_arrive_give_the_whole_frames_output(raws):
    """A frame fed as `lines` parts then its `raw` skips the range gate and gives the same output, to the bit
    (each chirp is gated on its own); parts out of order, or of another seq, leave the frame to be gated whole."""
    cfg = ProcessingConfig(frames_averaged=1)
    whole, streamed = ProcessingStage(SC, cfg, warm_up=False), ProcessingStage(SC, cfg, warm_up=False)
    r = raws[0]
    n = r.if_samples.shape[0]
    for first in range(0, n, 24):          # parts of 24, 24 and 16 lines
        assert streamed.feed_part(7, first, n, r.if_samples[first:first + 24])
    p = streamed.streamed_power(7, r)
    assert p is not None and streamed.streamed_power(7, r) is None      # handed out once
    a, b = whole.feed(r), streamed.feed(r, p)
    np.testing.assert_array_equal(a.frame.power, b.frame.power)
    np.testing.assert_array_equal(a.roi.image, b.roi.image)
    assert (streamed.counters.parts, streamed.counters.streamed, whole.counters.streamed) == (3, 1, 0)
    assert not ProcessingStage(SC, cfg, warm_up=False).parts_missing(7)   # never streamed: never waits
    # a lost part: the next one does not continue the frame, nothing is handed out for it
    st = ProcessingStage(SC, cfg, warm_up=False)
    assert st.feed_part(8, 0, n, r.if_samples[:24]) and not st.feed_part(8, 48, n, r.if_samples[48:])
    assert st.streamed_power(8, r) is None and st.counters.parts_skipped == 1
    # all parts, but under another seq than the raw frame's (a frame the daemon rejected)
    for first in range(0, n, 32):
        st.feed_part(9, first, n, r.if_samples[first:first + 32])
    assert st.streamed_power(10, r) is None
    with pytest.raises(ValueError, match="does not fit a frame of 64 lines"):
        st.feed_part(9, 60, n, r.if_samples[:8])
    # the next frame's first parts before this frame's raw (two frames in progress): both kept
    for first in range(0, n, 32):
        st.feed_part(11, first, n, r.if_samples[first:first + 32])
    st.feed_part(12, 0, n, r.if_samples[:32])
    assert st.parts_missing(12) and not st.parts_missing(11)
    np.testing.assert_array_equal(st.streamed_power(11, r), p)


def test_zmq_lines_then_raw_are_gated_while_they_arrive(raws):
    """Over real ZMQ: `lines` parts and then the `raw` frame of the same seq; the stage gates the parts on
    arrival, uses them for the frame, and drops a malformed part without stopping."""
    raw_pub, st, runner = _serving(ProcessingConfig(frames_averaged=1), max_outputs=2)
    try:
        for topic in (b"raw", b"lines"):      # until both of the stage's SUB sockets are connected
            before = st.counters.dropped_malformed
            for _ in range(200):
                raw_pub.send_multipart([topic, b"{not json"])
                if st.counters.dropped_malformed > before:
                    break
                threading.Event().wait(0.02)
        bad = Message("lines", 0, -1, "x", 0.0, {"if_samples": raws[0].if_samples[:4].astype(np.int32)},
                      {"first_line": 0, "lines": 64})
        raw_pub.send_multipart(encode(bad))
        for seq, r in enumerate(raws[:2], start=1):
            for first in range(0, 64, 16):
                part = Message("lines", seq, -1, r.scanner_id, 0.0, {"if_samples": r.if_samples[first:first + 16]},
                               {"first_line": first, "lines": 64})
                raw_pub.send_multipart(encode(part))
            for _ in range(500 if seq == 1 else 0):   # the first frame's parts in before its raw; the second's
                if st.counters.parts == 4:            # race it on the other connection (the stage waits)
                    break
                threading.Event().wait(0.01)
            raw_pub.send_multipart(encode(r.to_message(seq=seq)))
        for _ in range(1500):     # the stage ends after its 2 outputs
            if not runner.alive:
                break
            threading.Event().wait(0.02)
    finally:
        runner.stop(timeout_s=10)
        raw_pub.close(0)
    runner.check()
    assert st.counters.parts == 8 and st.counters.streamed == 2 and st.counters.emitted == 2
    assert st.counters.dropped_malformed >= 3    # the probes and the int32 part

"""Malformed-message corpora for every ZMQ topic: no message kills a stage, each is dropped and counted.

Real ZMQ sockets over loopback TCP; no sleeps: the publisher waits for the subscription (XPUB) and the
test waits for the stage's counters with a deadline.
"""
from __future__ import annotations

import json
import threading
import time

import numpy as np
import pytest
import zmq

from inference.config import InferenceConfig
from inference.results import decode_result
from inference.stage import InferenceStage
from thzcore.topics import SCHEMAS, meta_error
from thzcore.wire import Message, WireError, decode, encode


@pytest.fixture
def ctx():
    c = zmq.Context()
    yield c
    c.destroy(linger=0)


def _header(topic="roi", **over):
    h = {"schema": 1, "topic": topic, "seq": 1, "frame_id": 1, "scanner_id": "s1", "t_acquired": time.time(),
         "t_sent": time.time(), "payloads": [{"name": "roi", "dtype": "<f4", "shape": [64, 64]}], "meta": {}}
    h.update(over)
    return h


def _parts(h, payload=None):
    payload = np.zeros((64, 64), "<f4").tobytes() if payload is None else payload
    return [h["topic"].encode() if isinstance(h.get("topic"), str) else b"roi",
            json.dumps(h).encode(), payload]


def roi_corpus() -> list[tuple[str, list[bytes]]]:
    """(case, multipart) of `roi` messages that must be dropped; the first is the one of issue 13, item 1."""
    img = np.random.default_rng(0).random((64, 64), dtype=np.float32).tobytes()
    cases = [
        ("meta.timestamps a list", _parts(_header(meta={"timestamps": [1, 2]}), img)),
        ("meta.timestamps NaN", [b"roi", json.dumps(_header(meta={"timestamps": {"a": float("nan")}})).encode(),
                                 img]),
        ("meta.timestamps bool", _parts(_header(meta={"timestamps": {"scan_complete": True}}), img)),
        ("meta.claims a string", _parts(_header(meta={"claims": "alice"}), img)),
        ("meta.claims of ints", _parts(_header(meta={"claims": [1, 2]}), img)),
        ("meta.claims 10k entries", _parts(_header(meta={"claims": ["x"] * 10_000}), img)),
        ("meta.truth a list", _parts(_header(meta={"truth": [1]}), img)),
        ("meta.frame_ids strings", _parts(_header(meta={"frame_ids": ["a"]}), img)),
        ("meta.calibration_id a number", _parts(_header(meta={"calibration_id": 3}), img)),
        ("meta.roi a string", _parts(_header(meta={"roi": "x"}), img)),
        ("meta an array", _parts(_header(meta=[1, 2]), img)),
        ("t_acquired NaN", [b"roi", json.dumps(_header(t_acquired=float("nan"))).encode(), img]),
        ("t_acquired inf", [b"roi", json.dumps(_header(t_acquired=float("inf"))).encode(), img]),
        ("t_acquired a string", _parts(_header(t_acquired="now"), img)),
        ("frame_id 2**62", _parts(_header(frame_id=2**62), img)),
        ("frame_id -5", _parts(_header(frame_id=-5), img)),
        ("frame_id a float", _parts(_header(frame_id=1.5), img)),
        ("seq a bool", _parts(_header(seq=True), img)),
        ("scanner_id 1000 chars", _parts(_header(scanner_id="s" * 1000), img)),
        ("header not JSON", [b"roi", b"{not json", img]),
        ("header not UTF-8", [b"roi", b"\xff\xfe{}", img]),
        ("header nested 100k deep", [b"roi", b"[" * 60_000 + b"]" * 60_000]),
        ("header too large", [b"roi", b" " * (70 * 1024), img]),
        ("one part", [b"roi"]),
        ("topic mismatch", [b"roi", json.dumps(_header(topic="raw")).encode(), img]),
        ("schema 2", _parts(_header(schema=2), img)),
        ("payload truncated", _parts(_header(), img[:100])),
        ("payload count mismatch", _parts(_header(payloads=[]), img)),
        ("dtype object", _parts(_header(payloads=[{"name": "roi", "dtype": "|O", "shape": [64, 64]}]), img)),
        ("shape negative", _parts(_header(payloads=[{"name": "roi", "dtype": "<f4", "shape": [-64, -64]}]), img)),
        ("shape 2**40", _parts(_header(payloads=[{"name": "roi", "dtype": "<f4", "shape": [2**20, 2**20]}]), img)),
        ("wrong size", _parts(_header(payloads=[{"name": "roi", "dtype": "<f4", "shape": [32, 32]}]),
                              img[:32 * 32 * 4])),
        ("integer image", _parts(_header(payloads=[{"name": "roi", "dtype": "<i4", "shape": [64, 64]}]), img)),
        ("NaN image", _parts(_header(), np.full((64, 64), np.nan, "<f4").tobytes())),
        ("two arrays, none named roi", [b"roi", json.dumps(_header(payloads=[
            {"name": "a", "dtype": "<f4", "shape": [64, 64]}, {"name": "b", "dtype": "<f4", "shape": [64, 64]}])
        ).encode(), img, img]),
    ]
    return cases


def test_decode_rejects_every_case_of_the_corpus_with_a_wire_error(matrix):
    for case, parts in roi_corpus():
        try:
            msg = decode(parts, expect_topic="roi")
        except WireError:
            matrix.record("wire decode (roi)", case, "WireError")
            continue
        # what decode lets through, the stage's own checks (image shape, dtype, NaN) must refuse
        from inference.stage import roi_from_message
        with pytest.raises(WireError):
            roi_from_message(msg, 64)
        matrix.record("wire decode (roi)", case, "refused by stage")


@pytest.mark.parametrize("topic", sorted(SCHEMAS))
def test_meta_schema_of_every_topic_refuses_non_finite_times_and_wrong_types(topic):
    required = {"lines": {"first_line": 0, "lines": 8}}.get(topic, {})   # a part means nothing without them
    assert meta_error(topic, required) is None
    assert meta_error(topic, {**required, "some_new_key": [1, {"x": 2}]}) is None  # unknown keys pass through
    bad = {"raw": {"t_complete": float("nan")}, "frame": {"timestamps": [1]}, "roi": {"claims": "x"},
           "status": {"state": 3}, "result": {"timestamps": {"a": float("inf")}},
           "lines": {"first_line": 0, "lines": 8.0}}[topic]
    assert "meta." in meta_error(topic, bad)
    if required:
        assert "meta.lines" in meta_error(topic, {"first_line": 0})


def _stage(engine, tmp_path, endpoint, context, **cfg):
    c = InferenceConfig(result_endpoint="tcp://127.0.0.1:*", gallery=str(tmp_path / "g.sqlite"), max_batch=4, **cfg)
    return InferenceStage(engine, c, roi_endpoint=endpoint, context=context, min_subscribers=1).start()


class _Source:
    def __init__(self, ctx):
        self.sock = ctx.socket(zmq.XPUB)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.SNDHWM, 100_000)
        self.sock.bind("tcp://127.0.0.1:*")
        self.endpoint = self.sock.getsockopt_string(zmq.LAST_ENDPOINT)
        self.seq = 0

    def wait_subscribed(self):
        assert self.sock.poll(10_000) and self.sock.recv() == b"\x01roi"

    def good(self, frame_id, scanner="s1", meta=None):
        self.seq += 1
        img = np.random.default_rng(frame_id).random((64, 64), dtype=np.float32)
        self.sock.send_multipart(encode(Message("roi", self.seq, frame_id, scanner, time.time(), {"roi": img},
                                                meta or {"timestamps": {"scan_complete": time.time()}})))


def _wait(pred, timeout=10.0):
    end = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > end:
            return False
        time.sleep(0.005)  # polling a counter with a deadline, not a fixed sleep
    return True


def _results(sub, n, timeout_ms=10_000):
    out = []
    for _ in range(n):
        assert sub.poll(timeout_ms), f"only {len(out)} of {n} results arrived"
        out.append(decode_result(sub.recv_multipart())[0].frame_id)
    return out


def _result_subscriber(ctx, src, stage):
    """A SUB on the stage's `result` topic, once the source and the stage have both subscribed."""
    src.wait_subscribed()
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.LINGER, 0)
    sub.setsockopt(zmq.SUBSCRIBE, b"result")
    sub.connect(stage.bound_endpoint)
    assert stage.subscribed.wait(10)
    return sub


@pytest.mark.integration
def test_inference_stage_survives_the_roi_corpus_and_answers_every_good_roi_after_it(ort_engine, tmp_path, ctx,
                                                                                     matrix):
    src = _Source(ctx)
    stage = _stage(ort_engine, tmp_path, src.endpoint, ctx)
    try:
        sub = _result_subscriber(ctx, src, stage)
        corpus = roi_corpus()
        fid = 0
        for _case, parts in corpus:
            src.sock.send_multipart(parts)
            fid += 1
            src.good(fid)  # a good ROI after every bad one: it must be answered
        assert _results(sub, len(corpus)) == list(range(1, len(corpus) + 1))
        assert _wait(lambda: stage.counters.received == 2 * len(corpus) and stage.counters.published == len(corpus))
        c = stage.counters
        assert stage._thread.is_alive() and stage.error is None
        assert c.dropped_malformed + c.dropped_failed == len(corpus) and c.published == len(corpus)
        for case, _ in corpus:
            matrix.record("inference stage (roi)", case, "dropped, stage alive", stage_deaths=0)
    finally:
        stage.stop()


@pytest.mark.integration
def test_one_far_future_frame_id_does_not_make_later_rois_stale(ort_engine, tmp_path, ctx, matrix):
    """Issue 13 item 2: one valid ROI with frame_id 2**40 used to make every later ROI of its scanner stale."""
    src = _Source(ctx)
    stage = _stage(ort_engine, tmp_path, src.endpoint, ctx)
    try:
        sub = _result_subscriber(ctx, src, stage)
        src.good(10)
        src.good(2**40)          # valid on the wire, but 2**40 - 10 frames ahead: refused
        src.good(11)
        src.good(12, scanner="s2")  # scanners are tracked apart
        src.good(12)
        assert _results(sub, 4) == [10, 11, 12, 12]
        assert _wait(lambda: stage.counters.published == 4)
        assert stage.counters.dropped_malformed == 1 and stage.counters.dropped_stale == 0
        matrix.record("inference stage (roi)", "frame_id jump 2**40", "dropped, later ROIs answered")
    finally:
        stage.stop()


def test_a_scanner_silent_for_stale_after_s_may_renumber_its_frames(ort_engine, tmp_path):
    """Staleness uses the local receive time: after stale_after_s of silence frame ids start afresh."""
    now = [1000.0]
    stage = InferenceStage(ort_engine, InferenceConfig(stale_after_s=10.0), clock=lambda: now[0])
    m = Message("roi", 1, 500, "s1", 1000.0, {}, {})
    assert stage._staleness(m, now[0]) is None
    stage._last_frame["s1"] = (500, now[0])
    assert "not newer" in stage._staleness(Message("roi", 2, 3, "s1", 1000.0, {}, {}), now[0])
    now[0] += 10.5
    assert stage._staleness(Message("roi", 3, 3, "s1", now[0], {}, {}), now[0]) is None
    with pytest.raises(WireError, match="max_frame_jump"):
        stage._last_frame["s1"] = (3, now[0])
        stage._staleness(Message("roi", 4, 3 + 1001, "s1", now[0], {}, {}), now[0])


def test_drop_warnings_are_rate_limited_and_counted():
    import logging
    from thzcore.logs import RateLimitedLog

    records: list[logging.LogRecord] = []

    class H(logging.Handler):
        def emit(self, record):
            records.append(record)

    lg = logging.getLogger("test.ratelimit")
    lg.addHandler(H())
    lg.propagate = False
    t = [0.0]
    rl = RateLimitedLog(lg, interval_s=5.0, clock=lambda: t[0])
    for i in range(10_000):
        t[0] = i * 1e-3  # 10 000 drops in 10 s of fake time
        rl.warning("dropped malformed roi", kind="malformed")
    assert len(records) == 2  # at t = 0 and t = 5 s
    assert records[1].suppressed == 4999


def raw_corpus() -> list[tuple[str, list[bytes]]]:
    from thzcore.frames import RawFrame
    lines, chirps, samples = 4, 16, 8
    good = RawFrame(1, time.time(), "s1", np.zeros((lines, chirps, samples), np.int16),
                    np.zeros((lines, chirps), np.float32), np.zeros(lines, np.float32),
                    np.ones(lines, np.int8)).to_message(1)
    parts = encode(good)
    h = json.loads(parts[1])

    def with_header(**over):
        return [parts[0], json.dumps({**h, **over}).encode(), *parts[2:]]

    return [
        ("meta.t_complete a string", with_header(meta={"t_complete": "x"})),
        ("meta.t_complete NaN", with_header(meta={"t_complete": float("nan")})),
        ("meta.truth a list", with_header(meta={"truth": [1]})),
        ("missing array", [parts[0], json.dumps({**h, "payloads": h["payloads"][:3]}).encode(), *parts[2:5]]),
        ("if_samples as float", with_header(payloads=[{**h["payloads"][0], "dtype": "<f4"}] + h["payloads"][1:])),
        ("truncated payload", [*parts[:2], parts[2][:10], *parts[3:]]),
        ("t_acquired NaN", with_header(t_acquired=float("nan"))),
        ("header not JSON", [b"raw", b"\x00"]),
        *lines_corpus(),
    ]


def lines_corpus() -> list[tuple[str, list[bytes]]]:
    """Malformed `lines` parts (the frame's parts streamed before it)."""
    part = np.zeros((2, 16, 8), np.int16)

    def msg(meta, a=part):
        return encode(Message("lines", 1, -1, "s1", time.time(), {"if_samples": a}, meta))

    return [
        ("lines: first_line negative", msg({"first_line": -1, "lines": 4})),
        ("lines: no frame size", msg({"first_line": 0})),
        ("lines: if_samples as float", msg({"first_line": 0, "lines": 4}, part.astype(np.float32))),
        ("lines: if_samples 2-D", msg({"first_line": 0, "lines": 4}, part[0])),
        ("lines: part beyond the frame", msg({"first_line": 3, "lines": 4})),
    ]


@pytest.mark.integration
def test_processing_stage_survives_the_raw_corpus(ctx, matrix):
    from processing.stage import ProcessingStage
    from thzcore.scanner import ScannerConfig

    pub = ctx.socket(zmq.XPUB)
    pub.setsockopt(zmq.LINGER, 0)
    pub.bind("tcp://127.0.0.1:*")
    endpoint = pub.getsockopt_string(zmq.LAST_ENDPOINT)
    stage = ProcessingStage(ScannerConfig())
    stop, up = threading.Event(), threading.Event()
    t = threading.Thread(target=stage.serve, args=(endpoint, "tcp://127.0.0.1:*"),
                         kwargs={"stop": stop, "ready": lambda _endpoint: up.set()}, daemon=True)
    t.start()
    try:
        assert up.wait(30)
        subscribed = set()
        while len(subscribed) < 2 and pub.poll(10_000):
            subscribed.add(pub.recv())
        assert subscribed == {b"\x01raw", b"\x01lines"}
        corpus = raw_corpus()
        for _, parts in corpus:
            pub.send_multipart(parts)
        assert _wait(lambda: stage.counters.dropped_malformed + stage.counters.errors == len(corpus))
        assert t.is_alive()
        for case, _ in corpus:
            matrix.record("processing stage (raw)", case, "dropped, stage alive", stage_deaths=0)
    finally:
        stop.set()
        t.join(10)


@pytest.mark.integration
def test_live_view_caps_connections_and_closes_idle_ones(matrix):
    """Issue 13 item 10: 300 idle connections used to hold 300 threads until they went away."""
    import socket

    from pipeline.view import LiveView

    view = LiveView(port=0, max_connections=8, idle_timeout_s=1.0).start()
    host, port = view._server.server_address[:2]
    base = threading.active_count()
    socks = []
    try:
        for _ in range(300):
            s = socket.create_connection((host, port), timeout=5)
            socks.append(s)
        # every connection beyond the cap is answered 503 and closed at once; the rest are closed when
        # idle for 1 s: each recv below returns b"" (or the 503) when the server closes its side
        answers = []
        for s in socks:
            answers.append(s.recv(200))
        assert all(a == b"" or a.startswith(b"HTTP/1.1 503") for a in answers)
        refused = sum(a.startswith(b"HTTP/1.1 503") for a in answers)
        assert refused == view._server.refused and refused > 0
        assert view._server.peak <= 8 and threading.active_count() <= base + 8
        matrix.record("live view", "300 idle connections, cap 8", f"{refused} refused, peak 8, idle closed after 1 s")
    finally:
        for s in socks:
            s.close()
        view.stop()

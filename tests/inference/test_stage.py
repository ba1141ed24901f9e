"""The inference stage over real ZMQ: result schema, no missed first result, malformed/stale drops, security."""
from __future__ import annotations

import contextlib

import math
import time

import numpy as np
import pytest
import zmq

from inference.config import InferenceConfig
from inference.gallery import Gallery
from inference.results import decode_result
from inference.stage import InferenceStage
from thzcore.labels import POSTURES
from thzcore.netsec import InsecureBindError, is_loopback_endpoint, secure_bind
from thzcore.wire import Message, encode

pytestmark = pytest.mark.integration  # the inference stage binds and connects ZMQ ports


@pytest.fixture
def ctx():
    c = zmq.Context()
    yield c
    c.destroy(linger=0)


class RoiSource:
    """A test `roi` publisher on XPUB: waits for the stage's subscription instead of sleeping."""

    def __init__(self, ctx):
        self.sock = ctx.socket(zmq.XPUB)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.bind("tcp://127.0.0.1:*")
        self.endpoint = self.sock.getsockopt_string(zmq.LAST_ENDPOINT)
        self.seq = 0

    def wait_subscribed(self, timeout_ms=10_000):
        assert self.sock.poll(timeout_ms), "the stage never subscribed to roi"
        assert self.sock.recv() == b"\x01roi"

    def send(self, frame_id, image, t_acquired=None, meta=None, scanner="s1"):
        self.seq += 1
        msg = Message("roi", self.seq, frame_id, scanner, time.time() if t_acquired is None else t_acquired,
                      {"roi": np.asarray(image, np.float32)}, meta or {"calibration_id": "cal-1"})
        self.sock.send_multipart(encode(msg))

    def send_raw(self, parts):
        self.sock.send_multipart(parts)


def _subscriber(ctx, endpoint):
    s = ctx.socket(zmq.SUB)
    s.setsockopt(zmq.LINGER, 0)
    s.setsockopt(zmq.SUBSCRIBE, b"result")
    s.connect(endpoint)
    return s


def _recv(sock, timeout_ms=10_000):
    assert sock.poll(timeout_ms), "no result arrived"
    return decode_result(sock.recv_multipart())


def _stage(ort_engine, tmp_path, src, **kw):
    cfg = InferenceConfig(result_endpoint="tcp://127.0.0.1:*", gallery=str(tmp_path / "g.sqlite"), max_batch=4)
    kw.setdefault("min_subscribers", 1)
    return InferenceStage(ort_engine, cfg, roi_endpoint=src.endpoint, context=src.sock.context, **kw).start()


def _image(seed):
    return np.random.default_rng(seed).random((64, 64), dtype=np.float32)

@contextlib.contextmanager
def _running(ort_engine, tmp_path, ctx):
    """A started stage fed by a RoiSource, with a result subscriber it has seen connect; stopped at the end."""
    src = RoiSource(ctx)
    stage = _stage(ort_engine, tmp_path, src)
    try:
        src.wait_subscribed()
        sub = _subscriber(ctx, stage.bound_endpoint)
        assert stage.subscribed.wait(10)
        yield stage, src, sub
    finally:
        stage.stop()



def test_subscriber_connected_before_the_run_gets_the_first_result(ort_engine, tmp_path, ctx):
    src = RoiSource(ctx)
    stage = _stage(ort_engine, tmp_path, src, min_subscribers=1)
    try:
        src.wait_subscribed()
        for fid in (1, 2, 3):  # ROIs arrive before anyone listens: the stage holds them
            src.send(fid, _image(fid))
        assert not stage.subscribed.wait(0.2) and stage.counters.published == 0
        sub = _subscriber(ctx, stage.bound_endpoint)
        got = [_recv(sub)[0].frame_id for _ in range(3)]
        assert got == [1, 2, 3]
    finally:
        stage.stop()


def test_result_schema_decisions_and_optional_reconstruction(ort_engine, tmp_path, ctx):
    a = _image(10)
    emb_a = ort_engine.infer(a)["embedding"][0]
    with Gallery(tmp_path / "g.sqlite", ort_engine.model_id) as g:
        g.enroll("alice", emb_a, "front-center")
        g.enroll("bob", -emb_a, "front-center")  # d(a, bob) = 2: a certain impostor
    src = RoiSource(ctx)
    stage = _stage(ort_engine, tmp_path, src, reconstruction=False)
    try:
        src.wait_subscribed()
        sub = _subscriber(ctx, stage.bound_endpoint)
        assert stage.subscribed.wait(10)
        stage.set_claims(["alice", "bob"])
        t_acq = time.time() - 0.01
        src.send(5, a, t_acquired=t_acq, meta={"calibration_id": "cal-7", "truth": {"identity": 3},
                                               "timestamps": {"frame_done": t_acq + 0.001,
                                                              "scan_complete": t_acq + 0.002,
                                                              "processing_received": t_acq + 0.004,
                                                              "processing_done": t_acq + 0.007}})
        msg, meta = _recv(sub)
        assert msg.frame_id == 5 and msg.scanner_id == "s1" and msg.t_acquired == t_acq
        assert msg.arrays == {}  # no reconstruction unless asked
        assert meta.calibration_id == "cal-7" and meta.model_id == ort_engine.model_id
        assert meta.engine == "onnxruntime" and meta.truth == {"identity": 3}
        assert meta.posture.name in POSTURES and meta.posture.name == POSTURES[meta.posture.index]
        assert sum(meta.posture.probabilities.values()) == pytest.approx(1.0, abs=1e-4)
        v = {x.claim: x for x in meta.verification}
        assert v["alice"].accepted and v["alice"].distance < 1e-4
        assert not v["bob"].accepted and v["bob"].distance == pytest.approx(2.0, abs=1e-4)
        assert v["alice"].threshold == pytest.approx(0.4)
        assert meta.identification.identity == "alice"
        assert [c.subject for c in meta.identification.candidates] == ["alice", "bob"]
        ts = meta.timestamps
        assert ts["acquired"] <= ts["frame_done"] <= ts["received"] <= ts["inference_start"] \
            <= ts["inference_end"] <= ts["published"]
        lat = meta.latency_ms
        assert lat["acquired_to_published"] == pytest.approx((ts["published"] - t_acq) * 1e3, abs=1e-3)
        assert lat["scan_complete_to_published"] == pytest.approx((ts["published"] - t_acq - 0.002) * 1e3, abs=1e-3)
        assert lat["transfer_to_processing"] == pytest.approx(2.0, abs=1e-3)
        assert lat["processing"] == pytest.approx(3.0, abs=1e-3)
        assert lat["processing_to_inference"] == pytest.approx((ts["received"] - t_acq - 0.007) * 1e3, abs=1e-3)
        assert meta.scan_to_result_ms() == lat["scan_complete_to_published"]
        assert "embedding" not in str(meta.model_dump())
    finally:
        stage.stop()
    with Gallery(tmp_path / "g.sqlite", ort_engine.model_id) as g:  # every decision audited
        kinds = [r["kind"] for r in g.audit_log()]
        assert kinds.count("verify") == 2 and kinds.count("identify") == 1


def test_reconstruction_only_when_asked(ort_engine, tmp_path, ctx, golden):
    rois, ref = golden
    src = RoiSource(ctx)
    stage = _stage(ort_engine, tmp_path, src, reconstruction=True)
    try:
        src.wait_subscribed()
        sub = _subscriber(ctx, stage.bound_endpoint)
        assert stage.subscribed.wait(10)
        src.send(1, rois[0])
        msg, meta = _recv(sub)
        rec = msg.arrays["reconstruction"]
        assert rec.shape == (64, 64) and rec.dtype == np.float32
        np.testing.assert_allclose(rec, ref["reconstruction"][0, 0], atol=1e-5)
        assert meta.identification is None  # empty gallery: nothing to identify against, no error
    finally:
        stage.stop()


def test_malformed_and_stale_rois_are_counted_and_dropped(ort_engine, tmp_path, ctx):
    with _running(ort_engine, tmp_path, ctx) as (stage, src, sub):
        good = encode(Message("roi", 1, 1, "s1", time.time(), {"roi": _image(1)}, {}))
        src.send_raw([b"roi", b"{not json"])                                   # malformed header
        src.send_raw([good[0], good[1], good[2][:100]])                        # truncated payload
        src.send(2, np.zeros((32, 32), np.float32))                            # wrong shape
        src.send(3, np.full((64, 64), np.nan, np.float32))                     # NaN
        src.send(4, _image(4), meta={"claims": "alice"})                       # claims not a list
        src.send(5, _image(5), t_acquired=time.time() - 60)                    # stale (older than 10 s)
        src.send(10, _image(10))                                               # good
        src.send(9, _image(9))                                                 # older frame id: stale
        src.send(10, _image(10))                                               # duplicate: stale
        src.send(11, _image(11))                                               # good
        got = [_recv(sub)[0].frame_id for _ in range(2)]
        assert got == [10, 11]
        deadline = time.time() + 5
        while (stage.counters.received < 10 or stage.counters.published < 2) and time.time() < deadline:
            time.sleep(0.01)
        c = stage.counters
        assert (c.received, c.dropped_malformed, c.dropped_stale, c.published) == (10, 5, 3, 2)
        assert stage._thread.is_alive()


def test_enrolment_mode_then_verification(ort_engine, tmp_path, ctx):
    with _running(ort_engine, tmp_path, ctx) as (stage, src, sub):
        stage.set_enrolment("carol")
        src.send(1, _image(1))
        assert _recv(sub)[1].enrolled == "carol"
        stage.set_enrolment(None)
        src.send(2, _image(1), meta={"claims": ["carol", "dave"]})
        meta = _recv(sub)[1]
        assert meta.enrolled is None
        assert [v.claim for v in meta.verification] == ["carol"] and meta.verification[0].accepted
        assert len(meta.errors) == 1 and "dave" in meta.errors[0] and "not enrolled" in meta.errors[0]


def test_enrolment_refuses_a_roi_below_the_quality_gate(ort_engine, tmp_path, ctx):
    """inference.enroll_min_quality: a poor ROI is not enrolled, the result says why; a good one and one without
    a quality score are."""
    with _running(ort_engine, tmp_path, ctx) as (stage, src, sub):
        stage.set_enrolment("erin")
        src.send(1, _image(1), meta={"roi": {"quality": 0.2}})
        meta = _recv(sub)[1]
        assert meta.enrolled is None and len(meta.errors) == 1
        assert "enrol erin: ROI quality 0.20 below inference.enroll_min_quality=0.45" in meta.errors[0]
        src.send(2, _image(2), meta={"roi": {"quality": 0.8}})
        src.send(3, _image(3))
        assert [_recv(sub)[1].enrolled for _ in range(2)] == ["erin", "erin"]
        assert stage.counters.enrolled == 2


def test_non_loopback_bind_refused_without_curve(ctx, ort_engine, tmp_path):
    assert is_loopback_endpoint("tcp://127.0.0.1:5558") and is_loopback_endpoint("tcp://[::1]:5") \
        and is_loopback_endpoint("ipc:///tmp/x") and is_loopback_endpoint("tcp://localhost:1")
    assert not is_loopback_endpoint("tcp://*:5558") and not is_loopback_endpoint("tcp://0.0.0.0:1") \
        and not is_loopback_endpoint("tcp://10.0.0.5:1")
    s = ctx.socket(zmq.PUB)
    with pytest.raises(InsecureBindError, match="curve_secret_key_file"):
        secure_bind(s, "tcp://0.0.0.0:5999")
    s.close(0)
    cfg = InferenceConfig(result_endpoint="tcp://*:5999", gallery=str(tmp_path / "g.sqlite"))
    stage = InferenceStage(ort_engine, cfg, roi_endpoint="tcp://127.0.0.1:1", context=ctx)
    with pytest.raises(RuntimeError, match="refusing to bind"):
        stage.start()


def test_curve_bind_with_keys(ctx, tmp_path):
    """With CURVE keys a non-loopback endpoint binds, and only an authorised client receives.

    Binds 0.0.0.0 on an ephemeral port (loopback traffic only) to exercise the non-loopback path.
    """
    import zmq.auth
    srv_pub, srv_sec = zmq.auth.create_certificates(str(tmp_path), "server")
    clients = tmp_path / "clients"
    clients.mkdir()
    cli_pub, cli_sec = zmq.auth.create_certificates(str(clients), "client")
    pub = ctx.socket(zmq.XPUB)
    pub.setsockopt(zmq.LINGER, 0)
    endpoint, auth = secure_bind(pub, "tcp://0.0.0.0:*", srv_sec, str(clients))
    try:
        port = endpoint.rsplit(":", 1)[1]
        sub = ctx.socket(zmq.SUB)
        sub.setsockopt(zmq.LINGER, 0)
        sub.curve_publickey, sub.curve_secretkey = zmq.auth.load_certificate(cli_sec)
        sub.curve_serverkey = zmq.auth.load_certificate(srv_pub)[0]
        sub.setsockopt(zmq.SUBSCRIBE, b"")
        sub.connect(f"tcp://127.0.0.1:{port}")
        assert pub.poll(10_000)  # the subscription arrives once the CURVE handshake passed
        pub.recv()
        pub.send(b"hello")
        assert sub.poll(5000) and sub.recv() == b"hello"
        sub.close(0)
    finally:
        pub.close(0)
        auth.stop()


class _FlakyEngine:
    """Wraps a real engine; raises on an all-ones ROI (an injected engine fault)."""

    def __init__(self, inner):
        self.inner = inner
        self.name, self.bundle, self.model_id, self.reconstruction = inner.name, inner.bundle, inner.model_id, False

    def infer(self, rois, reconstruction=None):
        if np.all(np.asarray(rois) == 1.0):
            raise RuntimeError("injected engine fault")
        return self.inner.infer(rois, reconstruction=reconstruction)

    def describe(self):
        return self.inner.describe()


def test_engine_failure_drops_the_batch_not_the_stage(ort_engine, tmp_path, ctx):
    src = RoiSource(ctx)
    cfg = InferenceConfig(result_endpoint="tcp://127.0.0.1:*", gallery=str(tmp_path / "g.sqlite"), max_batch=1)
    stage = InferenceStage(_FlakyEngine(ort_engine), cfg, roi_endpoint=src.endpoint, context=ctx,
                           min_subscribers=1).start()
    try:
        src.wait_subscribed()
        sub = _subscriber(ctx, stage.bound_endpoint)
        assert stage.subscribed.wait(10)
        src.send(1, np.ones((64, 64), np.float32))
        src.send(2, _image(2))
        assert _recv(sub)[0].frame_id == 2
        assert stage.counters.engine_errors == 1 and "injected" in stage.counters.last_error
    finally:
        stage.stop()


def test_latencies_without_upstream_stamps_fall_back_to_t_acquired():
    from inference.results import PostureResult, ResultMeta
    from inference.stage import _latencies

    ts = {"acquired": 100.0, "received": 100.050, "inference_start": 100.051, "inference_end": 100.061,
          "published": 100.062}
    lat = _latencies(ts, batch=2)
    assert lat == {"inference": 5.0, "queue": 1.0, "acquired_to_published": 62.0}  # no scan/processing stamps
    meta = ResultMeta(model_id="m", engine="e", posture=PostureResult(name=POSTURES[0], index=0, probabilities={}),
                      latency_ms=lat)
    assert meta.scan_to_result_ms() == 62.0
    assert math.isnan(ResultMeta(model_id="m", engine="e", posture=meta.posture).scan_to_result_ms())

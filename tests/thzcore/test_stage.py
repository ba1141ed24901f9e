"""The one stage lifecycle: ready endpoint, stop, an error before and after ready, an unexpected end."""
from __future__ import annotations

import threading

import pytest
import zmq

from thzcore.stage import StageCounters, StageError, StageRunner


def _pub_stage(stop: threading.Event, ready) -> str:
    """A real stage: binds a PUB on an ephemeral loopback port, reports it, works until stopped."""
    sock = zmq.Context.instance().socket(zmq.PUB)
    sock.setsockopt(zmq.LINGER, 0)
    try:
        sock.bind("tcp://127.0.0.1:*")
        ready(sock.getsockopt_string(zmq.LAST_ENDPOINT))
        while not stop.wait(0.01):
            sock.send_multipart([b"status", b"{}"])
        return "stopped"
    finally:
        sock.close(0)


@pytest.mark.integration
def test_start_returns_the_bound_endpoint_and_stop_joins():
    runner = StageRunner("pub", _pub_stage)
    endpoint = runner.start(timeout_s=10)
    assert endpoint.startswith("tcp://127.0.0.1:") and not endpoint.endswith(":*")
    sub = zmq.Context.instance().socket(zmq.SUB)
    sub.setsockopt(zmq.LINGER, 0)
    sub.setsockopt(zmq.SUBSCRIBE, b"status")
    sub.connect(endpoint)
    try:
        assert sub.poll(5000), "nothing arrived from the stage's endpoint"
    finally:
        sub.close(0)
    runner.check()  # alive, no error
    runner.stop()
    assert not runner.alive and runner.result == "stopped"
    runner.check()  # stopped on request: not an error


def test_error_before_ready_fails_start_with_the_stage_named():
    def broken(stop, ready):
        raise OSError("port in use")

    with pytest.raises(StageError, match=r"decoder stage failed to start: port in use"):
        StageRunner("decoder", broken).start(timeout_s=5)


def test_death_after_ready_and_unexpected_end_are_reported_by_check():
    go = threading.Event()

    def dies_later(stop, ready):
        ready("inproc://x")
        go.wait(5)
        raise ValueError("bad frame shape")

    runner = StageRunner("processing", dies_later)
    assert runner.start(timeout_s=5) == "inproc://x"
    go.set()
    runner._thread.join(5)
    with pytest.raises(StageError, match="processing stage failed: bad frame shape"):
        runner.check()

    quits = StageRunner("collector", lambda stop, ready: ready(None))
    quits.start(timeout_s=5)
    quits._thread.join(5)
    with pytest.raises(StageError, match="collector stage stopped unexpectedly"):
        quits.check()


def test_ready_timeout_and_double_start():
    stop = threading.Event()
    runner = StageRunner("slow", lambda stop, ready: stop.wait(5), stop=stop)
    with pytest.raises(StageError, match="did not come up within"):
        runner.start(timeout_s=0.1)
    with pytest.raises(StageError, match="already started"):
        runner.start()
    calls = []
    runner._on_stop = lambda: calls.append("told")
    runner.stop()
    assert calls == ["told"] and not runner.alive


def test_counters_base_serialises_subclass_fields():
    from dataclasses import dataclass

    @dataclass
    class Mine(StageCounters):
        faces: int = 0

    c = Mine(received=3, faces=2)
    assert c.to_json() == {"received": 3, "dropped_malformed": 0, "last_error": "", "faces": 2}

"""Wire protocol: round trips and every malformed message rejected with WireError."""
import json

import numpy as np
import pytest

from thzcore.frames import RawFrame
from thzcore.wire import Message, WireError, decode, encode


def _frame():
    rng = np.random.default_rng(0)
    return RawFrame(7, 123.5, "s1", rng.integers(-8000, 8000, (4, 16, 8), dtype=np.int16),
                    rng.random((4, 16), dtype=np.float32), rng.random(4, dtype=np.float32),
                    np.array([1, -1, 1, -1], np.int8), {"calibration_id": "cal-x"})


def test_raw_frame_round_trip():
    f = _frame()
    g = RawFrame.from_message(decode(encode(f.to_message(seq=3))))
    assert g.frame_id == 7 and g.scanner_id == "s1" and g.meta == {"calibration_id": "cal-x"}
    np.testing.assert_array_equal(g.if_samples, f.if_samples)
    np.testing.assert_array_equal(g.feedback_x, f.feedback_x)
    np.testing.assert_array_equal(g.direction, f.direction)


@pytest.mark.parametrize("mutate, match", [
    (lambda p: p[:1], "at least"),
    (lambda p: [p[0], b"{not json", *p[2:]], "not JSON"),
    (lambda p: [p[0], p[1], p[2][:-2], *p[3:]], "bytes, header says"),
    (lambda p: [p[0], p[1], *p[2:-1]], "payloads"),
    (lambda p: [b"frame", *p[1:]], "differs"),
])
def test_malformed_messages_are_rejected(mutate, match):
    parts = encode(_frame().to_message(seq=1))
    with pytest.raises(WireError, match=match):
        decode(mutate(parts))


def test_schema_and_dtype_checked():
    parts = encode(Message("roi", 1, 1, "s", 0.0, {"roi": np.zeros((2, 2), np.float32)}))
    h = json.loads(parts[1])
    h["schema"] = 99
    with pytest.raises(WireError, match="schema"):
        decode([parts[0], json.dumps(h).encode(), parts[2]])
    h["schema"] = 1
    h["payloads"][0]["dtype"] = "O"
    with pytest.raises(WireError, match="not allowed"):
        decode([parts[0], json.dumps(h).encode(), parts[2]])


@pytest.mark.parametrize("endpoint, local", [
    ("tcp://127.0.0.1:5555", True), ("tcp://127.3.2.1:1", True), ("tcp://[::1]:5", True),
    ("tcp://localhost:9", True), ("ipc:///tmp/x", True), ("inproc://a", True),
    ("tcp://*:5555", False), ("tcp://0.0.0.0:1", False), ("tcp://10.0.0.5:1", False),
    ("tcp://eth0:1", False), ("udp://127.0.0.1:1", False),
])
def test_loopback_endpoints(endpoint, local):
    from thzcore.netsec import is_loopback_endpoint
    assert is_loopback_endpoint(endpoint) is local

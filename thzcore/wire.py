"""ZMQ wire protocol: multipart [topic, header JSON, payload...], raw little-endian arrays, never pickle.

Header keys: schema, topic, seq, t_acquired, frame_id, scanner_id, payloads=[{name, dtype, shape}],
meta (a small JSON object). Receivers call `decode` and drop + count what raises WireError.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from thzcore.topics import meta_error

SCHEMA_VERSION = 1
TOPICS = ("raw", "lines", "frame", "roi", "result", "status")
ALLOWED_DTYPES = ("<i2", "<u2", "<i4", "<f4", "<f8", "|u1", "|i1", "<u4", "<i8")
MAX_HEADER_BYTES = 64 * 1024
MAX_PAYLOAD_BYTES = 256 * 1024 * 1024
MAX_ID = 2**53  # seq and frame_id: integers a JSON reader in any language holds exactly


class WireError(ValueError):
    """A message that does not follow the wire protocol; the receiver drops and counts it."""


@dataclass
class Message:
    topic: str
    seq: int
    frame_id: int
    scanner_id: str
    t_acquired: float
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)


def _byte_view(a: np.ndarray) -> bytes | memoryview:
    """The bytes of a C-contiguous array as a flat memoryview (no copy); b'' for an empty array."""
    return memoryview(a.reshape(-1)).cast("B") if a.size else b""


def encode(msg: Message) -> list[bytes | memoryview]:
    """Message -> multipart frames ready for `socket.send_multipart`.

    Payloads are memoryviews of the (little-endian, C-contiguous) arrays themselves, not copies: a
    `send_multipart(..., copy=False)` hands that memory to ZMQ, which keeps a reference until the
    message has left, so the array must not be written to after the send (a copying send, the
    default, copies it there and then).
    """
    if msg.topic not in TOPICS:
        raise WireError(f"unknown topic {msg.topic!r}; expected one of {TOPICS}")
    payloads, descr = [], []
    for name, arr in msg.arrays.items():
        a = np.ascontiguousarray(arr)
        a = a.astype(a.dtype.newbyteorder("<"), copy=False)
        dt = a.dtype.str
        if dt not in ALLOWED_DTYPES:
            raise WireError(f"array {name!r} has dtype {dt} which the wire does not carry")
        descr.append({"name": name, "dtype": dt, "shape": list(a.shape)})
        payloads.append(_byte_view(a))
    header = {
        "schema": SCHEMA_VERSION, "topic": msg.topic, "seq": int(msg.seq), "frame_id": int(msg.frame_id),
        "scanner_id": msg.scanner_id, "t_acquired": float(msg.t_acquired), "t_sent": time.time(),
        "payloads": descr, "meta": msg.meta,
    }
    return [msg.topic.encode(), json.dumps(header, separators=(",", ":")).encode(), *payloads]


def decode(frames: list[bytes], expect_topic: str | None = None) -> Message:
    """Multipart frames -> Message, validating every field and payload size."""
    if len(frames) < 2:
        raise WireError(f"message has {len(frames)} parts; need at least topic and header")
    topic = bytes(frames[0]).decode("ascii", errors="replace")
    if expect_topic is not None and topic != expect_topic:
        raise WireError(f"topic {topic!r} where {expect_topic!r} was expected")
    raw_header = bytes(frames[1])
    if len(raw_header) > MAX_HEADER_BYTES:
        raise WireError(f"header of {len(raw_header)} bytes exceeds {MAX_HEADER_BYTES}")
    try:
        h = json.loads(raw_header)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise WireError(f"header is not JSON: {exc}") from exc
    except RecursionError:
        raise WireError("header JSON is nested too deeply") from None
    if not isinstance(h, dict):
        raise WireError("header is not a JSON object")
    if h.get("schema") != SCHEMA_VERSION:
        raise WireError(f"schema {h.get('schema')!r}, this receiver reads schema {SCHEMA_VERSION}")
    if h.get("topic") != topic:
        raise WireError(f"header topic {h.get('topic')!r} differs from envelope topic {topic!r}")
    for key, typ in (("seq", int), ("frame_id", int), ("scanner_id", str), ("t_acquired", (int, float))):
        if not isinstance(h.get(key), typ) or isinstance(h.get(key), bool):
            raise WireError(f"header field {key!r} missing or of the wrong type: {h.get(key)!r}")
    for key in ("seq", "frame_id"):
        if not -1 <= h[key] < MAX_ID:
            raise WireError(f"header field {key!r}={h[key]} outside -1..2**53")
    if not math.isfinite(h["t_acquired"]):
        raise WireError(f"header field 't_acquired' is {h['t_acquired']!r}; a finite time is needed")
    if len(h["scanner_id"]) > 128:
        raise WireError(f"header field 'scanner_id' of {len(h['scanner_id'])} characters exceeds 128")
    descr = h.get("payloads")
    if not isinstance(descr, list) or len(descr) != len(frames) - 2:
        raise WireError(f"header lists {descr if not isinstance(descr, list) else len(descr)} payloads, "
                        f"message carries {len(frames) - 2}")
    arrays: dict[str, np.ndarray] = {}
    for d, buf in zip(descr, frames[2:]):
        if not isinstance(d, dict) or not isinstance(d.get("name"), str):
            raise WireError(f"bad payload descriptor {d!r}")
        dt, shape = d.get("dtype"), d.get("shape")
        if dt not in ALLOWED_DTYPES:
            raise WireError(f"payload {d['name']!r}: dtype {dt!r} not allowed")
        if not isinstance(shape, list) or not all(isinstance(s, int) and s >= 0 for s in shape):
            raise WireError(f"payload {d['name']!r}: bad shape {shape!r}")
        n = int(np.prod(shape, dtype=np.int64)) * np.dtype(dt).itemsize
        mv = memoryview(buf)
        if n > MAX_PAYLOAD_BYTES or mv.nbytes != n:
            raise WireError(f"payload {d['name']!r}: {mv.nbytes} bytes, header says {n}")
        arrays[d["name"]] = np.frombuffer(mv, dtype=dt).reshape(shape)
    meta = h.get("meta") or {}
    if not isinstance(meta, dict):
        raise WireError("header meta is not an object")
    bad = meta_error(topic, meta)
    if bad is not None:
        raise WireError(f"{topic} message: {bad}")
    return Message(topic, h["seq"], h["frame_id"], h["scanner_id"], float(h["t_acquired"]), arrays, meta)

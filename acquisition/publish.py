"""ZMQ publishing of the daemon: `raw` frames and `lines` parts (caller's thread) and `status` with heartbeats (own thread).

Endpoints bind to loopback by default; any other address is refused unless ZMQ CURVE is configured
(a server certificate and a directory of authorised client certificates).
"""
from __future__ import annotations

import queue
import threading
import time
from typing import Any, Callable

import numpy as np
import zmq

from acquisition.errors import ConfigurationError
from thzcore import netsec
from thzcore.frames import RawFrame
from thzcore.logs import get_logger
from thzcore.netsec import CurveLease, InsecureBindError
from thzcore.wire import Message, encode

log = get_logger(__name__)


def check_bind(endpoint: str, curve_secret_key_file: str, curve_clients_dir: str, what: str) -> None:
    """Refuse a non-loopback bind without CURVE (thzcore.netsec), as the daemon's ConfigurationError."""
    try:
        netsec.check_bind(endpoint, curve_secret_key_file, curve_clients_dir, f"acquisition.{what}")
    except InsecureBindError as exc:
        raise ConfigurationError(str(exc)) from exc


def bind(sock: zmq.Socket, endpoint: str, curve_secret_key_file: str, curve_clients_dir: str,
         what: str) -> tuple[str, CurveLease | None]:
    """secure_bind with configured keys used on loopback too; (bound endpoint, CURVE lease or None)."""
    try:
        return netsec.secure_bind(sock, endpoint, curve_secret_key_file, curve_clients_dir, f"acquisition.{what}",
                                  curve_on_loopback=True)
    except InsecureBindError as exc:
        raise ConfigurationError(str(exc)) from exc
    except zmq.ZMQError as exc:
        raise ConfigurationError(f"acquisition.{what}={endpoint!r}: cannot bind: {exc}") from exc


class StatusPublisher:
    """Publishes the daemon state on `status` at every change and as a heartbeat every `heartbeat_s`.

    The socket lives in this object's thread; other threads hand it updates through a queue.
    """

    def __init__(self, ctx: zmq.Context, endpoint: str, scanner_id: str, heartbeat_s: float,
                 curve_secret_key_file: str = "", curve_clients_dir: str = "",
                 clock: Callable[[], float] = time.time) -> None:
        self.scanner_id, self.heartbeat_s, self._clock = scanner_id, heartbeat_s, clock
        self._sock = ctx.socket(zmq.PUB)
        self._sock.setsockopt(zmq.LINGER, 0)
        self.endpoint, self._lease = bind(self._sock, endpoint, curve_secret_key_file, curve_clients_dir,
                                          "status_endpoint")
        self._q: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._current: dict[str, Any] = {"state": "disconnected"}
        self._seq = 0
        self._thread = threading.Thread(target=self._run, name="status-pub", daemon=True)
        self._thread.start()

    def update(self, **fields: Any) -> None:
        self._q.put(dict(fields))

    def close(self) -> None:
        self._q.put(None)
        self._thread.join(timeout=5)

    def _send(self, heartbeat: bool) -> None:
        meta = {**self._current, "heartbeat": heartbeat}
        msg = Message("status", self._seq, int(meta.get("frame_id", -1)), self.scanner_id, self._clock(), {}, meta)
        self._sock.send_multipart(encode(msg))
        self._seq += 1

    def _run(self) -> None:
        next_beat = time.monotonic() + self.heartbeat_s
        try:
            while True:
                try:
                    item = self._q.get(timeout=max(0.0, next_beat - time.monotonic()))
                except queue.Empty:
                    self._send(heartbeat=True)
                    next_beat = time.monotonic() + self.heartbeat_s
                    continue
                if item is None:
                    self._send(heartbeat=False)  # the final state
                    return
                changed = item.get("state") != self._current.get("state")
                self._current.update(item)
                if changed:
                    self._send(heartbeat=False)
        finally:
            self._sock.close(0)
            if self._lease is not None:
                self._lease.stop()


class RawPublisher:
    """PUB of `raw` frames and of the `lines` parts streamed before them; never blocks (PUB drops beyond the high-water mark, counted by ZMQ not here)."""

    def __init__(self, ctx: zmq.Context, endpoint: str, hwm: int, curve_secret_key_file: str = "",
                 curve_clients_dir: str = "") -> None:
        self._sock = ctx.socket(zmq.PUB)
        self._sock.setsockopt(zmq.LINGER, 0)
        self._sock.setsockopt(zmq.SNDHWM, hwm)
        self.endpoint, self._lease = bind(self._sock, endpoint, curve_secret_key_file, curve_clients_dir,
                                          "raw_endpoint")
        self.sent = 0
        self.parts_sent = 0

    def publish(self, frame: RawFrame, seq: int) -> None:
        self._sock.send_multipart(encode(frame.to_message(seq)), copy=False)
        self.sent += 1

    def publish_part(self, seq: int, scanner_id: str, first_line: int, lines: int, if_samples: np.ndarray,
                     t_received: float) -> None:
        """Lines first_line .. of the frame being scanned (topic `lines`, zero-copy), under `seq`, the seq the
        frame's `raw` message will carry; t_acquired is when they arrived (the frame's start is known only
        once it is complete)."""
        msg = Message("lines", seq, -1, scanner_id, t_received, {"if_samples": if_samples.astype("<i2", copy=False)},
                      {"first_line": int(first_line), "lines": int(lines)})
        self._sock.send_multipart(encode(msg), copy=False)
        self.parts_sent += 1

    def close(self) -> None:
        self._sock.close(0)
        if self._lease is not None:
            self._lease.stop()
            self._lease = None

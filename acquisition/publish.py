"""ZMQ publishing of the daemon: `raw` frames (caller's thread) and `status` with heartbeats (own thread).

Endpoints bind to loopback by default; any other address is refused unless ZMQ CURVE is configured
(a server certificate and a directory of authorised client certificates).
"""
from __future__ import annotations

import queue
import threading
import time
from pathlib import Path
from typing import Any, Callable

import zmq

from acquisition.errors import ConfigurationError
from thzcore.frames import RawFrame
from thzcore.logs import get_logger
from thzcore.netsec import is_loopback_endpoint as is_loopback
from thzcore.wire import Message, encode

log = get_logger(__name__)

_AUTH_LOCK = threading.Lock()
_AUTHS: dict[int, Any] = {}


def check_bind(endpoint: str, curve_secret_key_file: str, curve_clients_dir: str, what: str) -> None:
    """Refuse a non-loopback bind without CURVE, saying how to configure it."""
    if is_loopback(endpoint):
        return
    if not curve_secret_key_file or not curve_clients_dir:
        raise ConfigurationError(
            f"acquisition.{what}={endpoint!r} is not a loopback address and CURVE is not configured: refusing to "
            "publish scans unauthenticated. Bind tcp://127.0.0.1:PORT (the default), or create certificates with "
            "`python -c \"import zmq.auth; zmq.auth.create_certificates('keys', 'server')\"` (and one per client), "
            "then set acquisition.curve_secret_key_file = 'keys/server.key_secret' and "
            "acquisition.curve_clients_dir to a directory holding the clients' *.key files")
    if not Path(curve_secret_key_file).expanduser().is_file():
        raise ConfigurationError(f"acquisition.curve_secret_key_file={curve_secret_key_file!r} does not exist")
    if not Path(curve_clients_dir).expanduser().is_dir():
        raise ConfigurationError(f"acquisition.curve_clients_dir={curve_clients_dir!r} is not a directory")


def bind(sock: zmq.Socket, endpoint: str, curve_secret_key_file: str, curve_clients_dir: str, what: str) -> str:
    """Bind after check_bind; CURVE server with an authenticator when configured. Returns the bound endpoint."""
    check_bind(endpoint, curve_secret_key_file, curve_clients_dir, what)
    if curve_secret_key_file:
        from zmq.auth import load_certificate
        from zmq.auth.thread import ThreadAuthenticator
        public, secret = load_certificate(str(Path(curve_secret_key_file).expanduser()))
        if secret is None:
            raise ConfigurationError(f"acquisition.curve_secret_key_file={curve_secret_key_file!r} holds no secret key")
        with _AUTH_LOCK:
            if id(sock.context) not in _AUTHS:
                auth = ThreadAuthenticator(sock.context)
                auth.start()
                auth.configure_curve(domain="*", location=str(Path(curve_clients_dir).expanduser()))
                _AUTHS[id(sock.context)] = auth
        sock.curve_secretkey = secret
        sock.curve_publickey = public
        sock.curve_server = True
    try:
        sock.bind(endpoint)
    except zmq.ZMQError as exc:
        raise ConfigurationError(f"acquisition.{what}={endpoint!r}: cannot bind: {exc}") from exc
    return sock.getsockopt_string(zmq.LAST_ENDPOINT)


def stop_authenticator(ctx: zmq.Context) -> None:
    """Stop the CURVE authenticator of `ctx`, if any (its socket would keep ctx.term() waiting)."""
    with _AUTH_LOCK:
        auth = _AUTHS.pop(id(ctx), None)
    if auth is not None:
        auth.stop()


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
        self.endpoint = bind(self._sock, endpoint, curve_secret_key_file, curve_clients_dir, "status_endpoint")
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


class RawPublisher:
    """PUB of `raw` frames; never blocks (PUB drops beyond the high-water mark, counted by ZMQ not here)."""

    def __init__(self, ctx: zmq.Context, endpoint: str, hwm: int, curve_secret_key_file: str = "",
                 curve_clients_dir: str = "") -> None:
        self._sock = ctx.socket(zmq.PUB)
        self._sock.setsockopt(zmq.LINGER, 0)
        self._sock.setsockopt(zmq.SNDHWM, hwm)
        self.endpoint = bind(self._sock, endpoint, curve_secret_key_file, curve_clients_dir, "raw_endpoint")
        self.sent = 0

    def publish(self, frame: RawFrame, seq: int) -> None:
        self._sock.send_multipart(encode(frame.to_message(seq)), copy=False)
        self.sent += 1

    def close(self) -> None:
        self._sock.close(0)

"""The emulator's control backdoor: JSON requests over ZMQ REQ/REP on loopback (docs/protocols.md section 3)."""
from __future__ import annotations

import json
import threading
from typing import Any, Callable

import zmq

from thzcore.logs import get_logger
from thzcore.netsec import is_loopback_endpoint

log = get_logger(__name__)

MAX_REQUEST = 1 << 20


class Backdoor:
    """A REP socket served by its own thread; `handler(request dict) -> reply dict`."""

    def __init__(self, handler: Callable[[dict[str, Any]], dict[str, Any]],
                 endpoint: str = "tcp://127.0.0.1:*") -> None:
        if not is_loopback_endpoint(endpoint):
            raise ValueError(f"backdoor endpoint {endpoint!r} is not loopback; the fault-injection backdoor has no "
                             "authentication and only binds to 127.0.0.1, ::1 or ipc://")
        self.handler = handler
        self._ctx = zmq.Context.instance()
        self._sock = self._ctx.socket(zmq.REP)
        self._sock.setsockopt(zmq.LINGER, 0)
        self._sock.bind(endpoint)
        self.endpoint = self._sock.getsockopt_string(zmq.LAST_ENDPOINT)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="backdoor", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _serve(self) -> None:
        poller = zmq.Poller()
        poller.register(self._sock, zmq.POLLIN)
        try:
            while not self._stop.is_set():
                if not poller.poll(100):
                    continue
                raw = self._sock.recv()
                try:
                    if len(raw) > MAX_REQUEST:
                        raise ValueError(f"request of {len(raw)} bytes exceeds {MAX_REQUEST}")
                    req = json.loads(raw)
                    if not isinstance(req, dict) or not isinstance(req.get("cmd"), str):
                        raise ValueError('a request is a JSON object with a string "cmd"')
                    reply = {"ok": True, **self.handler(req)}
                except Exception as exc:  # every bad request gets an answer; the REP socket must reply
                    log.warning("backdoor request refused", extra={"error": str(exc)})
                    reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
                self._sock.send(json.dumps(reply, default=str).encode())
        finally:
            self._sock.close(0)

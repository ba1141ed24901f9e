"""A small scripted SCPI server on loopback TCP: each command line gets a reply behaviour (bytes, drip, close).

`behaviour(command, conn)` writes whatever it likes to the connected socket, may sleep between writes
(that is the fault being injected: a slow instrument), or close the connection.
"""
from __future__ import annotations

import socket
import threading
import time
from typing import Callable

Behaviour = Callable[[str, socket.socket], None]


class FakeScpi:
    def __init__(self, behaviour: Behaviour) -> None:
        self.behaviour = behaviour
        self.srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.srv.bind(("127.0.0.1", 0))
        self.srv.listen(4)
        self.port = self.srv.getsockname()[1]
        self.stop = threading.Event()
        self.commands: list[str] = []
        self._t = threading.Thread(target=self._serve, daemon=True)
        self._t.start()

    @property
    def resource(self) -> str:
        return f"TCPIP::127.0.0.1::{self.port}::SOCKET"

    def _serve(self) -> None:
        self.srv.settimeout(0.2)
        while not self.stop.is_set():
            try:
                conn, _ = self.srv.accept()
            except (socket.timeout, OSError):
                continue
            threading.Thread(target=self._conn, args=(conn,), daemon=True).start()

    def _conn(self, conn: socket.socket) -> None:
        buf = b""
        with conn:
            while not self.stop.is_set():
                try:
                    data = conn.recv(4096)
                except OSError:
                    return
                if not data:
                    return
                buf += data
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    cmd = line.decode("ascii", "replace").strip()
                    self.commands.append(cmd)
                    try:
                        self.behaviour(cmd, conn)
                    except OSError:
                        return
                    if conn.fileno() < 0:
                        return

    def close(self) -> None:
        self.stop.set()
        self.srv.close()


def drip(conn: socket.socket, data: bytes, bytes_per_s: float, stop: threading.Event, piece: int = 64) -> None:
    """Send `data` at about bytes_per_s in pieces (a slow or stuck instrument); stops when `stop` is set."""
    period = piece / bytes_per_s
    for i in range(0, len(data), piece):
        if stop.is_set():
            return
        conn.sendall(data[i:i + piece])
        stop.wait(period)  # the injected slowness of the instrument, not a test's wait


def endless(conn: socket.socket, stop: threading.Event, seconds: float = 20.0) -> None:
    """Bytes without a terminator as fast as the socket takes them, for up to `seconds`."""
    end = time.monotonic() + seconds
    block = b"A" * 65536
    while not stop.is_set() and time.monotonic() < end:
        conn.sendall(block)


class StepClock:
    """A monotonic clock for the reply reader that advances `step` seconds at every reading.

    Time on it passes only as the reader looks at it (once per receive or wait), so a deadline is
    crossed after a known number of readings whatever the machine's load: a reader that keeps
    reading past its deadline, or spins on a closed socket, shows up as readings, not as wall time.
    """

    def __init__(self, step: float = 0.01, start: float = 1000.0) -> None:
        self.step, self.now = step, start

    def __call__(self) -> float:
        t = self.now
        self.now += self.step
        return t

"""The receiver's SCPI socket server on loopback TCP: one control connection at a time, reply faults applied here."""
from __future__ import annotations

import socket
import threading
import time

import numpy as np

from sim.emulators.faults import FaultBook
from sim.emulators.receiver_device import Block, ReceiverDevice
from thzcore.logs import get_logger

log = get_logger(__name__)

MAX_COMMAND = 4096  # bytes of one command line; longer input is dropped with error -112


def block_header(nbytes: int) -> bytes:
    """`#<n><nbytes>`: the IEEE 488.2 definite-length block header."""
    n = str(nbytes).encode()
    return b"#" + str(len(n)).encode() + n


def frame_block(payload: bytes) -> bytes:
    return block_header(len(payload)) + payload


def send_parts(conn: socket.socket, parts: list[bytes | memoryview]) -> None:
    """Send the parts back to back with sendmsg (one gathered write per call, no joined copy)."""
    views = [memoryview(p).cast("B") for p in parts if len(p)]
    while views:
        sent = conn.sendmsg(views)
        while sent:
            if sent >= views[0].nbytes:
                sent -= views[0].nbytes
                views.pop(0)
            else:
                views[0] = views[0][sent:]
                sent = 0


class ScpiServer:
    """Listens on host:port; a new connection supersedes the previous one (the instrument has one session)."""

    def __init__(self, device: ReceiverDevice, faults: FaultBook, host: str = "127.0.0.1", port: int = 0,
                 seed: int = 0) -> None:
        self.device, self.faults = device, faults
        self._listen = socket.create_server((host, port), reuse_port=False)
        self._listen.settimeout(0.1)
        self.host, self.port = self._listen.getsockname()[:2]
        self._stop = threading.Event()
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._rng = np.random.default_rng(seed)
        self.connections = 0

    @property
    def resource(self) -> str:
        return f"TCPIP::{self.host}::{self.port}::SOCKET"

    def start(self) -> None:
        t = threading.Thread(target=self._accept_loop, name="scpi-accept", daemon=True)
        t.start()
        self._threads.append(t)

    def stop(self) -> None:
        self._stop.set()
        self.disconnect()
        for t in self._threads:
            t.join(timeout=5)
        self._listen.close()

    def disconnect(self) -> int:
        """Close every open connection now (the host sees the peer go away). Returns how many."""
        with self._lock:
            conns, self._conns = self._conns, []
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            c.close()
        return len(conns)

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                conn, addr = self._listen.accept()
            except TimeoutError:
                continue
            except OSError:
                break
            self.disconnect()  # one session: the newest wins
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                self._conns.append(conn)
            self.connections += 1
            log.info("receiver client connected", extra={"peer": f"{addr[0]}:{addr[1]}"})
            t = threading.Thread(target=self._serve, args=(conn,), name="scpi-conn", daemon=True)
            t.start()
            self._threads = [x for x in self._threads if x.is_alive()] + [t]

    def _serve(self, conn: socket.socket) -> None:
        buf = b""
        conn.settimeout(0.2)
        try:
            while not self._stop.is_set():
                try:
                    data = conn.recv(65536)
                except TimeoutError:
                    continue
                if not data:
                    return
                buf += data
                while b"\n" in buf:
                    raw, buf = buf.split(b"\n", 1)
                    if not self._command(conn, raw.decode("ascii", "replace").strip()):
                        return
                if len(buf) > MAX_COMMAND:
                    buf = b""
                    self.device.push_error(-112, "Program mnemonic too long")
        except OSError:
            return
        finally:
            with self._lock:
                if conn in self._conns:
                    self._conns.remove(conn)
            conn.close()

    def _command(self, conn: socket.socket, line: str) -> bool:
        """Handle one command; returns False when the connection must end."""
        if not line:
            return True
        fault = self.faults.take("receiver", line, ("disconnect",))
        if fault is not None:
            log.info("receiver fault: connection closed", extra={"command": line})
            return False
        reply = self.device.handle(line)
        if reply is None:
            return True
        block = isinstance(reply, Block)
        kinds = ("delay", "drop", "truncate", "corrupt") if block else ("delay", "drop")
        fault = self.faults.take("receiver", line, kinds)
        if fault is None:
            if block:  # header, the frame memory itself, terminator: no 8 MB copy to frame the reply
                send_parts(conn, [block_header(len(reply)), reply.data, b"\n"])
            else:
                conn.sendall(reply.encode("ascii") + b"\n")
            return True
        data = frame_block(bytes(reply)) + b"\n" if block else reply.encode("ascii") + b"\n"
        log.info("receiver fault", extra={"kind": fault.kind, "command": line})
        if fault.kind == "drop":
            return True
        if fault.kind == "delay":
            time.sleep(float(fault.params.get("seconds", 1.0)))
        elif fault.kind == "truncate":
            cut = max(1, int(len(data) * float(fault.params.get("fraction", 0.5))))
            conn.sendall(data[:cut])
            return True  # the rest never comes; the host times out
        elif fault.kind == "corrupt":
            payload = bytes(reply)
            if fault.params.get("mode", "payload") == "header":
                ndig = len(str(len(payload)))
                data = b"#" + str(ndig).encode() + b"X" * ndig + payload + b"\n"
            else:
                arr = np.frombuffer(payload, np.uint8).copy()
                idx = self._rng.integers(0, arr.size, size=max(1, arr.size // 100000))
                arr[idx] ^= 0x5A
                data = frame_block(arr.tobytes()) + b"\n"
        conn.sendall(data)
        return True

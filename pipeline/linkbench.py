"""The limit of a raw frame's SCPI transfer, measured in the run that measures the transfer.

`recv_into_limit(nbytes)`: a loopback TCP pair in this process; per repeat the reader sends one
request byte and the writer thread answers with `nbytes` from a memoryview (one `sendall`), which
the reader receives with plain `recv_into` into one preallocated buffer: a query and its reply with
no protocol, no checks and no copies. `transfer_rows` sets the acquisition daemon's per-frame
exchange times (AcquisitionDaemon.timings) beside it.
"""
from __future__ import annotations

import socket
import threading
import time

import numpy as np

# daemon timing keys -> what they hold (acquisition.session.TIMED_PARTS, then the daemon's own)
PARTS = {
    "galvo_send": "galvo STAT? sent (reply read after the blocks)",
    "errors": "SYST:ERR? (error queue)",
    "head": "FETC:HEAD? (frame header + CRCs)",
    "frame": "FETC:FRAM? block read + CRC",
    "feedback": "FETC:FEED? block read + CRC",
    "galvo": "galvo STAT? reply read + judged (serial pty)",
    "check": "sample range + feedback check",
    "truth": "sim truth (backdoor, sim only)",
    "record": "HDF5 recording",
    "publish": "ZMQ publish `raw`",
}


def recv_into_limit(nbytes: int, repeats: int = 20) -> np.ndarray:
    """ms per request/reply of `nbytes` over loopback TCP received by plain recv_into (see the module docstring)."""
    payload = memoryview(np.random.default_rng(0).integers(0, 256, nbytes, dtype=np.uint8).tobytes())
    srv = socket.create_server(("127.0.0.1", 0))
    port = srv.getsockname()[1]

    def writer() -> None:
        conn, _ = srv.accept()
        with conn:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            while conn.recv(1):
                conn.sendall(payload)

    t = threading.Thread(target=writer, name="recv-into-limit", daemon=True)
    t.start()
    buf = bytearray(nbytes)
    view = memoryview(buf)
    out = np.empty(repeats)
    with socket.create_connection(("127.0.0.1", port)) as c:
        c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for i in range(repeats + 2):  # two warm-up round trips
            t0 = time.perf_counter()
            c.sendall(b"?")
            got = 0
            while got < nbytes:
                n = c.recv_into(view[got:], nbytes - got)
                if n == 0:
                    raise ConnectionError("the limit's writer closed the connection")
                got += n
            if i >= 2:
                out[i - 2] = (time.perf_counter() - t0) * 1e3
        c.shutdown(socket.SHUT_WR)
    t.join(timeout=5)
    srv.close()
    return out


def transfer_rows(timings: list[dict[str, float]], limit_ms: np.ndarray, stream_lines: int = 0) -> list[dict]:
    """Median and p99 of each exchange after *OPC? over the frames, with the limit and the ratio to it
    (`stream_lines`: the frame was read in parts while scanned, so `frame` is the last part only)."""
    lim = float(np.median(limit_ms))
    rows = []
    names = dict(PARTS)
    if stream_lines:
        names["frame"] = f"FETC:PART? last part (<= {stream_lines} lines) + CRC"
    for key, what in names.items():
        v = np.array([t[key] for t in timings if key in t])
        if v.size == 0:
            continue
        rows.append({"part": key, "what": what, "median_ms": float(np.median(v)), "p99_ms": float(np.percentile(v, 99))})
    total = np.array([sum(t.get(k, 0.0) for k in PARTS) for t in timings])
    rows.append({"part": "total", "what": "after *OPC? until published", "median_ms": float(np.median(total)),
                 "p99_ms": float(np.percentile(total, 99))})
    for r in rows:
        r["limit_ms"] = lim
        r["vs_limit"] = r["median_ms"] / lim
    return rows

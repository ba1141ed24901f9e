"""Garbage galvo replies on a real pseudo-terminal: every number the driver parses is checked (issue 13, item 5).

A scripted controller answers on the master side of a pty; the driver opens the slave side with
pyserial as it would a USB adapter.
"""
from __future__ import annotations

import os
import threading
import tty

import pytest

from acquisition.galvo import GalvoController
from acquisition.galvo_protocol import (GalvoError, GalvoFaultError, GalvoProtocolError, checksum, unframe)
from acquisition.raster import AxisLimits, GalvoLimits, optical_angle_mapping

pytestmark = pytest.mark.integration  # real pty / TCP / processes


def _line(body: str) -> bytes:
    return body.encode() + b"*" + checksum(body.encode()).encode() + b"\n"


class PtyController:
    """Answers each framed command with replies[keyword] (a body, framed here), else `OK <command>`."""

    def __init__(self, replies: dict[str, str]) -> None:
        self.replies = replies
        self.master, slave = os.openpty()
        tty.setraw(slave)
        self.port = os.ttyname(slave)
        self._slave = slave
        self.stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self) -> None:
        buf = b""
        while not self.stop.is_set():
            try:
                data = os.read(self.master, 256)
            except OSError:
                return
            buf += data
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                cmd = unframe(line + b"\n")
                body = self.replies.get(cmd.split()[0], f"OK {cmd}")
                os.write(self.master, _line(body))

    def close(self) -> None:
        self.stop.set()
        os.close(self._slave)
        os.close(self.master)


@pytest.fixture
def controller():
    made = []

    def make(replies):
        c = PtyController(replies)
        made.append(c)
        to_deg, to_m = optical_angle_mapping(6.0)
        g = GalvoController(c.port, 115200, 0.5, GalvoLimits(AxisLimits(0.4, 100.0), AxisLimits(0.3, 10.0)),
                            to_deg, to_m)
        g.open()
        made.append(g)
        return g
    yield make
    for m in reversed(made):
        m.close()


CASES = [
    ("POS? inf", {"POS?": "OK POS? inf 0.0"}, "position", GalvoProtocolError),
    ("POS? nan nan", {"POS?": "OK POS? nan nan"}, "position", GalvoProtocolError),
    ("POS? -inf", {"POS?": "OK POS? 0.0 -inf"}, "position", GalvoProtocolError),
    ("POS? 89.9 deg", {"POS?": "OK POS? 89.9 0.0"}, "position", GalvoFaultError),
    ("POS? 1e308", {"POS?": "OK POS? 1e308 0.0"}, "position", GalvoFaultError),
    ("POS? one number", {"POS?": "OK POS? 1.0"}, "position", GalvoProtocolError),
    ("POS? words", {"POS?": "OK POS? a b"}, "position", GalvoProtocolError),
    ("LIM? NaN", {"LIM?": "OK LIM? nan 3.0 100 10"}, "check_controller_limits", GalvoProtocolError),
    ("LIM? inf", {"LIM?": "OK LIM? inf inf inf inf"}, "check_controller_limits", GalvoProtocolError),
    ("LIM? negative", {"LIM?": "OK LIM? -5 -5 100 10"}, "check_controller_limits", GalvoProtocolError),
    ("LIM? zero frequency", {"LIM?": "OK LIM? 5 5 0 0"}, "check_controller_limits", GalvoProtocolError),
    ("STAT? bad flags", {"STAT?": "OK STAT? RUNNING zz 3"}, "status", GalvoProtocolError),
    ("STAT? unknown state", {"STAT?": "OK STAT? DANCING 00 3"}, "status", GalvoProtocolError),
    ("ERR? unquoted", {"ERR?": "OK ERR? 5 oops"}, "pop_error", GalvoProtocolError),
    ("stale echo", {"POS?": "OK STAT? RUNNING 00 1"}, "position", GalvoProtocolError),
    ("neither OK nor ER", {"POS?": "MAYBE"}, "position", GalvoProtocolError),
]


@pytest.mark.parametrize("case,replies,method,exc_type", CASES, ids=[c[0] for c in CASES])
def test_garbage_galvo_replies_raise_a_named_error(controller, matrix, case, replies, method, exc_type):
    g = controller(replies)
    with pytest.raises(exc_type) as ei:
        getattr(g, method)()
    assert isinstance(ei.value, GalvoError)
    matrix.record("galvo replies (pty)", case, type(ei.value).__name__)


def test_sane_replies_still_parse(controller):
    g = controller({"POS?": "OK POS? 1.0 -0.5", "LIM?": "OK LIM? 5.0 4.0 200 20"})
    x, y = g.position()
    assert x == pytest.approx(6.0 * 0.017455064928217585, rel=1e-12)  # 6 m * tan(1 deg)
    assert y < 0
    g.check_controller_limits()

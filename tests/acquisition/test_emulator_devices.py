"""The emulated instruments' interpreters without transports: galvo states, limits, watchdog; SCPI dialect."""
from __future__ import annotations

import pytest

from sim.emulators.faults import Fault, FaultBook
from sim.emulators.galvo_device import GalvoDevice, GalvoLimits, frame_reply
from sim.emulators.receiver_device import canonical
from acquisition.galvo_protocol import frame_command, parse_reply

pytestmark = pytest.mark.integration  # the emulated devices on a pty and an SCPI socket


class FakeClock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def _dev(clock=None) -> GalvoDevice:
    return GalvoDevice(6.0, GalvoLimits(3.8, 2.9), clock=clock or FakeClock())


def _q(dev: GalvoDevice, cmd: str):
    return parse_reply(dev.handle_line(frame_command(cmd)[:-1]), cmd)


def test_galvo_raster_sequence_and_position():
    clk = FakeClock()
    dev = _dev(clk)
    for c in ("WAVE X SINE", "AMP X 2.00000", "FREQ X 32.00000", "WAVE Y SAW", "AMP Y 1.00000", "FREQ Y 1.00000"):
        assert _q(dev, c).ok
    assert not _q(dev, "START").ok  # START needs ARMED
    assert _q(dev, "ARM").ok and _q(dev, "START").ok
    assert _q(dev, "STAT?").values == ("RUNNING", "08", "0")  # errq: the refused START is queued
    assert _q(dev, "ERR?").values[0] == "5"
    clk.t += 1 / 128  # a quarter fast period: x = 2 sin(2 pi/4 - pi/2) = 0; y = 1 - 2/128
    x, y = (float(v) for v in _q(dev, "POS?").values)
    assert x == pytest.approx(0.0, abs=1e-5) and y == pytest.approx(1 - 2 / 128, abs=1e-5)
    # lines = int(t * 2 f_x) = int(1/128 * 64) = int(0.5) = 0
    assert _q(dev, "STAT?").values == ("RUNNING", "00", "0")


def test_galvo_line_counter():
    clk = FakeClock()
    dev = _dev(clk)
    for c in ("AMP X 1.00000", "FREQ X 32.00000", "FREQ Y 1.00000", "ARM", "START"):
        assert _q(dev, c).ok
    clk.t += 0.5  # 0.5 s * 64 lines/s = 32 lines
    assert _q(dev, "STAT?").values == ("RUNNING", "00", "32")


def test_galvo_limits_refused_and_counted():
    dev = _dev()
    r = _q(dev, "AMP X 3.90000")
    assert not r.ok and r.code == 4 and dev.out_of_range == 1
    assert _q(dev, "AMP X 3.00000").ok
    assert not _q(dev, "OFFS X 1.00000").ok  # 1 + 3 > 3.8
    assert not _q(dev, "FREQ Y 20.00000").ok and dev.out_of_range == 3
    assert not _q(dev, "WAVE X SAW").ok  # the fast axis has no sawtooth
    assert _q(dev, "LIM?").values == ("3.80000", "2.90000", "100.00000", "10.00000")


def test_galvo_bad_checksum_and_unknown():
    dev = _dev()
    assert dev.handle_line(b"IDN?*00") == frame_reply('ER 1 IDN? "Checksum mismatch"')
    assert b"Unknown" in dev.handle_line(frame_command("FOO")[:-1])
    assert b"Malformed" in dev.handle_line(b"IDN?")


def test_galvo_watchdog_parks():
    clk = FakeClock()
    dev = _dev(clk)
    for c in ("AMP X 1.00000", "FREQ X 32.00000", "FREQ Y 1.00000", "WDOG 2.00000", "ARM", "START"):
        assert _q(dev, c).ok
    clk.t += 1.5
    assert dev.mirror().running
    clk.t += 1.0  # 2.5 s since the last command > 2 s
    assert not dev.mirror().running and dev.state == "PARKED"
    st = _q(dev, "STAT?").values
    assert st[0] == "PARKED" and int(st[1], 16) & 0x04


def test_galvo_stall_latches_until_reset_after_it_ends():
    clk = FakeClock()
    dev = _dev(clk)
    for c in ("AMP X 1.00000", "FREQ X 32.00000", "FREQ Y 1.00000", "ARM", "START"):
        _q(dev, c)
    dev.stall(1.0)
    assert dev.state == "FAULT" and dev.mirror().stalled
    assert _q(dev, "RST").ok and dev.state == "FAULT"  # still stalled
    assert not _q(dev, "ARM").ok
    clk.t += 1.5
    assert _q(dev, "RST").ok and dev.state == "IDLE"
    assert _q(dev, "STAT?").values == ("IDLE", "00", "0")


@pytest.mark.parametrize("header, canon", [
    ("SENSe:SWEep:POINts", "SENS:SWE:POIN"), ("swe:poin?", "SENS:SWE:POIN?"), (":TRIGger:SOURce", "TRIG:SOUR"),
    ("INIT:IMM", "INIT"), ("SYST:ERR:NEXT?", "SYST:ERR?"), ("*idn?", "*IDN?"), ("FETCh:FRAMe?", "FETC:FRAM?"),
    ("SENS:BOGUS", None),
])
def test_scpi_canonical_headers(header, canon):
    assert canonical(header) == canon


def test_fault_book_matching_and_count():
    fb = FaultBook()
    fb.arm(Fault("receiver", "drop", "FETC:FRAM?", 2))
    assert fb.take("receiver", "*OPC?") is None
    assert fb.take("galvo", "FETC:FRAM?") is None
    assert fb.take("receiver", "fetc:fram?").kind == "drop"
    assert fb.take("receiver", "FETC:FRAM?") is not None
    assert fb.take("receiver", "FETC:FRAM?") is None and fb.fired == {"receiver.drop": 2}
    with pytest.raises(ValueError):
        fb.arm(Fault("galvo", "truncate"))
    with pytest.raises(ValueError):
        fb.arm(Fault("receiver", "explode"))

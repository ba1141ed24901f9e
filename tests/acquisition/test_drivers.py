"""The drivers against the emulated instruments over a real pty (pyserial) and a real socket (pyvisa-py)."""
from __future__ import annotations

import numpy as np
import pytest

from acquisition.galvo import GalvoController
from acquisition.errors import FrameRejected
from acquisition.galvo_protocol import GalvoFaultError, GalvoLimitError, GalvoLinkError, GalvoTimeoutError
from acquisition.raster import AxisCommand, GalvoLimits, RasterPlan, optical_angle_mapping
from acquisition.receiver import Receiver, ReceiverSettings, resource_manager
from acquisition.scpi import ReceiverConfigError, ReceiverInstrumentError, ReceiverLinkError, ReceiverTimeoutError

from .conftest import point_at, small_settings

pytestmark = pytest.mark.integration


@pytest.fixture
def galvo(emu):
    s = small_settings()
    to_deg, to_m = optical_angle_mapping(s.scanner.optics.standoff_m)
    g = GalvoController(emu.endpoints()["galvo_port"], 115200, 0.5,
                        GalvoLimits.from_config(s.scanner, s.acquisition), to_deg, to_m)
    g.open()
    yield g
    try:
        g.park()
    finally:
        g.close()


@pytest.fixture
def receiver(emu):
    r = Receiver(emu.endpoints()["receiver_resource"], 0.5)
    r.open()
    yield r
    r.close()


def test_galvo_round_trip(galvo, emu):
    assert galvo.identify() == "THZLAB,GSC-2,SN00042,1.4.0"
    galvo.check_controller_limits()
    galvo.reset()
    plan = RasterPlan.from_config(small_settings().scanner, small_settings().acquisition)
    galvo.set_axis(plan.fast)
    galvo.set_axis(plan.slow)
    # the controller holds what was sent: 0.236579 m at 6 m = atan(0.0394298) = 0.0394094 rad = 2.25799 deg
    assert emu.galvo.axes["X"].amplitude_deg == pytest.approx(2.25799, abs=1e-5)
    galvo.arm()
    galvo.start()
    assert galvo.check_ok().state == "RUNNING"
    galvo.park(0.01, -0.02)
    x, y = galvo.position()
    assert x == pytest.approx(0.01, abs=1e-4) and y == pytest.approx(-0.02, abs=1e-4)


def test_out_of_range_commands_never_reach_the_controller(galvo, emu):
    emu.galvo.log.clear()
    with pytest.raises(GalvoLimitError, match="not sent"):
        galvo.set_axis(AxisCommand("X", "SINE", 0.39, 0.05, 32.0))  # 0.44 m > 0.40 m
    with pytest.raises(GalvoLimitError):
        galvo.set_axis(AxisCommand("Y", "SAW", 0.2, 0.0, 50.0))  # 50 Hz > 10 Hz
    with pytest.raises(GalvoLimitError):
        galvo.park(0.5, 0.0)
    assert list(emu.galvo.log) == [] and emu.galvo.out_of_range == 0
    # 0.39 + 0.01 m = the 0.40 m limit, but atan(0.39/6) + atan(0.01/6) deg > atan(0.40/6): refused too
    with pytest.raises(GalvoLimitError, match="drive units"):
        galvo.set_axis(AxisCommand("X", "SINE", 0.39, 0.01, 32.0))
    assert list(emu.galvo.log) == []
    galvo.set_axis(AxisCommand("X", "SINE", 0.38, 0.01, 32.0))  # inside: sent, accepted
    assert any(c.startswith("AMP X") for c in emu.galvo.log) and emu.galvo.out_of_range == 0


def test_galvo_timeout_leaves_link_suspect_until_reopened(galvo, emu):
    emu.handle({"cmd": "fault", "device": "galvo", "kind": "drop", "match": "STAT?"})
    with pytest.raises(GalvoTimeoutError):
        galvo.status()
    with pytest.raises(GalvoLinkError, match="suspect"):
        galvo.identify()
    galvo.open()
    assert galvo.identify().startswith("THZLAB")


def test_galvo_status_query_split_in_two_keeps_the_link_in_step(galvo, emu):
    """begin_check sends STAT?, finish_check judges its reply; nothing else is sent meanwhile."""
    galvo.reset()
    plan = RasterPlan.from_config(small_settings().scanner, small_settings().acquisition)
    galvo.set_axis(plan.fast)
    galvo.set_axis(plan.slow)
    galvo.arm()
    galvo.start()
    galvo.begin_check()
    assert galvo.pending == "STAT?"
    with pytest.raises(GalvoLinkError, match="not been read yet"):
        galvo.identify()                          # refused before anything is written
    assert galvo.finish_check().state == "RUNNING" and galvo.pending is None
    galvo.begin_check()
    galvo.abandon_check()                         # reply read and dropped
    assert galvo.identify().startswith("THZLAB")   # the next reply is this command's, not STAT?'s
    with pytest.raises(GalvoLinkError, match="no command is waiting"):
        galvo.receive()
    emu.handle({"cmd": "fault", "device": "galvo", "kind": "error", "code": 201, "text": "Coil current limit"})
    galvo.begin_check()
    with pytest.raises(GalvoFaultError, match="Coil current limit"):
        galvo.finish_check()                      # judged as check_ok judges (ERR? drained)


def test_galvo_status_reply_crosses_the_line_while_the_frame_block_is_read(emu):
    """In ScannerSession.acquire the STAT? is out before FETC:FRAM? and read after the feedback block."""
    from acquisition.session import TIMED_PARTS, ScannerSession

    s = point_at(small_settings(), emu.endpoints())
    session = ScannerSession(s.scanner, s.acquisition)
    seen = []
    fetch_frame, fetch_feedback = session.receiver.fetch_frame, session.receiver.fetch_feedback
    session.receiver.fetch_frame = lambda *a, **k: (seen.append(("frame", session.galvo.pending)),
                                                     fetch_frame(*a, **k))[1]
    session.receiver.fetch_feedback = lambda *a, **k: (seen.append(("feedback", session.galvo.pending)),
                                                        fetch_feedback(*a, **k))[1]
    session.connect()
    try:
        session.apply()
        frame, _ = session.acquire()
        assert seen == [("frame", "STAT?"), ("feedback", "STAT?")] and session.galvo.pending is None
        assert list(session.last_timings) == list(TIMED_PARTS)
        emu.handle({"cmd": "fault", "device": "receiver", "kind": "corrupt", "mode": "payload",
                    "match": "FETC:FRAM?"})
        with pytest.raises(FrameRejected):
            session.acquire()                     # the pending STAT? reply is read and dropped on the way up
        assert session.galvo.pending is None
        frame, _ = session.acquire()              # and the next frame's exchanges are in step
        assert frame.if_samples.shape == session.shape
    finally:
        session.park()
        session.close()


def test_serial_unplug_is_a_link_error_and_replug_works(galvo, emu):
    emu.handle({"cmd": "fault", "device": "galvo", "kind": "unplug", "replug_after_s": 0.3})
    with pytest.raises(GalvoLinkError):
        galvo.status()
    import time
    for _ in range(100):
        try:
            galvo.open()
            break
        except GalvoLinkError:
            time.sleep(0.05)
    assert galvo.identify().startswith("THZLAB")


def _start_raster(galvo, s) -> None:
    """The configured raster running: line triggers for the receiver."""
    plan = RasterPlan.from_config(s.scanner, s.acquisition)
    galvo.reset()
    galvo.set_axis(plan.fast)
    galvo.set_axis(plan.slow)
    galvo.arm()
    galvo.start()


def test_receiver_configure_and_fetch(receiver, galvo, emu):
    s = small_settings()
    assert receiver.identify() == "THZLAB,FMCW-340R,SN1001,2.1.0"
    receiver.reset()
    rs = ReceiverSettings.from_config(s.scanner, 0.2)
    receiver.configure(rs)
    assert receiver.query("SENSe:SWEep:POINts?") == "128"
    # no raster running: no line trigger, the frame aborts with -231
    receiver.arm()
    receiver.wait(2.0)
    with pytest.raises(ReceiverInstrumentError, match="-231") as ei:
        receiver.check_errors()
    assert ei.value.code == -231
    _start_raster(galvo, s)
    receiver.arm()
    receiver.wait(2.0)
    receiver.check_errors()
    head = receiver.head()
    assert head.shape == (8, 64, 128)
    frame = receiver.fetch_frame(head)
    np.testing.assert_array_equal(receiver.fetch_line(head, 3), frame[3])
    fx, fy, d = receiver.fetch_feedback(head)
    assert fx.shape == (8, 64) and list(d) == [1, -1] * 4
    # big-endian (FORM:BORD NORM) delivers the same values
    receiver.write("FORM:BORD NORM")
    res = receiver._res
    big = res.query_binary_values("FETC:FRAM?", datatype="h", is_big_endian=True, container=np.ndarray)
    np.testing.assert_array_equal(big.reshape(frame.shape), frame)
    receiver.write("FORM:BORD SWAP")


def test_receiver_refuses_bad_settings(receiver):
    receiver.reset()
    receiver.write("SENS:SWE:POIN 99999")
    receiver.write("SENS:BOGUS 1")
    errs = receiver.errors()
    assert errs[0][0] == -222 and "POIN" in errs[0][1] and errs[1][0] == -113
    bad = ReceiverSettings(15e9, 25.6e-6, 5e6, 128, 64, 8, 5.68, trigger_timeout_s=100.0)
    with pytest.raises(ReceiverConfigError, match="-222") as ei:
        receiver.configure(bad)
    assert ei.value.code == -222


def test_receiver_timeout_leaves_link_suspect(receiver, emu):
    emu.handle({"cmd": "fault", "device": "receiver", "kind": "delay", "seconds": 1.0, "match": "*IDN?"})
    with pytest.raises(ReceiverTimeoutError):
        receiver.identify()
    with pytest.raises(ReceiverLinkError, match="suspect"):
        receiver.query("*OPC?")  # the late *IDN? reply must never be read as this answer
    receiver.open()
    assert receiver.query("*OPC?") == "1"


def test_one_resource_manager_per_process():
    assert resource_manager("@py") is resource_manager("@py")


def test_any_resource_string_accepted_and_bad_one_reported():
    r = Receiver("TCPIP0::127.0.0.1::1::SOCKET", 0.2)  # board number, nothing listening on port 1
    r.open()  # pyvisa-py connects lazily
    with pytest.raises(ReceiverLinkError, match="refused"):
        r.identify()
    r.close()
    with pytest.raises(ReceiverLinkError, match="cannot open"):
        Receiver("NOT-A-RESOURCE", 0.2).open()


@pytest.mark.parametrize("reader", ["exact", "pyvisa"])
def test_block_readers_agree(emu, galvo, reader):
    """Both block readers (exact reads, and pyvisa's query_binary_values) return the same frame."""
    s = small_settings()
    _start_raster(galvo, s)
    r = Receiver(emu.endpoints()["receiver_resource"], 2.0, block_reader=reader)
    r.open()
    try:
        r.reset()
        r.configure(ReceiverSettings.from_config(s.scanner, 0.2))
        r.arm()
        r.wait(2.0)
        head = r.head()
        frame = r.fetch_frame(head)  # CRC-checked against the head
        assert frame.shape == (8, 64, 128) and frame.dtype == np.dtype("<i2")
        assert np.count_nonzero(frame.view(np.uint8) == 0x0A) > 0  # the data hold terminator bytes
        r.fetch_feedback(head)
    finally:
        r.close()
    with pytest.raises(ValueError, match="block_reader"):
        Receiver("x", 1.0, block_reader="fast")


def test_replies_are_paced_at_the_baud_rate(tmp_path):
    """At 300 baud a 35-byte IDN? reply needs 35 x 10 / 300 = 1.17 s on the wire: a 0.3 s timeout expires,
    while at 115200 baud (3 ms) the same exchange succeeds."""
    from sim.emulators.faults import FaultBook
    from sim.emulators.galvo_device import GalvoDevice, GalvoLimits as DevLimits
    from sim.emulators.galvo_port import PtyGalvoPort

    s = small_settings()
    to_deg, to_m = optical_angle_mapping(6.0)
    lim = GalvoLimits.from_config(s.scanner, s.acquisition)
    for baud, ok in ((300, False), (115200, True)):
        port = PtyGalvoPort(GalvoDevice(6.0, DevLimits(3.8, 2.9)), tmp_path / f"g{baud}", baud, FaultBook())
        port.start()
        try:
            g = GalvoController(str(tmp_path / f"g{baud}"), baud, 0.3, lim, to_deg, to_m)
            g.open()
            if ok:
                assert g.identify().startswith("THZLAB")
            else:
                with pytest.raises(GalvoTimeoutError):
                    g.identify()
            g.close()
        finally:
            port.stop()


@pytest.mark.parametrize("reader", ["exact", "pyvisa"])
def test_frame_parts_join_to_the_frame_and_its_crc(emu, galvo, reader):
    """FETC:PART? in parts of 3 lines (3, 3, 2) with the CRC continued part to part equals the whole frame and
    the head's CRC, with either block reader; a part of a frame aborted for want of line triggers is an
    empty block (None), the reason in the error queue; lines beyond the frame are refused (no reply, SCPI's
    rule for a query in error: the host's deadline ends it)."""
    s = small_settings()
    r = Receiver(emu.endpoints()["receiver_resource"], 2.0, block_reader=reader)
    r.open()
    try:
        r.reset()
        r.configure(ReceiverSettings.from_config(s.scanner, 0.2))
        r.arm()                                # the raster is not running: no line trigger
        assert r.fetch_part(0, np.empty((3, 64, 128), "<i2"), 0, 2.0) is None
        with pytest.raises(ReceiverInstrumentError, match="-231"):
            r.check_errors()
        _start_raster(galvo, s)
        r.arm()
        buf, crc = np.empty((8, 64, 128), "<i2"), 0
        for first in (0, 3, 6):
            crc = r.fetch_part(first, buf[first:first + 3], crc, 2.0)
        r.wait(2.0)
        head = r.head()
        assert crc == head.crc_if
        np.testing.assert_array_equal(buf, r.fetch_frame(head))
        with pytest.raises(ReceiverTimeoutError):        # lines 6..8 of 8: an error is queued, no reply
            r.fetch_part(6, np.empty((3, 64, 128), "<i2"), 0, 0.3)
        r.open()
        with pytest.raises(ReceiverInstrumentError, match="-222"):
            r.check_errors()
    finally:
        r.close()

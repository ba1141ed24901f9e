"""Pure protocol pieces with hand-computed bytes: galvo line framing, SCPI blocks, raster limits, state machine."""
from __future__ import annotations

import math

import numpy as np
import pytest

from acquisition.config import AcquisitionConfig
from acquisition.galvo_protocol import (
    GalvoLimitError, GalvoProtocolError, checksum, frame_command, parse_error_entry, parse_reply, parse_status,
    unframe,
)
from acquisition.raster import AxisCommand, GalvoLimits, RasterPlan, check_axis, optical_angle_mapping
from acquisition.scpi import (
    BlockError, FrameCorruptError, FrameHead, ReceiverLinkError, build_block, crc32, is_config_error, pack_feedback,
    parse_block, parse_block_header, parse_error, parse_head, unpack_feedback,
)
from acquisition.state import State, StateMachine, backoff_delays
from sim.emulators import galvo_device
from thzcore.scanner import ScannerConfig


# --- galvo line protocol ---------------------------------------------------------------------------
def test_checksum_by_hand():
    # 'I'^'D'^'N'^'?' = 0x49^0x44^0x4E^0x3F = 0x7C ; 'R'^'S'^'T' = 0x52^0x53^0x54 = 0x55
    assert checksum(b"IDN?") == "7C"
    assert frame_command("IDN?") == b"IDN?*7C\n"
    assert frame_command("RST") == b"RST*55\n"
    assert galvo_device.checksum(b"IDN?") == "7C"  # the emulator's own implementation agrees


@pytest.mark.parametrize("body", ["", "A*B", "AMP X 1\n", "caf\u00e9", "X" * 100])
def test_frame_command_refuses_unsendable(body):
    with pytest.raises(ValueError):
        frame_command(body)


def test_reply_round_trip_and_echo_check():
    line = galvo_device.frame_reply("OK AMP X 2.25600")
    assert unframe(line) == "OK AMP X 2.25600"
    assert parse_reply(line, "AMP X 2.25600").ok
    r = parse_reply(galvo_device.frame_reply("OK POS? 0.10000 -0.20000"), "POS?")
    assert r.values == ("0.10000", "-0.20000")
    with pytest.raises(GalvoProtocolError, match="stale"):
        parse_reply(line, "AMP X 1.00000")  # the reply of another command
    er = parse_reply(galvo_device.frame_reply('ER 4 AMP "Amplitude too large"'), "AMP X 9.00000")
    assert not er.ok and er.code == 4 and er.text == "Amplitude too large"


@pytest.mark.parametrize("line", [b"OK RST*56\n", b"OK RST\n", b"OK RST*5\n", b"\x00OK*00\n", b"OK RST*55"])
def test_unframe_rejects_bad_lines(line):
    # OK RST checksum: 'O'^'K'^' '^'R'^'S'^'T' = 0x4F^0x4B^0x20^0x55 = 0x31, so *56 is wrong
    with pytest.raises(GalvoProtocolError):
        unframe(line)


def test_status_and_error_entries():
    st = parse_status(("RUNNING", "09", "120"))
    assert st.faulted and st.names == ("stall", "errq") and st.lines == 120
    assert not parse_status(("RUNNING", "00", "0")).faulted
    assert parse_error_entry(("101", '"Servo', 'tracking', 'error"')) == (101, "Servo tracking error")
    for bad in [("BUSY", "00", "0"), ("IDLE", "zz", "0"), ("IDLE",)]:
        with pytest.raises(GalvoProtocolError):
            parse_status(bad)


# --- raster geometry and limits --------------------------------------------------------------------
def test_raster_plan_from_defaults():
    sc, acq = ScannerConfig(), AcquisitionConfig()
    plan = RasterPlan.from_config(sc, acq)
    # A = fov/2 / sin(pi/2 * fill) = 0.225 / sin(0.4 pi) = 0.225 / 0.951057 = 0.236579 m
    assert plan.fast.amplitude_m == pytest.approx(0.236579, abs=1e-6)
    assert plan.slow.amplitude_m == pytest.approx(0.225) and plan.slow.waveform == "SAW"
    plan.check(GalvoLimits.from_config(sc, acq))


def test_limits_refuse_with_the_value_named():
    lim = GalvoLimits.from_config(ScannerConfig(), AcquisitionConfig())
    with pytest.raises(GalvoLimitError, match=r"0\.2\+0\.25 = 0\.4500 m exceeds the axis limit 0\.4"):
        check_axis(AxisCommand("X", "SINE", 0.25, 0.2, 32.0), lim)
    with pytest.raises(GalvoLimitError, match="frequency_hz=150"):
        check_axis(AxisCommand("X", "SINE", 0.1, 0.0, 150.0), lim)
    with pytest.raises(GalvoLimitError, match="negative"):
        check_axis(AxisCommand("Y", "SAW", -0.1, 0.0, 1.0), lim)
    with pytest.raises(ValueError, match="not finite"):
        AxisCommand("X", "SINE", math.nan, 0.0, 32.0)


def test_optical_angle_mapping():
    to_deg, to_m = optical_angle_mapping(6.0)
    # atan(0.6 / 6) = 5.710593 deg
    assert to_deg(0.6) == pytest.approx(5.710593, abs=1e-6)
    assert to_m(to_deg(-0.3)) == pytest.approx(-0.3)
    with pytest.raises(ValueError):
        optical_angle_mapping(0.0)


# --- SCPI blocks -------------------------------------------------------------------------------------
def test_block_literal_bytes():
    assert build_block(b"hello") == b"#15hello"
    assert parse_block_header(b"#15hello") == (3, 5)
    assert parse_block(b"#15hello\n") == b"hello"
    assert parse_block(b"#210" + bytes(range(10)) + b"\n") == bytes(range(10))
    assert build_block(b"") == b"#10"


@pytest.mark.parametrize("buf, match", [
    (b"15hello", "start with"), (b"#05hello", "indefinite"), (b"#2x5hello", "2 digits"),
    (b"#15hel", "truncated"), (b"#15helloXX", "followed by"), (b"#9999999999" + b"x", "above"),
])
def test_block_errors(buf, match):
    with pytest.raises(BlockError, match=match):
        parse_block(buf)


def test_scpi_error_head_and_feedback():
    assert parse_error('-222,"Data out of range;TRIG:TIM 100"') == (-222, "Data out of range;TRIG:TIM 100")
    assert parse_error('+0,"No error"') == (0, "No error")
    assert is_config_error(-222) and is_config_error(-113) and not is_config_error(-310)
    with pytest.raises(ReceiverLinkError):
        parse_error("1")  # a stale *OPC? reply
    h = FrameHead(7, 12.5, 8, 64, 128, 1, 2)
    assert parse_head(h.format()) == h
    with pytest.raises(ReceiverLinkError):
        parse_head("1,2,3")
    fx = np.arange(8 * 4, dtype=np.float32).reshape(8, 4)
    fy = np.linspace(-1, 1, 8).astype(np.float32)
    d = np.array([1, -1] * 4, np.int8)
    x2, y2, d2 = unpack_feedback(pack_feedback(fx, fy, d), 8, 4)
    np.testing.assert_array_equal(x2, fx)
    np.testing.assert_array_equal(y2, fy)
    np.testing.assert_array_equal(d2, d)
    bad = pack_feedback(fx, fy, d)
    bad[-1] = 0.5
    with pytest.raises(FrameCorruptError, match="directions"):
        unpack_feedback(bad, 8, 4)
    with pytest.raises(FrameCorruptError, match="expected"):
        unpack_feedback(bad[:-1], 8, 4)
    # zlib CRC-32 of b"123456789" is the check value 0xCBF43926
    assert crc32(b"123456789") == 0xCBF43926


# --- state machine ------------------------------------------------------------------------------------
def test_state_machine_transitions():
    t = [0.0]
    sm = StateMachine(lambda: t[0])
    seen = []
    sm.listeners.append(lambda tr: seen.append((tr.old.value, tr.new.value)))
    for s in (State.CONNECTING, State.READY, State.SCANNING, State.DEGRADED, State.RECONNECTING, State.CONNECTING,
              State.READY, State.SCANNING, State.DISCONNECTED):
        sm.to(s)
    assert seen[0] == ("disconnected", "connecting") and seen[-1] == ("scanning", "disconnected")
    with pytest.raises(RuntimeError, match="not an allowed transition"):
        sm.to(State.SCANNING)  # disconnected -> scanning skips connecting
    sm.to(State.FAILED)
    with pytest.raises(RuntimeError):
        sm.to(State.SCANNING)


def test_backoff_is_capped():
    assert backoff_delays(0.25, 8.0, 7) == [0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 8.0]
    with pytest.raises(ValueError):
        backoff_delays(1.0, 0.5, 3)

"""Galvo controller driver over pyserial: one command, one checked reply; limits enforced before sending."""
from __future__ import annotations

import termios
import threading
from typing import Callable

import serial

from acquisition.galvo_protocol import (
    E_ARGUMENT, E_RANGE, GalvoCommandError, GalvoError, GalvoConfigError, GalvoFaultError, GalvoLinkError, GalvoProtocolError,
    GalvoStatus, GalvoTimeoutError, MAX_LINE, fmt, frame_command, parse_error_entry, parse_floats, parse_reply,
    parse_status,
)
from acquisition.raster import AxisCommand, GalvoLimits, Mapping, check_axis, check_position
from thzcore.logs import get_logger

log = get_logger(__name__)


class GalvoController:
    """A two-axis galvo controller on a serial port (docs/protocols.md section 1).

    Positions are metres at the standoff plane; `to_drive` / `from_drive` convert them to and from the
    controller's optical degrees (raster.optical_angle_mapping). After any timeout, serial error or
    unparseable reply the driver is *suspect*: it refuses further queries until `open()` is called
    again, so no query is ever continued on a link whose byte stream may be out of step.
    """

    def __init__(self, port: str, baudrate: int, timeout_s: float, limits: GalvoLimits,
                 to_drive: Mapping, from_drive: Mapping,
                 serial_factory: Callable[..., serial.Serial] = serial.serial_for_url) -> None:
        self.port, self.baudrate, self.timeout_s = port, baudrate, timeout_s
        self.limits = limits
        self.to_drive, self.from_drive = to_drive, from_drive
        self._factory = serial_factory
        self._ser: serial.Serial | None = None
        self._suspect = False
        self._lock = threading.Lock()
        self._pending: str | None = None  # a command sent with send() whose reply is not read yet
        self.idn = ""

    # --- link ---
    def open(self) -> None:
        self.close()
        try:
            self._ser = self._factory(self.port, baudrate=self.baudrate, bytesize=8, parity="N", stopbits=1,
                                      timeout=self.timeout_s, write_timeout=self.timeout_s, exclusive=True)
            self._ser.reset_input_buffer()
        except (serial.SerialException, OSError, ValueError, termios.error) as exc:
            self._ser = None
            raise GalvoLinkError(f"cannot open galvo port {self.port!r}: {exc}") from exc
        self._suspect = False

    def close(self) -> None:
        ser, self._ser = self._ser, None
        self._pending = None
        if ser is not None:
            try:
                ser.close()
            except (serial.SerialException, OSError, termios.error):
                pass

    @property
    def is_open(self) -> bool:
        return self._ser is not None and not self._suspect

    def __enter__(self) -> "GalvoController":
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- one exchange ---
    def query(self, command: str) -> tuple[str, ...]:
        """Send `command`, return the values of its OK reply; an ER reply raises GalvoCommandError."""
        with self._lock:
            self._send(command)
            return self._receive(command)

    def send(self, command: str) -> None:
        """Send `command` now and read its reply later with `receive()` (the link does other work meanwhile).
        Until then the link takes no other command."""
        with self._lock:
            self._send(command)
            self._pending = command

    def receive(self) -> tuple[str, ...]:
        """The reply to the command `send()` sent, checked as `query` checks one."""
        with self._lock:
            command, self._pending = self._pending, None
            if command is None:
                raise GalvoLinkError(f"galvo {self.port!r}: no command is waiting for its reply")
            return self._receive(command)

    @property
    def pending(self) -> str | None:
        """The command whose reply has not been read yet (sent with `send`), else None."""
        return self._pending

    def _send(self, command: str) -> None:
        line = frame_command(command)
        if self._ser is None:
            raise GalvoLinkError(f"galvo port {self.port!r} is not open; call open() first")
        if self._pending is not None:
            raise GalvoLinkError(f"galvo {command!r}: the reply to {self._pending!r} has not been read yet")
        if self._suspect:
            raise GalvoLinkError(f"galvo link {self.port!r} is suspect after an earlier failure; reopen it")
        self._suspect = True  # cleared only when a whole reply has been read and checked
        try:
            self._ser.write(line)
            self._ser.flush()
        except serial.SerialTimeoutException as exc:
            raise GalvoTimeoutError(f"galvo write of {command!r} timed out: {exc}") from exc
        except (serial.SerialException, OSError, termios.error) as exc:  # tcdrain raises termios.error
            raise GalvoLinkError(f"galvo {command!r}: {exc}") from exc

    def _receive(self, command: str) -> tuple[str, ...]:
        try:
            reply = self._ser.read_until(b"\n", MAX_LINE + 2)
        except (serial.SerialException, OSError, termios.error) as exc:
            raise GalvoLinkError(f"galvo {command!r}: {exc}") from exc
        if not reply.endswith(b"\n"):
            raise GalvoTimeoutError(f"galvo {command!r}: no complete reply within {self.timeout_s} s "
                                    f"(got {reply!r})")
        r = parse_reply(reply, command)  # GalvoProtocolError leaves the link suspect
        self._suspect = False
        if not r.ok:
            cls = GalvoConfigError if r.code in (E_ARGUMENT, E_RANGE) else GalvoCommandError
            raise cls(f"galvo refused {command!r}: error {r.code} {r.text!r}", r.code, r.text, command)
        return r.values

    # --- commands ---
    def identify(self) -> str:
        vals = self.query("IDN?")
        if not vals:
            raise GalvoProtocolError("IDN? reply is empty")
        self.idn = " ".join(vals)
        return self.idn

    def reset(self) -> None:
        """RST: stop, park at the controller's home, clear errors and fault latches."""
        self.query("RST")

    def limits_deg(self) -> tuple[float, float, float, float]:
        """The controller's own limits: max excursion X, Y (optical deg), max frequency X, Y (Hz)."""
        lim = parse_floats(self.query("LIM?"), 4, "LIM?")
        if not (0 < lim[0] < 90 and 0 < lim[1] < 90 and lim[2] > 0 and lim[3] > 0):
            raise GalvoProtocolError(f"LIM? reply {lim}: excursions must lie in (0, 90) optical degrees and "
                                     "frequencies be > 0")
        return lim  # type: ignore[return-value]

    def check_controller_limits(self) -> None:
        """Refuse to run when our configured limits are wider than what the controller accepts."""
        lx, ly, fx, fy = self.limits_deg()
        for axis, lim_deg, f_max in (("X", lx, fx), ("Y", ly, fy)):
            ours = self.limits.axis(axis)
            if self.to_drive(ours.max_excursion_m) > lim_deg + 1e-5 or ours.max_hz > f_max:
                raise GalvoConfigError(
                    f"configured {axis} limits ({ours.max_excursion_m} m = {self.to_drive(ours.max_excursion_m):.4f}"
                    f" deg, {ours.max_hz} Hz) exceed the controller's ({lim_deg} deg, {f_max} Hz); lower "
                    "scanner.raster.max_*_amplitude_m / acquisition.galvo_max_*_hz", 0, "", "LIM?")

    def set_axis(self, cmd: AxisCommand) -> None:
        """Apply one axis' waveform; checked against the limits first, so a bad command is never sent."""
        check_axis(cmd, self.limits, self.to_drive)
        a = cmd.axis
        self.query(f"WAVE {a} {cmd.waveform}")
        # lower the amplitude before moving the offset so no intermediate state exceeds the limit
        self.query(f"AMP {a} {fmt(0.0)}")
        self.query(f"OFFS {a} {fmt(self.to_drive(cmd.offset_m))}")
        if cmd.waveform != "DC":
            self.query(f"FREQ {a} {fmt(cmd.frequency_hz)}")
            self.query(f"AMP {a} {fmt(self.to_drive(cmd.amplitude_m))}")

    def set_watchdog(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError(f"watchdog seconds={seconds} must be >= 0")
        self.query(f"WDOG {fmt(seconds)}")

    def arm(self) -> None:
        self.query("ARM")

    def start(self) -> None:
        self.query("START")

    def stop(self) -> None:
        self.query("STOP")

    def park(self, x_m: float = 0.0, y_m: float = 0.0) -> None:
        """Stop and hold the mirrors at (x_m, y_m); both must lie inside the limits."""
        check_position("X", x_m, self.limits)
        check_position("Y", y_m, self.limits)
        self.query(f"PARK {fmt(self.to_drive(x_m))} {fmt(self.to_drive(y_m))}")

    def position(self) -> tuple[float, float]:
        """Measured mirror position (x_m, y_m) from the position sensors.

        A reading beyond twice the configured excursion cannot be a mirror that obeyed its limits: it
        is reported as a fault (sensor or controller), never returned as a position.
        """
        x, y = parse_floats(self.query("POS?"), 2, "POS?")
        out = []
        for axis, deg in (("X", x), ("Y", y)):
            bound = 2.0 * self.limits.axis(axis).max_excursion_m
            m = self.from_drive(deg) if abs(deg) < 90.0 else float("inf")
            if not abs(m) <= bound:
                raise GalvoFaultError(f"galvo POS? {axis} = {deg} deg ({m:.4g} m) lies beyond twice the {axis} limit "
                                      f"({bound / 2} m): position sensor or controller fault", 0, "FAULT")
            out.append(m)
        return out[0], out[1]

    def status(self) -> GalvoStatus:
        return parse_status(self.query("STAT?"))

    def pop_error(self) -> tuple[int, str]:
        return parse_error_entry(self.query("ERR?"))

    def drain_errors(self, limit: int = 32) -> list[tuple[int, str]]:
        out = []
        for _ in range(limit):
            code, text = self.pop_error()
            if code == 0:
                break
            out.append((code, text))
        return out

    def check_ok(self) -> GalvoStatus:
        """STAT? and, when the error-queue flag is set, ERR?; raise GalvoFaultError on a fault state."""
        return self._judge(self.status())

    def begin_check(self) -> None:
        """Send STAT? now; `finish_check()` reads its reply (check_ok split in two, so that the reply crosses
        the serial line while the host reads the receiver's frame block)."""
        self.send("STAT?")

    def finish_check(self) -> GalvoStatus:
        """The reply to `begin_check()`'s STAT?, judged as `check_ok` judges it."""
        return self._judge(parse_status(self.receive()))

    def abandon_check(self) -> None:
        """Read and drop a pending STAT? reply (another error is on its way up): the link stays in step, or is
        left suspect when the reply does not come."""
        if self._pending is not None:
            try:
                self.receive()
            except GalvoError:
                pass

    def _judge(self, st: GalvoStatus) -> GalvoStatus:
        errs = self.drain_errors() if st.flags & 0x08 else []
        if st.faulted or errs:
            text = "; ".join(f"{c} {t!r}" for c, t in errs)
            raise GalvoFaultError(f"galvo {st.state} flags={list(st.names)}"
                                  + (f" errors: {text}" if text else ""), st.flags, st.state)
        return st

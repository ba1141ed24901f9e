"""Galvo controller line protocol: framing, checksums and reply parsing (pure; docs/protocols.md section 1).

A line is `<body>*<CK>\n` where CK is the XOR of every byte of <body> as two upper-case hex digits
(NMEA style). The controller answers every command with one line:

    OK <keyword> [<args echoed>] [<values>]*CK     success; the command is echoed so a stale reply is caught
    ER <code> <keyword> "<text>"*CK                 refused; <code> as in the controller's error table
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

from acquisition.errors import (
    AcquisitionError, ConfigurationError, DeviceFault, InstrumentErrorMixin, LinkSuspect,
)

MAX_LINE = 96  # bytes incl. checksum and terminator; the controller's input buffer
AXES = ("X", "Y")  # X = fast axis, Y = slow axis
WAVEFORMS = ("SINE", "SAW", "DC")
STATES = ("IDLE", "ARMED", "RUNNING", "PARKED", "FAULT")

# status flag bits (STAT? reply, hexadecimal)
FLAG_STALL = 0x01      # servo tracking error: the mirror does not follow the command
FLAG_OVERTEMP = 0x02   # coil over temperature
FLAG_WATCHDOG = 0x04   # parked by the host watchdog
FLAG_ERRQ = 0x08       # error queue not empty
FAULT_FLAGS = FLAG_STALL | FLAG_OVERTEMP | FLAG_WATCHDOG

# controller error codes (ER replies and ERR? entries)
E_CHECKSUM, E_UNKNOWN, E_ARGUMENT, E_RANGE, E_STATE, E_OVERFLOW = 1, 2, 3, 4, 5, 6
E_STALL, E_WATCHDOG = 101, 102

_LINE_RE = re.compile(rb"^([\x20-\x29\x2b-\x7e]*)\*([0-9A-F]{2})\r?\n$")


class GalvoError(AcquisitionError):
    """Base of galvo driver errors."""


class GalvoLinkError(GalvoError, LinkSuspect):
    """The serial port failed (unplugged adapter, closed pty, OS error) or was left mid-query."""


class GalvoTimeoutError(GalvoLinkError, TimeoutError):
    """No complete reply line within the timeout."""


class GalvoProtocolError(GalvoLinkError):
    """A reply with a bad checksum, bad framing, or an echo of another command (a stale reply)."""


class GalvoCommandError(InstrumentErrorMixin, GalvoError, DeviceFault):
    """The controller refused a command in its present state (e.g. ARM during a FAULT); code and text are its own."""


class GalvoConfigError(InstrumentErrorMixin, GalvoError, ConfigurationError):
    """The controller refused a setting as out of range or malformed: retrying cannot help."""


class GalvoFaultError(GalvoError, DeviceFault):
    """The controller reports a fault state (stall, over temperature, watchdog park)."""

    def __init__(self, message: str, flags: int = 0, state: str = "") -> None:
        super().__init__(message)
        self.flags = flags
        self.state = state


class GalvoLimitError(GalvoError, ConfigurationError):
    """Refused on the host: the command would exceed a configured limit, so it was never sent."""


def checksum(body: bytes) -> str:
    """XOR of every byte of the body, as two upper-case hex digits."""
    ck = 0
    for b in body:
        ck ^= b
    return f"{ck:02X}"


def frame_command(body: str) -> bytes:
    """`AMP X 2.25600` -> b'AMP X 2.25600*4E\\n'; rejects what the controller could not parse."""
    try:
        raw = body.encode("ascii")
    except UnicodeEncodeError:
        raise ValueError(f"galvo command {body!r} is not ASCII") from None
    if not raw or any(b < 0x20 or b > 0x7E or b == 0x2A for b in raw):
        raise ValueError(f"galvo command {body!r} is empty or holds control characters or '*'")
    line = raw + b"*" + checksum(raw).encode() + b"\n"
    if len(line) > MAX_LINE:
        raise ValueError(f"galvo command {body!r} makes a {len(line)}-byte line; the controller takes {MAX_LINE}")
    return line


def unframe(line: bytes) -> str:
    """b'<body>*CK\\n' -> '<body>', checking framing and checksum (shared by both ends of the link)."""
    m = _LINE_RE.match(line)
    if m is None:
        raise GalvoProtocolError(f"malformed galvo line {line[:MAX_LINE]!r}")
    body, ck = m.group(1), m.group(2).decode()
    if checksum(body) != ck:
        raise GalvoProtocolError(f"galvo line {line!r}: checksum {ck}, computed {checksum(body)}")
    return body.decode("ascii")


@dataclass(frozen=True)
class Reply:
    """A parsed controller reply: `values` are the words after the echoed command."""

    ok: bool
    echo: str = ""
    values: tuple[str, ...] = ()
    code: int = 0
    text: str = ""


_ER_RE = re.compile(r'^ER (\d+) (\S+) "([^"]*)"$')


def parse_reply(line: bytes, command: str) -> Reply:
    """Parse the reply to `command`; an OK must echo the command word for word (else the reply is stale)."""
    body = unframe(line)
    if body.startswith("OK "):
        rest = body[3:]
        if rest == command:
            return Reply(True, command)
        if rest.startswith(command + " "):
            return Reply(True, command, tuple(rest[len(command) + 1:].split()))
        raise GalvoProtocolError(f"reply {body!r} does not echo command {command!r} (stale or foreign reply)")
    m = _ER_RE.match(body)
    if m is not None:
        code, keyword, text = int(m.group(1)), m.group(2), m.group(3)
        if keyword != command.split()[0]:
            raise GalvoProtocolError(f"error reply {body!r} names {keyword!r}, not {command.split()[0]!r} (stale)")
        return Reply(False, keyword, (), code, text)
    raise GalvoProtocolError(f"galvo reply {body!r} is neither OK nor ER")


@dataclass(frozen=True)
class GalvoStatus:
    """STAT? reply: controller state, fault flags, and the line-trigger count since START."""

    state: str
    flags: int
    lines: int = 0
    names: tuple[str, ...] = field(default=(), compare=False)

    @property
    def faulted(self) -> bool:
        return self.state == "FAULT" or bool(self.flags & FAULT_FLAGS)


def parse_status(values: tuple[str, ...]) -> GalvoStatus:
    """('RUNNING', '00', '1234') -> GalvoStatus."""
    if len(values) != 3 or values[0] not in STATES:
        raise GalvoProtocolError(f"STAT? reply values {values!r}: expected '<state> <flags hex> <lines>'")
    try:
        flags, lines = int(values[1], 16), int(values[2])
    except ValueError:
        raise GalvoProtocolError(f"STAT? reply values {values!r}: flags or line count not a number") from None
    names = tuple(n for bit, n in ((FLAG_STALL, "stall"), (FLAG_OVERTEMP, "overtemp"),
                                   (FLAG_WATCHDOG, "watchdog"), (FLAG_ERRQ, "errq")) if flags & bit)
    return GalvoStatus(values[0], flags, lines, names)


def parse_floats(values: tuple[str, ...], n: int, what: str) -> tuple[float, ...]:
    """n finite numbers; NaN, inf and anything float() reads but the controller never sends are refused."""
    if len(values) != n:
        raise GalvoProtocolError(f"{what} reply {values!r}: expected {n} numbers")
    try:
        out = tuple(float(v) for v in values)
    except ValueError:
        raise GalvoProtocolError(f"{what} reply {values!r}: not numbers") from None
    if not all(math.isfinite(x) for x in out):
        raise GalvoProtocolError(f"{what} reply {values!r}: not finite numbers")
    return out


def parse_error_entry(values: tuple[str, ...]) -> tuple[int, str]:
    """ERR? reply values: ('0', '"No', 'error"') -> (0, 'No error')."""
    if not values:
        raise GalvoProtocolError("ERR? reply has no code")
    try:
        code = int(values[0])
    except ValueError:
        raise GalvoProtocolError(f"ERR? reply {values!r}: code not an integer") from None
    text = " ".join(values[1:])
    if not (text.startswith('"') and text.endswith('"') and len(text) >= 2):
        raise GalvoProtocolError(f"ERR? reply {values!r}: text not quoted")
    return code, text[1:-1]


def fmt(x: float) -> str:
    """Numbers on the line: fixed point, 5 decimals (10 urad of optical angle in degrees)."""
    return f"{x:.5f}"

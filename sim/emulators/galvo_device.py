"""The emulated galvo controller: command interpreter and servo state (no I/O; the pty server feeds it lines).

It implements the controller side of docs/protocols.md section 1 independently of the host driver,
so a misreading of the protocol on either side shows up in the tests. Angles on the line are
optical degrees; the shared physical state (`MirrorState`) is kept in metres at the standoff plane,
x = D tan(theta).
"""
from __future__ import annotations

import math
import re
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Callable

AXES = ("X", "Y")
WAVEFORMS = {"X": ("SINE", "DC"), "Y": ("SAW", "DC")}
IDN = "THZLAB,GSC-2,SN00042,1.4.0"

FLAG_STALL, FLAG_OVERTEMP, FLAG_WATCHDOG, FLAG_ERRQ = 0x01, 0x02, 0x04, 0x08
E_CHECKSUM, E_UNKNOWN, E_ARGUMENT, E_RANGE, E_STATE, E_OVERFLOW = 1, 2, 3, 4, 5, 6
E_STALL, E_WATCHDOG = 101, 102
MAX_LINE = 96

_LINE_RE = re.compile(rb"^([\x20-\x29\x2b-\x7e]*)\*([0-9A-Fa-f]{2})\r?$")


def checksum(body: bytes) -> str:
    ck = 0
    for b in body:
        ck ^= b
    return f"{ck:02X}"


def frame_reply(body: str) -> bytes:
    raw = body.encode("ascii")
    return raw + b"*" + checksum(raw).encode() + b"\n"


@dataclass
class Axis:
    waveform: str
    amplitude_deg: float = 0.0
    offset_deg: float = 0.0
    frequency_hz: float = 0.0


@dataclass
class MirrorState:
    """A snapshot the receiver reads: is the raster running (line triggers), and its drive in metres."""

    running: bool
    stalled: bool
    t_start: float
    fast_amplitude_m: float
    fast_offset_m: float
    fast_hz: float
    slow_amplitude_m: float
    slow_offset_m: float
    slow_hz: float
    x_m: float = 0.0  # static position when not running
    y_m: float = 0.0


@dataclass
class GalvoLimits:
    max_x_deg: float
    max_y_deg: float
    max_x_hz: float = 100.0
    max_y_hz: float = 10.0


@dataclass
class GalvoDevice:
    """Controller state machine: IDLE -> (ARM) ARMED -> (START) RUNNING -> (STOP) IDLE; PARK from anywhere;
    FAULT while a stall lasts; RST back to IDLE at the home position (0, 0)."""

    standoff_m: float
    limits: GalvoLimits
    clock: Callable[[], float] = time.monotonic
    state: str = "IDLE"
    axes: dict[str, Axis] = field(default_factory=lambda: {"X": Axis("SINE"), "Y": Axis("SAW")})
    park_deg: tuple[float, float] = (0.0, 0.0)
    t_start: float = 0.0
    watchdog_s: float = 0.0
    last_command_t: float = 0.0
    flags: int = 0
    stall_until: float = -math.inf
    errors: deque = field(default_factory=lambda: deque(maxlen=16))
    log: deque = field(default_factory=lambda: deque(maxlen=2000))
    out_of_range: int = 0  # commands received that broke a limit (the host must never send one)
    lock: threading.RLock = field(default_factory=threading.RLock)
    watchdog_parked: threading.Event = field(default_factory=threading.Event)  # set when the watchdog parks

    # --- physics view ---
    def _m(self, deg: float) -> float:
        return self.standoff_m * math.tan(math.radians(deg))

    def stalled(self) -> bool:
        return self.clock() < self.stall_until

    def mirror(self) -> MirrorState:
        with self.lock:
            self._tick()
            x, y = self.axes["X"], self.axes["Y"]
            return MirrorState(
                running=self.state == "RUNNING", stalled=self.stalled(), t_start=self.t_start,
                fast_amplitude_m=self._m(x.amplitude_deg) if x.waveform != "DC" else 0.0,
                fast_offset_m=self._m(x.offset_deg), fast_hz=x.frequency_hz or 1.0,
                slow_amplitude_m=self._m(y.amplitude_deg) if y.waveform != "DC" else 0.0,
                slow_offset_m=self._m(y.offset_deg), slow_hz=y.frequency_hz or 1.0,
                x_m=self._m(self.position_deg()[0]), y_m=self._m(self.position_deg()[1]))

    def position_deg(self) -> tuple[float, float]:
        if self.state == "PARKED":
            return self.park_deg
        if self.state == "RUNNING" and not self.stalled():
            t = self.clock() - self.t_start
            x, y = self.axes["X"], self.axes["Y"]
            # the conventions of sim.galvo: a frame starts at the fast axis' left turnaround and the
            # slow axis' top (after the flyback)
            px = x.offset_deg + (x.amplitude_deg * math.sin(2 * math.pi * x.frequency_hz * t - 0.5 * math.pi)
                                 if x.waveform == "SINE" else 0.0)
            py = y.offset_deg + (y.amplitude_deg * (1.0 - 2.0 * ((t * y.frequency_hz) % 1.0))
                                 if y.waveform == "SAW" else 0.0)
            return px, py
        return self.axes["X"].offset_deg, self.axes["Y"].offset_deg

    # --- faults (backdoor) ---
    def stall(self, seconds: float) -> None:
        with self.lock:
            self.stall_until = self.clock() + (seconds if seconds > 0 else 1e9)
            self.flags |= FLAG_STALL
            if self.state == "RUNNING":
                self.state = "FAULT"
            self._push(E_STALL, "Servo tracking error X")

    def push_error(self, code: int, text: str) -> None:
        with self.lock:
            self._push(code, text)

    def _push(self, code: int, text: str) -> None:
        self.errors.append((int(code), str(text).replace('"', "'")))

    def tick(self) -> str:
        """Run the host watchdog now and return the state. The controller's own timer calls this (the pty
        port every 50 ms), so a host that is gone is noticed within the watchdog period, not at the next
        command or status query."""
        with self.lock:
            self._tick()
            return self.state

    def _tick(self) -> None:
        """Host watchdog: a running raster with no command for watchdog_s parks itself."""
        if (self.state == "RUNNING" and self.watchdog_s > 0
                and self.clock() - self.last_command_t > self.watchdog_s):
            self.state, self.park_deg = "PARKED", (0.0, 0.0)
            self.flags |= FLAG_WATCHDOG
            self._push(E_WATCHDOG, "Host watchdog expired; parked")
            self.watchdog_parked.set()

    # --- the line interpreter ---
    def handle_line(self, line: bytes) -> bytes:
        """One received line (without the newline) -> one framed reply line."""
        with self.lock:
            self._tick()
            self.last_command_t = self.clock()
            if len(line) > MAX_LINE:
                return frame_reply(f'ER {E_OVERFLOW} ? "Line too long"')
            m = _LINE_RE.match(line)
            if m is None:
                return frame_reply(f'ER {E_CHECKSUM} ? "Malformed line"')
            body, ck = m.group(1), m.group(2).decode().upper()
            if checksum(body) != ck:
                word = body.split(b" ", 1)[0].decode("ascii", "replace") or "?"
                return frame_reply(f'ER {E_CHECKSUM} {word} "Checksum mismatch"')
            text = body.decode("ascii")
            self.log.append(text)
            words = text.split()
            if not words:
                return frame_reply(f'ER {E_UNKNOWN} ? "Empty command"')
            try:
                values = self._dispatch(words)
            except _Refused as r:
                if r.code == E_RANGE:
                    self.out_of_range += 1
                self._push(r.code, r.text)
                return frame_reply(f'ER {r.code} {words[0]} "{r.text}"')
            return frame_reply("OK " + text + (" " + values if values else ""))

    def _dispatch(self, w: list[str]) -> str:
        cmd, args = w[0], w[1:]
        if cmd == "IDN?":
            _nargs(args, 0)
            return IDN
        if cmd == "RST":
            _nargs(args, 0)
            self.axes = {"X": Axis("SINE"), "Y": Axis("SAW")}
            self.errors.clear()
            self.watchdog_s = 0.0
            self.flags = FLAG_STALL if self.stalled() else 0
            self.state = "FAULT" if self.stalled() else "IDLE"
            return ""
        if cmd == "LIM?":
            _nargs(args, 0)
            lim = self.limits
            return f"{lim.max_x_deg:.5f} {lim.max_y_deg:.5f} {lim.max_x_hz:.5f} {lim.max_y_hz:.5f}"
        if cmd in ("WAVE", "AMP", "OFFS", "FREQ"):
            _nargs(args, 2)
            axis = _axis(args[0])
            if self.state in ("RUNNING", "ARMED"):
                raise _Refused(E_STATE, f"{cmd} not allowed while {self.state}; STOP first")
            ax = self.axes[axis]
            if cmd == "WAVE":
                if args[1] not in WAVEFORMS[axis]:
                    raise _Refused(E_ARGUMENT, f"Waveform {args[1]} not available on {axis}")
                ax.waveform = args[1]
                return ""
            v = _num(args[1])
            lim_deg = self.limits.max_x_deg if axis == "X" else self.limits.max_y_deg
            lim_hz = self.limits.max_x_hz if axis == "X" else self.limits.max_y_hz
            if cmd == "AMP":
                if v < 0 or v + abs(ax.offset_deg) > lim_deg + 1e-5:
                    raise _Refused(E_RANGE, f"Amplitude {v:.5f} + |offset| exceeds {lim_deg:.5f} deg")
                ax.amplitude_deg = v
            elif cmd == "OFFS":
                if abs(v) + ax.amplitude_deg > lim_deg + 1e-5:
                    raise _Refused(E_RANGE, f"|Offset {v:.5f}| + amplitude exceeds {lim_deg:.5f} deg")
                ax.offset_deg = v
            else:
                if not 0 < v <= lim_hz:
                    raise _Refused(E_RANGE, f"Frequency {v:.5f} outside (0, {lim_hz:.5f}] Hz")
                ax.frequency_hz = v
            return ""
        if cmd in ("WAVE?", "AMP?", "OFFS?", "FREQ?"):
            _nargs(args, 1)
            ax = self.axes[_axis(args[0])]
            return {"WAVE?": ax.waveform, "AMP?": f"{ax.amplitude_deg:.5f}", "OFFS?": f"{ax.offset_deg:.5f}",
                    "FREQ?": f"{ax.frequency_hz:.5f}"}[cmd]
        if cmd == "ARM":
            _nargs(args, 0)
            if self.state not in ("IDLE", "PARKED", "ARMED"):
                raise _Refused(E_STATE, f"ARM not allowed while {self.state}")
            x = self.axes["X"]
            if x.waveform == "SINE" and (x.amplitude_deg <= 0 or x.frequency_hz <= 0):
                raise _Refused(E_STATE, "X needs amplitude and frequency before ARM")
            y = self.axes["Y"]
            if y.waveform == "SAW" and y.frequency_hz <= 0:
                raise _Refused(E_STATE, "Y needs a frequency before ARM")
            self.state = "ARMED"
            self.flags &= ~FLAG_WATCHDOG
            return ""
        if cmd == "START":
            _nargs(args, 0)
            if self.state != "ARMED":
                raise _Refused(E_STATE, f"START needs ARMED, state is {self.state}")
            self.state, self.t_start = "RUNNING", self.clock()
            return ""
        if cmd == "STOP":
            _nargs(args, 0)
            if self.state in ("RUNNING", "ARMED"):
                self.state = "IDLE"
            return ""
        if cmd == "PARK":
            _nargs(args, 2)
            px, py = _num(args[0]), _num(args[1])
            if abs(px) > self.limits.max_x_deg or abs(py) > self.limits.max_y_deg:
                raise _Refused(E_RANGE, f"Park position {px:.5f} {py:.5f} outside the limits")
            self.park_deg = (px, py)
            if self.state != "FAULT":
                self.state = "PARKED"
            return ""
        if cmd == "POS?":
            _nargs(args, 0)
            px, py = self.position_deg()
            return f"{px:.5f} {py:.5f}"
        if cmd == "STAT?":
            _nargs(args, 0)
            flags = self.flags | (FLAG_ERRQ if self.errors else 0)
            lines = 0
            if self.state == "RUNNING":
                lines = int((self.clock() - self.t_start) * 2 * self.axes["X"].frequency_hz)
            return f"{self.state} {flags:02X} {lines}"
        if cmd == "ERR?":
            _nargs(args, 0)
            code, text = self.errors.popleft() if self.errors else (0, "No error")
            return f'{code} "{text}"'
        if cmd == "WDOG":
            _nargs(args, 1)
            v = _num(args[0])
            if not 0 <= v <= 3600:
                raise _Refused(E_RANGE, f"Watchdog {v:.5f} outside [0, 3600] s")
            self.watchdog_s = v
            return ""
        raise _Refused(E_UNKNOWN, f"Unknown command {cmd}")


class _Refused(Exception):
    def __init__(self, code: int, text: str) -> None:
        super().__init__(text)
        self.code, self.text = code, text


def _nargs(args: list[str], n: int) -> None:
    if len(args) != n:
        raise _Refused(E_ARGUMENT, f"Expected {n} arguments, got {len(args)}")


def _axis(a: str) -> str:
    if a not in AXES:
        raise _Refused(E_ARGUMENT, f"No axis {a}")
    return a


def _num(s: str) -> float:
    try:
        v = float(s)
    except ValueError:
        raise _Refused(E_ARGUMENT, f"Not a number: {s}") from None
    if not math.isfinite(v):
        raise _Refused(E_ARGUMENT, f"Not finite: {s}")
    return v

"""The emulated FMCW receiver: SCPI interpreter, settings, error queue and frame acquisition (no sockets).

Implements the instrument side of docs/protocols.md section 2 independently of the host driver.
A frame is acquired on INIT: it starts at the next slow-axis frame boundary of the galvo (line
triggers come from the galvo, so a parked or stalled galvo gives none and the frame aborts after
TRIG:TIM with error -231) and completes one frame period later (`realtime`), or as soon as it is
computed (`realtime=False`, frames then numbered 1, 2, ... per INIT).
"""
from __future__ import annotations

import math
import threading
import time
import zlib
from collections import deque
from dataclasses import dataclass
from typing import Callable

import numpy as np

from sim.emulators.galvo_device import GalvoDevice
from sim.emulators.physics import Physics
from thzcore.frames import RawFrame
from thzcore.logs import get_logger

log = get_logger(__name__)

IDN = "THZLAB,FMCW-340R,SN1001,2.1.0"
ERRQ_LEN = 32

# long form -> short form of every node of the dialect; both (any case) are accepted
_NODES = {
    "SENSE": "SENS", "SWEEP": "SWE", "BWIDTH": "BWID", "TIME": "TIME", "POINTS": "POIN", "COUNT": "COUN",
    "RANGE": "RANG", "REFERENCE": "REF", "ACQUIRE": "ACQ", "SRATE": "SRAT", "LINES": "LINE", "LINE": "LINE",
    "TRIGGER": "TRIG", "SOURCE": "SOUR", "TIMEOUT": "TIM", "FORMAT": "FORM", "DATA": "DATA", "BORDER": "BORD",
    "INITIATE": "INIT", "IMMEDIATE": "IMM", "ABORT": "ABOR", "FETCH": "FETC", "HEADER": "HEAD", "FRAME": "FRAM",
    "FEEDBACK": "FEED", "PARTIAL": "PART", "SYSTEM": "SYST", "ERROR": "ERR", "NEXT": "NEXT", "STATE": "STAT", "STATUS": "STAT",
}
_SHORT = set(_NODES.values())
_DEFAULT_SENS = ("SWE:", "RANG:")  # SENSe is the default root node


def canonical(header: str) -> str | None:
    """'sense:sweep:points?' -> 'SENS:SWE:POIN?'; None when a node is unknown."""
    h = header.strip()
    if h.startswith("*"):
        return h.upper()
    query = h.endswith("?")
    nodes = []
    for tok in h.rstrip("?").lstrip(":").split(":"):
        t = tok.upper()
        if t in _NODES:
            nodes.append(_NODES[t])
        elif t in _SHORT:
            nodes.append(t)
        else:
            return None
    c = ":".join(nodes)
    if c.startswith(_DEFAULT_SENS):
        c = "SENS:" + c
    c = {"INIT:IMM": "INIT", "SYST:ERR:NEXT": "SYST:ERR"}.get(c, c)
    return c + ("?" if query else "")


@dataclass(frozen=True)
class _Setting:
    kind: str            # "float" | "int" | "enum"
    lo: float = 0.0
    hi: float = 0.0
    choices: tuple[tuple[str, str], ...] = ()  # (accepted spelling, canonical value)


SETTINGS: dict[str, _Setting] = {
    "SENS:SWE:BWID": _Setting("float", 1e9, 40e9),
    "SENS:SWE:TIME": _Setting("float", 1e-6, 1e-3),
    "ACQ:SRAT": _Setting("float", 1e5, 50e6),
    "SENS:SWE:POIN": _Setting("int", 8, 4096),
    "SENS:SWE:COUN": _Setting("int", 16, 8192),
    "ACQ:LINE": _Setting("int", 1, 1024),
    "SENS:RANG:REF": _Setting("float", 0.5, 50.0),
    "TRIG:SOUR": _Setting("enum", choices=(("EXT", "EXT"), ("EXTERNAL", "EXT"), ("IMM", "IMM"),
                                           ("IMMEDIATE", "IMM"))),
    "TRIG:TIM": _Setting("float", 0.01, 60.0),
    "FORM:DATA": _Setting("enum", choices=(("INT,16", "INT,16"), ("INTEGER,16", "INT,16"))),
    "FORM:BORD": _Setting("enum", choices=(("NORM", "NORM"), ("NORMAL", "NORM"), ("SWAP", "SWAP"),
                                           ("SWAPPED", "SWAP"))),
}
RST_DEFAULTS: dict[str, float | int | str] = {
    "SENS:SWE:BWID": 10e9, "SENS:SWE:TIME": 20e-6, "ACQ:SRAT": 5e6, "SENS:SWE:POIN": 100,
    "SENS:SWE:COUN": 256, "ACQ:LINE": 32, "SENS:RANG:REF": 5.5, "TRIG:SOUR": "IMM", "TRIG:TIM": 1.0,
    "FORM:DATA": "INT,16", "FORM:BORD": "NORM",
}


class Block:
    """A reply that is a definite-length binary block (the server frames and may corrupt it).

    Holds a read-only view of the frame memory: the server sends from it without copying.
    """

    __slots__ = ("data",)

    def __init__(self, data: bytes | memoryview) -> None:
        self.data = memoryview(data).cast("B")

    def __len__(self) -> int:
        return self.data.nbytes

    def __bytes__(self) -> bytes:
        return self.data.tobytes()


@dataclass
class _Frame:
    frame_no: int
    t_start: float
    shape: tuple[int, int, int]
    if_bytes: bytes
    fb_bytes: bytes
    line_bytes: int
    crc_if: int = -1      # CRC-32 of each block, computed once when the frame is made (FETC:HEAD? reads them)
    crc_fb: int = -1

    def __post_init__(self) -> None:
        if self.crc_if < 0:
            self.crc_if = zlib.crc32(self.if_bytes)
        if self.crc_fb < 0:
            self.crc_fb = zlib.crc32(self.fb_bytes)

    def head(self) -> str:
        lines, chirps, samples = self.shape
        return f"{self.frame_no},{self.t_start:.6f},{lines},{chirps},{samples},{self.crc_if},{self.crc_fb}"


@dataclass
class _Recording:
    """The armed frame while the digitizer records it: contents fixed at its start, lines due one by one."""

    gen: int
    frame_no: int
    t_begin: float
    period: float
    raw: RawFrame
    if_bytes: bytes
    external: bool
    trig_timeout: float

    @property
    def t_end(self) -> float:
        return self.t_begin + self.period

    @property
    def line_bytes(self) -> int:
        _, chirps, samples = self.raw.if_samples.shape
        return chirps * samples * 2


def _swap(data: bytes, dtype: str) -> bytes:
    """Little-endian bytes of `dtype` -> the same values big-endian (FORM:BORD NORM)."""
    return np.frombuffer(data, dtype).astype(np.dtype(dtype).newbyteorder(">")).tobytes()


class _ScpiError(Exception):
    def __init__(self, code: int, text: str) -> None:
        super().__init__(text)
        self.code, self.text = code, text


class ReceiverDevice:
    """The instrument's state. `handle` may block (frame wait) without holding the state lock."""

    def __init__(self, physics: Physics, galvo: GalvoDevice, realtime: bool = True,
                 clock: Callable[[], float] = time.monotonic, wall: Callable[[], float] = time.time) -> None:
        self.physics, self.galvo, self.realtime = physics, galvo, realtime
        self.clock, self.wall = clock, wall
        self._lock = threading.RLock()
        self.settings: dict[str, float | int | str] = dict(RST_DEFAULTS)
        self.errors: deque[tuple[int, str]] = deque()
        self.state = "IDLE"  # IDLE | ARMED | DONE
        self._gen = 0        # bumped by INIT/ABOR/*RST: a wait of an older generation gives up
        self._armed_t = 0.0
        self._counter = 0
        self._last: tuple[float, int] = (-1.0, -1)  # (galvo start time, frame number) last delivered
        self._frame: _Frame | None = None
        self._recording: _Recording | None = None
        self.frames_served = 0
        self.produced: deque[tuple[int, int, int]] = deque(maxlen=4096)  # (frame_no, crc_if, crc_fb) as made

    # --- errors ---
    def push_error(self, code: int, text: str) -> None:
        with self._lock:
            if len(self.errors) >= ERRQ_LEN:
                self.errors.pop()
                self.errors.append((-350, "Queue overflow"))
                return
            self.errors.append((int(code), str(text).replace('"', "'")))

    # --- interpreter ---
    def handle(self, line: str) -> str | Block | None:
        """One command line -> reply text, a Block, or None (commands without a reply)."""
        line = line.strip()
        if not line:
            return None
        header, _, arg = line.partition(" ")
        arg = arg.strip()
        c = canonical(header)
        try:
            if c is None:
                raise _ScpiError(-113, f"Undefined header;{header}")
            return self._dispatch(c, arg)
        except _ScpiError as e:
            self.push_error(e.code, e.text)
            return None

    def _dispatch(self, c: str, arg: str) -> str | Block | None:
        if c == "*IDN?":
            return IDN
        if c == "*RST":
            with self._lock:
                self.settings = dict(RST_DEFAULTS)
                self.state, self._frame = "IDLE", None
                self._gen += 1
            return None
        if c == "*CLS":
            with self._lock:
                self.errors.clear()
            return None
        if c == "*OPC?":
            self._complete()
            return "1"
        if c == "SYST:ERR?":
            with self._lock:
                code, text = self.errors.popleft() if self.errors else (0, "No error")
            return f'{code:+d},"{text}"'
        if c in SETTINGS:
            self._set(c, arg)
            return None
        if c.endswith("?") and c[:-1] in SETTINGS:
            v = self.settings[c[:-1]]
            return v if isinstance(v, str) else (str(v) if isinstance(v, int) else f"{v:.9g}")
        if c == "INIT":
            self._init()
            return None
        if c == "ABOR":
            with self._lock:
                self.state = "IDLE"
                self._gen += 1
            return None
        if c == "ACQ:STAT?":
            with self._lock:
                return self.state
        if c == "FETC:PART?":
            return self._lines(arg, self.settings["FORM:BORD"] == "NORM")
        if c in ("FETC:HEAD?", "FETC:FRAM?", "FETC:FEED?", "FETC:LINE?"):
            self._complete()
            with self._lock:
                f = self._frame
            if f is None:
                raise _ScpiError(-230, "Data corrupt or stale;no acquired frame")
            if c == "FETC:HEAD?":
                return f.head()
            big = self.settings["FORM:BORD"] == "NORM"  # byte order applies when the data leave
            if c == "FETC:FRAM?":
                self.frames_served += 1
                return Block(_swap(f.if_bytes, "<i2") if big else f.if_bytes)
            if c == "FETC:FEED?":
                return Block(_swap(f.fb_bytes, "<f4") if big else f.fb_bytes)
            try:
                n = int(arg)
            except ValueError:
                raise _ScpiError(-104, f"Data type error;{arg!r}") from None
            if not 0 <= n < f.shape[0]:
                raise _ScpiError(-222, f"Data out of range;line {n}")
            line = memoryview(f.if_bytes)[n * f.line_bytes:(n + 1) * f.line_bytes]
            return Block(_swap(line, "<i2") if big else line)
        raise _ScpiError(-113, f"Undefined header;{c}")

    def _set(self, c: str, arg: str) -> None:
        s = SETTINGS[c]
        if not arg:
            raise _ScpiError(-109, f"Missing parameter;{c}")
        if s.kind == "enum":
            a = arg.replace(" ", "").upper()
            for spelling, value in s.choices:
                if a == spelling:
                    with self._lock:
                        self.settings[c] = value
                    return
            raise _ScpiError(-224, f"Illegal parameter value;{c} {arg}")
        try:
            v = float(arg)
        except ValueError:
            raise _ScpiError(-104, f"Data type error;{c} {arg}") from None
        if not math.isfinite(v) or not s.lo <= v <= s.hi:
            raise _ScpiError(-222, f"Data out of range;{c} {arg}")
        if s.kind == "int":
            if v != int(v):
                raise _ScpiError(-104, f"Data type error;{c} {arg} is not an integer")
            v = int(v)
        with self._lock:
            self.settings[c] = v

    # --- acquisition ---
    def _init(self) -> None:
        st = self.settings
        n = float(st["ACQ:SRAT"]) * float(st["SENS:SWE:TIME"])
        if abs(n - int(st["SENS:SWE:POIN"])) > 1e-6 * n:
            raise _ScpiError(-221, f"Settings conflict;ACQ:SRAT*SENS:SWE:TIME={n:g} != SENS:SWE:POIN")
        with self._lock:
            if self.state == "ARMED":
                raise _ScpiError(-213, "Init ignored;already armed")
            self.state = "ARMED"
            self._gen += 1
            self._armed_t = self.clock()
            self._frame = None

    def _complete(self) -> None:
        """Block until the armed frame is done or aborted (no line trigger for TRIG:TIM)."""
        p = self._begin()
        if p is None or not self._record_until(p, p.t_end):
            return
        fb = np.concatenate([p.raw.feedback_x.ravel(), p.raw.feedback_y.ravel(),
                             p.raw.direction.astype(np.float32).ravel()]).astype("<f4")
        frame = _Frame(p.frame_no, self.wall() - (self.clock() - p.t_begin), p.raw.if_samples.shape,
                       p.if_bytes, fb.tobytes(), p.line_bytes)
        with self._lock:
            if self._gen == p.gen and self.state == "ARMED":
                self._frame, self.state = frame, "DONE"
                # the true checksums, before any injected corruption: tests compare recordings to them
                self.produced.append((p.frame_no, frame.crc_if, frame.crc_fb))
                self._recording = None

    def _begin(self) -> "_Recording | None":
        """The armed frame being recorded: it waits for the galvo's line triggers and fixes the frame's start
        and contents the first time it is asked for; None when nothing is armed or the frame was aborted."""
        with self._lock:
            if self.state != "ARMED":
                return None
            if self._recording is not None and self._recording.gen == self._gen:
                return self._recording
            gen, armed_t = self._gen, self._armed_t
            st = dict(self.settings)
        trig_timeout = float(st["TRIG:TIM"])
        external = st["TRIG:SOUR"] == "EXT"
        # wait for the galvo's line triggers (a running, unstalled raster)
        t_wait0 = self.clock()
        while True:
            m = self.galvo.mirror()
            if not external or (m.running and not m.stalled):
                break
            if self.clock() - t_wait0 > trig_timeout:
                self._abort(gen, -231, f"Data questionable;no line trigger for {trig_timeout:g} s")
                return None
            if self._gen != gen:
                return None
            time.sleep(0.01)
        if external:
            period = 1.0 / m.slow_hz
            if self.realtime:
                # the digitizer records continuously into frame memory: INIT takes the frame in
                # progress unless it was already delivered, so a host that keeps up loses none
                k = max(0, math.floor((armed_t - m.t_start) / period))
                with self._lock:
                    if self._last == (m.t_start, k) or (self._last[0] == m.t_start and k <= self._last[1]):
                        k = self._last[1] + 1
                    self._last = (m.t_start, k)
                t_begin = m.t_start + k * period
            else:
                with self._lock:
                    self._counter += 1
                    k = self._counter
                t_begin = self.clock()
            lines = int(round(2 * m.fast_hz / m.slow_hz))
            if lines != int(st["ACQ:LINE"]):
                self._abort(gen, -221, f"Settings conflict;ACQ:LINE {st['ACQ:LINE']} but the galvo gives {lines} "
                                       f"lines per frame (2 x {m.fast_hz:g} Hz / {m.slow_hz:g} Hz)")
                return None
            fast_hz, slow_hz = m.fast_hz, m.slow_hz
        else:
            cfg = self.physics.scanner_cfg.raster
            fast_hz, slow_hz = cfg.fast_axis_hz, cfg.slow_axis_hz
            period = 1.0 / slow_hz
            with self._lock:
                self._counter += 1
                k = self._counter
            t_begin = self.clock()
        fmcw = {"chirp_bandwidth_hz": float(st["SENS:SWE:BWID"]), "chirp_duration_s": float(st["SENS:SWE:TIME"]),
                "sample_rate_hz": float(st["ACQ:SRAT"]), "samples_per_chirp": int(st["SENS:SWE:POIN"]),
                "chirps_per_line": int(st["SENS:SWE:COUN"]), "reference_range_m": float(st["SENS:RANG:REF"])}
        try:
            self.physics.ensure(fmcw, fast_hz, slow_hz)
        except ValueError as exc:
            self._abort(gen, -221, f"Settings conflict;{exc}")
            return None
        raw = self.physics.acquire(k, m)
        # frame memory holds little-endian values; FETC converts to the byte order in force then
        rec = _Recording(gen, k, t_begin, period, raw, raw.if_samples.astype("<i2").tobytes(), external,
                         trig_timeout)
        with self._lock:
            if self._gen != gen or self.state != "ARMED":
                return None
            self._recording = rec
        return rec

    def _record_until(self, p: "_Recording", t: float) -> bool:
        """Let the frame record until `t` (clock) while watching the line triggers; False when it was aborted."""
        no_trig_since = None
        while self.realtime and self.clock() < t:
            if self._gen != p.gen:
                return False
            m2 = self.galvo.mirror()
            if p.external and not (m2.running and not m2.stalled):
                no_trig_since = no_trig_since or self.clock()
                if self.clock() - no_trig_since > min(p.trig_timeout, 0.5 * p.period) or not m2.running:
                    self._abort(p.gen, -231, "Data questionable;line triggers stopped during the frame")
                    return False
            time.sleep(min(0.01, max(0.0, t - self.clock())))
        if p.external and not self.realtime and t >= p.t_end:
            m2 = self.galvo.mirror()
            if not (m2.running and not m2.stalled):
                self._abort(p.gen, -231, "Data questionable;line triggers stopped during the frame")
                return False
        return self._gen == p.gen

    def _lines(self, arg: str, big: bool) -> Block:
        """FETC:PART? <first>,<count>: lines of the frame being recorded, each as soon as it is digitized
        (realtime: line n at t_begin + (n + 1) T_frame / lines), or of the last complete frame. An empty
        block when the frame is aborted while the host waits (the reason is in the error queue)."""
        try:
            first, count = (int(v) for v in arg.split(","))
        except ValueError:
            raise _ScpiError(-104, f"Data type error;{arg!r}: FETC:PART? <first>,<count>") from None
        n_lines = int(self.settings["ACQ:LINE"])
        if not (0 <= first and 1 <= count and first + count <= n_lines):
            raise _ScpiError(-222, f"Data out of range;lines {first}..{first + count - 1} of {n_lines}")
        p = self._begin()
        if p is not None:
            if not self._record_until(p, p.t_begin + (first + count) * p.period / n_lines):
                return Block(b"")
            data, line_bytes = memoryview(p.if_bytes), p.line_bytes
        else:
            with self._lock:
                f = self._frame
            if f is None:
                return Block(b"")  # aborted (the error is queued) or never armed
            data, line_bytes = memoryview(f.if_bytes), f.line_bytes
        part = data[first * line_bytes:(first + count) * line_bytes]
        return Block(_swap(part, "<i2") if big else part)

    def _abort(self, gen: int, code: int, text: str) -> None:
        with self._lock:
            if self._gen == gen and self.state == "ARMED":
                self.state = "IDLE"
                self._frame = None
        self.push_error(code, text)

"""FMCW receiver driver over pyvisa (pyvisa-py `@py` backend, TCPIP SOCKET by default, any resource accepted)."""
from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass
from typing import cast

import numpy as np
import pyvisa
from pyvisa import constants, errors as visa_errors

from acquisition.scpi import (
    BlockError, FrameCorruptError, FrameHead, parse_block_header, ReceiverConfigError, ReceiverInstrumentError, ReceiverLinkError,
    ReceiverTimeoutError, crc32, is_config_error, parse_error, parse_head, unpack_feedback,
)
from acquisition.reply_reader import (
    PeerClosed, ReplyTimeout, ReplyTooLong, read_exact, read_exact_into, read_until, source_for,
)
from thzcore.logs import get_logger
from thzcore.scanner import ScannerConfig

log = get_logger(__name__)

_RM_LOCK = threading.Lock()
_RMS: dict[str, pyvisa.ResourceManager] = {}
MAX_TEXT_REPLY = 64 * 1024  # bytes: the longest text reply (*IDN?, SYST:ERR?, FETC:HEAD?) is ~100


def resource_manager(library: str = "@py") -> pyvisa.ResourceManager:
    """The one ResourceManager of this process for `library` (closing one closes all its sessions)."""
    with _RM_LOCK:
        rm = _RMS.get(library)
        if rm is None:
            rm = _RMS[library] = pyvisa.ResourceManager(library)
        return rm


@dataclass(frozen=True)
class ReceiverSettings:
    """What the daemon applies to the receiver, in SI units."""

    chirp_bandwidth_hz: float
    chirp_duration_s: float
    sample_rate_hz: float
    samples_per_chirp: int
    chirps_per_line: int
    lines_per_frame: int
    reference_range_m: float
    trigger_timeout_s: float

    @classmethod
    def from_config(cls, scanner: ScannerConfig, trigger_timeout_s: float) -> "ReceiverSettings":
        f = scanner.fmcw
        return cls(f.chirp_bandwidth_hz, f.chirp_duration_s, f.sample_rate_hz, f.samples_per_chirp,
                   f.chirps_per_line, scanner.raster.lines_per_frame, f.reference_range_m, trigger_timeout_s)

    def commands(self) -> list[tuple[str, float | int | str]]:
        """(SCPI header, value) in the order they are sent; each has a query form `<header>?`."""
        return [
            ("SENS:SWE:BWID", self.chirp_bandwidth_hz), ("SENS:SWE:TIME", self.chirp_duration_s),
            ("ACQ:SRAT", self.sample_rate_hz), ("SENS:SWE:POIN", self.samples_per_chirp),
            ("SENS:SWE:COUN", self.chirps_per_line), ("ACQ:LINE", self.lines_per_frame),
            ("SENS:RANG:REF", self.reference_range_m), ("TRIG:SOUR", "EXT"),
            ("TRIG:TIM", self.trigger_timeout_s), ("FORM:DATA", "INT,16"), ("FORM:BORD", "SWAP"),
        ]

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.lines_per_frame, self.chirps_per_line, self.samples_per_chirp)


def _fmt(v: float | int | str) -> str:
    if isinstance(v, str):
        return v
    if isinstance(v, int):
        return str(v)
    return f"{v:.9g}"


class Receiver:
    """The FMCW receiver/digitizer (docs/protocols.md section 2).

    Every VISA failure is translated: a timeout -> ReceiverTimeoutError, anything else on the link ->
    ReceiverLinkError, a malformed block -> BlockError (all LinkSuspect). After one of them the driver
    refuses further I/O until `open()` reopens the session, because a late or half-read reply would
    otherwise be taken as the answer to the next query.

    One deadline per query covers the whole reply (text or block), however the bytes trickle in; a
    text reply longer than `max_reply_bytes` and a block longer than announced are refused without
    buffering them; the peer closing the connection raises ReceiverLinkError at once
    (acquisition.reply_reader says why pyvisa's own reads cannot do this).
    """

    def __init__(self, resource: str, timeout_s: float, library: str = "@py", read_termination: str = "\n",
                 write_termination: str = "\n", chunk_size: int = 1 << 20, block_reader: str = "exact",
                 max_reply_bytes: int = MAX_TEXT_REPLY, clock=time.monotonic) -> None:
        if block_reader not in ("exact", "pyvisa"):
            raise ValueError(f"block_reader={block_reader!r}: 'exact' or 'pyvisa'")
        if not (math.isfinite(timeout_s) and timeout_s > 0):
            raise ValueError(f"timeout_s={timeout_s!r} must be a finite number of seconds > 0")
        if not read_termination:
            raise ValueError("read_termination must not be empty: text replies end at it")
        self.max_reply_bytes = max_reply_bytes
        self.clock = clock
        self.resource, self.timeout_s, self.library = resource, timeout_s, library
        self.read_termination, self.write_termination = read_termination, write_termination
        self.chunk_size = chunk_size
        self.block_reader = block_reader
        self._res: pyvisa.resources.MessageBasedResource | None = None
        self._suspect = False
        self.idn = ""

    # --- link ---
    def open(self) -> None:
        self.close()
        try:
            res = resource_manager(self.library).open_resource(
                self.resource, read_termination=self.read_termination, write_termination=self.write_termination,
                timeout=int(math.ceil(self.timeout_s * 1000)))
        except (visa_errors.VisaIOError, OSError, ValueError) as exc:
            raise ReceiverLinkError(f"cannot open receiver {self.resource!r}: {exc}") from exc
        if not isinstance(res, pyvisa.resources.MessageBasedResource):
            res.close()
            raise ReceiverLinkError(f"{self.resource!r} is not a message-based VISA resource")
        res.chunk_size = self.chunk_size
        self._res = res
        self._suspect = False

    def close(self) -> None:
        res, self._res = self._res, None
        if res is not None:
            try:
                res.close()
            except (visa_errors.VisaIOError, OSError):
                pass

    @property
    def is_open(self) -> bool:
        return self._res is not None and not self._suspect

    def __enter__(self) -> "Receiver":
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- exchanges ---
    def _io(self, what: str, fn, timeout_s: float | None = None):
        res = self._res
        if res is None:
            raise ReceiverLinkError(f"receiver {self.resource!r} is not open; call open() first")
        if self._suspect:
            raise ReceiverLinkError(f"receiver link {self.resource!r} is suspect after an earlier failure; reopen it")
        self._suspect = True  # cleared only when the exchange completed
        limit = self.timeout_s if timeout_s is None else timeout_s
        t0 = self.clock()
        try:
            if timeout_s is not None:
                res.timeout = int(math.ceil(timeout_s * 1000))
            try:
                out = fn(res, t0 + limit)
            finally:
                res.timeout = int(math.ceil(self.timeout_s * 1000))
        except ReplyTimeout as exc:
            raise ReceiverTimeoutError(f"receiver {what!r}: no complete reply within {limit} s "
                                       f"({exc.got} bytes arrived in {self.clock() - t0:.3f} s)") from None
        except PeerClosed:
            raise ReceiverLinkError(f"receiver {what!r}: the receiver closed the connection "
                                    f"({self.resource})") from None
        except ReplyTooLong:
            raise BlockError(f"receiver {what!r}: reply longer than {self.max_reply_bytes} bytes without "
                             f"its terminator; refused") from None
        except visa_errors.VisaIOError as exc:
            if exc.error_code == constants.StatusCode.error_timeout:
                raise ReceiverTimeoutError(f"receiver {what!r}: timed out after {limit} s") from exc
            raise ReceiverLinkError(f"receiver {what!r}: {exc}") from exc
        except (visa_errors.InvalidBinaryFormat, RuntimeError) as exc:
            raise BlockError(f"receiver {what!r}: bad binary block: {exc}") from exc
        except ValueError as exc:
            raise BlockError(f"receiver {what!r}: bad reply: {exc}") from exc
        except (OSError, EOFError) as exc:
            raise ReceiverLinkError(f"receiver {what!r}: {exc}") from exc
        self._suspect = False
        return out

    def write(self, command: str) -> None:
        self._io(command, lambda r, deadline: r.write(command))

    def query(self, command: str, timeout_s: float | None = None) -> str:
        """Send `command`; its text reply (terminator stripped) read against one deadline and the size cap."""
        def text_reader(r, deadline):
            r.write(command)
            term = self.read_termination.encode()
            raw = read_until(source_for(r, self.clock), term, self.max_reply_bytes, deadline)
            return raw[:-len(term)].decode("ascii")
        return self._io(command, text_reader, timeout_s).strip()

    def query_block(self, command: str, datatype: str, count: int, timeout_s: float | None = None,
                    out: np.ndarray | None = None) -> np.ndarray:
        """A definite-length block of exactly `count` little-endian `datatype` values.

        block_reader "exact": read the header, check the announced length against `count`, then
        receive exactly that many bytes straight into `out` (a C-contiguous array of `count` values of
        `datatype`, reused by the caller frame after frame; a new array when None), the terminator
        disabled. "pyvisa": `query_binary_values`, which is correct but, on pyvisa-py sockets with a
        terminator set, ends a read call at every 0x0A byte of the data (tens of thousands of calls
        for a frame: seconds per 8 MB block); it is kept as the conformance path.
        """
        # without empty_ok an empty block raises (BlockError, FrameCorruptError): the array is never None
        return cast(np.ndarray, self.query_block_crc(command, datatype, count, timeout_s, out)[0])

    def query_block_crc(self, command: str, datatype: str, count: int, timeout_s: float | None = None,
                        out: np.ndarray | None = None, crc: int = 0,
                        empty_ok: bool = False) -> tuple[np.ndarray | None, int]:
        """`query_block` and the CRC-32 of the block's bytes (computed as the chunks arrived, "exact"),
        continued from `crc` (the CRC of the bytes before this block, for a frame read in parts).
        `empty_ok`: an empty block (`#10`, what FETC:PART? answers for an aborted frame) gives (None, crc)
        instead of a BlockError; the reason is then in the instrument's error queue."""
        dt = np.dtype(datatype).newbyteorder("<")
        nbytes = count * dt.itemsize
        if out is not None and (out.dtype != dt or out.size != count or not out.flags.c_contiguous
                                or not out.flags.writeable):
            raise ValueError(f"out: a writeable C-contiguous array of {count} x {dt.str} is needed, got "
                             f"{out.size} x {out.dtype.str}")

        def pyvisa_reader(r, deadline):
            a = r.query_binary_values(command, datatype=datatype, is_big_endian=False, container=np.ndarray,
                                      header_fmt="ieee", expect_termination=True, chunk_size=self.chunk_size,
                                      length_before_block=0, raise_on_late_block=True)
            if empty_ok and a.size == 0:
                return None, crc
            return a, crc32(a, crc)

        def exact_reader(r, deadline):
            r.write(command)
            term = r.read_termination
            r.read_termination = None  # binary data may hold the terminator byte
            try:
                src = source_for(r, self.clock)
                head = read_exact(src, 2, deadline)
                nd = head[1:2]
                if head[:1] != b"#" or not nd.isdigit() or nd == b"0":
                    raise BlockError(f"receiver {command!r}: block header starts {head!r}, not '#<1-9>'")
                digits = read_exact(src, int(nd), deadline)
                _, length = parse_block_header(head + digits)
                if length == 0 and empty_ok:
                    arr, value = None, crc
                elif length != nbytes:
                    raise BlockError(f"receiver {command!r}: block announces {length} bytes, expected "
                                     f"{nbytes} ({count} x {datatype})")
                else:
                    arr = np.empty(count, dt) if out is None else out
                    value = read_exact_into(src, memoryview(arr).cast("B"), deadline, self.chunk_size, crc=crc)
                tail = read_exact(src, len(term), deadline) if term else b""
            finally:
                r.read_termination = term
            if term and tail != term.encode():
                raise BlockError(f"receiver {command!r}: block not followed by the terminator {term!r}")
            return arr, value

        arr, value = self._io(command, exact_reader if self.block_reader == "exact" else pyvisa_reader, timeout_s)
        if arr is None:
            return None, value
        if arr.size != count:
            # the whole announced block was read, so the stream is in step: a shape error, not a link error
            raise FrameCorruptError(f"receiver {command!r}: block holds {arr.size} values, expected {count}")
        if out is not None and arr is not out:  # the pyvisa reader makes its own array
            out[...] = arr
            arr = out
        return arr, value

    # --- instrument ---
    def identify(self) -> str:
        idn = self.query("*IDN?")
        if idn.count(",") != 3:
            raise ReceiverLinkError(f"*IDN? reply {idn!r} is not '<maker>,<model>,<serial>,<firmware>'")
        self.idn = idn
        return idn

    def reset(self) -> None:
        self.write("*RST")
        self.write("*CLS")
        self.query("*OPC?")

    def errors(self, limit: int = 32) -> list[tuple[int, str]]:
        out = []
        for _ in range(limit):
            code, text = parse_error(self.query("SYST:ERR?"))
            if code == 0:
                break
            out.append((code, text))
        return out

    def check_errors(self) -> None:
        errs = self.errors()
        if errs:
            code, text = errs[0]
            more = f" (+{len(errs) - 1} more: {errs[1:]})" if len(errs) > 1 else ""
            raise ReceiverInstrumentError(f"receiver error {code},{text!r}{more}", code, text)

    def configure(self, s: ReceiverSettings) -> None:
        """Send every setting, then check the error queue and read each one back."""
        self.write("*CLS")
        for header, value in s.commands():
            self.write(f"{header} {_fmt(value)}")
        errs = self.errors()
        if errs:
            bad = [e for e in errs if is_config_error(e[0])] or errs
            code, text = bad[0]
            raise ReceiverConfigError(f"receiver refused the configuration: {code},{text!r}; check scanner.fmcw / "
                                      "scanner.raster against the receiver's ranges (docs/protocols.md)",
                                      code, text)
        for header, value in s.commands():
            got = self.query(f"{header}?")
            if isinstance(value, str):
                ok = got.replace(" ", "").upper() == value.replace(" ", "").upper()
            else:
                try:
                    ok = math.isclose(float(got), float(value), rel_tol=1e-6, abs_tol=1e-12)
                except ValueError:
                    ok = False
            if not ok:
                raise ReceiverConfigError(f"receiver {header} reads back {got!r}, {value!r} was sent", 0, got, header)

    def arm(self) -> None:
        """INIT: acquire the next whole frame (it starts at the next slow-axis frame boundary)."""
        self.write("INIT")

    def abort(self) -> None:
        self.write("ABOR")

    def wait(self, timeout_s: float) -> None:
        """*OPC? blocks until the armed frame is complete or aborted (no line trigger)."""
        reply = self.query("*OPC?", timeout_s=timeout_s)
        if reply != "1":
            raise ReceiverLinkError(f"*OPC? replied {reply!r}, expected '1' (stale reply)")

    def head(self) -> FrameHead:
        return parse_head(self.query("FETC:HEAD?"))

    def fetch_frame(self, head: FrameHead, out: np.ndarray | None = None) -> np.ndarray:
        """FETC:FRAM? -> int16 (lines, chirps, samples), CRC-checked against the head.

        `out`: a preallocated int16 array of the frame's size to receive into (see query_block); the
        result is a view of it.
        """
        n = head.lines * head.chirps * head.samples
        if out is not None and not out.flags.c_contiguous:
            raise ValueError("out must be C-contiguous (the block is received into its memory)")
        a, crc = self.query_block_crc("FETC:FRAM?", "h", n, out=None if out is None else out.reshape(-1))
        if crc != head.crc_if:
            raise FrameCorruptError(f"frame {head.frame_no}: IF block CRC-32 {crc:08x} != head {head.crc_if:08x}")
        return a.reshape(head.shape)

    def fetch_part(self, first: int, out: np.ndarray, crc: int, timeout_s: float) -> int | None:
        """FETC:PART? first,count -> lines first .. first + count - 1 of the frame being recorded, received
        into `out` (int16, (count, chirps, samples), C-contiguous) as soon as the receiver has digitized
        them. Returns the CRC-32 continued from `crc` over these bytes, or None when the frame was aborted
        while waiting (the instrument's error queue says why: call check_errors)."""
        if out.ndim != 3 or not out.flags.c_contiguous:
            raise ValueError("out must be a C-contiguous (lines, chirps, samples) array")
        got = self.query_block_crc(f"FETC:PART? {first},{out.shape[0]}", "h", out.size, timeout_s,
                                   out.reshape(-1), crc=crc, empty_ok=True)
        return None if got[0] is None else got[1]

    def fetch_line(self, head: FrameHead, line: int) -> np.ndarray:
        """FETC:LINE? n -> int16 (chirps, samples) of one line of the last frame."""
        if not 0 <= line < head.lines:
            raise ValueError(f"line={line} outside 0..{head.lines - 1}")
        return self.query_block(f"FETC:LINE? {line}", "h", head.chirps * head.samples).reshape(
            head.chirps, head.samples)

    def fetch_feedback(self, head: FrameHead) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """FETC:FEED? -> (feedback_x (lines, chirps), feedback_y (lines,), direction (lines,)), CRC-checked."""
        n = head.lines * head.chirps + 2 * head.lines
        a, crc = self.query_block_crc("FETC:FEED?", "f", n)
        if crc != head.crc_feedback:
            raise FrameCorruptError(f"frame {head.frame_no}: feedback CRC-32 {crc:08x} != head "
                                    f"{head.crc_feedback:08x}")
        return unpack_feedback(a, head.lines, head.chirps)

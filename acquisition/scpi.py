"""SCPI pieces of the receiver dialect (pure): IEEE 488.2 blocks, error entries, frame headers, feedback blocks.

Definite-length block (IEEE 488.2 section 8.7.9): `#` <n> <n ASCII digits = byte count L> <L bytes>,
then the reply terminator. docs/protocols.md section 2 lists the commands.
"""
from __future__ import annotations

import re
import zlib
from dataclasses import dataclass

import numpy as np

from acquisition.errors import (
    AcquisitionError, ConfigurationError, DeviceFault, FrameRejected, InstrumentErrorMixin, LinkSuspect,
)

MAX_BLOCK_BYTES = 256 * 1024 * 1024  # refuse to allocate more for one reply


class ReceiverError(AcquisitionError):
    """Base of receiver driver errors."""


class ReceiverLinkError(ReceiverError, LinkSuspect):
    """The VISA session failed (peer closed, OS error) or a query was left half way."""


class ReceiverTimeoutError(ReceiverLinkError, TimeoutError):
    """No (complete) reply within the timeout; a late reply may still be in flight, so the link is suspect."""


class BlockError(ReceiverLinkError):
    """A binary block whose header or length is wrong: the byte stream is out of step, reopen the link."""


class ReceiverInstrumentError(InstrumentErrorMixin, ReceiverError, DeviceFault):
    """An entry of the receiver's error queue (SYST:ERR?), with its SCPI code and text."""


class ReceiverConfigError(InstrumentErrorMixin, ReceiverError, ConfigurationError):
    """The receiver refused a setting (-2xx command/execution errors while configuring)."""


class FrameCorruptError(ReceiverError, FrameRejected):
    """Frame bytes arrived in step but their CRC-32 or shape disagrees with the frame header."""


def build_block(payload: bytes) -> bytes:
    """b'abc' -> b'#13abc' (no terminator)."""
    n = str(len(payload))
    if len(n) > 9:
        raise ValueError(f"block of {len(payload)} bytes needs more than 9 length digits")
    return b"#" + str(len(n)).encode() + n.encode() + payload


def parse_block_header(buf: bytes) -> tuple[int, int]:
    """Return (offset of the data, data length) of a definite-length block starting at buf[0]."""
    if len(buf) < 2 or buf[0:1] != b"#":
        raise BlockError(f"binary block must start with '#<n>', got {bytes(buf[:12])!r}")
    nd = buf[1:2]
    if not nd.isdigit() or nd == b"0":
        raise BlockError(f"binary block header {bytes(buf[:12])!r}: digit count must be 1-9 "
                         "(indefinite '#0' blocks are not used by this receiver)")
    n = int(nd)
    digits = bytes(buf[2:2 + n])
    if len(digits) < n or not digits.isdigit():
        raise BlockError(f"binary block header {bytes(buf[:2 + n])!r}: length is not {n} digits")
    length = int(digits)
    if length > MAX_BLOCK_BYTES:
        raise BlockError(f"binary block announces {length} bytes, above the {MAX_BLOCK_BYTES} accepted")
    return 2 + n, length


def parse_block(buf: bytes, terminator: bytes = b"\n") -> bytes:
    """A whole reply `#<n><L><data><term>` -> data, checking length and terminator."""
    off, length = parse_block_header(buf)
    end = off + length
    if len(buf) < end:
        raise BlockError(f"binary block truncated: {len(buf) - off} of {length} bytes")
    if bytes(buf[end:]) not in (b"", terminator):
        raise BlockError(f"binary block of {length} bytes followed by {bytes(buf[end:end + 8])!r}, "
                         f"not the terminator {terminator!r}")
    return bytes(buf[off:end])


_ERR_RE = re.compile(r'^\s*([+-]?\d+)\s*,\s*"(.*)"\s*$', re.S)


def parse_error(reply: str) -> tuple[int, str]:
    """'-222,"Data out of range"' -> (-222, 'Data out of range')."""
    m = _ERR_RE.match(reply)
    if m is None:
        raise ReceiverLinkError(f"SYST:ERR? reply {reply!r} is not '<code>,\"<text>\"' (stale or foreign reply)")
    return int(m.group(1)), m.group(2)


def is_config_error(code: int) -> bool:
    """SCPI -100..-299 are command and execution errors: a setting was malformed or out of range."""
    return -299 <= code <= -100


@dataclass(frozen=True)
class FrameHead:
    """FETC:HEAD? reply: the instrument's frame counter, start time and shape, and the blocks' CRC-32."""

    frame_no: int
    t_start: float
    lines: int
    chirps: int
    samples: int
    crc_if: int
    crc_feedback: int

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.lines, self.chirps, self.samples)

    def format(self) -> str:
        return (f"{self.frame_no},{self.t_start:.6f},{self.lines},{self.chirps},{self.samples},"
                f"{self.crc_if},{self.crc_feedback}")


def parse_head(reply: str) -> FrameHead:
    parts = reply.strip().split(",")
    if len(parts) != 7:
        raise ReceiverLinkError(f"FETC:HEAD? reply {reply!r}: expected 7 comma-separated fields")
    try:
        return FrameHead(int(parts[0]), float(parts[1]), int(parts[2]), int(parts[3]), int(parts[4]),
                         int(parts[5]), int(parts[6]))
    except ValueError:
        raise ReceiverLinkError(f"FETC:HEAD? reply {reply!r}: fields are not numbers") from None


def crc32(a: np.ndarray | bytes | memoryview, value: int = 0) -> int:
    """CRC-32 (zlib) of the little-endian bytes of an array, as the receiver computes it.

    Reads the array's own memory (no copy); `value` continues a CRC over earlier bytes, so a block
    may be checked chunk by chunk: crc32(b, crc32(a)) == crc32(a + b).
    """
    if isinstance(a, np.ndarray):
        a = memoryview(np.ascontiguousarray(a)).cast("B")
    return zlib.crc32(a, value)


def pack_feedback(feedback_x: np.ndarray, feedback_y: np.ndarray, direction: np.ndarray) -> np.ndarray:
    """Feedback block layout: float32 [feedback_x (lines*chirps), feedback_y (lines), direction (lines, +-1)]."""
    return np.concatenate([np.asarray(feedback_x, "<f4").ravel(), np.asarray(feedback_y, "<f4").ravel(),
                           np.asarray(direction, "<f4").ravel()]).astype("<f4", copy=False)


def unpack_feedback(block: np.ndarray, lines: int, chirps: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Inverse of pack_feedback, validating the length and the direction values."""
    need = lines * chirps + 2 * lines
    if block.shape != (need,):
        raise FrameCorruptError(f"feedback block has {block.size} values, expected {need} "
                                f"({lines} lines x {chirps} chirps + 2 x {lines})")
    fx = block[: lines * chirps].reshape(lines, chirps).astype(np.float32)
    fy = block[lines * chirps: lines * chirps + lines].astype(np.float32)
    d = block[lines * chirps + lines:]
    if not np.all(np.isin(d, (-1.0, 1.0))):
        raise FrameCorruptError("feedback block: line directions are not all +1 or -1")
    if not (np.all(np.isfinite(fx)) and np.all(np.isfinite(fy))):
        raise FrameCorruptError("feedback block holds NaN or infinite positions")
    return fx, fy, d.astype(np.int8)

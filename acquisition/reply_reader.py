"""Reading one instrument reply against one deadline and one size cap (the receiver's I/O shell).

Why not pyvisa's `read` / `read_bytes`: on pyvisa-py TCPIP SOCKET sessions the VISA timeout bounds
each idle gap, not the reply, so a block dripped a few bytes at a time is read for as long as the
peer keeps dripping (41 s for a 2 s timeout, measured); an endless text reply is buffered without
bound; and a peer that closed the connection reads as a timeout after the full timeout, because
`recv` returning b"" is treated as "no data yet". Here the deadline covers the whole reply, every
reply has a byte limit, and EOF is a link error the moment it is seen.

`SocketSource` reads the session's own socket (and first whatever pyvisa-py already buffered) so the
VISA session stays in step; `VisaSource` is the fallback for any other VISA resource (its reads are
bounded by the time left, chunk by chunk, but it cannot see an EOF early).

Binary blocks are read with `read_exact_into`: straight into the caller's buffer (`recv_into` on the
socket, no intermediate bytes objects), the CRC-32 updated on each chunk as it arrives, so the check
costs no second pass over the frame once the last byte is in.
"""
from __future__ import annotations

import math
import select
import socket
import time
import zlib
from typing import Callable, Protocol

from pyvisa import constants, errors as visa_errors


class ReplyTimeout(Exception):
    """The deadline passed before the reply was complete; `got` bytes had arrived."""

    def __init__(self, got: int) -> None:
        super().__init__(got)
        self.got = got


class PeerClosed(Exception):
    """The instrument closed the connection (EOF)."""


class ReplyTooLong(Exception):
    """The reply exceeded its byte limit before its terminator."""


class Source(Protocol):
    def read_some(self, n: int, deadline: float) -> bytes:
        """Between 1 and n bytes, or raise ReplyTimeout / PeerClosed; never waits past `deadline`."""

    def read_into(self, view: memoryview, deadline: float) -> int:
        """Between 1 and len(view) bytes written to the start of `view` (their count); as `read_some` else."""


_DONTWAIT = getattr(socket, "MSG_DONTWAIT", 0)  # Linux, macOS: try the receive before waiting in select


class SocketSource:
    """The non-blocking socket of a pyvisa-py TCPIP SOCKET session, after the bytes it holds in `pending`."""

    def __init__(self, sock: socket.socket, pending: bytearray, clock: Callable[[], float] = time.monotonic) -> None:
        self.sock, self.pending, self.clock = sock, pending, clock

    def read_some(self, n: int, deadline: float) -> bytes:
        if self.pending:
            out = bytes(self.pending[:n])
            del self.pending[:len(out)]
            return out
        while True:
            left = deadline - self.clock()
            if left <= 0:
                raise ReplyTimeout(0)
            r, _, _ = select.select([self.sock], [], [], left)
            if not r:
                continue  # the loop re-checks the deadline
            try:
                data = self.sock.recv(n)
            except (BlockingIOError, InterruptedError):
                continue
            if not data:
                raise PeerClosed()
            return data

    def read_into(self, view: memoryview, deadline: float) -> int:
        if self.pending:
            n = min(len(view), len(self.pending))
            view[:n] = self.pending[:n]
            del self.pending[:n]
            return n
        wait = not _DONTWAIT  # with MSG_DONTWAIT the receive comes first and select only when nothing is there
        while True:
            left = deadline - self.clock()
            if left <= 0:
                raise ReplyTimeout(0)
            if wait:
                r, _, _ = select.select([self.sock], [], [], left)
                if not r:
                    continue  # the loop re-checks the deadline
            try:
                n = self.sock.recv_into(view, len(view), _DONTWAIT)
            except (BlockingIOError, InterruptedError):
                wait = True
                continue
            if n == 0:
                raise PeerClosed()
            return n


class VisaSource:
    """Any other message-based VISA resource: `visalib.read` with the VISA timeout set to the time left."""

    def __init__(self, res, clock: Callable[[], float] = time.monotonic) -> None:
        self.res, self.clock = res, clock

    def read_some(self, n: int, deadline: float) -> bytes:
        left = deadline - self.clock()
        if left <= 0:
            raise ReplyTimeout(0)
        self.res.timeout = max(1, int(math.ceil(left * 1000)))
        try:
            data, _ = self.res.visalib.read(self.res.session, n)
        except visa_errors.VisaIOError as exc:
            if exc.error_code == constants.StatusCode.error_timeout:
                raise ReplyTimeout(0) from exc
            raise
        if not data:
            raise PeerClosed()
        return bytes(data)

    def read_into(self, view: memoryview, deadline: float) -> int:
        data = self.read_some(len(view), deadline)
        view[:len(data)] = data
        return len(data)


def source_for(res, clock: Callable[[], float] = time.monotonic) -> Source:
    """SocketSource for a pyvisa-py socket session (its socket and pending buffer), else VisaSource."""
    try:
        sess = res.visalib.sessions[res.session]
    except (AttributeError, KeyError, TypeError):
        return VisaSource(res, clock)
    sock, pending = getattr(sess, "interface", None), getattr(sess, "_pending_buffer", None)
    if isinstance(sock, socket.socket) and isinstance(pending, bytearray):
        return SocketSource(sock, pending, clock)
    return VisaSource(res, clock)


def read_until(src: Source, terminator: bytes, max_bytes: int, deadline: float, chunk: int = 4096) -> bytes:
    """The bytes up to and including `terminator`; ReplyTooLong beyond max_bytes, ReplyTimeout at the deadline.

    Reads at most what the cap still allows, so an endless reply costs max_bytes of memory, not more;
    bytes after the terminator (a pipelined reply) are not read from the socket.
    """
    buf = bytearray()
    while True:
        want = min(chunk, max_bytes + len(terminator) - len(buf))
        if want <= 0:
            raise ReplyTooLong()
        try:
            data = src.read_some(want, deadline)
        except ReplyTimeout:
            raise ReplyTimeout(len(buf)) from None
        start = max(0, len(buf) - len(terminator) + 1)
        buf.extend(data)
        i = buf.find(terminator, start)
        if i >= 0:
            end = i + len(terminator)
            rest = bytes(buf[end:])
            if rest and isinstance(src, SocketSource):
                src.pending[:0] = rest  # give back what belongs to the next reply
            return bytes(buf[:end])
        if len(buf) > max_bytes:
            raise ReplyTooLong()


def read_exact(src: Source, n: int, deadline: float, chunk: int = 1 << 20) -> bytes:
    """Exactly n bytes before the deadline (binary block data, terminator disabled)."""
    buf = bytearray()
    while len(buf) < n:
        try:
            buf.extend(src.read_some(min(chunk, n - len(buf)), deadline))
        except ReplyTimeout:
            raise ReplyTimeout(len(buf)) from None
    return bytes(buf)


def read_exact_into(src: Source, view: memoryview, deadline: float, chunk: int = 1 << 20,
                    crc: int | None = None) -> int | None:
    """Fill `view` (bytes) exactly before the deadline; returns the CRC-32 of the bytes when `crc` is a start value.

    The CRC (zlib's, the receiver's) is updated on each chunk right after it arrived, while the next
    one is still on the wire; ReplyTimeout carries the bytes that had arrived.
    """
    n, got = len(view), 0
    while got < n:
        try:
            k = src.read_into(view[got:min(n, got + chunk)], deadline)
        except ReplyTimeout:
            raise ReplyTimeout(got) from None
        if crc is not None:
            crc = zlib.crc32(view[got:got + k], crc)
        got += k
    return crc

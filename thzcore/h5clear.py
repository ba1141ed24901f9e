"""Clear the file-consistency flags HDF5 leaves set when a writer is killed (what `h5clear -s` does), in Python.

A file opened for writing with the latest format (superblock version 2 or 3) carries "open for write"
flags in its superblock until it is closed; after a kill -9 every later open fails with "file is already
open for write (may use <h5clear file> to clear file consistency flags)". The superblock (HDF5 File Format
Specification, section II.A, versions 2 and 3) is

    signature (8) | version (1) | size of offsets O (1) | size of lengths (1) | consistency flags (1) |
    base address (O) | superblock extension address (O) | end of file address (O) |
    root group object header address (O) | checksum (4)

and the checksum is Bob Jenkins' lookup3 `hashlittle` (HDF5's H5_checksum_lookup3, initval 0) of the
bytes before it. Clearing the flags rewrites one byte and the four checksum bytes, nothing else.

A writer killed in SWMR mode can also leave the superblock's end-of-file address (EOA) short of what it
wrote: plain readers then fail ("addr overflow"), and SWMR readers wait for a writer that will never
extend it (HDF5 retries the read for minutes). `extend_eoa` sets the EOA to the file's size (what
`h5clear --increment=0` does), again rewriting only that field and the checksum.
"""
from __future__ import annotations

import os
from pathlib import Path

SIGNATURE = b"\x89HDF\r\n\x1a\n"
_M = 0xFFFFFFFF


def _rot(x: int, k: int) -> int:
    return ((x << k) | (x >> (32 - k))) & _M


def lookup3(data: bytes, initval: int = 0) -> int:
    """Jenkins' lookup3 hashlittle over `data`, byte-wise (as H5_checksum_lookup3)."""
    n = len(data)
    a = b = c = (0xDEADBEEF + n + initval) & _M
    k = 0
    while n > 12:
        a = (a + int.from_bytes(data[k:k + 4], "little")) & _M
        b = (b + int.from_bytes(data[k + 4:k + 8], "little")) & _M
        c = (c + int.from_bytes(data[k + 8:k + 12], "little")) & _M
        # mix(a, b, c)
        a = (a - c) & _M; a ^= _rot(c, 4); c = (c + b) & _M  # noqa: E702
        b = (b - a) & _M; b ^= _rot(a, 6); a = (a + c) & _M  # noqa: E702
        c = (c - b) & _M; c ^= _rot(b, 8); b = (b + a) & _M  # noqa: E702
        a = (a - c) & _M; a ^= _rot(c, 16); c = (c + b) & _M  # noqa: E702
        b = (b - a) & _M; b ^= _rot(a, 19); a = (a + c) & _M  # noqa: E702
        c = (c - b) & _M; c ^= _rot(b, 4); b = (b + a) & _M  # noqa: E702
        n -= 12
        k += 12
    if n == 0:
        return c
    tail = data[k:k + n] + b"\0" * (12 - n)  # the byte-wise switch adds exactly these, zero-padded
    a = (a + int.from_bytes(tail[0:4], "little")) & _M
    b = (b + int.from_bytes(tail[4:8], "little")) & _M
    c = (c + int.from_bytes(tail[8:12], "little")) & _M
    # final(a, b, c)
    c ^= b; c = (c - _rot(b, 14)) & _M  # noqa: E702
    a ^= c; a = (a - _rot(c, 11)) & _M  # noqa: E702
    b ^= a; b = (b - _rot(a, 25)) & _M  # noqa: E702
    c ^= b; c = (c - _rot(b, 16)) & _M  # noqa: E702
    a ^= c; a = (a - _rot(c, 4)) & _M  # noqa: E702
    b ^= a; b = (b - _rot(a, 14)) & _M  # noqa: E702
    c ^= b; c = (c - _rot(b, 24)) & _M  # noqa: E702
    return c


def superblock(head: bytes) -> tuple[int, int, int] | None:
    """(version, consistency flags, offset of the checksum) of a v2/v3 superblock at the file start, else None."""
    if len(head) < 12 or head[:8] != SIGNATURE or head[8] not in (2, 3):
        return None
    size_of_offsets = head[9]
    end = 12 + 4 * size_of_offsets
    if size_of_offsets not in (2, 4, 8, 16) or len(head) < end + 4:
        return None
    return head[8], head[11], end


def _rewrite(p: Path, fixed: bytes, end: int, field: slice) -> None:
    fd = os.open(p, os.O_WRONLY)
    try:
        os.pwrite(fd, fixed[field], field.start)
        os.pwrite(fd, lookup3(fixed[:end]).to_bytes(4, "little"), end)
        os.fsync(fd)
    finally:
        os.close(fd)


def _intact(path: Path) -> tuple[bytes, int] | None:
    """(the superblock's bytes, offset of its checksum) of a v2/v3 superblock whose checksum matches, else None."""
    with path.open("rb") as fh:
        head = fh.read(12 + 4 * 16 + 4)
    sb = superblock(head)
    if sb is None:
        return None
    end = sb[2]
    return (head, end) if lookup3(head[:end]) == int.from_bytes(head[end:end + 4], "little") else None


def extend_eoa(path: str | Path) -> bool:
    """Set a v2/v3 superblock's end-of-file address to the file's size when it is short of it; True when
    changed. Refuses (False, touches nothing) when the superblock is not v2/v3, damaged, or already at or
    beyond the file's end."""
    p = Path(path)
    found = _intact(p)
    if found is None:
        return False
    head, end = found
    o = head[9]
    at = 12 + 2 * o                                  # base address, extension address, then the EOA
    eoa = int.from_bytes(head[at:at + o], "little")
    size = p.stat().st_size
    if eoa >= size:
        return False
    fixed = head[:at] + size.to_bytes(o, "little") + head[at + o:end]
    _rewrite(p, fixed, end, slice(at, at + o))
    return True


def clear_consistency_flags(path: str | Path) -> bool:
    """Clear the flags of a v2/v3 superblock whose checksum is intact; True when a flag was cleared.

    Refuses (returns False, touches nothing) when the superblock is not v2/v3 at offset 0, already
    clear, or its checksum does not match (then the superblock itself is damaged, not just flagged).
    """
    p = Path(path)
    found = _intact(p)
    if found is None:
        return False
    head, end = found
    if head[11] == 0:
        return False
    fixed = head[:11] + b"\0" + head[12:end]
    _rewrite(p, fixed, end, slice(11, 12))
    return True

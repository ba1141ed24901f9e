"""Preallocated frame buffers handed out again only when nothing references them any more.

The receiver writes each raw frame's IF block straight into one of these (no allocation, no page
faults on 8 MB of fresh memory per frame). A buffer may still be in use when the next frame comes:
the RawFrame built on it travels on (a ZMQ send with copy=False holds it until the I/O thread has
sent it; a consumer may keep the frame). So a buffer counts as free only when the pool's own
references are the only ones left (CPython reference counts: every array view or memoryview of a
buffer, and so every RawFrame and zero-copy ZMQ message built on it, holds one). When every buffer
is in use a fresh array is returned and not kept (counted in `misses`): memory stays bounded by
`slots` plus whatever the consumers themselves hold, and a buffer is never overwritten under them.
"""
from __future__ import annotations

import sys

import numpy as np


class BufferPool:
    """`slots` reusable arrays of `shape` x `dtype`; `take()` returns one that nothing else references."""

    def __init__(self, shape: tuple[int, ...], dtype: str | np.dtype, slots: int = 4) -> None:
        if slots < 1:
            raise ValueError(f"slots={slots} must be >= 1")
        self.shape, self.dtype, self.slots = tuple(shape), np.dtype(dtype), slots
        self._buffers: list[np.ndarray] = []
        self.misses = 0  # takes that found every buffer in use

    @staticmethod
    def _refs(buf: np.ndarray) -> int:
        return sys.getrefcount(buf)

    def _free(self, i: int) -> bool:
        # references while checking: the pool's list and getrefcount's own argument (via _refs' parameter)
        return self._refs(self._buffers[i]) <= self._idle_refs

    def take(self) -> np.ndarray:
        for i in range(len(self._buffers)):
            if self._free(i):
                return self._buffers[i]
        buf = np.empty(self.shape, self.dtype)
        if len(self._buffers) < self.slots:
            self._buffers.append(buf)
        else:
            self.misses += 1
        return buf

    @property
    def in_use(self) -> int:
        """Pooled buffers referenced outside the pool now."""
        return sum(not self._free(i) for i in range(len(self._buffers)))

    def __len__(self) -> int:
        return len(self._buffers)


def _idle_refs() -> int:
    probe = BufferPool((1,), np.uint8, 1)
    probe._buffers.append(np.empty(1, np.uint8))
    return probe._refs(probe._buffers[0])


BufferPool._idle_refs = _idle_refs()  # measured, not assumed: the count of an unreferenced pooled buffer

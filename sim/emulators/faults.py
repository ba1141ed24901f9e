"""Pending injected faults of the emulated devices, armed by the backdoor and consumed by the servers."""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

# kind -> devices it applies to. Reply faults act on the next reply whose command starts with `match`.
KINDS: dict[str, tuple[str, ...]] = {
    "delay": ("galvo", "receiver"),       # hold the reply `seconds` before sending it
    "drop": ("galvo", "receiver"),        # never send the reply
    "disconnect": ("receiver",),          # close the TCP connection (now, or at the matching command)
    "unplug": ("galvo",),                 # close the pty master; a new pty appears after `replug_after_s`
    "truncate": ("receiver",),            # send only part of the next binary block, then nothing
    "corrupt": ("receiver",),             # next binary block: `mode` header (bad length digits) or payload (bit flips)
    "error": ("galvo", "receiver"),       # push (code, text) onto the instrument's error queue
    "stall": ("galvo",),                  # servo stall for `seconds` (0 = until cleared): no line triggers
}
REPLY_KINDS = ("delay", "drop", "disconnect", "truncate", "corrupt")


@dataclass
class Fault:
    device: str
    kind: str
    match: str = ""            # command prefix the fault waits for ('' = any)
    count: int = 1             # how many replies it affects
    params: dict[str, Any] = field(default_factory=dict)


class FaultBook:
    """Thread-safe list of armed reply faults, and counters of what fired."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: list[Fault] = []
        self.fired: dict[str, int] = {}

    def arm(self, fault: Fault) -> None:
        if fault.kind not in KINDS:
            raise ValueError(f"fault kind {fault.kind!r}: expected one of {sorted(KINDS)}")
        if fault.device not in KINDS[fault.kind]:
            raise ValueError(f"fault {fault.kind!r} applies to {KINDS[fault.kind]}, not {fault.device!r}")
        if fault.count < 1:
            raise ValueError(f"fault count={fault.count} must be >= 1")
        with self._lock:
            self._pending.append(fault)

    def take(self, device: str, command: str, kinds: tuple[str, ...] = REPLY_KINDS) -> Fault | None:
        """The first armed fault of `device` among `kinds` matching `command`; spends one of its count."""
        with self._lock:
            for f in self._pending:
                if f.device == device and f.kind in kinds and command.upper().startswith(f.match.upper()):
                    f.count -= 1
                    if f.count <= 0:
                        self._pending.remove(f)
                    key = f"{device}.{f.kind}"
                    self.fired[key] = self.fired.get(key, 0) + 1
                    return f
        return None

    def note(self, device: str, kind: str) -> None:
        with self._lock:
            key = f"{device}.{kind}"
            self.fired[key] = self.fired.get(key, 0) + 1

    def clear(self) -> None:
        with self._lock:
            self._pending.clear()

    def pending(self) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(device=f.device, kind=f.kind, match=f.match, count=f.count, **f.params)
                    for f in self._pending]

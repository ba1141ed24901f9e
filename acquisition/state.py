"""The daemon's state machine: states, allowed transitions, and listeners told of every change (pure).

    disconnected -> connecting -> ready -> scanning <-> degraded
          ^              |          |        |            |
          |              v          v        v            v
          +---------- reconnecting <---------+------------+
    any state -> failed (configuration error, retries exhausted); any state -> disconnected (shutdown)
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from enum import Enum
from typing import Callable


class State(str, Enum):
    DISCONNECTED = "disconnected"
    CONNECTING = "connecting"
    READY = "ready"
    SCANNING = "scanning"
    DEGRADED = "degraded"
    RECONNECTING = "reconnecting"
    FAILED = "failed"


S = State
ALLOWED: dict[State, frozenset[State]] = {
    S.DISCONNECTED: frozenset({S.CONNECTING, S.FAILED}),
    S.CONNECTING: frozenset({S.READY, S.RECONNECTING, S.DEGRADED, S.FAILED, S.DISCONNECTED}),
    S.READY: frozenset({S.SCANNING, S.RECONNECTING, S.DEGRADED, S.FAILED, S.DISCONNECTED}),
    S.SCANNING: frozenset({S.DEGRADED, S.RECONNECTING, S.FAILED, S.DISCONNECTED, S.READY}),
    S.DEGRADED: frozenset({S.SCANNING, S.READY, S.RECONNECTING, S.CONNECTING, S.FAILED, S.DISCONNECTED}),
    S.RECONNECTING: frozenset({S.CONNECTING, S.FAILED, S.DISCONNECTED}),
    S.FAILED: frozenset({S.DISCONNECTED}),
}


@dataclass(frozen=True)
class Transition:
    old: State
    new: State
    reason: str
    t: float


class StateMachine:
    """Holds the current state; `to()` refuses a transition the table does not allow (a daemon bug)."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._state = State.DISCONNECTED
        self._reason = ""
        self._lock = threading.Lock()
        self.history: list[Transition] = []
        self.listeners: list[Callable[[Transition], None]] = []

    @property
    def state(self) -> State:
        return self._state

    @property
    def reason(self) -> str:
        return self._reason

    def to(self, new: State, reason: str = "") -> None:
        with self._lock:
            old = self._state
            if new == old:
                self._reason = reason or self._reason
                return
            if new not in ALLOWED[old]:
                raise RuntimeError(f"state machine: {old.value} -> {new.value} is not an allowed transition")
            self._state, self._reason = new, reason
            tr = Transition(old, new, reason, self._clock())
            self.history.append(tr)
        for fn in self.listeners:
            fn(tr)


def backoff_delays(initial_s: float, cap_s: float, attempts: int) -> list[float]:
    """Capped exponential backoff: initial, 2 initial, 4 initial, ... never above cap_s."""
    if initial_s <= 0 or cap_s < initial_s or attempts < 0:
        raise ValueError(f"backoff needs 0 < initial_s <= cap_s and attempts >= 0; got {initial_s=}, {cap_s=}, "
                         f"{attempts=}")
    return [min(cap_s, initial_s * 2.0 ** k) for k in range(attempts)]

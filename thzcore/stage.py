"""The one stage lifecycle: start (in a thread), ready endpoint, stop, error, counters.

A stage is a function `serve(stop, ready)` that binds its output socket, calls `ready(endpoint)`
with the endpoint it bound (LAST_ENDPOINT, so `tcp://127.0.0.1:*` resolves to a port), then works
until `stop` is set. `StageRunner` runs it in a thread of its own, hands the endpoint back from
`start()`, keeps what killed it in `error`, and `check()` turns a dead stage into a StageError
that names it. Every stage's counters start from `StageCounters`.

    runner = StageRunner("processing", lambda stop, ready: stage.serve(raw_ep, LOCAL_ANY, stop, ready=ready))
    roi_endpoint = runner.start()
    ...
    runner.check()       # raises StageError("processing stage failed: ...") once it died
    runner.stop()
"""
from __future__ import annotations

import threading
from dataclasses import asdict, dataclass
from typing import Any, Callable

Ready = Callable[[str | None], None]
Serve = Callable[[threading.Event, Ready], Any]


@dataclass
class StageCounters:
    """What every stage counts; a stage's own counters subclass this and add theirs."""

    received: int = 0           # messages (or frames) taken in
    dropped_malformed: int = 0  # inputs rejected by validation (wire header, payload, shape)
    last_error: str = ""        # the text of the latest error, for the status line and the report

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class StageError(RuntimeError):
    """A stage did not come up, or died while the others ran; the message names the stage and the cause."""


class StageRunner:
    """Runs one stage's `serve(stop, ready)` in a daemon thread: the lifecycle every stage shares.

    `stop` is the event handed to serve (a pipeline passes one event to all its stages); `on_stop`
    is called by `stop()` for a stage that has its own way to be told (the acquisition daemon).
    """

    def __init__(self, name: str, serve: Serve, stop: threading.Event | None = None,
                 on_stop: Callable[[], None] | None = None) -> None:
        self.name = name
        self._serve = serve
        self.stop_event = stop or threading.Event()
        self._on_stop = on_stop
        self._ready = threading.Event()
        self._called_ready = False
        self._thread: threading.Thread | None = None
        self.endpoint: str | None = None
        self.error: BaseException | None = None
        self.result: Any = None

    def _ready_cb(self, endpoint: str | None = None) -> None:
        self.endpoint = endpoint
        self._called_ready = True
        self._ready.set()

    def _main(self) -> None:
        try:
            self.result = self._serve(self.stop_event, self._ready_cb)
        except BaseException as exc:  # reported to the owner through .error and check()
            self.error = exc
        finally:
            self._ready.set()  # a stage that returned or died before ready must not leave start() waiting

    def start(self, timeout_s: float = 60.0) -> str | None:
        """Start the thread and wait until the stage is ready; returns the endpoint it bound."""
        if self._thread is not None:
            raise StageError(f"{self.name} stage already started")
        self._thread = threading.Thread(target=self._main, name=f"stage-{self.name}", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout_s):
            raise StageError(f"{self.name} stage did not come up within {timeout_s:.0f} s")
        if self.error is not None:
            raise StageError(f"{self.name} stage failed to start: {self.error}") from self.error
        if not self._called_ready and not self.stop_event.is_set():
            raise StageError(f"{self.name} stage ended before it was ready")
        return self.endpoint

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def check(self) -> None:
        """Raise StageError when the stage died (its error) or ended while not asked to stop."""
        if self.error is not None:
            raise StageError(f"{self.name} stage failed: {self.error}") from self.error
        if self._thread is not None and not self.alive and not self.stop_event.is_set():
            raise StageError(f"{self.name} stage stopped unexpectedly")

    def stop(self, timeout_s: float = 15.0) -> None:
        """Ask the stage to stop and wait for its thread (at most timeout_s)."""
        self.stop_event.set()
        if self._on_stop is not None:
            self._on_stop()
        if self._thread is not None:
            self._thread.join(timeout_s)

"""JSONL run log of a session: one JSON object per line (start, state, frame, gap, error, stop), flushed each line."""
from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Any, Callable


class RunLog:
    """Appends events `{"t": unix time, "event": kind, ...}`; created 0600 like the recording beside it."""

    def __init__(self, path: str | Path, wall: Callable[[], float] = time.time) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_CREAT | os.O_APPEND | os.O_WRONLY, 0o600)
        self._fh = os.fdopen(fd, "a", encoding="utf-8")
        self._wall = wall
        self._lock = threading.Lock()

    def event(self, event: str, /, **fields: Any) -> None:
        line = json.dumps({"t": self._wall(), "event": event, **fields}, default=str, separators=(",", ":"))
        with self._lock:
            if self._fh.closed:
                return
            self._fh.write(line + "\n")
            self._fh.flush()

    def close(self) -> None:
        with self._lock:
            if not self._fh.closed:
                self._fh.close()


def read_runlog(path: str | Path) -> list[dict[str, Any]]:
    """All events of a run log; a last line cut short by a crash is skipped."""
    out = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out

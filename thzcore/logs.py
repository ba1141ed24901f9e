"""Structured logging set up once: key=value (default) or JSON lines, level from CLI or THZ_LOG_LEVEL."""
from __future__ import annotations

import json
import logging
import os
import sys
import time

_CONFIGURED = False
_STD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


class _KeyValueFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(record.created)) + f".{int(record.msecs):03d}"
        parts = [f"ts={ts}", f"level={record.levelname.lower()}", f"logger={record.name}",
                 f"msg={json.dumps(record.getMessage())}"]
        for k, v in record.__dict__.items():
            if k not in _STD and not k.startswith("_"):
                parts.append(f"{k}={json.dumps(v, default=str)}")
        if record.exc_info:
            parts.append(f"exc={json.dumps(self.formatException(record.exc_info))}")
        return " ".join(parts)


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        d = {"ts": record.created, "level": record.levelname.lower(), "logger": record.name, "msg": record.getMessage()}
        d.update({k: v for k, v in record.__dict__.items() if k not in _STD and not k.startswith("_")})
        if record.exc_info:
            d["exc"] = self.formatException(record.exc_info)
        return json.dumps(d, default=str)


def setup_logging(level: str | None = None, fmt: str | None = None, force: bool = False) -> None:
    """Configure the root logger once. Logs go to stderr so stdout stays for results (JSON last lines)."""
    global _CONFIGURED
    if _CONFIGURED and not force:
        return
    level = (level or os.environ.get("THZ_LOG_LEVEL") or "INFO").upper()
    fmt = (fmt or os.environ.get("THZ_LOG_FORMAT") or "kv").lower()
    if fmt not in ("kv", "json"):
        raise ValueError(f"log format {fmt!r}: choose 'kv' or 'json'")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_JsonFormatter() if fmt == "json" else _KeyValueFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("numba", "matplotlib", "PIL", "pyvisa", "h5py"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
    _CONFIGURED = True


def get_logger(name: str) -> logging.Logger:
    """Use `log.info("msg", extra={"frame_id": 3})`; extras become key=value pairs."""
    return logging.getLogger(name)


class RateLimitedLog:
    """Warnings about dropped messages, at most one per `interval_s` per kind, with the count suppressed.

    A flood of malformed messages must not become a flood of log lines (the counters keep the exact
    numbers): the first drop of a kind is logged at once, later ones are folded into the next line
    as `suppressed=N`. `clock` is injectable so tests need no sleep.
    """

    def __init__(self, logger: logging.Logger, interval_s: float = 5.0, clock=time.monotonic) -> None:
        self.logger, self.interval_s, self.clock = logger, interval_s, clock
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def warning(self, msg: str, extra: dict | None = None, kind: str | None = None) -> bool:
        """Log `msg` unless one of the same kind was logged less than interval_s ago; True when logged."""
        key = kind or msg
        now = self.clock()
        last = self._last.get(key)
        if last is not None and now - last < self.interval_s:
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            return False
        self._last[key] = now
        n = self._suppressed.pop(key, 0)
        self.logger.warning(msg, extra={**(extra or {}), **({"suppressed": n} if n else {})})
        return True

"""Base model for config sections and TOML loading with errors that name the field."""
from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError


class ConfigError(ValueError):
    """A configuration file or value is invalid; the message names the field and the fix."""


class Section(BaseModel):
    """Base of every config section: unknown keys are rejected, assignments re-validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False)


def load_toml(path: str | Path) -> dict[str, Any]:
    """Read a TOML file into a dict, turning parse errors into a ConfigError naming the file."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file {str(p)!r} does not exist")
    try:
        with p.open("rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{p}: not valid TOML: {exc}") from exc


def format_validation_error(exc: ValidationError, source: str = "config") -> str:
    """One line per error: `section.field: message (got value)`."""
    lines = []
    for err in exc.errors():
        loc = ".".join(str(x) for x in err["loc"]) or "<root>"
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key (check its spelling and the section it is in)"
        got = err.get("input")
        got_s = "" if isinstance(got, dict) or got is None else f" (got {got!r})"
        lines.append(f"{source}: {loc}: {msg}{got_s}")
    return "\n".join(lines)

"""Base model for config sections and TOML loading with errors that name the field."""
from __future__ import annotations

import tomllib
import types
import typing
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, model_validator


class ConfigError(ValueError):
    """A configuration file or value is invalid; the message names the field and the fix."""


def _numeric(annotation: Any) -> bool:
    """int, float, or an Optional / union of them (bool excluded: it is its own type here)."""
    if annotation in (int, float):
        return True
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return bool(args) and all(a in (int, float) for a in args)
    return False


class Section(BaseModel):
    """Base of every config section: unknown keys are rejected, assignments re-validated.

    Numbers are numbers: NaN and infinity are refused everywhere (no timeout, limit or position is
    meaningful as either), and so are `true`/`false` or quoted strings where a number is expected
    (pydantic would read `true` as 1 and "5" as 5).
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False, allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _numbers_are_numbers(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for name, f in cls.model_fields.items():
                v = data.get(name)
                if isinstance(v, (bool, str)) and _numeric(f.annotation):
                    kind = "a boolean" if isinstance(v, bool) else "a string"
                    raise ValueError(f"{name}={v!r} is {kind}; a number is expected")
        return data


def load_toml(path: str | Path) -> dict[str, Any]:
    """Read a TOML file into a dict, turning parse errors into a ConfigError naming the file."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file {str(p)!r} does not exist")
    try:
        with p.open("rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{p}: not valid TOML: {exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{p}: not UTF-8 text (byte {exc.start}); TOML files are UTF-8") from None
    except RecursionError:
        raise ConfigError(f"{p}: arrays or tables nested too deeply to be a configuration") from None
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read: {exc.strerror or exc}") from None


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


def _toml_key(k: str) -> str:
    import re
    return k if re.fullmatch(r"[A-Za-z0-9_-]+", k) else _toml_value(k)


def _toml_value(v: Any) -> str:
    import json
    import math

    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)  # a JSON string (ASCII, \uXXXX escapes) is a TOML basic string
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v if x is not None) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{_toml_key(k)} = {_toml_value(x)}" for k, x in v.items() if x is not None) + "}"
    raise TypeError(f"no TOML form for {type(v).__name__}")


def to_toml(data: dict[str, Any], _prefix: str = "") -> str:
    """A dict of JSON-like values (a model_dump(mode="json")) as TOML: scalars and arrays first, then one [table]
    per nested dict; None (TOML has no null) is written as a comment, `# key: not set`."""
    lines: list[str] = []
    tables: list[tuple[str, dict[str, Any]]] = []
    for k, v in data.items():
        if isinstance(v, dict):
            tables.append((k, v))
        elif v is None:
            lines.append(f"# {k}: not set")
        else:
            lines.append(f"{_toml_key(k)} = {_toml_value(v)}")
    out = "\n".join(lines)
    for k, v in tables:
        name = f"{_prefix}{_toml_key(k)}"
        body = to_toml(v, name + ".")
        has_keys = any(not isinstance(x, dict) for x in v.values()) or not v
        block = f"[{name}]\n{body}" if has_keys else body  # a table of tables needs no header of its own
        out += ("\n\n" if out else "") + block.strip("\n")
    return out + ("\n" if _prefix == "" else "")

"""Schemas of the header `meta` of each wire topic (pydantic), checked by `wire.decode` on every receiver.

Only the keys a receiver acts on are typed; other keys pass through untouched (extra="allow"), so a
producer may add facts without breaking older receivers. A meta that breaks its schema is a
malformed message: the receiver drops and counts it (thzcore.wire.WireError).
"""
from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, ValidationError

# a finite number of seconds (int accepted, bool and NaN/inf refused)
FiniteFloat = Annotated[float, Field(strict=True, allow_inf_nan=False)]
MAX_CLAIMS = 64        # identities claimed for one scan
MAX_FRAME_IDS = 64     # raw frames averaged into one output
MAX_ID_CHARS = 128     # a subject or calibration id


class _Meta(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)


class RawMeta(_Meta):
    """`raw`: what acquisition stamps on a frame."""

    t_complete: FiniteFloat | None = None
    calibration_id: Annotated[StrictStr, Field(max_length=MAX_ID_CHARS)] | None = None
    truth: dict[str, Any] | None = None


class LinesMeta(_Meta):
    """`lines`: a part of the frame being scanned (acquisition.stream_lines), published before its `raw` frame
    under the same seq; the payload `if_samples` holds lines first_line .. first_line + count - 1."""

    first_line: Annotated[StrictInt, Field(ge=0, lt=4096)]
    lines: Annotated[StrictInt, Field(ge=1, le=4096)]


class FrameMeta(_Meta):
    """`frame` and `roi`: processing's facts about an averaged frame, plus what the operator side adds."""

    frame_ids: Annotated[list[StrictInt], Field(max_length=MAX_FRAME_IDS)] | None = None
    n_averaged: StrictInt | None = None
    calibration_id: Annotated[StrictStr, Field(max_length=MAX_ID_CHARS)] | None = None
    timestamps: dict[StrictStr, FiniteFloat] | None = None
    truth: dict[str, Any] | None = None
    roi: dict[str, Any] | None = None
    claims: Annotated[list[Annotated[StrictStr, Field(max_length=MAX_ID_CHARS)]],
                      Field(max_length=MAX_CLAIMS)] | None = None


class StatusMeta(_Meta):
    """`status`: the daemon's state and heartbeat."""

    state: StrictStr | None = None
    reason: StrictStr | None = None
    heartbeat: bool | None = None


class ResultMetaLoose(_Meta):
    """`result`: the full schema is inference.results.ResultMeta; here only what every reader relies on."""

    timestamps: dict[StrictStr, FiniteFloat] | None = None
    errors: list[StrictStr] | None = None


SCHEMAS: dict[str, type[_Meta]] = {"raw": RawMeta, "lines": LinesMeta, "frame": FrameMeta, "roi": FrameMeta, "status": StatusMeta,
                                   "result": ResultMetaLoose}


def meta_error(topic: str, meta: dict[str, Any]) -> str | None:
    """None when `meta` follows the schema of `topic`, else one line naming the first bad key."""
    schema = SCHEMAS.get(topic)
    if schema is None:
        return None
    try:
        schema.model_validate(meta)
    except ValidationError as exc:
        e = exc.errors()[0]
        loc = ".".join(str(x) for x in e["loc"])
        got = repr(e.get("input"))
        return f"meta.{loc}: {e['msg']} (got {got[:80]})"
    return None

"""JSON Schema (draft 2020-12) of every ZMQ message header, generated from the pydantic models that check them.

One schema per topic: the header of thzcore.wire (schema, topic, seq, frame_id, scanner_id, t_acquired,
t_sent, payloads) with the topic's `meta` (thzcore.topics; for `result` the full inference.results.ResultMeta).
The binary frames that follow the header are not JSON: one per `payloads` entry, raw little-endian bytes
of that dtype and shape. `thz schema --out docs/schemas` writes them; tests/pipeline/test_schema.py
checks the shipped files against this module and real messages against the schemas.
"""
from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from inference.results import ResultMeta
from thzcore.topics import SCHEMAS
from thzcore.wire import ALLOWED_DTYPES, MAX_ID, SCHEMA_VERSION, TOPICS

JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


class PayloadDescriptor(BaseModel):
    """One binary frame after the header."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(description="array name, e.g. if_samples, frame, roi, reconstruction")
    dtype: Literal[ALLOWED_DTYPES] = Field(description="numpy dtype string, little-endian")  # type: ignore[valid-type]
    shape: list[int] = Field(description="array shape; the frame holds prod(shape) * itemsize bytes")


class WireHeader(BaseModel):
    """The JSON header, the second frame of every message ([topic, header, payload...])."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    schema_version: Literal[SCHEMA_VERSION] = Field(alias="schema", description="wire protocol version")  # type: ignore[valid-type]
    topic: Literal[TOPICS] = Field(description="equals the first frame")  # type: ignore[valid-type]
    seq: int = Field(ge=-1, lt=MAX_ID, description="sequence number of the publisher")
    frame_id: int = Field(ge=-1, lt=MAX_ID, description="daemon frame id (the newest averaged one downstream)")
    scanner_id: str = Field(max_length=128)
    t_acquired: float = Field(description="frame start, s since the Unix epoch")
    t_sent: float | None = Field(None, description="when the message was sent, s since the Unix epoch")
    payloads: list[PayloadDescriptor]
    meta: dict[str, Any] = Field(default_factory=dict, description="the topic's facts (see the topic schema)")


def meta_models() -> dict[str, type[BaseModel]]:
    return {**SCHEMAS, "result": ResultMeta}


def message_schema(topic: str) -> dict[str, Any]:
    """The JSON Schema of a `topic` message header, its meta included."""
    if topic not in TOPICS:
        raise ValueError(f"topic {topic!r}: one of {TOPICS}")
    s = WireHeader.model_json_schema(by_alias=True)
    meta = meta_models()[topic].model_json_schema(by_alias=True)
    defs = {**s.pop("$defs", {}), **meta.pop("$defs", {})}
    s["properties"]["topic"] = {"const": topic, "description": "equals the first frame"}
    s["properties"]["meta"] = meta
    out: dict[str, Any] = {"$schema": JSON_SCHEMA_DIALECT, "$id": f"thz-face/wire/{SCHEMA_VERSION}/{topic}",
                           **s, "title": f"thz-face `{topic}` message header"}
    out["description"] = (f"{out.get('description', '')} The payload frames that follow are raw little-endian "
                          "arrays, one per `payloads` entry.").strip()
    if defs:
        out["$defs"] = defs
    return out


def message_schemas() -> dict[str, dict[str, Any]]:
    return {topic: message_schema(topic) for topic in TOPICS}

"""The JSON Schemas of the ZMQ messages: shipped files match the models, and real messages follow them."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from inference.results import PostureResult, ResultMeta, VerificationResult, encode_result
from pipeline.schema import WireHeader, message_schema, message_schemas
from thz.cli import cli
from thzcore.frames import RawFrame
from thzcore.wire import TOPICS, Message, encode

DOCS = Path(__file__).resolve().parents[2] / "docs" / "schemas"


def _messages() -> dict[str, list[bytes]]:
    rng = np.random.default_rng(0)
    raw = RawFrame(7, 1700000000.25, "thz340-sim-01", rng.integers(-100, 100, (2, 4, 8), dtype=np.int16),
                   rng.random((2, 4), dtype=np.float32), rng.random(2, dtype=np.float32), np.array([1, -1], np.int8),
                   {"t_complete": 1700000000.9, "calibration_id": "phase-1", "truth": {"identity": 3},
                    "session_id": "ab12"}).to_message(41)
    roi = Message("roi", 5, 7, "thz340-sim-01", 1700000000.25, {"roi": np.zeros((64, 64), "<f4")},
                  {"frame_ids": [5, 6, 7], "n_averaged": 3, "calibration_id": "", "timestamps": {"processed": 1.0},
                   "roi": {"found": True, "quality": 0.8}, "claims": ["sim-003"]})
    status = Message("status", 2, -1, "thz340-sim-01", 1700000000.0, {}, {"state": "scanning", "heartbeat": True})
    result = encode_result(9, 7, "thz340-sim-01", 1700000000.25, ResultMeta(
        model_id="0123456789abcdef", engine="onnxruntime",
        posture=PostureResult(name="front-center", index=1, probabilities={"front-center": 0.9}),
        verification=[VerificationResult(claim="sim-003", distance=0.12, threshold=0.4, accepted=True)],
        timestamps={"published": 1700000001.0}, latency_ms={"inference": 3.5}, frame_ids=[5, 6, 7]),
        reconstruction=np.zeros((64, 64), np.float32))
    frame = Message("frame", 3, 7, "thz340-sim-01", 1700000000.25, {"frame": np.zeros((64, 256), "<f4")},
                    {"frame_ids": [7], "n_averaged": 1})
    lines = Message("lines", 41, -1, "thz340-sim-01", 1700000000.5,
                    {"if_samples": rng.integers(-100, 100, (1, 4, 8), dtype=np.int16)}, {"first_line": 1, "lines": 2})
    return {"raw": encode(raw), "roi": encode(roi), "status": encode(status), "result": result,
            "frame": encode(frame), "lines": encode(lines)}


def test_the_shipped_files_are_the_generated_schemas():
    for topic, s in message_schemas().items():
        shipped = json.loads((DOCS / f"{topic}.schema.json").read_text())
        assert shipped == s, f"docs/schemas/{topic}.schema.json is stale: run `thz schema --out docs/schemas`"


def test_real_messages_follow_their_header_model():
    msgs = _messages()
    assert set(msgs) == set(TOPICS)
    for topic, frames in msgs.items():
        h = WireHeader.model_validate(json.loads(frames[1]))
        assert h.topic == topic and len(h.payloads) == len(frames) - 2


def test_real_messages_validate_against_the_json_schemas():
    jsonschema = pytest.importorskip("jsonschema")
    for topic, frames in _messages().items():
        header = json.loads(frames[1])
        jsonschema.Draft202012Validator(message_schema(topic)).validate(header)
        bad = {**header, "seq": "seven"}
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.Draft202012Validator(message_schema(topic)).validate(bad)
    with pytest.raises(jsonschema.ValidationError):  # a result without its model id
        h = json.loads(_messages()["result"][1])
        del h["meta"]["model_id"]
        jsonschema.Draft202012Validator(message_schema("result")).validate(h)


def test_thz_schema_prints_and_writes(tmp_path):
    r = CliRunner().invoke(cli, ["schema", "--topic", "result"])
    assert r.exit_code == 0 and json.loads(r.stdout)["properties"]["meta"]["required"]
    r = CliRunner().invoke(cli, ["schema", "--out", str(tmp_path)])
    assert r.exit_code == 0 and sorted(p.name for p in tmp_path.iterdir()) == sorted(f"{t}.schema.json" for t in TOPICS)

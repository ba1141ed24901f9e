"""The `result` message: schema (pydantic), encoding onto the wire and decoding with validation.

Wire form: thzcore.wire Message, topic "result", header frame_id / scanner_id / t_acquired (the
t_acquired of the newest frame in the average: frame start through the acquisition daemon, scan complete
from the direct virtual scanner); `meta.timestamps.scan_complete` is when that frame's last line was
digitized, `meta` = ResultMeta as JSON, and one
optional payload `reconstruction` (64, 64) float32 in [0, 1], present only when asked for.
Results never carry embeddings.
"""
from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from thzcore.labels import POSTURES
from thzcore.wire import Message, WireError, decode, encode

RESULT_SCHEMA = 1
# the parts of `latency_ms` that split scan complete -> published, in pipeline order
STAGES = ("transfer_to_processing", "processing", "processing_to_inference", "queue", "inference")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())


class PostureResult(_Model):
    name: str
    index: int = Field(ge=0, lt=len(POSTURES))
    probabilities: dict[str, float]


class VerificationResult(_Model):
    claim: str
    distance: float = Field(description="what the threshold was applied to: the cosine distance to the claimed "
                                        "subject's template (nearest, or of the predicted posture), or that distance "
                                        "S-normalised when `score` is s_norm")
    threshold: float
    accepted: bool
    score: str = Field("cosine", description="cosine | s_norm (thzcore.score_norm)")
    raw_distance: float | None = Field(None, description="the cosine distance, when `distance` is S-normalised")


class Candidate(_Model):
    subject: str
    distance: float


class IdentificationResult(_Model):
    identity: str | None = Field(description="best subject within threshold; None = rejected (open set)")
    threshold: float
    candidates: list[Candidate]


class ResultMeta(_Model):
    result_schema: int = RESULT_SCHEMA
    calibration_id: str | None = None
    model_id: str
    engine: str
    posture: PostureResult
    verification: list[VerificationResult] = Field(default_factory=list)
    identification: IdentificationResult | None = None
    enrolled: str | None = Field(None, description="subject this scan was enrolled as, when enrolling")
    errors: list[str] = Field(default_factory=list, description="decisions that could not be made, and why")
    timestamps: dict[str, float] = Field(default_factory=dict, description="epoch seconds at each stage")
    latency_ms: dict[str, float] = Field(default_factory=dict)
    truth: dict[str, Any] | None = Field(None, description="simulator ground truth, passed through when present")
    roi_seq: int | None = None
    frame_ids: list[int] = Field(default_factory=list, description="raw frames averaged into this ROI")
    batch: int = Field(1, ge=1, description="ROIs inferred together with this one")
    fused_frames: list[int] = Field(default_factory=list, description="frame ids of the ROIs whose embeddings were "
                                                                      "fused for the decisions (inference.fusion_scans"
                                                                      " > 1), this one last; empty = this ROI alone")

    def scan_to_result_ms(self) -> float:
        """Scan complete (acquisition's t_complete of the newest averaged frame) -> result published, ms;
        from the frame's t_acquired when the frame carried no completion stamp (older producers)."""
        v = self.latency_ms.get("scan_complete_to_published", self.latency_ms.get("acquired_to_published"))
        return float("nan") if v is None else float(v)

    def stages_ms(self) -> dict[str, float]:
        """The latency split by stage (STAGES order), as far as the upstream stages stamped the result."""
        return {k: self.latency_ms[k] for k in STAGES if k in self.latency_ms}


def encode_result(seq: int, frame_id: int, scanner_id: str, t_acquired: float, meta: ResultMeta,
                  reconstruction: np.ndarray | None = None) -> list[bytes]:
    arrays = {}
    if reconstruction is not None:
        arrays["reconstruction"] = np.asarray(reconstruction, dtype="<f4").reshape(reconstruction.shape[-2:])
    return encode(Message("result", seq, frame_id, scanner_id, t_acquired, arrays,
                          meta.model_dump(mode="json")))


def decode_result(frames: list[bytes]) -> tuple[Message, ResultMeta]:
    """Validate a `result` message; raises WireError naming what is wrong."""
    msg = decode(frames, expect_topic="result")
    try:
        meta = ResultMeta.model_validate(msg.meta)
    except ValidationError as exc:
        raise WireError(f"result meta invalid: {exc.errors()[0]['loc']}: {exc.errors()[0]['msg']}") from exc
    extra = set(msg.arrays) - {"reconstruction"}
    if extra:
        raise WireError(f"result carries unexpected payloads {sorted(extra)}")
    rec = msg.arrays.get("reconstruction")
    if rec is not None and (rec.dtype != np.dtype("<f4") or rec.ndim != 2):
        raise WireError(f"reconstruction payload {rec.dtype} {rec.shape}; expected 2-D float32")
    return msg, meta

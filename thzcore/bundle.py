"""Model bundle manifest: written by training's export, read by inference (no torch needed).

A bundle is a directory: `model.onnx` (the student: THz encoder, heads, decoder) and `manifest.json`.
ONNX contract: input `thz` float32 (B, 1, 64, 64) in [0, 1] after `normalisation`; outputs
`embedding` (B, E) L2-normalised, `posture_logits` (B, 5) in POSTURES order, `reconstruction`
(B, 1, 64, 64) in [0, 1] (decoder routed by the predicted posture inside the graph).
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from thzcore.labels import POSTURES

MANIFEST_NAME = "manifest.json"
ONNX_NAME = "model.onnx"


# the manifest fields that change a decision: covered by manifest_hash together with the ONNX hash (model_id)
DECISION_FIELDS = ("model_id", "preset", "input_size", "embedding_size", "postures", "normalisation", "distance",
                   "verification_threshold")


class ManifestError(ValueError):
    """A bundle manifest that is malformed, out of range or altered; the message names the field."""


class Normalisation(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    mean: float = 0.0  # x_net = (x - mean) / std, x the [0, 1] ROI
    std: float = Field(1.0, gt=0)


class BundleManifest(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=(), allow_inf_nan=False)
    model_id: str = Field(description="sha256 of model.onnx, first 16 hex digits")
    preset: str
    input_size: int = Field(64, ge=8, le=1024)
    embedding_size: int = Field(128, ge=2, le=8192)
    postures: list[str] = Field(default_factory=lambda: list(POSTURES))
    normalisation: Normalisation = Normalisation()
    distance: str = Field("cosine", description="distance used for verification: cosine = 1 - a.b")
    verification_threshold: float = Field(description="accept a claim when distance <= threshold")
    threshold_source: str = Field("", description="how the threshold was calibrated (split, target FAR)")
    training_config: dict[str, Any] = Field(default_factory=dict)
    dataset: dict[str, Any] = Field(default_factory=dict, description="provenance: path, seeds, counts, hash")
    metrics: dict[str, Any] = Field(default_factory=dict)
    software_version: str = ""
    created: str = ""
    manifest_hash: str = Field("", description="sha256 (16 hex digits) of the decision fields (DECISION_FIELDS); "
                                                "written by write_manifest, checked by read_manifest")

    @model_validator(mode="after")
    def _ranges(self) -> "BundleManifest":
        # cosine distance 1 - a.b of unit vectors lies in [0, 2]: a threshold at or beyond an end decides
        # every claim the same way
        if self.distance == "cosine" and not 0.0 < self.verification_threshold < 2.0:
            raise ValueError(f"verification_threshold={self.verification_threshold} outside (0, 2), the range of "
                             "a cosine distance: it would accept or reject every claim")
        if len(set(self.postures)) != len(self.postures) or not self.postures:
            raise ValueError(f"postures {self.postures} must be distinct and not empty")
        return self

    def decision_hash(self) -> str:
        fields = self.model_dump(mode="json", include=set(DECISION_FIELDS))
        blob = json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


def file_model_id(onnx_path: str | Path) -> str:
    return hashlib.sha256(Path(onnx_path).read_bytes()).hexdigest()[:16]


def read_manifest(bundle_dir: str | Path) -> BundleManifest:
    """Load and validate a bundle's manifest; the model id must match the ONNX file's hash."""
    d = Path(bundle_dir)
    mp, op = d / MANIFEST_NAME, d / ONNX_NAME
    if not mp.is_file() or not op.is_file():
        raise FileNotFoundError(f"{d} is not a model bundle: need {MANIFEST_NAME} and {ONNX_NAME}")
    try:
        raw = json.loads(mp.read_bytes().decode("utf-8"))
        m = BundleManifest.model_validate(raw)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise ManifestError(f"{mp}: not a JSON manifest ({type(exc).__name__}: {exc})") from None
    except ValidationError as exc:
        e = exc.errors()[0]
        loc = ".".join(str(x) for x in e["loc"]) or "manifest"
        raise ManifestError(f"{mp}: {loc}: {e['msg']}") from None
    actual = file_model_id(op)
    if actual != m.model_id:
        raise ManifestError(f"{op}: hash {actual} does not match manifest model_id {m.model_id}; "
                            "the bundle was altered")
    if m.manifest_hash != m.decision_hash():
        raise ManifestError(f"{mp}: manifest_hash {m.manifest_hash or '(missing)'} does not match its decision "
                            f"fields ({', '.join(DECISION_FIELDS)}): the manifest was altered or predates the "
                            "hash; re-export the bundle with `thz export`")
    return m


def write_manifest(bundle_dir: str | Path, manifest: BundleManifest) -> Path:
    """Write manifest.json with its manifest_hash set from the decision fields."""
    p = Path(bundle_dir) / MANIFEST_NAME
    m = manifest.model_copy(update={"manifest_hash": manifest.decision_hash()})
    p.write_text(m.model_dump_json(indent=2))
    return p

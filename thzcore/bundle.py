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

from pydantic import BaseModel, ConfigDict, Field

from thzcore.labels import POSTURES

MANIFEST_NAME = "manifest.json"
ONNX_NAME = "model.onnx"


class Normalisation(BaseModel):
    model_config = ConfigDict(extra="forbid")
    mean: float = 0.0  # x_net = (x - mean) / std, x the [0, 1] ROI
    std: float = 1.0


class BundleManifest(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())
    model_id: str = Field(description="sha256 of model.onnx, first 16 hex digits")
    preset: str
    input_size: int = 64
    embedding_size: int = 128
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


def file_model_id(onnx_path: str | Path) -> str:
    return hashlib.sha256(Path(onnx_path).read_bytes()).hexdigest()[:16]


def read_manifest(bundle_dir: str | Path) -> BundleManifest:
    """Load and validate a bundle's manifest; the model id must match the ONNX file's hash."""
    d = Path(bundle_dir)
    mp, op = d / MANIFEST_NAME, d / ONNX_NAME
    if not mp.is_file() or not op.is_file():
        raise FileNotFoundError(f"{d} is not a model bundle: need {MANIFEST_NAME} and {ONNX_NAME}")
    m = BundleManifest.model_validate(json.loads(mp.read_text()))
    actual = file_model_id(op)
    if actual != m.model_id:
        raise ValueError(f"{op}: hash {actual} does not match manifest model_id {m.model_id}; the bundle was altered")
    return m


def write_manifest(bundle_dir: str | Path, manifest: BundleManifest) -> Path:
    p = Path(bundle_dir) / MANIFEST_NAME
    p.write_text(manifest.model_dump_json(indent=2))
    return p

"""Model bundle manifest: written by training's export, read by inference (no torch needed).

A bundle is a directory: `model.onnx` (the student: THz encoder, heads, decoder) and `manifest.json`.
ONNX contract: input `thz` float32 (B, 1, 64, 64) in [0, 1] after `normalisation`; outputs
`embedding` (B, E) L2-normalised, `posture_logits` (B, 5) in POSTURES order, `reconstruction`
(B, 1, 64, 64) in [0, 1] (decoder routed by the predicted posture inside the graph).

ONNX metadata (`metadata_props`, string values; written by `thz export`, so a tool that sees only the
.onnx file knows how to use it): model_id, verification_threshold, distance, postures (JSON list),
input_size, embedding_size, preset, normalisation (JSON {mean, std}), model_id_rule, bundle_format.

Model id. A bundle whose ONNX carries `model_id` in its metadata: sha256 (16 hex digits) of the ONNX
ModelProto serialised (deterministically) with metadata_props cleared (`graph_model_id`), so writing
the metadata does not change the id it records. A bundle without metadata (exported before it
existed, the shipped models/compact among them): sha256 of the file (`file_model_id`), as before, so
the galleries enrolled with it still match. (For a file without metadata the two agree whenever the
exporter's serialisation is protobuf's own, as torch's is; the file rule stays the rule for them.)
read_manifest checks the id by the bundle's own rule and every metadata value against the manifest.
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
                   "verification_threshold", "posture_template_threshold", "score_norm")


class ManifestError(ValueError):
    """A bundle manifest that is malformed, out of range or altered; the message names the field."""


class Normalisation(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    mean: float = 0.0  # x_net = (x - mean) / std, x the [0, 1] ROI
    std: float = Field(1.0, gt=0)


class ScoreNorm(BaseModel):
    """Claims by the posture template decided on the distance S-normalised against a cohort (thzcore.score_norm):
    the cohort file in the bundle, its hash, and the threshold on the normalised distance."""
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    cohort_file: str = Field("cohort.npz", pattern=r"^[A-Za-z0-9_.-]+$", description="file in the bundle directory")
    cohort_sha256_16: str = Field(pattern=r"^[0-9a-f]{16}$")
    templates: int = Field(ge=2, description="cohort templates (one per person and posture)")
    identities: int = Field(ge=1, description="people in the cohort")
    top_k: int = Field(100, ge=0, description="nearest cohort templates per posture in the statistics (0: all)")
    threshold: float = Field(description="accept a claim when its S-normalised distance is <= this")
    threshold_source: str = ""
    cohort_source: str = Field("", description="which images made the cohort")


class BundleManifest(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=(), allow_inf_nan=False)
    model_id: str = Field(description="sha256 of model.onnx, first 16 hex digits: of its graph with metadata_props "
                                      "cleared when it carries metadata, else of the file")
    preset: str
    input_size: int = Field(64, ge=8, le=1024)
    embedding_size: int = Field(128, ge=2, le=8192)
    postures: list[str] = Field(default_factory=lambda: list(POSTURES))
    normalisation: Normalisation = Normalisation()
    distance: str = Field("cosine", description="distance used for verification: cosine = 1 - a.b")
    verification_threshold: float = Field(description="accept a claim when distance <= threshold")
    threshold_source: str = Field("", description="how the threshold was calibrated (split, target FAR)")
    posture_template_threshold: float | None = Field(
        None, description="accept a claim when the distance to the claimed person's template in the probe's "
                          "predicted posture is <= this (inference.matching.verify_in_posture); None: bundles "
                          "calibrated before, which verify against the nearest template with verification_threshold")
    posture_template_threshold_source: str = Field("", description="how posture_template_threshold was calibrated")
    score_norm: ScoreNorm | None = Field(None, description="claims by the posture template S-normalised against "
                                         "the bundle's cohort (needs posture_template_threshold); None: raw distance")
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
        for name in ("verification_threshold", "posture_template_threshold"):
            t = getattr(self, name)
            if self.distance == "cosine" and t is not None and not 0.0 < t < 2.0:
                raise ValueError(f"{name}={t} outside (0, 2), the range of a cosine distance: it would accept or "
                                 "reject every claim")
        if self.score_norm is not None and self.posture_template_threshold is None:
            raise ValueError("score_norm needs posture_template_threshold: it normalises the posture-template rule")
        if len(set(self.postures)) != len(self.postures) or not self.postures:
            raise ValueError(f"postures {self.postures} must be distinct and not empty")
        return self

    def decision_hash(self) -> str:
        # a field left unset (None) is left out: bundles written before it existed keep their hash
        fields = self.model_dump(mode="json", include=set(DECISION_FIELDS), exclude_none=True)
        blob = json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


BUNDLE_FORMAT = "thz-face-bundle/2"  # 2: ONNX metadata_props and the graph model id
GRAPH_ID_RULE = "sha256[:16] of the ModelProto serialised deterministically with metadata_props cleared"


def file_model_id(onnx_path: str | Path) -> str:
    """The model id of a bundle without ONNX metadata: sha256 of the file, first 16 hex digits."""
    return hashlib.sha256(Path(onnx_path).read_bytes()).hexdigest()[:16]


def _load_onnx(onnx_path: str | Path) -> Any:
    import onnx
    from google.protobuf.message import DecodeError

    try:
        return onnx.load(str(onnx_path), load_external_data=False)
    except (DecodeError, ValueError, OSError, RuntimeError) as exc:
        raise ManifestError(f"{onnx_path}: not a readable ONNX model ({type(exc).__name__}: {exc})") from None


def graph_model_id(model: Any) -> str:
    """sha256 (16 hex digits) of an ONNX ModelProto (or a path to one) with its metadata_props cleared."""
    if isinstance(model, (str, Path)):
        model = _load_onnx(model)
    bare = type(model)()
    bare.CopyFrom(model)
    del bare.metadata_props[:]
    return hashlib.sha256(bare.SerializeToString(deterministic=True)).hexdigest()[:16]


def onnx_metadata(manifest: "BundleManifest") -> dict[str, str]:
    """The metadata_props a bundle's ONNX carries: what a user of the file alone needs (all strings)."""
    return {"model_id": manifest.model_id, "verification_threshold": repr(float(manifest.verification_threshold)),
            "distance": manifest.distance, "postures": json.dumps(list(manifest.postures)),
            "input_size": str(manifest.input_size), "embedding_size": str(manifest.embedding_size),
            "preset": manifest.preset,
            "normalisation": json.dumps(manifest.normalisation.model_dump(mode="json"), sort_keys=True),
            "model_id_rule": GRAPH_ID_RULE, "bundle_format": BUNDLE_FORMAT}


def read_onnx_metadata(onnx_path: str | Path) -> dict[str, str]:
    """{key: value} of an ONNX file's metadata_props ({} for a bundle exported before they existed)."""
    return {p.key: p.value for p in _load_onnx(onnx_path).metadata_props}


def stamp_metadata(onnx_path: str | Path, manifest: "BundleManifest") -> str:
    """Write `onnx_metadata(manifest)` into the ONNX file (replacing any metadata_props) and return the file's
    graph model id, which must be manifest.model_id (the id does not see the metadata)."""
    import onnx

    path = Path(onnx_path)
    model = _load_onnx(path)
    gid = graph_model_id(model)
    if gid != manifest.model_id:
        raise ManifestError(f"{path}: graph model id {gid} is not the manifest's model_id {manifest.model_id}")
    del model.metadata_props[:]
    onnx.helper.set_model_props(model, onnx_metadata(manifest))
    tmp = path.with_name(f".{path.name}.meta.tmp")
    onnx.save(model, str(tmp))
    tmp.replace(path)
    return gid


def bundle_model_id(onnx_path: str | Path) -> tuple[str, str, dict[str, str]]:
    """(model id by the file's own rule, the rule "graph" | "file", its metadata_props). A file protobuf cannot
    parse gets the file rule: its hash names it, and loading the graph says what is wrong with it."""
    try:
        model = _load_onnx(onnx_path)
    except ManifestError:
        return file_model_id(onnx_path), "file", {}
    meta = {p.key: p.value for p in model.metadata_props}
    if "model_id" in meta:
        return graph_model_id(model), "graph", meta
    return file_model_id(onnx_path), "file", meta


def _check_metadata(op: Path, meta: dict[str, str], m: "BundleManifest") -> None:
    """Every metadata value the manifest also states must be the manifest's (else the file was altered)."""
    want = onnx_metadata(m)
    for key in ("model_id", "verification_threshold", "distance", "postures", "input_size", "embedding_size",
                "preset", "normalisation"):
        have = meta.get(key)
        if have is None:
            raise ManifestError(f"{op}: ONNX metadata lacks {key!r} (it has model_id): the bundle was altered; "
                                "re-export it with `thz export`")
        same = have == want[key]
        if not same and key in ("verification_threshold",):
            try:
                same = float(have) == float(want[key])
            except ValueError:
                same = False
        if not same and key in ("postures", "normalisation"):
            try:
                same = json.loads(have) == json.loads(want[key])
            except ValueError:
                same = False
        if not same:
            raise ManifestError(f"{op}: ONNX metadata {key} = {have!r} but the manifest says {want[key]!r}: the "
                                "bundle was altered")


def read_manifest(bundle_dir: str | Path) -> BundleManifest:
    """Load and validate a bundle's manifest; the model id must match the ONNX file's (graph or file rule), and
    the ONNX metadata, when there is any, the manifest."""
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
    actual, rule, meta = bundle_model_id(op)
    if actual != m.model_id:
        what = "graph hash (metadata_props cleared)" if rule == "graph" else "hash"
        raise ManifestError(f"{op}: {what} {actual} does not match manifest model_id {m.model_id}; "
                            "the bundle was altered")
    if rule == "graph":
        _check_metadata(op, meta, m)
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

"""Model bundle loading for inference: the manifest checked against the ONNX graph, and input preparation."""
from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from thzcore.bundle import ONNX_NAME, BundleManifest, read_manifest
from thzcore.labels import POSTURES
from thzcore.score_norm import Cohort

INPUT_NAME = "thz"
OUTPUTS = ("embedding", "posture_logits", "reconstruction")
CORE_OUTPUTS = ("embedding", "posture_logits")  # verification + posture, without the decoder


class BundleError(ValueError):
    """A model bundle that cannot be used; the message names the file and what to do."""


@dataclass(frozen=True)
class ModelBundle:
    """A validated bundle directory: `onnx_path` plus its `manifest` (model id, threshold, normalisation)."""

    path: Path
    manifest: BundleManifest
    cohort: Cohort | None = None   # the manifest's score_norm cohort, read by load_bundle

    @property
    def onnx_path(self) -> Path:
        return self.path / ONNX_NAME

    @property
    def model_id(self) -> str:
        return self.manifest.model_id

    @property
    def threshold(self) -> float:
        return self.manifest.verification_threshold

    @property
    def by_posture_template(self) -> bool:
        """Whether claims are verified against the template of the probe's posture (the bundle is calibrated
        for it), else against the nearest template."""
        return self.manifest.posture_template_threshold is not None

    @property
    def verify_threshold(self) -> float:
        """The threshold claims are decided at: the S-normalised one when the bundle has a cohort, else
        posture_template_threshold, else verification_threshold."""
        if self.cohort is not None and self.manifest.score_norm is not None:
            return float(self.manifest.score_norm.threshold)
        t = self.manifest.posture_template_threshold
        return float(t if t is not None else self.manifest.verification_threshold)

    @property
    def rule_name(self) -> str:
        """What claims are verified against, in words (run summaries and reports)."""
        if not self.by_posture_template:
            return "nearest template"
        return "template of the predicted posture" + (", S-normalised against the bundle's cohort"
                                                      if self.cohort is not None else "")

    def verification_rule(self, posture: str) -> tuple[float, str | None, Cohort | None]:
        """(threshold, posture, cohort for Gallery.verify) of a probe the network gives `posture`: the template of
        that posture when the bundle was calibrated for it (its distance S-normalised against the bundle's cohort
        when it has one), else the nearest template with verification_threshold (posture and cohort None)."""
        if not self.by_posture_template:
            return self.verify_threshold, None, None
        return self.verify_threshold, posture, self.cohort

    @property
    def input_size(self) -> int:
        return self.manifest.input_size

    def prepare(self, rois: np.ndarray) -> np.ndarray:
        """ROIs in [0, 1], (H, W), (B, H, W) or (B, 1, H, W) -> network input (B, 1, H, W) float32.

        Applies the manifest normalisation x_net = (x - mean) / std. Values outside [0, 1] are
        clipped (a processing glitch must not reach the network as huge activations); NaN is an error.
        """
        x = np.asarray(rois, dtype=np.float32)
        n = self.input_size
        if x.ndim == 2:
            x = x[None, None]
        elif x.ndim == 3:
            x = x[:, None]
        if x.ndim != 4 or x.shape[1:] != (1, n, n) or x.shape[0] < 1:
            raise ValueError(f"ROI batch of shape {np.shape(rois)}; expected (B, {n}, {n}) or (B, 1, {n}, {n})")
        if not np.all(np.isfinite(x)):
            raise ValueError("ROI batch contains NaN or infinity")
        x = np.clip(x, 0.0, 1.0)
        norm = self.manifest.normalisation
        if norm.mean != 0.0 or norm.std != 1.0:
            x = (x - np.float32(norm.mean)) / np.float32(norm.std)
        return np.ascontiguousarray(x, dtype=np.float32)


# the bundles shipped with the package (inference/bundles/NAME, package data): found through the
# installed package, not the working directory, so `thz run --sim` works from any folder and from a wheel
SHIPPED_BUNDLES = Path(str(resources.files("inference") / "bundles"))
SHIPPED_PARENTS = (".", "models")  # "compact" and the documented "models/compact" name the shipped bundle


def shipped_bundle(path: str | Path) -> Path | None:
    """The shipped bundle a relative `path` names ("compact", "models/compact"), or None."""
    p = Path(path)
    if p.is_absolute() or str(p.parent) not in SHIPPED_PARENTS:
        return None
    candidate = SHIPPED_BUNDLES / p.name
    return candidate if (candidate / ONNX_NAME).is_file() else None


def resolve_bundle_path(path: str | Path) -> Path:
    """`path` as given when it is a directory here; else the shipped bundle it names; else `path` unchanged."""
    p = Path(path).expanduser()
    if p.is_dir():
        return p
    return shipped_bundle(p) or p


def load_bundle(path: str | Path) -> ModelBundle:
    """Read and check a bundle: manifest valid, model id = ONNX hash, graph I/O as the contract says."""
    p = resolve_bundle_path(path)
    if not p.is_dir():
        where = f"{str(p)!r}" + ("" if p.is_absolute() else f" (looked in {Path.cwd()} and the shipped {SHIPPED_BUNDLES})")
        raise BundleError(
            f"model bundle {where} not found: pass --bundle DIR (or set inference.bundle) to an existing "
            f"bundle, or make one with `thz train` then `thz export RUN --out {p}`")
    try:
        manifest = read_manifest(p)
    except (FileNotFoundError, ValueError) as exc:
        raise BundleError(str(exc)) from None
    if tuple(manifest.postures) != POSTURES:
        raise BundleError(f"{p}: manifest postures {manifest.postures} differ from {POSTURES}; "
                          "re-export the model with the current label order")
    if manifest.distance != "cosine":
        raise BundleError(f"{p}: distance {manifest.distance!r} is not supported (cosine only)")
    _check_graph_io(p / ONNX_NAME, manifest)
    cohort = None
    if manifest.score_norm is not None:
        sn = manifest.score_norm
        try:
            cohort = Cohort.load(p / sn.cohort_file, sn.cohort_sha256_16, manifest.embedding_size, sn.top_k)
        except ValueError as exc:
            raise BundleError(str(exc)) from None
    return ModelBundle(p, manifest, cohort)


def _check_graph_io(onnx_path: Path, manifest: BundleManifest) -> None:
    import onnx  # the graph, without weights, is enough to check names and shapes
    from google.protobuf.message import DecodeError

    try:
        model = onnx.load(str(onnx_path), load_external_data=False)
    except (DecodeError, ValueError, OSError, RuntimeError) as exc:
        raise BundleError(f"{onnx_path}: not a readable ONNX model ({type(exc).__name__}: {exc})") from None
    if not model.graph.input:
        raise BundleError(f"{onnx_path}: not an ONNX model of this project (empty graph)")
    inputs = [i.name for i in model.graph.input if i.name not in {t.name for t in model.graph.initializer}]
    outputs = [o.name for o in model.graph.output]
    if inputs != [INPUT_NAME]:
        raise BundleError(f"{onnx_path}: graph inputs {inputs}, the contract needs exactly [{INPUT_NAME!r}]")
    missing = [o for o in OUTPUTS if o not in outputs]
    if missing:
        raise BundleError(f"{onnx_path}: graph lacks outputs {missing} (has {outputs})")
    dims = model.graph.input[0].type.tensor_type.shape.dim
    fixed = [d.dim_value if d.HasField("dim_value") else None for d in dims]
    n = manifest.input_size
    if len(fixed) != 4 or fixed[1:] != [1, n, n]:
        raise BundleError(f"{onnx_path}: input shape {fixed}, expected [B, 1, {n}, {n}]")
    # the manifest's sizes must be the graph's: an embedding_size that is not the model's would compare
    # templates of the wrong length; a posture list of another length would mislabel every class
    want = {"embedding": manifest.embedding_size, "posture_logits": len(manifest.postures)}
    for o in model.graph.output:
        if o.name in want:
            d = o.type.tensor_type.shape.dim
            last = d[len(d) - 1].dim_value if len(d) and d[len(d) - 1].HasField("dim_value") else None
            if last is None:
                raise BundleError(f"{onnx_path}: output {o.name!r} has no fixed last dimension; re-export the model")
            if last != want[o.name]:
                field = "embedding_size" if o.name == "embedding" else "postures"
                raise BundleError(f"{onnx_path}: output {o.name!r} has {last} values, the manifest's {field} says "
                                  f"{want[o.name]}")

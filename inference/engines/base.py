"""One engine interface over TensorRT and ONNX Runtime, and the choice between them.

`make_engine(bundle, kind="auto")` returns an `Engine`; `engine.infer(rois)` maps ROIs in [0, 1]
(B, 64, 64) to a dict of arrays: `embedding` (B, E) L2-normalised, `posture_logits` (B, 5) and,
only when asked for, `reconstruction` (B, 1, 64, 64). The decoder dominates the cost, so each
engine keeps a graph without it for the verification + posture path.
"""
from __future__ import annotations

import importlib.util
import os
import warnings
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Literal

import numpy as np

from inference.bundle import ModelBundle
from thzcore.logs import get_logger

log = get_logger(__name__)

EngineKind = Literal["auto", "tensorrt", "onnxruntime"]


class EngineUnavailable(RuntimeError):
    """The requested engine cannot be built on this machine; the message says why."""


class Engine(ABC):
    """Runs a bundle's network. Subclasses set `name` and implement `_run`."""

    name: str = "?"

    def __init__(self, bundle: ModelBundle, reconstruction: bool = False) -> None:
        self.bundle = bundle
        self.reconstruction = reconstruction

    @property
    def model_id(self) -> str:
        return self.bundle.model_id

    def infer(self, rois: np.ndarray, reconstruction: bool | None = None) -> dict[str, np.ndarray]:
        """ROIs in [0, 1] -> {'embedding', 'posture_logits'[, 'reconstruction']} as float32 arrays."""
        x = self.bundle.prepare(rois)
        want_recon = self.reconstruction if reconstruction is None else reconstruction
        out = self._run(x, want_recon)
        return {k: np.asarray(v, dtype=np.float32) for k, v in out.items()}

    @abstractmethod
    def _run(self, x: np.ndarray, reconstruction: bool) -> dict[str, np.ndarray]:
        """x: normalised network input (B, 1, H, W) float32, contiguous."""

    def warm_up(self, batch_sizes: tuple[int, ...] = (1,)) -> None:
        """Run once per batch size so the first real ROI does not pay for lazy initialisation."""
        n = self.bundle.input_size
        for b in batch_sizes:
            self.infer(np.zeros((b, n, n), np.float32))
            if self.reconstruction:
                self.infer(np.zeros((b, n, n), np.float32), reconstruction=False)

    def describe(self) -> dict:
        return {"engine": self.name, "model_id": self.model_id, "reconstruction": self.reconstruction}

    def close(self) -> None:
        """Release resources (GPU buffers, sessions)."""


def nvidia_gpu_present() -> bool:
    """An NVIDIA GPU is visible to this process (driver device node or procfs entry)."""
    if os.environ.get("CUDA_VISIBLE_DEVICES", None) in ("", "-1"):
        return False
    gpus = Path("/proc/driver/nvidia/gpus")
    return Path("/dev/nvidia0").exists() or (gpus.is_dir() and any(gpus.iterdir()))


def tensorrt_installed() -> bool:
    """The `tensorrt` package and cuda-python's runtime bindings are importable."""
    try:
        return (importlib.util.find_spec("tensorrt") is not None
                and importlib.util.find_spec("cuda.bindings.runtime") is not None)
    except (ImportError, ValueError):
        return False


def choose_engine(requested: str, gpu: bool, tensorrt: bool) -> str:
    """The engine kind to build: `auto` picks TensorRT only when a GPU and the package are both there.

    An explicit `tensorrt` without them is an error (an operator who asked for the GPU must not
    silently get the CPU); `onnxruntime` is always possible.
    """
    if requested not in ("auto", "tensorrt", "onnxruntime"):
        raise ValueError(f"engine {requested!r}: choose 'auto', 'tensorrt' or 'onnxruntime'")
    if requested == "onnxruntime":
        return "onnxruntime"
    if gpu and tensorrt:
        return "tensorrt"
    if requested == "tensorrt":
        raise EngineUnavailable(f"engine 'tensorrt' requested but {tensorrt_missing(gpu, tensorrt)}; use engine = "
                                "'auto' or 'onnxruntime'")
    return "onnxruntime"


def tensorrt_missing(gpu: bool, tensorrt: bool) -> str:
    """What stops a TensorRT engine here, in words ('' when nothing does)."""
    why = []
    if not gpu:
        why.append("no NVIDIA GPU is visible")
    if not tensorrt:
        why.append("the 'tensorrt' and 'cuda-python' packages are not installed (pip install '.[gpu]')")
    return " and ".join(why)


def make_engine(bundle: ModelBundle, kind: str = "auto", settings=None, reconstruction: bool | None = None,
                gpu: bool | None = None, tensorrt: bool | None = None) -> Engine:
    """Build the engine for `bundle`. `settings` is an InferenceConfig (defaults when None).

    With `auto`, a TensorRT build that fails falls back to ONNX Runtime with a warning; an
    explicit `tensorrt` lets the failure through.
    """
    from inference.config import InferenceConfig

    cfg = settings or InferenceConfig()
    recon = cfg.reconstruction if reconstruction is None else reconstruction
    gpu = nvidia_gpu_present() if gpu is None else gpu
    tensorrt = tensorrt_installed() if tensorrt is None else tensorrt
    chosen = choose_engine(kind, gpu, tensorrt)
    if chosen == "tensorrt":
        from inference.engines.tensorrt import TensorRTEngine
        try:
            return TensorRTEngine(bundle, cfg, reconstruction=recon)
        except Exception as exc:  # a broken driver or build: fall back only when the operator left it to us
            if kind == "tensorrt":
                raise
            warnings.warn(f"TensorRT engine could not be built ({exc}); falling back to ONNX Runtime on the CPU",
                          RuntimeWarning, stacklevel=2)
            log.warning("tensorrt build failed, using onnxruntime", extra={"error": str(exc)})
    from inference.engines.onnxrt import OnnxRuntimeEngine
    return OnnxRuntimeEngine(bundle, intra_op_threads=cfg.intra_op_threads, allow_spinning=cfg.allow_spinning,
                             graph_optimization=cfg.graph_optimization, reconstruction=recon)

"""Which engine runs a bundle here: TensorRT when a GPU and the package are both present, else ONNX Runtime.

`make_engine(bundle, kind="auto")` returns an `Engine` (inference.engines.base).
"""
from __future__ import annotations

import importlib.util
import os
import warnings
from pathlib import Path

from inference.bundle import ModelBundle
from inference.config import InferenceConfig
from inference.engines.base import Engine
from thzcore.logs import get_logger

log = get_logger(__name__)


class EngineUnavailable(RuntimeError):
    """The requested engine cannot be built on this machine; the message says why."""


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


def make_engine(bundle: ModelBundle, kind: str = "auto", settings: InferenceConfig | None = None, reconstruction: bool | None = None,
                gpu: bool | None = None, tensorrt: bool | None = None) -> Engine:
    """Build the engine for `bundle`. `settings` is an InferenceConfig (defaults when None).

    With `auto`, a TensorRT build that fails falls back to ONNX Runtime with a warning; an
    explicit `tensorrt` lets the failure through.
    """
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
                             graph_optimization=cfg.graph_optimization, reconstruction=recon,
                             reconstruction_route=cfg.reconstruction_route)

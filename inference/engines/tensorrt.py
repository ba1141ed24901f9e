"""TensorRT engine (NVIDIA GPUs): strongly typed build from the bundle's ONNX, cached, run on a private stream.

Facts this follows (TensorRT 10/11, cuda-python 13):
- networks are strongly typed: `BuilderFlag.FP16` is gone, so FP16 means converting the ONNX graph
  to FP16 first (`inference.engines.fp16`), keeping the L2-normalise tail FP32;
- an engine is only valid for the GPU (name, compute capability), TensorRT version and CUDA
  version it was built with: the cache key holds all of them with the model id, precision,
  output set and batch profile, and a mismatch rebuilds, never runs a stale engine;
- a timing cache is kept next to the engines so rebuilds are fast;
- inference uses `set_tensor_address` + `execute_async_v3` on a stream this engine owns;
  `cudart` lives in `cuda.bindings.runtime`.
The pure parts (key, file names, rebuild decision) need no GPU and are tested everywhere.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from inference.bundle import CORE_OUTPUTS, INPUT_NAME, OUTPUTS, ModelBundle
from inference.config import InferenceConfig
from inference.engines.base import Engine
from inference.engines.graphs import network_graph
from thzcore.logs import get_logger

log = get_logger(__name__)
KEY_VERSION = 1  # bump when the build recipe changes, so old engines are rebuilt


@dataclass(frozen=True)
class EngineKey:
    """Everything a serialised engine depends on. Two builds with equal keys are interchangeable."""

    gpu_name: str
    compute_capability: str   # "9.0"
    tensorrt_version: str
    cuda_runtime_version: int  # e.g. 13000 for 13.0
    cuda_driver_version: int
    model_id: str
    precision: str            # fp32 | fp16
    outputs: tuple[str, ...]
    max_batch: int
    recipe: int = KEY_VERSION

    def digest(self) -> str:
        blob = json.dumps(self.to_json(), sort_keys=True, separators=(",", ":")).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    def to_json(self) -> dict:
        d = asdict(self)
        d["outputs"] = list(self.outputs)
        return d

    @classmethod
    def from_json(cls, d: dict) -> "EngineKey":
        d = dict(d)
        d["outputs"] = tuple(d.get("outputs", ()))
        return cls(**d)


def engine_paths(cache_dir: Path, key: EngineKey) -> tuple[Path, Path]:
    """(engine file, key sidecar JSON) for a key: readable names, the digest makes them unique."""
    tag = "full" if "reconstruction" in key.outputs else "core"
    stem = f"{key.model_id}-{key.precision}-{tag}-b{key.max_batch}-{key.digest()}"
    return cache_dir / f"{stem}.engine", cache_dir / f"{stem}.json"


def timing_cache_path(cache_dir: Path, key: EngineKey) -> Path:
    """One timing cache per GPU and TensorRT version (timings do not depend on the model)."""
    gpu = "".join(c if c.isalnum() else "_" for c in key.gpu_name)
    return cache_dir / f"timing-{gpu}-sm{key.compute_capability}-trt{key.tensorrt_version}.cache"


def needs_rebuild(engine_file: Path, sidecar: Path, key: EngineKey) -> str | None:
    """Why the cached engine cannot be used (a reason string), or None when it matches `key`."""
    if not engine_file.is_file() or engine_file.stat().st_size == 0:
        return "no cached engine"
    if not sidecar.is_file():
        return "cached engine has no key file"
    try:
        stored = EngineKey.from_json(json.loads(sidecar.read_text()))
    except (ValueError, TypeError) as exc:
        return f"key file unreadable ({exc})"
    if stored != key:
        diff = [f"{k}: {getattr(stored, k)!r} -> {getattr(key, k)!r}" for k in key.to_json()
                if getattr(stored, k) != getattr(key, k)]
        return "stale engine (" + "; ".join(diff) + ")"
    return None


def _check(result):
    """cuda-python calls return (err, *values): raise on error, return the values."""
    from cuda.bindings import runtime as cudart

    err, *vals = result if isinstance(result, tuple) else (result,)
    if err != cudart.cudaError_t.cudaSuccess:
        _, name = cudart.cudaGetErrorName(err)
        raise RuntimeError(f"CUDA error {name.decode() if isinstance(name, bytes) else name}")
    if not vals:
        return None
    return vals[0] if len(vals) == 1 else tuple(vals)


def _native_handle(obj) -> int:
    """The address behind a cuda-python object (a stream): `get_cuda_native_handle` where it exists
    (cuda-bindings >= 12.9.1 deprecates int(obj)), int(obj) on older bindings."""
    try:
        from cuda.bindings.utils import get_cuda_native_handle
    except ImportError:
        return int(obj)
    return int(get_cuda_native_handle(obj))


def device_key(model_id: str, precision: str, outputs: tuple[str, ...], max_batch: int,
               device: int = 0) -> EngineKey:
    """The key for this machine's GPU `device`, TensorRT and CUDA."""
    import tensorrt as trt
    from cuda.bindings import runtime as cudart

    prop = _check(cudart.cudaGetDeviceProperties(device))
    name = prop.name.decode(errors="replace").rstrip("\x00") if isinstance(prop.name, bytes) else str(prop.name)
    return EngineKey(gpu_name=name, compute_capability=f"{prop.major}.{prop.minor}",
                     tensorrt_version=trt.__version__, cuda_runtime_version=int(_check(cudart.cudaRuntimeGetVersion())),
                     cuda_driver_version=int(_check(cudart.cudaDriverGetVersion())), model_id=model_id,
                     precision=precision, outputs=tuple(outputs), max_batch=max_batch)


def build_engine(onnx_bytes: bytes, key: EngineKey, input_size: int, timing_cache: Path) -> bytes:
    """Build a serialised engine with a batch profile 1..max_batch (optimised for batch 1)."""
    import tensorrt as trt

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_bytes):
        errs = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"TensorRT could not parse the ONNX graph: {errs}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, 1 << 30)
    if key.precision == "fp32" and hasattr(trt.BuilderFlag, "TF32"):
        config.clear_flag(trt.BuilderFlag.TF32)  # TF32 is on by default; FP32 engines should match ORT closely
    blob = timing_cache.read_bytes() if timing_cache.is_file() else b""
    cache = config.create_timing_cache(blob)
    config.set_timing_cache(cache, ignore_mismatch=False)
    n = input_size
    profile = builder.create_optimization_profile()
    profile.set_shape(INPUT_NAME, (1, 1, n, n), (1, 1, n, n), (key.max_batch, 1, n, n))
    config.add_optimization_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError("TensorRT build failed (see the TensorRT log above)")
    _atomic_write(timing_cache, bytes(memoryview(config.get_timing_cache().serialize())))
    return bytes(memoryview(serialized))


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + f".tmp{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def load_or_build(bundle: ModelBundle, key: EngineKey, cache_dir: Path) -> bytes:
    """The serialised engine for `key`: from the cache when it matches, else built and cached."""
    engine_file, sidecar = engine_paths(cache_dir, key)
    reason = needs_rebuild(engine_file, sidecar, key)
    if reason is None:
        log.info("tensorrt engine from cache", extra={"file": str(engine_file)})
        return engine_file.read_bytes()
    log.info("building tensorrt engine", extra={"reason": reason, "precision": key.precision,
                                                "outputs": list(key.outputs)})
    data = build_engine(network_graph(bundle, key.outputs, key.precision), key, bundle.input_size,
                        timing_cache_path(cache_dir, key))
    _atomic_write(engine_file, data)
    _atomic_write(sidecar, json.dumps(key.to_json(), indent=2).encode())
    return data


class _TrtRunner:
    """One deserialised engine: execution context, device buffers for max_batch, a private stream."""

    def __init__(self, serialized: bytes, max_batch: int, input_size: int) -> None:
        import tensorrt as trt
        from cuda.bindings import runtime as cudart

        self._cudart = cudart
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        self.engine = self._runtime.deserialize_cuda_engine(serialized)
        if self.engine is None:
            raise RuntimeError("TensorRT could not deserialise the engine (version or GPU mismatch)")
        self.context = self.engine.create_execution_context()
        self.stream = _check(cudart.cudaStreamCreateWithFlags(cudart.cudaStreamNonBlocking))
        self.max_batch = max_batch
        self.names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.outputs = [t for t in self.names if self.engine.get_tensor_mode(t) == trt.TensorIOMode.OUTPUT]
        self.device: dict[str, int] = {}
        self.host: dict[str, np.ndarray] = {}
        n = input_size
        self.context.set_input_shape(INPUT_NAME, (max_batch, 1, n, n))
        for t in self.names:
            shape = tuple(self.context.get_tensor_shape(t))
            dtype = np.dtype(trt.nptype(self.engine.get_tensor_dtype(t)))
            nbytes = int(np.prod(shape)) * dtype.itemsize
            self.device[t] = int(_check(cudart.cudaMalloc(nbytes)))
            self.host[t] = np.empty(shape, dtype)
            self.context.set_tensor_address(t, self.device[t])

    def run(self, x: np.ndarray) -> dict[str, np.ndarray]:
        cudart = self._cudart
        b = x.shape[0]
        if b > self.max_batch:
            raise ValueError(f"batch {b} exceeds the engine's max_batch {self.max_batch}")
        self.context.set_input_shape(INPUT_NAME, tuple(x.shape))
        h2d, d2h = cudart.cudaMemcpyKind.cudaMemcpyHostToDevice, cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        _check(cudart.cudaMemcpyAsync(self.device[INPUT_NAME], x.ctypes.data, x.nbytes, h2d, self.stream))
        if not self.context.execute_async_v3(_native_handle(self.stream)):  # TensorRT takes the raw handle
            raise RuntimeError("TensorRT execute_async_v3 failed")
        out = {}
        for t in self.outputs:
            shape = tuple(self.context.get_tensor_shape(t))
            host = self.host[t].reshape(-1)[: int(np.prod(shape))].reshape(shape)
            _check(cudart.cudaMemcpyAsync(host.ctypes.data, self.device[t], host.nbytes, d2h, self.stream))
            out[t] = host
        _check(cudart.cudaStreamSynchronize(self.stream))
        return {k: v.astype(np.float32, copy=True) for k, v in out.items()}

    def close(self) -> None:
        cudart = self._cudart
        for ptr in self.device.values():
            cudart.cudaFree(ptr)
        self.device.clear()
        if self.stream is not None:
            cudart.cudaStreamDestroy(self.stream)
            self.stream = None


class TensorRTEngine(Engine):
    name = "tensorrt"

    def __init__(self, bundle: ModelBundle, settings: InferenceConfig | None = None, reconstruction: bool = False,
                 precision: str | None = None, device: int = 0) -> None:

        super().__init__(bundle, reconstruction)
        cfg = settings or InferenceConfig()
        if cfg.reconstruction_route == "soft":
            raise ValueError("inference.reconstruction_route = 'soft' runs on ONNX Runtime only; the TensorRT "
                             "engine runs the bundle's graph (the predicted posture's expert)")
        self.precision = precision or cfg.trt_precision
        if self.precision not in ("fp32", "fp16"):
            raise ValueError(f"precision={self.precision!r}: choose 'fp32' or 'fp16'")
        self.max_batch = cfg.max_batch
        self.cache_dir = Path(cfg.trt_cache_dir).expanduser()
        self.device_index = device
        from cuda.bindings import runtime as cudart
        _check(cudart.cudaSetDevice(device))
        self._runners: dict[bool, _TrtRunner] = {}
        self.keys: dict[bool, EngineKey] = {}
        self._runner(False)
        if reconstruction:
            self._runner(True)

    def _runner(self, reconstruction: bool) -> _TrtRunner:
        if reconstruction not in self._runners:
            outputs = OUTPUTS if reconstruction else CORE_OUTPUTS
            key = device_key(self.model_id, self.precision, outputs, self.max_batch, self.device_index)
            data = load_or_build(self.bundle, key, self.cache_dir)
            self.keys[reconstruction] = key
            self._runners[reconstruction] = _TrtRunner(data, self.max_batch, self.bundle.input_size)
        return self._runners[reconstruction]

    def _run(self, x: np.ndarray, reconstruction: bool) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        runner = self._runner(reconstruction)
        for start in range(0, x.shape[0], self.max_batch):  # larger batches in slices of max_batch
            part = runner.run(np.ascontiguousarray(x[start:start + self.max_batch]))
            for k, v in part.items():
                out.setdefault(k, []).append(v)
        return {k: np.concatenate(v) for k, v in out.items()}

    def describe(self) -> dict:
        d = super().describe()
        key = self.keys.get(False)
        d.update(precision=self.precision, max_batch=self.max_batch,
                 gpu=key.gpu_name if key else None, tensorrt=key.tensorrt_version if key else None)
        return d

    def close(self) -> None:
        for r in self._runners.values():
            r.close()
        self._runners.clear()

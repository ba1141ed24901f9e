"""ONNX Runtime engine on the CPU, tuned for batch-1 latency on few cores.

Two sessions share the bundle's weights: the whole graph, and a graph cut after `embedding` and
`posture_logits` (the reconstruction decoder is most of the cost). Threads are a setting measured
by `thz bench inference` (1 vs 2 on this machine), and worker spinning is off by default because
the Numba processing stage runs on the same cores. `precision="fp16"` runs the FP16 rewrite of the
graph (the one a TensorRT FP16 engine is built from): `thz bench parity` uses it to measure that
rewrite's precision loss on any machine; FP32 is the production setting.
"""
from __future__ import annotations

import numpy as np

from inference.bundle import CORE_OUTPUTS, INPUT_NAME, OUTPUTS, ModelBundle
from inference.engines.base import Engine
from inference.engines.graphs import network_graph

_LEVELS = {"disable": "ORT_DISABLE_ALL", "basic": "ORT_ENABLE_BASIC", "extended": "ORT_ENABLE_EXTENDED",
           "all": "ORT_ENABLE_ALL"}


class OnnxRuntimeEngine(Engine):
    name = "onnxruntime"

    def __init__(self, bundle: ModelBundle, intra_op_threads: int = 1, allow_spinning: bool = False,
                 graph_optimization: str = "all", reconstruction: bool = False, precision: str = "fp32") -> None:
        super().__init__(bundle, reconstruction)
        import onnxruntime as ort

        if graph_optimization not in _LEVELS:
            raise ValueError(f"graph_optimization={graph_optimization!r}: choose one of {sorted(_LEVELS)}")
        self.intra_op_threads = intra_op_threads
        self.allow_spinning = allow_spinning
        self.graph_optimization = graph_optimization
        self.precision = precision
        so = ort.SessionOptions()
        so.intra_op_num_threads = intra_op_threads
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.graph_optimization_level = getattr(ort.GraphOptimizationLevel, _LEVELS[graph_optimization])
        so.add_session_config_entry("session.intra_op.allow_spinning", "1" if allow_spinning else "0")
        so.add_session_config_entry("session.inter_op.allow_spinning", "1" if allow_spinning else "0")
        so.log_severity_level = 3
        self._so = so
        self._providers = ["CPUExecutionProvider"]
        self._core = ort.InferenceSession(network_graph(bundle, CORE_OUTPUTS, precision), so, providers=self._providers)
        self._full = None
        if reconstruction:
            self._full_session()

    def _full_session(self):
        if self._full is None:
            import onnxruntime as ort
            self._full = ort.InferenceSession(network_graph(self.bundle, OUTPUTS, self.precision), self._so,
                                              providers=self._providers)
        return self._full

    def _run(self, x: np.ndarray, reconstruction: bool) -> dict[str, np.ndarray]:
        if reconstruction:
            vals = self._full_session().run(list(OUTPUTS), {INPUT_NAME: x})
            return dict(zip(OUTPUTS, vals))
        vals = self._core.run(list(CORE_OUTPUTS), {INPUT_NAME: x})
        return dict(zip(CORE_OUTPUTS, vals))

    def describe(self) -> dict:
        d = super().describe()
        d.update(intra_op_threads=self.intra_op_threads, allow_spinning=self.allow_spinning,
                 graph_optimization=self.graph_optimization, precision=self.precision)
        return d

    def close(self) -> None:
        self._core = None
        self._full = None

"""ONNX Runtime engine on the CPU, tuned for batch-1 latency on few cores.

Sessions over the bundle's weights: a graph cut after `embedding` and `posture_logits` (the
reconstruction decoder is most of the cost) for verification + posture; for the reconstruction,
by default a trunk (the same outputs plus the encoder features) and one session per posture expert,
each ROI decoded by the expert of its argmax posture only (`reconstruction_route="predicted"`,
inference.engines.routing), or every expert blended by the posture probabilities (`"soft"`), or
the whole exported graph (`"graph"`: every expert runs, the one-hot keeps one; the reference the
other two are tested against). A bundle without per-posture experts has one decoder: every route
runs its whole graph. Threads are a setting measured
by `thz bench inference` (1 vs 2 on this machine), and worker spinning is off by default because
the Numba processing stage runs on the same cores. `precision="fp16"` runs the FP16 rewrite of the
graph (the one a TensorRT FP16 engine is built from): `thz bench parity` uses it to measure that
rewrite's precision loss on any machine; FP32 is the production setting.
"""
from __future__ import annotations

import numpy as np

from inference.bundle import CORE_OUTPUTS, INPUT_NAME, OUTPUTS, ModelBundle
from inference.engines.base import Engine
from inference.engines.graphs import expert_graphs, network_graph
from inference.engines.routing import ExpertSplit, blend, route_groups

RECONSTRUCTION_ROUTES = ("predicted", "soft", "graph")

_LEVELS = {"disable": "ORT_DISABLE_ALL", "basic": "ORT_ENABLE_BASIC", "extended": "ORT_ENABLE_EXTENDED",
           "all": "ORT_ENABLE_ALL"}


class OnnxRuntimeEngine(Engine):
    name = "onnxruntime"

    def __init__(self, bundle: ModelBundle, intra_op_threads: int = 1, allow_spinning: bool = False,
                 graph_optimization: str = "all", reconstruction: bool = False, precision: str = "fp32",
                 reconstruction_route: str = "predicted") -> None:
        super().__init__(bundle, reconstruction)
        import onnxruntime as ort

        if graph_optimization not in _LEVELS:
            raise ValueError(f"graph_optimization={graph_optimization!r}: choose one of {sorted(_LEVELS)}")
        if reconstruction_route not in RECONSTRUCTION_ROUTES:
            raise ValueError(f"reconstruction_route={reconstruction_route!r}: choose one of {RECONSTRUCTION_ROUTES}")
        self.reconstruction_route = reconstruction_route
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
        self._routed: tuple[ExpertSplit, object, list] | None = None
        self._split_checked = False
        if reconstruction:
            self._recon_sessions()

    def _recon_sessions(self) -> tuple[ExpertSplit, object, list] | None:
        """(split, trunk session, expert sessions) for the routed reconstruction; None = run the whole graph."""
        if self.reconstruction_route == "graph":
            self._full_session()
            return None
        if not self._split_checked:
            import onnxruntime as ort
            self._split_checked = True
            split = expert_graphs(self.bundle, self.precision)
            if split is None:  # one decoder: nothing to route
                self._full_session()
                return None
            new = lambda g: ort.InferenceSession(g, self._so, providers=self._providers)  # noqa: E731
            self._routed = (split, new(split.trunk), [new(e) for e in split.experts])
        return self._routed

    def routed_parts(self) -> tuple[ExpertSplit, object, list] | None:
        """(the split graphs, the trunk session, the expert sessions), or None when the whole graph runs."""
        return self._recon_sessions()

    @property
    def routed(self) -> bool:
        """The reconstruction runs per-posture expert graphs (False: the bundle's whole graph); builds them."""
        return self._recon_sessions() is not None

    def _full_session(self):
        if self._full is None:
            import onnxruntime as ort
            self._full = ort.InferenceSession(network_graph(self.bundle, OUTPUTS, self.precision), self._so,
                                              providers=self._providers)
        return self._full

    def _run(self, x: np.ndarray, reconstruction: bool) -> dict[str, np.ndarray]:
        if not reconstruction:
            vals = self._core.run(list(CORE_OUTPUTS), {INPUT_NAME: x})
            return dict(zip(CORE_OUTPUTS, vals))
        routed = self._recon_sessions()
        if routed is None:
            vals = self._full_session().run(list(OUTPUTS), {INPUT_NAME: x})
            return dict(zip(OUTPUTS, vals))
        split, trunk, experts = routed
        emb, logits, *feats = trunk.run([*CORE_OUTPUTS, *split.features], {INPUT_NAME: x})
        feature = dict(zip(split.features, feats))
        b, n = x.shape[0], x.shape[-1]

        def expert(k: int, rows: np.ndarray | None) -> np.ndarray:
            feeds = {t: (feature[t] if rows is None else feature[t][rows]) for t in split.expert_inputs[k]}
            out = experts[k].run([split.expert_outputs[k]], feeds)[0]
            return out.reshape(len(out), 1, n, n)

        if self.reconstruction_route == "soft":
            rec = blend(np.stack([expert(k, None) for k in range(len(experts))]), logits)
        else:
            groups = route_groups(logits.argmax(1))
            if len(groups) == 1:  # every ROI routed to one expert (always at batch 1): no gather
                rec = expert(groups[0][0], None)
            else:
                rec = np.empty((b, 1, n, n), np.float32)
                for k, rows in groups:
                    rec[rows] = expert(k, rows)
        return {"embedding": emb, "posture_logits": logits, "reconstruction": rec}

    def describe(self) -> dict:
        d = super().describe()
        d.update(intra_op_threads=self.intra_op_threads, allow_spinning=self.allow_spinning,
                 graph_optimization=self.graph_optimization, precision=self.precision,
                 reconstruction_route=self.reconstruction_route,
                 experts_split=None if not self._split_checked else self._routed is not None)
        return d

    def close(self) -> None:
        self._core = None
        self._full = None
        self._routed = None

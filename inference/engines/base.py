"""One engine interface over TensorRT and ONNX Runtime (the choice between them: inference.engines.choice).

`engine.infer(rois)` maps ROIs in [0, 1] (B, 64, 64) to a dict of arrays: `embedding` (B, E) L2-normalised, `posture_logits` (B, 5) and,
only when asked for, `reconstruction` (B, 1, 64, 64). The decoder dominates the cost, so each
engine keeps a graph without it for the verification + posture path.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Literal

import numpy as np

from inference.bundle import ModelBundle

EngineKind = Literal["auto", "tensorrt", "onnxruntime"]


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

    def close(self) -> None:  # noqa: B027  (a no-op by default: an engine without resources keeps it)
        """Release resources (GPU buffers, sessions)."""

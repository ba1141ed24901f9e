"""Live multi-scan fusion: each decision on the fused embedding of up to N consecutive ROIs of one subject.

The inference stage keeps, per scanner, the last `inference.fusion_scans` ROIs of the current run and
enrols / verifies / identifies with their fusion (`thzcore.fusion.fuse`, weights from each ROI's
`meta.roi.quality`, the face locator's score). A run is the ROIs of one subject in one posture as far
as the stage can tell: it starts afresh when the operator's claims or enrolment subject change, when
the predicted posture changes, when the frame id does not grow, or after a gap longer than
`inference.fusion_max_gap_s` between frames. Until N ROIs are in the run, what is there is fused
(the first result of a run uses its one ROI), so every ROI still gives a result at once.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from thzcore.fusion import fuse, fusion_weights


def roi_quality(meta: dict[str, Any]) -> float:
    """`meta.roi.quality` of a `roi` message (processing's face locator score), NaN when absent or not a number."""
    roi = meta.get("roi") if isinstance(meta, dict) else None
    q = roi.get("quality") if isinstance(roi, dict) else None
    if isinstance(q, (int, float)) and not isinstance(q, bool) and np.isfinite(q):
        return float(q)
    return float("nan")


@dataclass
class _Run:
    key: tuple
    last_frame: int
    last_t: float
    scans: deque = field(default_factory=deque)   # (frame id, embedding, quality)


class ScanFusion:
    """Per-scanner runs of ROIs and their fused embedding (module doc). Used from the stage's thread only."""

    def __init__(self, n: int, weight: str = "roi_quality", max_gap_s: float = 5.0) -> None:
        if n < 1:
            raise ValueError(f"fusion over {n} scans: N must be >= 1")
        fusion_weights(None, 1, weight)   # checks the weight's name
        self.n, self.weight, self.max_gap_s = n, weight, max_gap_s
        self._runs: dict[str, _Run] = {}

    def add(self, scanner_id: str, key: tuple, frame_id: int, t: float, embedding: np.ndarray,
            quality: float) -> tuple[np.ndarray, list[int]]:
        """Add one ROI's embedding to its scanner's run; (the fused unit embedding as float32, frame ids fused)."""
        run = self._runs.get(scanner_id)
        if (run is None or run.key != key or frame_id <= run.last_frame or t - run.last_t > self.max_gap_s
                or t < run.last_t):
            run = self._runs[scanner_id] = _Run(key, frame_id, t, deque(maxlen=self.n))
        run.scans.append((int(frame_id), np.asarray(embedding, np.float64).reshape(-1), float(quality)))
        run.last_frame, run.last_t = int(frame_id), float(t)
        emb = np.stack([s[1] for s in run.scans])
        w = fusion_weights(np.array([s[2] for s in run.scans]), len(emb), self.weight)
        return fuse(emb, w).astype(np.float32), [s[0] for s in run.scans]

    def reset(self) -> None:
        self._runs.clear()


def fuse_sequence(embeddings: np.ndarray, postures: list[str], qualities: list[float], n: int,
                  weight: str = "roi_quality") -> tuple[np.ndarray, list[list[int]]]:
    """The stage's fusion over a list of ROIs of one subject (`thz enroll / verify / identify --scans K`).

    ROI i decides on the fusion of itself and up to n - 1 ROIs before it in the same run of predicted
    posture (no time gaps in a list). Returns the (k, E) fused embeddings and, per ROI, the indices fused.
    """
    f = ScanFusion(n, weight, max_gap_s=float("inf"))
    fused, used = [], []
    for i, (e, p, q) in enumerate(zip(embeddings, postures, qualities)):
        v, idx = f.add("", (p,), i, 0.0, e, q)
        fused.append(v)
        used.append(idx)
    return np.stack(fused) if fused else np.zeros((0, 0), np.float32), used

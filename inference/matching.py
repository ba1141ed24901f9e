"""Decisions from embeddings: cosine distance, 1:1 verification, 1:N identification with open-set rejection.

Embeddings are L2-normalised, so the cosine distance is d(a, b) = 1 - a.b in [0, 2]. A subject's
score is the distance to their nearest enrolled template (one per posture and capture).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def cosine_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """d = 1 - a.b for L2-normalised rows: a (E,) or (N, E) against b (M, E) -> (M,) or (N, M)."""
    a = np.asarray(a, np.float64)
    b = np.atleast_2d(np.asarray(b, np.float64))
    if a.shape[-1] != b.shape[-1]:
        raise ValueError(f"embedding sizes differ: {a.shape} vs {b.shape}")
    return 1.0 - a @ b.T


@dataclass(frozen=True)
class Verification:
    claim: str
    distance: float
    threshold: float
    accepted: bool

    def to_json(self) -> dict:
        return {"claim": self.claim, "distance": round(self.distance, 6), "threshold": self.threshold,
                "accepted": self.accepted}


@dataclass(frozen=True)
class Identification:
    """Best candidates (subject, distance), nearest first; `identity` is None when all are rejected."""

    candidates: list[tuple[str, float]]
    threshold: float
    identity: str | None

    def to_json(self) -> dict:
        return {"identity": self.identity, "threshold": self.threshold,
                "candidates": [{"subject": s, "distance": round(d, 6)} for s, d in self.candidates]}


def verify(embedding: np.ndarray, claim: str, templates: np.ndarray, threshold: float) -> Verification:
    """1:1: accept the claim when the nearest of the claimed subject's templates is within `threshold`."""
    if templates.size == 0:
        raise ValueError(f"subject {claim!r} has no templates to verify against")
    d = float(np.min(cosine_distance(embedding, templates)))
    return Verification(claim, d, float(threshold), d <= threshold)


class TemplateMatrix:
    """Every enrolled template of a gallery in one float32 matrix, rows grouped by subject.

    1:N search is then one matrix product and a per-subject minimum (np.minimum.reduceat) instead
    of a Python loop over subjects with a float64 copy each: the distances agree with
    cosine_distance to float32 rounding (|d32 - d64| <= E eps32 for unit vectors of size E).
    """

    def __init__(self, gallery: dict[str, np.ndarray]) -> None:
        items = sorted((s, np.atleast_2d(t)) for s, t in gallery.items() if np.size(t))
        self.subjects = [s for s, _ in items]
        self.size = int(items[0][1].shape[1]) if items else 0
        self.matrix = (np.ascontiguousarray(np.concatenate([t for _, t in items]), dtype=np.float32)
                       if items else np.zeros((0, 0), np.float32))
        counts = np.array([t.shape[0] for _, t in items], dtype=np.int64)
        self.starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64) if items else counts

    def __len__(self) -> int:
        return len(self.subjects)

    def nearest(self, embedding: np.ndarray) -> np.ndarray:
        """Distance of each subject's nearest template to `embedding` (float64, in self.subjects order)."""
        e = np.asarray(embedding, np.float32).ravel()
        if e.size != self.size:
            raise ValueError(f"embedding sizes differ: {e.shape} vs templates of {self.size}")
        sims = self.matrix @ e
        return 1.0 - np.maximum.reduceat(sims, self.starts).astype(np.float64)


def identify(embedding: np.ndarray, gallery: dict[str, np.ndarray] | TemplateMatrix, threshold: float,
             top_k: int = 3) -> Identification:
    """1:N: rank subjects by nearest-template distance; open set: reject when the best is above threshold."""
    index = gallery if isinstance(gallery, TemplateMatrix) else TemplateMatrix(gallery)
    if not len(index):
        return Identification([], float(threshold), None)
    d = index.nearest(embedding)
    k = min(top_k, d.size)
    # the k nearest, ties broken by subject id (subjects are sorted, so by index): every subject
    # within the k-th distance is a candidate, then an exact (distance, index) sort of those few
    kth = np.partition(d, k - 1)[k - 1]
    cand = np.nonzero(d <= kth)[0]
    order = cand[np.lexsort((cand, d[cand]))][:k]
    scores = [(index.subjects[i], float(d[i])) for i in order]
    best = scores[0] if scores else None
    identity = best[0] if best is not None and best[1] <= threshold else None
    return Identification(scores, float(threshold), identity)


def softmax(logits: np.ndarray) -> np.ndarray:
    z = np.asarray(logits, np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)

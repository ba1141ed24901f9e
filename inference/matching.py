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


def identify(embedding: np.ndarray, gallery: dict[str, np.ndarray], threshold: float, top_k: int = 3) -> Identification:
    """1:N: rank subjects by nearest-template distance; open set: reject when the best is above threshold."""
    scores = [(s, float(np.min(cosine_distance(embedding, t)))) for s, t in gallery.items() if t.size]
    scores.sort(key=lambda sd: (sd[1], sd[0]))
    best = scores[0] if scores else None
    identity = best[0] if best is not None and best[1] <= threshold else None
    return Identification(scores[:top_k], float(threshold), identity)


def softmax(logits: np.ndarray) -> np.ndarray:
    z = np.asarray(logits, np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)

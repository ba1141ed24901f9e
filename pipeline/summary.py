"""Scoring of a `thz run --sim` session: per-scan records -> accuracies and latency percentiles (pure)."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from inference.results import STAGES


@dataclass
class ScanRecord:
    """One scored concealed scan: truth, posture prediction, the genuine and the impostor claim."""

    frame_id: int
    subject: str
    posture_true: str
    posture_pred: str
    posture_prob: float
    genuine_distance: float | None
    genuine_accepted: bool | None
    impostor_claim: str | None
    impostor_distance: float | None
    impostor_accepted: bool | None
    identified: str | None
    latency_ms: float
    inference_ms: float
    errors: list[str] = field(default_factory=list)
    stages_ms: dict[str, float] = field(default_factory=dict)  # the result's latency_ms split by stage
    roi: np.ndarray | None = None
    reconstruction: np.ndarray | None = None


def percentile(values: list[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if values else None


def stage_medians(splits: list[dict[str, float]]) -> dict[str, float | None]:
    """Median of each stage over the results that carry it, in pipeline order (absent stages left out)."""
    return {k: percentile([d[k] for d in splits if k in d], 50) for k in STAGES if any(k in d for d in splits)}


def summarise(records: list[ScanRecord], threshold: float) -> dict:
    """Accuracies over the scored scans.

    verification_accuracy = (genuine claims accepted + impostor claims rejected) / all claims;
    posture_accuracy = predicted == true posture; identification_rank1 = the open-set answer is
    the true subject. Latency is scan complete (acquisition's t_complete of the newest averaged
    frame) to result published; `stage_p50_ms` splits it into the stages that stamped the result.
    """
    n = len(records)
    gen = [r.genuine_accepted for r in records if r.genuine_accepted is not None]
    imp = [r.impostor_accepted for r in records if r.impostor_accepted is not None]
    claims = len(gen) + len(imp)
    correct = sum(gen) + sum(not a for a in imp)
    lat = [r.latency_ms for r in records]
    inf = [r.inference_ms for r in records]
    postures: dict[str, list[bool]] = {}
    for r in records:
        postures.setdefault(r.posture_true, []).append(r.posture_pred == r.posture_true)
    gd = [r.genuine_distance for r in records if r.genuine_distance is not None]
    idist = [r.impostor_distance for r in records if r.impostor_distance is not None]
    return {
        "frames": n,
        "posture_accuracy": (sum(r.posture_pred == r.posture_true for r in records) / n) if n else None,
        "verification_accuracy": (correct / claims) if claims else None,
        "genuine_accept_rate": (sum(gen) / len(gen)) if gen else None,
        "impostor_reject_rate": (sum(not a for a in imp) / len(imp)) if imp else None,
        "identification_rank1": (sum(r.identified == r.subject for r in records) / n) if n else None,
        "claims": claims,
        "threshold": threshold,
        "mean_genuine_distance": float(np.mean(gd)) if gd else None,
        "mean_impostor_distance": float(np.mean(idist)) if idist else None,
        "posture_accuracy_by_posture": {p: sum(v) / len(v) for p, v in sorted(postures.items())},
        "p50_latency_ms": percentile(lat, 50),
        "p99_latency_ms": percentile(lat, 99),
        "max_latency_ms": max(lat) if lat else None,
        "inference_ms_p50": percentile(inf, 50),
        "stage_p50_ms": stage_medians([r.stages_ms for r in records]),
        "decision_errors": sum(len(r.errors) for r in records),
    }

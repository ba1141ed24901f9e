"""`thz run --sim` scoring: accuracies and latency figures from hand-made scan records."""
from __future__ import annotations

import pytest

from pipeline.summary import ScanRecord, summarise


def _rec(subject, posture, pred, g_acc, i_acc, ident, lat, stages=None):
    return ScanRecord(frame_id=0, subject=subject, posture_true=posture, posture_pred=pred, posture_prob=0.9,
                      genuine_distance=0.01 if g_acc else 0.5, genuine_accepted=g_acc, impostor_claim="x",
                      impostor_distance=0.6 if not i_acc else 0.02, impostor_accepted=i_acc, identified=ident,
                      latency_ms=lat, inference_ms=1.0, stages_ms=stages or {})


def test_accuracies_and_latency_split():
    recs = [
        _rec("a", "front-left", "front-left", True, False, "a", 40.0, {"processing": 7.0, "inference": 9.0}),
        _rec("a", "full-left", "full-right", True, True, "a", 50.0, {"processing": 9.0, "inference": 11.0}),
        _rec("b", "front-left", "front-left", False, False, None, 60.0, {"processing": 8.0}),
        _rec("b", "full-left", "full-left", True, False, "c", 70.0),
    ]
    s = summarise(recs, threshold=0.1)
    assert s["frames"] == 4 and s["claims"] == 8
    assert s["posture_accuracy"] == 0.75
    assert s["posture_accuracy_by_posture"] == {"front-left": 1.0, "full-left": 0.5}
    assert s["verification_accuracy"] == 6 / 8  # genuine 3 of 4 accepted, impostors 3 of 4 rejected
    assert s["genuine_accept_rate"] == 0.75 and s["impostor_reject_rate"] == 0.75
    assert s["identification_rank1"] == 0.5
    assert s["p50_latency_ms"] == 55.0 and s["max_latency_ms"] == 70.0
    assert s["p99_latency_ms"] == pytest.approx(70.0 - 0.03 * 10)  # linear interpolation between 60 and 70
    # each stage over the records that carry it, in pipeline order; absent stages are left out
    assert s["stage_p50_ms"] == {"processing": 8.0, "inference": 10.0}
    assert list(s["stage_p50_ms"]) == ["processing", "inference"]


def test_no_records():
    s = summarise([], threshold=0.1)
    assert s["frames"] == 0 and s["posture_accuracy"] is None and s["p99_latency_ms"] is None
    assert s["stage_p50_ms"] == {}

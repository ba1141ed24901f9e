"""The sim session streams scan rows (with their images) to disk: the report is the same, memory holds none."""
from __future__ import annotations

import numpy as np

from pipeline.report import RowSpool, write_report
from pipeline.summary import ScanRecord


def _rec(i: int) -> ScanRecord:
    rng = np.random.default_rng(i)
    return ScanRecord(frame_id=i, subject=f"s{i}", posture_true="front-left", posture_pred="front-left",
                      posture_prob=0.9, genuine_distance=0.1, genuine_accepted=True, impostor_claim="x",
                      impostor_distance=0.8, impostor_accepted=False, identified=f"s{i}", latency_ms=12.0,
                      inference_ms=3.0, roi=rng.random((64, 64), dtype=np.float32),
                      reconstruction=rng.random((64, 64), dtype=np.float32))


def test_spooled_rows_give_the_same_report_as_records_in_memory(tmp_path):
    records = [_rec(i) for i in range(5)]
    a = write_report(tmp_path / "a.html", {"frames": 5}, records, {"engine": "e"})
    spool = RowSpool(tmp_path / ".rows.html")
    kept = []
    for r in [_rec(i) for i in range(5)]:
        spool.add(r)
        r.roi = r.reconstruction = None  # what run_sim keeps: the numbers only
        kept.append(r)
    spool.close()
    assert (spool.path.stat().st_mode & 0o777) == 0o600  # face images: owner only
    b = write_report(tmp_path / "b.html", {"frames": 5}, kept, {"engine": "e"}, rows=spool.path)
    assert a.read_text() == b.read_text()
    assert all(r.roi is None and r.reconstruction is None for r in kept)

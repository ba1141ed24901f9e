"""The transfer table of `thz bench pipeline`: the recv_into limit and the per-exchange rows (no timing asserted)."""
from __future__ import annotations

import numpy as np

from pipeline.linkbench import PARTS, recv_into_limit, transfer_rows


def test_the_limit_moves_the_bytes_it_times():
    ms = recv_into_limit(1 << 20, repeats=3)
    assert ms.shape == (3,) and np.all(ms > 0)


def test_rows_hold_each_part_a_total_and_the_ratio_to_the_limit():
    timings = [{"head": 1.0, "frame": 10.0, "feedback": 1.0, "publish": 2.0},
               {"head": 3.0, "frame": 20.0, "feedback": 1.0, "publish": 2.0}]
    rows = {r["part"]: r for r in transfer_rows(timings, np.array([4.0, 6.0]))}
    assert set(rows) == {"head", "frame", "feedback", "publish", "total"} and set(rows) - {"total"} <= set(PARTS)
    assert rows["frame"]["median_ms"] == 15.0 and rows["frame"]["vs_limit"] == 3.0
    assert rows["total"]["median_ms"] == 20.0 and rows["total"]["limit_ms"] == 5.0

"""`thz bench sim`: the command-line contract (last two lines), the table with targets, the function clocks."""
from __future__ import annotations

import time

import pytest
from click.testing import CliRunner

from pipeline import bench
from thz.cli import cli

FIGURES = {"tree": "/x", "commit": "abc", "frame_cpu_ms": 9.5, "frame_wall_ms": 12.0, "receiver_cpu_ms": 4.0,
           "galvo_cpu_ms": 0.5, "physics_cpu_ms": 5.0, "new_scene_cpu_ms": 60.0, "scanner_init_cpu_ms": 0.1,
           "ticker_p99_ms": 1.2, "ticker_max_ms": 3.0, "rois": 40, "faces_found": 38, "visible": 20,
           "build_cpu_s": 4.0, "build_wall_s": 5.0, "worker_start_cpu_s": 1.0, "rois_per_cpu_s": 13.3333,
           "rois_per_cpu_s_whole_build": 10.0, "unit_cpu_ms_median": 75.0}


def test_command_ends_with_the_two_contract_lines(monkeypatch):
    calls = []

    def fake(tree, *a, **k):
        calls.append(str(tree))
        return dict(FIGURES, frame_cpu_ms=60.0 if "v1" in str(tree) else 9.5,
                    rois_per_cpu_s=3.0 if "v1" in str(tree) else 13.3333)

    monkeypatch.setattr(bench, "run_tree", fake)
    res = CliRunner().invoke(cli, ["bench", "sim", "--baseline", "/tmp"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    lines = res.output.strip().splitlines()
    assert lines[-2:] == ["ms_per_frame: 9.50", "rois_per_cpu_s: 13.33"]
    assert "<= 20" in res.output and ">= 25" in res.output and "speed-up" in res.output
    assert len(calls) == 2 and calls[0] == "/tmp"          # the baseline first, then this tree


def test_table_ratios_and_bad_tree(tmp_path):
    base = dict(FIGURES, frame_cpu_ms=57.0, rois_per_cpu_s=4.0)
    rows = bench.table(FIGURES, base)
    frame = next(r for r in rows if r.startswith("frame, CPU"))
    assert frame.split()[-1] == "6.0x"                     # 57 / 9.5: lower is better
    rois = next(r for r in rows if r.startswith("dataset: THz ROIs"))
    assert rois.split()[-1] == "3.3x"                      # 13.33 / 4: higher is better
    with pytest.raises(ValueError, match="not a thz-face tree"):
        bench.run_tree(tmp_path)


def test_clock_counts_the_outermost_calls_only():
    class Owner:
        @staticmethod
        def busy(depth: int = 0) -> None:
            t = time.process_time()
            while time.process_time() - t < 0.02:
                pass
            if depth:
                Owner.busy(depth - 1)

    clock = bench._Clock()
    clock.wrap(Owner, "busy")
    Owner.busy(1)                                          # 40 ms inside, the inner call not counted twice
    assert 0.035 < clock.cpu < 0.2

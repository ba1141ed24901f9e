"""`thz bench inference`: the table and the last line contract (no timing asserted)."""
from __future__ import annotations

import pytest
import json
import re

from click.testing import CliRunner

from thz.cli import cli

pytestmark = pytest.mark.integration  # thz bench pipeline starts the whole pipeline


def test_bench_inference_last_line(bundle_dir):
    r = CliRunner().invoke(cli, ["bench", "inference", "--bundle", str(bundle_dir), "--repeats", "5",
                                 "--batches", "1,2", "--threads", "1"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    lines = r.stdout.strip().splitlines()
    assert re.fullmatch(r"ms_per_roi: \d+\.\d+", lines[-1])
    table = json.loads(lines[-2])
    # 1 thread x spinning off/on x reconstruction no/yes x batches 1, 2
    assert len(table["rows"]) == 8 and {row["batch"] for row in table["rows"]} == {1, 2}
    assert table["configured"]["engine"] == "onnxruntime" and table["batch1"]["batch"] == 1
    assert float(lines[-1].split()[1]) == round(table["batch1"]["ms_per_roi"], 3)


def test_bench_pipeline_splits_scan_complete_to_published(bundle_dir):
    """Every result carries the upstream stamps, so the stages add up to the end-to-end latency."""
    r = CliRunner().invoke(cli, ["bench", "pipeline", "--bundle", str(bundle_dir), "--results", "3",
                                 "--raw-source", "direct"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    lines = r.stdout.strip().splitlines()
    assert re.fullmatch(r"p99_latency_ms: \d+\.\d+", lines[-1])
    row = json.loads(lines[-2])
    assert row["results"] == 3 and row["raw_frames"] >= 3 + 3  # the averaging window fills first
    parts = sum(row[f"{k}_p50_ms"] for k in ("transfer_to_processing", "processing", "processing_to_inference",
                                             "queue", "inference"))
    assert all(row[f"{k}_p50_ms"] >= 0 for k in ("transfer_to_processing", "processing", "inference"))
    # structure only (no timing ratios in unit tests: speed targets live in `thz bench`)
    assert parts > 0 and row["p50_ms"] <= row["p99_ms"]
    assert float(lines[-1].split()[1]) == round(row["p99_ms"], 3)


def test_bench_pipeline_through_the_emulator_sets_the_transfer_beside_its_limit(bundle_dir):
    r = CliRunner().invoke(cli, ["bench", "pipeline", "--bundle", str(bundle_dir), "--results", "2",
                                 "--raw-source", "emulator"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    lines = r.stdout.strip().splitlines()
    assert re.fullmatch(r"p99_latency_ms: \d+\.\d+", lines[-1])
    assert re.fullmatch(r"transfer_vs_limit: \d+\.\d+x", lines[-2])
    row = json.loads(lines[-3])
    parts = {t["part"]: t for t in row["transfer"]}
    assert {"errors", "head", "frame", "feedback", "galvo", "check", "publish", "total"} <= set(parts)
    assert row["recv_into_limit_ms"] > 0
    assert float(lines[-2].split()[1][:-1]) == round(parts["frame"]["vs_limit"], 2)


def test_bench_inference_prints_rows_as_measured_and_keeps_them_on_ctrl_c(bundle_dir, monkeypatch):
    """Each row is printed when measured (not at the end); Ctrl-C after 3 rows exits 130 with the 3 rows printed
    and in a JSON line, and the message says how many were kept."""
    import thz.commands.bench_inference as bi

    real = bi.time_engine
    printed_before: list[int] = []
    calls = {"n": 0}

    def interrupted_on_the_fourth(engine, batch, reconstruction, repeats, rng):
        calls["n"] += 1
        printed_before.append(len([ln for ln in out_lines() if ln.startswith("onnxruntime")]))
        if calls["n"] == 4:
            raise KeyboardInterrupt
        return real(engine, batch, reconstruction, repeats, rng)

    runner = CliRunner()
    captured: dict = {}

    def out_lines() -> list[str]:
        return captured["buf"].getvalue().decode().splitlines() if "buf" in captured else []

    import click.testing as ct
    orig = ct.CliRunner.isolation

    from contextlib import contextmanager

    @contextmanager
    def spy(self, *a, **k):  # keep a handle on the stdout buffer while the command runs
        with orig(self, *a, **k) as streams:
            captured["buf"] = streams[0]  # the BytesIO behind the command's stdout
            yield streams
    monkeypatch.setattr(ct.CliRunner, "isolation", spy)
    monkeypatch.setattr(bi, "time_engine", interrupted_on_the_fourth)
    r = runner.invoke(cli, ["bench", "inference", "--bundle", str(bundle_dir), "--repeats", "3", "--batches", "1,2",
                            "--threads", "1"])
    assert r.exit_code == 130, r.output
    assert printed_before == [0, 1, 2, 3]  # row k was on stdout before row k + 1 was timed
    lines = r.stdout.strip().splitlines()
    assert sum(ln.startswith("onnxruntime") for ln in lines) == 3
    partial = json.loads(lines[-1])
    assert partial["interrupted"] and len(partial["rows"]) == 3
    assert "interrupted: 3 of 8 rows measured" in r.stderr


def test_bench_gallery_table_has_the_limit_and_the_last_line():
    r = CliRunner().invoke(cli, ["bench", "gallery", "--templates", "50,300", "--repeats", "5", "--per-subject", "7"],
                           catch_exceptions=False)
    assert r.exit_code == 0, r.output
    lines = r.stdout.strip().splitlines()
    assert re.fullmatch(r"ms_per_identify: \d+\.\d+", lines[-1])
    table = json.loads(lines[-2])
    assert [x["templates"] for x in table["results"]] == [50, 300]
    big = table["results"][-1]
    assert big["subjects"] == 43 and big["index_bytes_per_template"] >= 4 * 128
    paths = {row["path"]: row for row in big["rows"]}
    assert {"limit", "numpy", "Gallery.identify", "matvec, BLAS default threads"} <= set(paths)
    assert paths["limit"]["vs_limit"] == 1.0
    if "faiss" in paths:
        assert big["faiss_equals_numpy"] is True
    assert float(lines[-1].split()[1]) == round(paths["Gallery.identify"]["median_ms"], 3)
    bad = CliRunner().invoke(cli, ["bench", "gallery", "--templates", "ten"])
    assert bad.exit_code == 2 and "--templates" in bad.output

"""`thz bench inference`: the table and the last line contract (no timing asserted)."""
from __future__ import annotations

import json
import re

from click.testing import CliRunner

from thz.cli import cli


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

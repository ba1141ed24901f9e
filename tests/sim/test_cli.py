"""`thz sim demo --out DIR` writes the contact sheet and the physics summary."""
from __future__ import annotations

import json

from click.testing import CliRunner

from thz.cli import cli


def test_demo_writes_sheet_and_summary(tmp_path):
    res = CliRunner().invoke(cli, ["sim", "demo", "--out", str(tmp_path), "--n-identities", "1", "--frames", "1"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "contact_sheet.png").stat().st_size > 10_000
    s = json.loads((tmp_path / "summary.json").read_text())
    assert abs(s["physics"]["range_resolution_mm"] - 9.993) < 0.01
    assert abs(s["physics"]["depth_of_focus_m"] - 0.4008) < 0.001
    assert len(s["images"]) == 10
    m = s["measured"]
    # sparse glints: the peak stands far above the typical face pixel, and few pixels come near it
    assert m["dr_peak_db"] > 10.0 and m["within_6db_of_peak"] < 0.1
    assert all(s_["glints"] for s_ in s["images"])           # every face shows a glint
    assert (tmp_path / "yaw_decorrelation.png").stat().st_size > 5_000 and (tmp_path / "glints.png").is_file()
    assert m["yaw_decorrelation_mean"]["0.1"] > m["yaw_decorrelation_mean"]["2.0"]
    assert "face dynamic range" in (tmp_path / "summary.md").read_text()
    last = json.loads(res.stdout.strip().splitlines()[-1])
    assert last["contact_sheet"].endswith("contact_sheet.png")
    # progress on stderr: one step per image, then the contact sheet and the validation figures
    assert "demo: 12/12" in res.stderr and "validation figures" in res.stderr

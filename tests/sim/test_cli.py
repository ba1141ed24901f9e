"""`thz sim demo --out DIR` writes the contact sheet and the physics summary."""
from __future__ import annotations

import json

from click.testing import CliRunner

from thz.cli import cli


def test_demo_writes_sheet_and_summary(tmp_path):
    res = CliRunner().invoke(cli, ["sim", "demo", "--out", str(tmp_path), "--identities", "1", "--frames", "1"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "contact_sheet.png").stat().st_size > 10_000
    s = json.loads((tmp_path / "summary.json").read_text())
    assert abs(s["physics"]["range_resolution_mm"] - 9.993) < 0.01
    assert abs(s["physics"]["depth_of_focus_m"] - 0.4008) < 0.001
    assert len(s["images"]) == 10
    assert 3.0 < s["measured"]["face_dynamic_range_db_mean"] < 15.0
    assert "face dynamic range" in (tmp_path / "summary.md").read_text()
    last = json.loads(res.output.strip().splitlines()[-1])
    assert last["contact_sheet"].endswith("contact_sheet.png")

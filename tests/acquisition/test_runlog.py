"""The run log: one JSON line per event, owner-only, a line cut by a crash is ignored."""
from __future__ import annotations

import os
import stat

from acquisition.runlog import RunLog, read_runlog


def test_runlog_lines_and_cut_line(tmp_path):
    log = RunLog(tmp_path / "r.jsonl", wall=lambda: 1.0)
    log.event("start", kind="x")
    log.event("frame", frame_id=1)
    log.close()
    with open(tmp_path / "r.jsonl", "a") as fh:
        fh.write('{"t": 2, "event": "fra')  # a crash mid-line
    ev = read_runlog(tmp_path / "r.jsonl")
    assert ev == [{"t": 1.0, "event": "start", "kind": "x"}, {"t": 1.0, "event": "frame", "frame_id": 1}]
    assert stat.S_IMODE(os.stat(tmp_path / "r.jsonl").st_mode) == 0o600

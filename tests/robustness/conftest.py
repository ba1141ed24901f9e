"""The fault / bad-input matrix: every test here is marked `robustness`; each case adds a row to the table
printed at the end of the run (area, case, outcome), so `pytest -m robustness` reports what was tried."""
from __future__ import annotations

from collections import defaultdict

import pytest

from tests.inference.conftest import bundle, bundle_dir, ort_engine  # noqa: F401 - shared fixtures

_ROWS: dict[tuple[str, str], list[str]] = defaultdict(list)
_TOTALS: dict[str, int] = defaultdict(int)
TOTAL_KEYS = ("stage_deaths", "tracebacks", "corrupt_frames", "frames_checked")


class Matrix:
    """`matrix.record(area, case, outcome, **totals)`; outcome is a short phrase ('dropped', 'exit 4');
    totals (stage_deaths, tracebacks, corrupt_frames, frames_checked) are summed into the table's last line."""

    def record(self, area: str, case: str, outcome: str, **totals: int) -> None:
        _ROWS[(area, case)].append(outcome)
        for k, v in totals.items():
            _TOTALS[k] += int(v)


@pytest.fixture(scope="session")
def matrix() -> Matrix:
    return Matrix()


def pytest_collection_modifyitems(config, items):
    for item in items:
        if "tests/robustness/" in str(item.fspath).replace("\\", "/"):
            item.add_marker(pytest.mark.robustness)


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if not _ROWS:
        return
    tr = terminalreporter
    tr.section("robustness matrix")
    areas: dict[str, list[tuple[str, list[str]]]] = defaultdict(list)
    for (area, case), outcomes in _ROWS.items():
        areas[area].append((case, outcomes))
    width = max(len(c) for (_, c) in _ROWS) + 2
    for area, cases in sorted(areas.items()):
        tr.write_line(f"{area}: {sum(len(o) for _, o in cases)} inputs")
        for case, outcomes in cases:
            counts = defaultdict(int)
            for o in outcomes:
                counts[o] += 1
            tr.write_line(f"  {case:<{width}} " + ", ".join(f"{k} x{v}" if v > 1 else k for k, v in counts.items()))
    n = sum(len(o) for o in _ROWS.values())
    tr.write_line(f"total: {n} inputs / faults; " + ", ".join(f"{k.replace('_', ' ')} {_TOTALS[k]}" for k in TOTAL_KEYS))

"""The fault / bad-input matrix: every test here is marked `robustness`; each case adds a row to the table
printed at the end of the run (area, case, outcome), so `pytest -m robustness` reports what was tried."""
from __future__ import annotations

from collections import defaultdict

import pytest

from tests.inference.conftest import bundle, bundle_dir, ort_engine  # noqa: F401 - shared fixtures

_ROWS: dict[tuple[str, str], list[str]] = defaultdict(list)


class Matrix:
    """`matrix.record(area, case, outcome)`; outcome is a short word ('dropped', 'exit 4', 'parked')."""

    def record(self, area: str, case: str, outcome: str) -> None:
        _ROWS[(area, case)].append(outcome)


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

"""Run one calibration: exposure pre-flight, measure and fit, seal and store the record, write the report.

`run_calibration` is what `thz calibrate <kind>` calls; tests call it with a VirtualSource.
"""
from __future__ import annotations

import importlib
from datetime import datetime
from pathlib import Path
from typing import Any

from calibration.config import CalibrationSettings
from calibration.procedures.common import Context, make_record
from calibration.report import write_report
from calibration.sources.base import MeasurementSource
from calibration.store import KINDS, CalibrationRecord, CalibrationStore
from thzcore.logs import get_logger

log = get_logger(__name__)


def summary(record: CalibrationRecord, report: Path | None) -> dict[str, Any]:
    """The JSON object the CLI prints last: fitted values, pass/fail per item and overall."""
    return {"kind": record.kind, "record_id": record.record_id, "scanner_id": record.scanner_id,
            "passed": record.passed,
            "values": {k: {"value": v.value, "uncertainty": v.uncertainty, "unit": v.unit}
                       for k, v in record.values.items()},
            "checks": {c.name: c.passed for c in record.checks},
            "applied_by_processor": record.processing is not None,
            "report": str(report) if report is not None else None}


def run_calibration(kind: str, settings: CalibrationSettings, source: MeasurementSource, store: CalibrationStore,
                    report_dir: str | Path, quick: bool = False, now: datetime | None = None,
                    make_current: bool = True) -> tuple[CalibrationRecord, Path, dict[str, Any]]:
    if kind not in KINDS:
        raise ValueError(f"unknown calibration {kind!r}; choose one of {KINDS}")
    ctx = Context(settings, source, store, Path(report_dir), quick=quick)
    if now is not None:
        ctx.now = now
    exposure = importlib.import_module("calibration.procedures.exposure")
    if kind != "exposure":
        exposure.preflight(ctx)  # raises ExposureLimitError: nothing is scanned
    proc = importlib.import_module(f"calibration.procedures.{kind}")
    log.info("calibration started", extra={"kind": kind, "source": source.description, "quick": quick})
    outcome = proc.run(ctx)
    record = store.write(make_record(ctx, outcome), make_current=make_current)
    plots = outcome.plot(ctx.plots_dir / record.record_id) if outcome.plot is not None else {}
    facts = {"source": source.description}
    if record.meta.get("truth"):
        facts["simulator truth"] = record.meta["truth"]
    report = write_report(ctx.report_dir, record, plots, ctx.notes, facts)
    log.info("calibration done", extra={"kind": kind, "record_id": record.record_id, "passed": record.passed,
                                        "report": str(report)})
    return record, report, summary(record, report)

"""`thz calibrate beam|focus|snr|phase|fov|exposure --sim [--raw-source emulator|direct] [--out DIR]` and
`thz calibrate status`.

Each measurement prints its progress to stderr and, as the last stdout line, one JSON object of
the fitted values and pass/fail. Exit status (README "Exit codes"): 0 all items pass, 1 an item is out
of tolerance, 2 usage or configuration errors, 3 refused by the exposure pre-flight, 4 an unreadable
store, 5 no frames from the devices. `status` exits 0 when every item is current and in tolerance, else 1.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from calibration.store import KINDS
from thz.cli import EXIT_DEVICE, EXIT_NEGATIVE, EXIT_OK, EXIT_REFUSED, EXIT_USAGE, ThzError


def _store_path(obj, store: str | None) -> Path:
    return Path(store).expanduser() if store else obj.settings.calibration.store_dir


def _ask_on_terminal(message: str, scene: dict | None) -> None:
    """Show the placement instruction on stderr and wait for Enter (stdin; a script can pipe newlines)."""
    click.echo(f"\n>>> {message}", err=True)
    try:
        click.prompt("    press Enter when it is in place", default="", show_default=False, err=True)
    except click.exceptions.Abort as exc:  # Abort is a RuntimeError: it must not read as "no measurement"
        click.echo(err=True)  # end the prompt's line
        if isinstance(exc.__context__, EOFError):
            raise ThzError("stdin is closed: the technician's Enter after placing each target cannot be read; run "
                           "on a terminal, or pipe one newline per target", EXIT_USAGE) from None
        raise KeyboardInterrupt("interrupted while waiting for the target to be placed") from None


def _run(obj, kind: str, sim: bool, out: str | None, store: str | None, quick: bool, direct: bool) -> None:
    from calibration.fits.power_density import ExposureLimitError
    from calibration.runner import run_calibration
    from calibration.sources import open_source
    from calibration.store import CalibrationStore

    settings = obj.settings
    st = CalibrationStore(_store_path(obj, store))
    report_dir = Path(out) if out else st.root / "reports"
    if direct and not sim:
        raise ThzError("--raw-source direct measures the in-process virtual scanner: it needs --sim", EXIT_USAGE)
    if not sim and (sys.stdin is None or sys.stdin.closed):
        raise ThzError("stdin is closed: measuring the hardware asks the technician to place each target; run on "
                       "a terminal, or pipe one newline per target (or pass --sim for the virtual scanner)", EXIT_USAGE)
    # without --sim: the configured devices, opened and identified first (a missing port fails here, exit 5);
    # then the command asks the technician to place each target
    source = open_source(settings, sim=sim, direct=direct, ask=_ask_on_terminal)
    try:
        record, report, summ = run_calibration(kind, settings, source, st, report_dir, quick=quick)
    except ExposureLimitError as exc:
        click.echo(json.dumps({"kind": kind, "passed": False, "refused": str(exc)}))
        raise ThzError(str(exc), EXIT_REFUSED) from None
    except RuntimeError as exc:  # the daemon could not deliver frames (device absent, link lost for good)
        why = str(exc) or type(exc).__name__
        click.echo(json.dumps({"kind": kind, "passed": False, "error": why}))
        raise ThzError(f"thz calibrate {kind}: no measurement: {why}", EXIT_DEVICE) from None
    finally:
        source.close()
    click.echo(f"{kind}: {'PASS' if record.passed else 'FAIL'}  record {record.record_id}  report {report}", err=True)
    click.echo(json.dumps(summ))
    sys.exit(EXIT_OK if record.passed else EXIT_NEGATIVE)


@click.group()
def calibrate() -> None:
    """Calibrate the scanner: measure, fit, compare with the spec, store a record, write a report."""


def _measure_command(kind: str, help_text: str):
    @calibrate.command(kind, help=help_text)
    @click.option("--sim", is_flag=True, help="measure the virtual scanner (device emulators + daemon)")
    @click.option("--out", type=click.Path(file_okay=False), default=None,
                  help="report directory (default: <store>/reports)")
    @click.option("--store", type=click.Path(file_okay=False), default=None,
                  help="calibration store (default: calibration.store, else calibration/ in the data directory)")
    @click.option("--quick", is_flag=True, help="fewer points and frames (smoke runs); said in the record")
    @click.option("--raw-source", type=click.Choice(["emulator", "direct"]), default=None,
                  help="with --sim: the device emulators read by the acquisition daemon (emulator, the default), or "
                       "the virtual scanner in-process (direct); as `thz run --raw-source`")
    @click.option("--direct", is_flag=True, hidden=True, help="the old spelling of --raw-source direct")
    @click.pass_obj
    def cmd(obj, sim: bool, out: str | None, store: str | None, quick: bool, raw_source: str | None,
            direct: bool) -> None:
        if direct and raw_source == "emulator":
            raise click.UsageError("--direct is --raw-source direct: give one of them")
        _run(obj, kind, sim, out, store, quick, direct or raw_source == "direct")
    return cmd


_HELP = {
    "beam": "Spot size at the standoff: knife edges (erf, 10-90 % and 1/e^2) on both axes and a point target.",
    "focus": "Depth of focus: point-target spot at several ranges, w(z) fit (waist, position, Rayleigh range).",
    "snr": "SNR of a reference plate over the empty scene and the face dynamic range (dB of power).",
    "phase": "Bidirectional line lag at the operating amplitude (applied by the processor) and lag vs amplitude.",
    "fov": "Field of view and linearity from a grid target; updates the processor's feedback mapping.",
    "exposure": "Peak and frame-averaged power density and dwell per cm^2 vs the configured limits.",
}
for _k in KINDS:
    _measure_command(_k, _HELP[_k])


@calibrate.command("status")
@click.option("--store", type=click.Path(file_okay=False), default=None, help="calibration store directory")
@click.pass_obj
def status(obj, store: str | None) -> None:
    """What is current, what is stale, mismatched or out of tolerance; last line JSON; exit 1 unless all is ok."""
    from calibration.store import CalibrationStore

    s = obj.settings
    st = CalibrationStore(_store_path(obj, store))
    rows = st.status(s.scanner.scanner_id, s.calibration.max_age_days)  # CalibrationError: an unreadable store, 4
    proc = st.current_processing_id()
    for r in rows:
        mark = {"ok": "ok"}.get(r["state"], r["state"].upper())
        line = f"{r['kind']:9s} {mark:17s} {r['record_id'] or '-'}"
        if r.get("applied_by_processor"):
            line += "  (applied by the processor)"
        click.echo(line, err=True)
        for p in r.get("problems", []):
            click.echo(f"          - {p}", err=True)
    ok = all(r["state"] == "ok" for r in rows)
    click.echo(json.dumps({"scanner_id": s.scanner.scanner_id, "store": str(st.root), "processing_calibration": proc,
                           "all_ok": ok, "items": rows}))
    sys.exit(EXIT_OK if ok else EXIT_NEGATIVE)

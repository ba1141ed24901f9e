"""`thz dataset from-recordings`: a lab's HDF5 recordings + a label sheet -> a dataset `thz train` reads."""
from __future__ import annotations

import json
from pathlib import Path

import click

from thz.cli import EXIT_INPUT, EXIT_USAGE, ThzError


def _calibrations(ids: list[str], store: Path, uncalibrated: bool) -> dict:
    """Each calibration id the recordings name -> its ProcessingCalibration from the store (None: uncalibrated)."""
    if uncalibrated or not ids:
        return {i: None for i in ids}
    from calibration.store import CalibrationError, CalibrationStore

    st = CalibrationStore(store)
    out = {}
    for cid in ids:
        try:
            rec = st.load(cid)
        except CalibrationError as exc:
            raise ThzError(f"{exc}; the recordings were processed live with calibration {cid}: point --store at "
                           "the store that holds it, or pass --uncalibrated", EXIT_INPUT) from None
        out[cid] = rec.processing
    return out


@click.command("from-recordings")
@click.argument("recordings", nargs=-1, type=click.Path(dir_okay=False))
@click.option("--labels", "labels", type=click.Path(dir_okay=False), default=None,
              help="label sheet CSV: recording,frames,identity,posture,concealed,capture[,split] (blank labels are "
                   "taken from the frames' own meta)")
@click.option("--out", "out", required=True, type=click.Path(file_okay=False), help="dataset directory to write")
@click.option("--seed", type=int, default=0, show_default=True, help="seed of the split (the synthetic dataset's rule)")
@click.option("--bits", type=click.Choice(["8", "16"]), default="16", show_default=True, help="THz PNG bit depth")
@click.option("--store", type=click.Path(file_okay=False), default=None,
              help="calibration store holding the records the recordings name (default: calibration.store, else "
                   "calibration/ in the data directory)")
@click.option("--uncalibrated", is_flag=True, help="process without the calibration records the recordings name")
@click.option("--overwrite", is_flag=True, help="replace a dataset built from recordings in OUT before")
@click.option("--no-progress", is_flag=True, help="no progress bar")
@click.pass_obj
def from_recordings(obj, recordings: tuple[str, ...], labels: str | None, out: str, seed: int, bits: str,
                    store: str | None, uncalibrated: bool, overwrite: bool, no_progress: bool) -> None:
    """Process HDF5 RECORDINGS (`thz acquire`) with the live processor into THz ROIs with manifest.csv,
    dataset.json (every recording and the sheet with their sha256) and contact_sheet.png in OUT, the layout
    `thz train --data OUT` reads. Without --labels each recording is labelled by its frames' own meta
    (`thz acquire --sim --identity`). Prints a JSON summary as the last line."""
    from dataclasses import asdict

    from dataset.recordings import build_from_recordings, plan_from_recordings

    s = obj.settings
    if not recordings and labels is None:
        raise ThzError("nothing to read: give RECORDINGS, --labels SHEET, or both", EXIT_USAGE)
    plan = plan_from_recordings(list(recordings), labels, s, seed=seed)  # LabelSheetError / RecordingError: exit 4
    store_dir = Path(store).expanduser() if store else s.calibration.store_dir
    cals = _calibrations(plan.calibration_ids(), store_dir, uncalibrated)
    try:
        summary = build_from_recordings(out, plan, s, bits=int(bits), calibrations=cals, calibration_dir=store_dir,
                                        overwrite=overwrite, progress=not no_progress)
    except ValueError as exc:
        from thz.cli import error_for
        raise error_for(exc, EXIT_USAGE) from None
    click.echo(json.dumps(asdict(summary)))

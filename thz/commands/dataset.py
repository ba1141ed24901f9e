"""`thz sim dataset`: make the synthetic dataset (virtual scanner + live processor), resumable."""
from __future__ import annotations

import json
import os
from dataclasses import asdict

import click

from thz.commands.options import n_identities_option


@click.command("dataset")
@click.option("--out", "out", required=True, type=click.Path(file_okay=False), help="dataset directory")
@click.option("--small", is_flag=True, help="test size: 4 identities x 5 postures x 3 captures")
@click.option("--seed", type=int, default=None, help="seed of the captures: noise, jitter, placement "
              "(default: sim.seed of the config)")
@click.option("--population-seed", "population_seed", type=int, default=None,
              help="seed of the identities (default: sim.population_seed of the config)")
@n_identities_option("number of identities (default 20, small 4)")
@click.option("--captures", type=int, default=None, help="captures per identity and posture (default 7, small 3)")
@click.option("--postures", default=None, help="comma-separated subset of the postures (default: all five)")
@click.option("--bits", type=click.Choice(["8", "16"]), default="16", show_default=True, help="THz PNG bit depth")
@click.option("--paired-pose", is_flag=True, help="a capture's concealed and unconcealed scans share the pose")
@click.option("--export-reference", "export_reference", is_flag=True,
              help="also write the authors' layout and triplet CSVs under OUT/reference")
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="worker processes of the local Dask cluster (default: all cores)")
@click.option("--scheduler", default=None, metavar="ADDRESS",
              help="run on the Dask cluster whose scheduler is at ADDRESS (tcp://host:8786) instead of a local "
                   "one; its workers must run this commit and see OUT (docs/processing.md)")
@click.option("--no-progress", is_flag=True, help="no progress bar")
@click.pass_obj
def dataset(obj, out: str, small: bool, seed: int | None, population_seed: int | None, n_identities: int | None,
            captures: int | None, postures: str | None, bits: str, paired_pose: bool, export_reference: bool,
            workers: int | None, scheduler: str | None, no_progress: bool) -> None:
    """Make 20 identities x 5 postures x 7 captures x {concealed, unconcealed} THz ROIs plus 200 visible
    images, manifest.csv, dataset.json and contact_sheet.png in OUT, on a Dask cluster (local by default).
    A stopped or killed run continues where it stopped when started again with the same options; Ctrl-C
    exits 130. The same command with a larger --identities grows a finished or partial build to the
    bytes a fresh build of that size would have. Prints a JSON summary as the last line."""
    from dataset.errors import BadSchedulerAddress, BuildInterrupted
    from dataset.synth import DatasetPlan, make_dataset
    from thz.cli import EXIT_INTERRUPTED

    s = obj.settings
    kw = {"seed": s.sim.seed if seed is None else seed,
          "population_seed": s.sim.population_seed if population_seed is None else population_seed,
          "bits": int(bits), "paired_pose": paired_pose}
    if n_identities is not None:
        kw["n_identities"] = n_identities
    if captures is not None:
        kw["captures"] = captures
    if postures:
        kw["postures"] = tuple(p.strip() for p in postures.split(",") if p.strip())
    try:
        plan = DatasetPlan.small(**kw) if small else DatasetPlan(**{"n_identities": s.sim.n_identities, **kw})
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    n_workers = workers if workers is not None else (os.cpu_count() or 1)
    try:
        summary = make_dataset(out, plan, s, workers=n_workers, progress=not no_progress, scheduler=scheduler)
    except BadSchedulerAddress as exc:
        raise click.BadParameter(str(exc), param_hint="--scheduler") from None
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    except BuildInterrupted as exc:
        click.echo(str(exc), err=True)
        raise SystemExit(EXIT_INTERRUPTED) from None
    result = asdict(summary)
    if export_reference:
        from dataset.reference_layout import export_reference as export
        ref = export(out, os.path.join(out, "reference"), seed=plan.seed)
        result["reference"] = ref
    result.pop("errors", None)
    click.echo(json.dumps(result, default=str))
    if summary.failed:
        raise click.ClickException(f"{summary.failed} images failed (first: {summary.errors[0]}); "
                                   "run the same command again to retry them")


@click.command("import-reference")
@click.option("--thz", "thz_dir", required=True, type=click.Path(file_okay=False, exists=True),
              help="THz images in the authors' layout: <id>/<unit>/<id>_<b|n><k><b|n>_<sample>.png")
@click.option("--visible", "visible_dir", type=click.Path(file_okay=False, exists=True), default=None,
              help="visible images in the same layout (optional)")
@click.option("--csv-dir", "csv_dir", type=click.Path(file_okay=False, exists=True), default=None,
              help="folder of {train,val,test}_dataset.csv giving the splits (optional)")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="dataset directory to write")
@click.option("--seed", type=int, default=0, show_default=True, help="seed of the split of files no CSV names")
def import_reference_cmd(thz_dir: str, visible_dir: str | None, csv_dir: str | None, out: str, seed: int) -> None:
    """Copy a dataset kept in the authors' layout into OUT with a manifest.csv (a lab's real data)."""
    from thzcore.manifest import ManifestError
    from dataset.reference_layout import import_reference

    try:
        summary = import_reference(thz_dir, out, visible_dir, csv_dir, seed)
    except ManifestError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(json.dumps(summary))

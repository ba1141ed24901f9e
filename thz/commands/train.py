"""Click commands `thz train`, `thz evaluate`, `thz baselines`, `thz export` (registered lazily by thz/cli.py).

Each prints its result as ONE JSON object on the last stdout line; logs and progress go to stderr.
"""
from __future__ import annotations

import json
from pathlib import Path
import warnings

import click

from thz.cli import EXIT_INPUT, EXIT_NEGATIVE, EXIT_USAGE, ThzError, error_for


def _echo_json(obj: dict) -> None:
    click.echo(json.dumps(obj, default=float))


def _fail(exc: Exception) -> ThzError:
    """A missing file is an unusable input (4), a parity check that failed a negative answer (1), a value the
    options or the data refuse a usage error (2), unless the CLI's table names the error (a bad manifest: 4)."""
    if isinstance(exc, FileNotFoundError):
        return error_for(exc, EXIT_INPUT)
    if type(exc).__name__ == "ParityError":
        return error_for(exc, EXIT_NEGATIVE)
    return error_for(exc, EXIT_USAGE)


def _training_config(obj, **overrides):
    cfg = obj.settings.training if obj is not None else None
    if cfg is None:
        from training.config import TrainingConfig
        cfg = TrainingConfig()
    data = cfg.model_dump()
    data.update({k: v for k, v in overrides.items() if v is not None})
    from pydantic import ValidationError

    from training.config import TrainingConfig
    try:
        return TrainingConfig.model_validate(data)
    except ValidationError as exc:
        raise click.BadParameter(str(exc)) from None


@click.command()
@click.option("--model", "kind", type=click.Choice(["a", "b"]), required=True,
              help="a = multi-task THz network; b = visible teacher distilled into the THz student")
@click.option("--data", "data_dir", type=click.Path(file_okay=False, exists=True), required=True,
              help="dataset directory with manifest.csv (thz sim dataset --out DIR)")
@click.option("--preset", type=click.Choice(["compact", "paper"]), default=None,
              help="network widths (default: training.preset)")
@click.option("--epochs", type=int, default=None, help="maximum epochs (default: training.epochs)")
@click.option("--seed", type=int, default=None, help="seed (default: training.seed)")
@click.option("--threads", type=int, default=None, help="torch threads (default: training.num_threads)")
@click.option("--holdout-identities", "holdout", type=int, default=None,
              help="keep the K highest identity ids out of training (identity-disjoint evaluation)")
@click.option("--out", "out", type=click.Path(file_okay=False), required=True, help="run directory")
@click.option("--resume", is_flag=True, help="continue the run in --out from its last checkpoint")
@click.option("--progress/--no-progress", default=True, help="tqdm progress bar on stderr")
@click.pass_obj
def train(obj, kind: str, data_dir: str, preset, epochs, seed, threads, holdout, out: str, resume: bool,
          progress: bool) -> None:
    """Train Model A or Model B; write checkpoints, metrics.csv and loss_curve.png into --out."""
    from training.trainer import train as run_train
    cfg = _training_config(obj, preset=preset, epochs=epochs, seed=seed, num_threads=threads,
                           holdout_identities=holdout)
    try:
        summary = run_train(data_dir, out, kind, cfg, resume=resume, progress=progress)
    except (FileExistsError, ValueError) as exc:
        raise _fail(exc) from None
    _echo_json(summary)


def _run_or_bundle(ctx, param, value: str | None) -> str | None:
    """A run or bundle directory, or the name of a shipped bundle (`models/compact`, `compact`)."""
    if value is None:
        return None
    from inference.bundle import resolve_bundle_path
    p = resolve_bundle_path(value)
    if not p.is_dir():
        raise click.BadParameter(f"{value!r} is neither a directory nor a shipped bundle (models/compact)")
    return str(p)


@click.command()
@click.argument("source", callback=_run_or_bundle)
@click.option("--data", "data_dir", type=click.Path(file_okay=False, exists=True), required=True,
              help="dataset directory with manifest.csv")
@click.option("--split", type=click.Choice(["test", "val", "train", "heldout", "all"]), default=None,
              help="[default: test] heldout = the identities a run kept out of training (identity-disjoint)")
@click.option("--protocol", type=click.Choice(["paper", "heldout", "openset"]), default=None,
              help="paper = test split of the training data; heldout = new captures of the training people; "
                   "openset = new people, new captures; checked against the seeds of the data and of the model's "
                   "training data (exit 2 when they do not fit); sets the split")
@click.option("--fusion", "fusion_spec", default=None, metavar="N[,N...]",
              help="also verify with N consecutive scans fused (e.g. 3 or 1,3,5; the live N is "
                   "inference.fusion_scans)")
@click.option("--fusion-weight", type=click.Choice(["roi_quality", "uniform"]), default="roi_quality",
              show_default=True, help="weights of the fused scans: the face locator's ROI quality, or equal")
@click.option("--other", callback=_run_or_bundle, default=None,
              help="a second run or bundle (e.g. Model A beside Model B) for the reconstruction panel")
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="report directory (default: RUN/eval_<split>, or evaluations/eval_<model_id>_<split> in the data "
                   "directory for a bundle)")
@click.option("--threads", type=int, default=2, show_default=True)
@click.option("--identities", "identity_spec", default=None, metavar="LIST",
              help="only these identities, e.g. 80-99 or 0,3,5-7 (a set no compared model trained on)")
@click.option("--baselines", is_flag=True,
              help="also the classical baselines (pixel cosine, NCC, SSIM, PCA, Fisherfaces) on the same protocols")
@click.option("--fit-data", "fit_dir", type=click.Path(file_okay=False, exists=True), default=None,
              help="fit PCA / LDA / posture NN, and the network's S-normalisation cohort, on this dataset's "
                   "train split (default: the evaluated dataset's train split minus the evaluated images)")
@click.option("--progress/--no-progress", default=True, help="progress bars on stderr")
@click.pass_obj
def evaluate(obj, source: str, data_dir: str, split: str | None, protocol: str | None, fusion_spec: str | None,
             fusion_weight: str, other, out, threads: int, identity_spec: str | None, baselines: bool, fit_dir,
             progress: bool) -> None:
    """Evaluate a run directory (torch) or a model bundle (ONNX Runtime) on a dataset split or protocol."""
    from training.evaluate import evaluate as run_eval
    if split is not None and protocol is not None:
        raise click.BadParameter("--protocol sets the split: give --split or --protocol, not both",
                                 param_hint="--split")
    try:
        result = run_eval(source, data_dir, split or "test", out, other, threads, _identities(identity_spec),
                          baselines, fit_dir, progress, protocol=protocol, fusion=_fusion(fusion_spec),
                          weight=fusion_weight, reports_root=_evaluations(obj))
    except (FileNotFoundError, ValueError) as exc:
        raise _fail(exc) from None   # a ProtocolError (the data does not fit the protocol): exit 2
    _echo_json(result)


def _evaluations(obj) -> Path:
    """`evaluations/` of the data directory in force ($THZ_DATA_DIR, the config's data_dir, the user's)."""
    from thzcore.datadirs import EVALUATIONS, data_path
    configured = getattr(getattr(obj, "settings", None), "data_dir", None) or None
    return data_path(EVALUATIONS, configured)


def _fusion(spec: str | None) -> tuple[int, ...]:
    if spec is None:
        return ()
    try:
        ns = tuple(sorted({int(v) for v in spec.split(",") if v.strip()}))
    except ValueError:
        ns = ()
    if not ns or min(ns) < 1 or max(ns) > 64:
        raise click.BadParameter(f"{spec!r}: give scan counts from 1 to 64, e.g. 3 or 1,3,5", param_hint="--fusion")
    return ns


def _identities(spec: str | None) -> list[int] | None:
    from thzcore.labels import parse_identity_list
    if spec is None:
        return None
    try:
        return parse_identity_list(spec)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--identities") from None


@click.command()
@click.option("--data", "data_dir", type=click.Path(file_okay=False, exists=True), required=True,
              help="dataset directory with manifest.csv")
@click.option("--split", type=click.Choice(["test", "val", "train", "all"]), default="test", show_default=True)
@click.option("--identities", "identity_spec", default=None, metavar="LIST",
              help="only these identities, e.g. 80-99 or 0,3,5-7")
@click.option("--fit-data", "fit_dir", type=click.Path(file_okay=False, exists=True), default=None,
              help="fit PCA / LDA / posture NN on this dataset's train split (e.g. other people; default: the "
                   "train split of --data minus the evaluated images)")
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="report directory (default: evaluations/baselines_<manifest hash>_<split> in the data directory)")
@click.option("--progress/--no-progress", default=True, help="progress bars on stderr")
@click.pass_obj
def baselines(obj, data_dir: str, split: str, identity_spec: str | None, fit_dir, out, progress: bool) -> None:
    """How hard is a dataset? Classical template matching on the protocols of `thz evaluate`, no network.

    Prints the Markdown tables, then the JSON summary as the last line; writes report.md and metrics.json.
    """
    from training.baselines import evaluate_baselines, summary
    try:
        result, text = evaluate_baselines(data_dir, split, out, _identities(identity_spec), fit_dir, progress,
                                          reports_root=_evaluations(obj))
    except (FileNotFoundError, ValueError) as exc:
        raise _fail(exc) from None
    click.echo(text)
    _echo_json({k: v for k, v in result.items() if k != "baselines"} | summary(result["baselines"]))


@click.command()
@click.argument("run", callback=_run_or_bundle)
@click.option("--out", type=click.Path(file_okay=False), default=None, help="bundle directory (required unless "
              "--posture-threshold)")
@click.option("--data", "data_dir", type=click.Path(file_okay=False, exists=True), default=None,
              help="dataset for threshold calibration (val) and metrics (test); default: the run's dataset")
@click.option("--posture-threshold", is_flag=True,
              help="RUN is a bundle exported before posture-template verification: calibrate its "
                   "posture_template_threshold on --data's val split and rewrite its manifest (the model unchanged)")
@click.option("--score-norm", is_flag=True,
              help="RUN is a bundle exported before score normalisation: give it a cohort (the train split of --data's "
                   "training identities) and its S-norm threshold (val), rewriting it in place (the model unchanged)")
def export(run: str, out: str | None, data_dir, posture_threshold: bool, score_norm: bool) -> None:
    """Export RUN's student to ONNX with a manifest (thresholds calibrated on val, parity checked)."""
    from training.export import ParityError, add_posture_threshold, add_score_norm, export_bundle
    warnings.filterwarnings("ignore", module="torch.onnx")
    for flag, given in (("--posture-threshold", posture_threshold), ("--score-norm", score_norm)):
        if given and (out is not None or data_dir is None):
            raise click.BadParameter(f"{flag} rewrites the bundle RUN in place: give --data DIR, not --out",
                                     param_hint=flag)
    if not (posture_threshold or score_norm) and out is None:
        raise click.BadParameter("give --out BUNDLE", param_hint="--out")
    try:
        if posture_threshold or score_norm:
            result = add_posture_threshold(run, data_dir) if posture_threshold else {}
            result |= add_score_norm(run, data_dir) if score_norm else {}
        else:
            result = export_bundle(run, out, data_dir)
    except (FileNotFoundError, ValueError, ParityError) as exc:
        raise _fail(exc) from None
    _echo_json(result)

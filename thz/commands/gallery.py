"""`thz gallery list | remove | audit`: look after the enrolment gallery.

Who is enrolled (templates per posture for the current model, and templates a previous model made
that no longer match), erasing a subject (or every template of other models) from the database and
its write-ahead log, and the audit trail of decisions. Human-readable lines go to stderr; the last
stdout line is JSON. None of them creates a gallery that is not there.
"""
from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import click

from thz.cli import EXIT_INPUT, ThzError


def _when(ts: float | None) -> str:
    return "-" if ts is None else dt.datetime.fromtimestamp(ts, dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")


def _open(obj, gallery: str | None, bundle: str | None, need_model: bool):
    """The existing gallery file, opened for the bundle's model id (or without one where none is needed)."""
    from inference.bundle import BundleError, load_bundle
    from inference.gallery import Gallery, GalleryCorruptError

    s = obj.settings if obj is not None else __import__("pipeline.settings", fromlist=["Settings"]).Settings()
    path = Path(gallery).expanduser() if gallery else s.inference.gallery_path
    if path.is_dir():
        raise GalleryCorruptError(f"gallery {path} is a directory; give the path of a gallery file")
    if not path.is_file():
        raise ThzError(f"no gallery at {path} (set inference.gallery or pass --gallery)", EXIT_INPUT)
    model_id, size = "", 128
    try:
        b = load_bundle(bundle or s.inference.bundle)
        model_id, size = b.model_id, b.manifest.embedding_size
    except BundleError as exc:
        if need_model:
            raise ThzError(f"the current model is needed to tell matching templates from stale ones: {exc}",
                           EXIT_INPUT) from None
    return Gallery(path, model_id, size)  # a GalleryError goes to the CLI's table (damaged or foreign file: 4)


def _common(f):
    f = click.option("--bundle", default=None, help="model bundle: the current model (default: inference.bundle)")(f)
    return click.option("--gallery", default=None, help="gallery SQLite file (default: inference.gallery, else gallery.sqlite in the data directory)")(f)


@click.group("gallery")
def gallery() -> None:
    """The enrolment gallery: who is enrolled, erase a subject, the audit trail."""


@gallery.command("list")
@_common
@click.pass_obj
def list_cmd(obj, gallery, bundle):
    """Enrolled subjects: templates per posture for the current model, and stale ones of other models."""
    from thzcore.labels import POSTURES

    with _open(obj, gallery, bundle, need_model=True) as g:
        rows, model_id, path = g.summary(), g.model_id, g.path
    click.echo(f"gallery {path}, current model {model_id}: {len(rows)} subjects", err=True)
    w = {p: len(p) + 2 for p in POSTURES}
    click.echo(f"{'subject':<20}{'created':>22}" + "".join(f"{p:>{w[p]}}" for p in POSTURES)
               + f"{'stale':>7}", err=True)
    for r in rows:
        click.echo(f"{r['subject']:<20}{_when(r['created']):>22}"
                   + "".join(f"{r['postures'].get(p, 0):>{w[p]}}" for p in POSTURES) + f"{r['other_models']:>7}",
                   err=True)
    stale = [r["subject"] for r in rows if not r["postures"]]
    if stale:
        click.echo(f"{len(stale)} subject(s) have no template of the current model and cannot be matched: re-enrol "
                   "them with `thz enroll`, or erase the old templates with `thz gallery remove --stale`", err=True)
    click.echo(json.dumps({"gallery": str(path), "model_id": model_id, "subjects": rows}))


@gallery.command("remove")
@click.argument("subjects", nargs=-1)
@click.option("--stale", is_flag=True, help="erase every template made with another model than the current one")
@click.option("--yes", is_flag=True, help="do not ask for confirmation")
@_common
@click.pass_obj
def remove_cmd(obj, subjects, stale, yes, gallery, bundle):
    """Erase SUBJECTS (all their templates, any model) or, with --stale, other models' templates.

    The bytes are overwritten in the database and its write-ahead log; the audit trail keeps a
    `remove` row per subject (ids and times, no biometric data).
    """
    if bool(subjects) == stale:
        raise click.UsageError("name the subjects to erase, or give --stale (not both)")
    with _open(obj, gallery, bundle, need_model=stale) as g:
        if not yes:
            what = "every template of models other than " + g.model_id if stale else ", ".join(subjects)
            click.confirm(f"erase {what} from {g.path}?", abort=True, err=True)
        # not enrolled: the CLI's table (2)
        erased = g.remove_stale(source="thz gallery remove --stale") if stale else {
            s: g.remove(s, source="thz gallery remove") for s in subjects}
    for s, n in erased.items():
        click.echo(f"erased {s}: {n} template(s)", err=True)
    click.echo(json.dumps({"erased": erased}))


@gallery.command("audit")
@click.option("--limit", type=click.IntRange(1), default=50, show_default=True, help="newest decisions to show")
@_common
@click.pass_obj
def audit_cmd(obj, limit, gallery, bundle):
    """The newest decisions (enrol, verify, identify, remove), newest first; never an embedding."""
    with _open(obj, gallery, bundle, need_model=False) as g:
        rows = g.audit_log(limit)
    click.echo(f"{'time (UTC)':<22}{'kind':<10}{'frame':>7}  {'claim':<14}{'subject':<14}{'distance':>9}"
               f"{'threshold':>10}  decision  source", err=True)
    for r in rows:
        dist = "-" if r["distance"] is None else f"{r['distance']:.4f}"
        thr = "-" if r["threshold"] is None else f"{r['threshold']:.4f}"
        dec = {None: "-", 1: "accept", 0: "reject"}[r["accepted"]]
        click.echo(f"{_when(r['ts']):<22}{r['kind']:<10}{r['frame_id'] if r['frame_id'] is not None else '-':>7}  "
                   f"{r['claim'] or '-':<14}{r['subject'] or '-':<14}{dist:>9}{thr:>10}  {dec:<8}  {r['source']}",
                   err=True)
    click.echo(json.dumps({"decisions": rows}))

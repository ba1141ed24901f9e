"""`thz bench sim`: the virtual scanner's speed (per frame, split) and a small dataset build, against the targets.

Ends with the two lines other tools parse: `ms_per_frame: <N>` (CPU ms per frame, median, one core) and
`rois_per_cpu_s: <N>` (THz ROIs of `thz sim dataset` per CPU-second). `--baseline TREE` also measures another
checkout (e.g. a `git worktree` of the last v1 commit) in the same sitting, back to back, and prints the
speed-up; `--tree TREE` measures that checkout instead of this one.
"""
from __future__ import annotations

import json
from pathlib import Path

import click

from thz.cli import EXIT_USAGE, ThzError
from thz.commands.options import n_identities_option


@click.command("sim")
@click.option("--frames", default=12, show_default=True, type=click.IntRange(3, 500), help="frames timed")
@n_identities_option("identities of the small dataset build (x 5 postures x captures x 2)", default=2,
                     type=click.IntRange(2, 20))
@click.option("--captures", default=2, show_default=True, type=click.IntRange(2, 7), help="captures per posture")
@click.option("--baseline", "baseline", type=click.Path(file_okay=False, exists=True), default=None,
              help="another tree (e.g. `git worktree add /work/v1 d2b679f`) measured right before this one")
@click.option("--tree", "tree", type=click.Path(file_okay=False, exists=True), default=None,
              help="measure this tree instead of the installed one")
@click.option("--json-out", "json_out", is_flag=True, help="also print the figures as one JSON line")
def bench_sim(frames: int, n_identities: int, captures: int, baseline: str | None, tree: str | None,
              json_out: bool) -> None:
    """Time the virtual scanner and `thz sim dataset` on this machine (defaults, one core)."""
    from pipeline import bench

    here = Path(tree) if tree else Path(bench.__file__).resolve().parents[1]
    try:
        base = bench.run_tree(baseline, frames, n_identities, captures) if baseline else None
        mine = bench.run_tree(here, frames, n_identities, captures)
    except (RuntimeError, ValueError) as exc:
        raise ThzError(f"--baseline/--tree: {exc}", EXIT_USAGE) from None
    click.echo(f"tree {mine['tree']} ({mine.get('commit') or '?'})"
               + (f"; baseline {base['tree']} ({base.get('commit') or '?'})" if base else "")
               + "; defaults, one thread, CPU time (time.process_time) medians")
    for line in bench.table(mine, base):
        click.echo(line)
    click.echo(f"dataset build: {mine['rois']} THz ROIs ({mine['faces_found']} with a face) + {mine['visible']} visible in {mine['build_cpu_s']:.1f} CPU s "
               f"({mine['build_wall_s']:.1f} s wall), worker start {mine['worker_start_cpu_s']:.2f} CPU s")
    if json_out:
        click.echo(json.dumps({"tree": mine, "baseline": base}))
    click.echo(f"ms_per_frame: {mine['frame_cpu_ms']:.2f}")
    click.echo(f"rois_per_cpu_s: {mine['rois_per_cpu_s']:.2f}")

"""`thz bench gallery`: 1:N identification at 100 to 1 000 000 templates, beside the bare matrix-vector product.

For each size a temporary SQLite gallery is filled with seeded unit embeddings (`--per-subject` templates a
subject, through `Gallery.enroll_many`) and read back through the gallery's own API, then these are timed in
turn within every repeat, so they share the machine's load:

- the limit: one bare float32 matrix-vector product of the same size (`np.matmul(matrix, e, out=...)`),
  BLAS at `inference.identify_threads` (the search's own thread count), timed alone inside the limit;
- the NumPy path: `matching.identify` over a `TemplateMatrix` (product, per-subject maximum, top k);
- the faiss path: the same through an exact inner-product faiss index (IndexFlatIP), when faiss-cpu is here;
- `Gallery.identify`, the configured backend through the gallery's API (cache check, search, audit row);
- one more enrolment and the search after it (the index gains the template in memory, TemplateMatrix.with_rows,
  beside `load+index s`, what reading the file and building the index costs);
- after those, apart: the bare product at the BLAS library's default thread count (what an unlimited search
  would run; its worker threads, left spinning, would slow the row after it down).

Every probe's candidates are compared between the two paths. Memory: the bytes each template costs in
the search index (float32 matrix and subject index, exact) and the growth of the resident set when the
gallery builds its index (measured). Last line: `ms_per_identify: N`, the median `Gallery.identify` at
the largest size asked for.
"""
from __future__ import annotations

import gc
import json
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import click
import numpy as np

EMBEDDING = 128


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _entries(n: int, per_subject: int, rng: np.random.Generator) -> Iterator[tuple[str, np.ndarray, str]]:
    """Seeded unit embeddings, `per_subject` templates per subject (the last subject gets the remainder)."""
    for i, start in enumerate(range(0, n, per_subject)):
        t = rng.standard_normal((min(per_subject, n - start), EMBEDDING), dtype=np.float32)
        yield f"s{i:07d}", t / np.linalg.norm(t, axis=1, keepdims=True), "front-center"


def _probes(matrix: np.ndarray, rng: np.random.Generator, count: int = 8) -> list[np.ndarray]:
    """Half near an enrolled template (a genuine search), half random (nobody enrolled)."""
    out = []
    for i in range(count):
        p = (matrix[int(rng.integers(matrix.shape[0]))] + 0.05 * rng.standard_normal(EMBEDDING) if i % 2 == 0
             else rng.standard_normal(EMBEDDING))
        out.append((p / np.linalg.norm(p)).astype(np.float32))
    return out


def _round_robin(fns: dict[str, Callable[[np.ndarray], float]], probes: list[np.ndarray],
                 repeats: int) -> dict[str, np.ndarray]:
    """ms of each function, called in turn with the same probe within every repeat; each returns its own time."""
    for f in fns.values():
        for p in probes[:3]:
            f(p)
    t = {k: np.empty(repeats) for k in fns}
    for i in range(repeats):
        p = probes[i % len(probes)]
        for k, f in fns.items():
            t[k][i] = f(p) * 1e3
    return t


def _timed(f: Callable[[np.ndarray], object]) -> Callable[[np.ndarray], float]:
    def run(p: np.ndarray) -> float:
        t0 = time.perf_counter()
        f(p)
        return time.perf_counter() - t0
    return run


def bench_size(n: int, per_subject: int, repeats: int, top_k: int, threads: int, faiss_min: int | None,
               have_faiss: bool, seed: int, root: Path) -> dict:
    from inference.gallery import Gallery
    from inference.matching import TemplateMatrix, _blas_threads, identify

    rng = np.random.default_rng(seed)
    path = root / f"gallery-{n}.sqlite"
    t0 = time.perf_counter()
    with Gallery(path, "bench-model", EMBEDDING) as g:
        g.enroll_many(_entries(n, per_subject, rng), source="bench")
    enrol_s = time.perf_counter() - t0
    g = Gallery(path, "bench-model", EMBEDDING, faiss_min_templates=faiss_min, search_threads=threads)
    try:
        gc.collect()
        rss0 = _rss()
        t0 = time.perf_counter()
        g.identify(np.eye(1, EMBEDDING, dtype=np.float32)[0], 0.5, top_k)    # reads the file, builds the index
        build_s = time.perf_counter() - t0
        gc.collect()
        rss_per_template = (_rss() - rss0) / n
        cache, index = g.current_gallery()[0], g.search_index()
        index_bytes = index.matrix.nbytes + index.starts.nbytes
        probes = _probes(index.matrix, rng)
        numpy_index = index if index.backend == "numpy" else TemplateMatrix(cache, threads=threads)
        faiss_index = None
        if have_faiss:
            faiss_index = index if index.backend == "faiss" else TemplateMatrix(cache, faiss_min_templates=1,
                                                                                 threads=threads)
        m = numpy_index.matrix
        out = np.empty(m.shape[0], np.float32)

        def limit(p: np.ndarray) -> float:
            with _blas_threads(threads, m.size):
                t0 = time.perf_counter()
                np.matmul(m, p, out=out)
                return time.perf_counter() - t0

        fns: dict[str, Callable[[np.ndarray], float]] = {
            "limit": limit,
            "numpy": _timed(lambda p: identify(p, numpy_index, 0.5, top_k)),
        }
        if faiss_index is not None:
            fns["faiss"] = _timed(lambda p: identify(p, faiss_index, 0.5, top_k))
        fns["Gallery.identify"] = _timed(lambda p: g.identify(p, 0.5, top_k))
        t = _round_robin(fns, probes, repeats)
        # apart, after the rest: BLAS worker threads left spinning would slow the next row down
        t.update(_round_robin({"matvec, BLAS default threads": _timed(lambda p: np.matmul(m, p, out=out))},
                              probes, repeats))
        same = None
        if faiss_index is not None:
            same = all([s for s, _ in identify(p, numpy_index, 0.5, top_k).candidates]
                       == [s for s, _ in identify(p, faiss_index, 0.5, top_k).candidates] for p in probes)
        # one more enrolment and the search after it: the index gains the template in memory (with_rows),
        # where it was rebuilt from the whole file before (load+index s)
        t0 = time.perf_counter()
        g.enroll("zz-new-subject", probes[0], "front-center", source="bench")
        g.identify(probes[0], 0.5, top_k)
        enrol_one_s = time.perf_counter() - t0
        lim = float(np.median(t["limit"]))
        rows = [{"path": k, "median_ms": float(np.median(v)), "p99_ms": float(np.percentile(v, 99)),
                 "min_ms": float(v.min()), "vs_limit": float(np.median(v)) / lim} for k, v in t.items()]
        return {"templates": n, "subjects": len(index), "per_subject": per_subject, "backend": index.backend,
                "threads": threads, "enrol_s": enrol_s, "load_and_index_s": build_s,
                "enrol_one_and_search_s": enrol_one_s,
                "index_bytes_per_template": index_bytes / n, "rss_bytes_per_template": rss_per_template,
                "faiss_equals_numpy": same, "limit_median_ms": lim, "rows": rows}
    finally:
        g.close()
        path.unlink(missing_ok=True)
        for extra in ("-wal", "-shm"):
            Path(f"{path}{extra}").unlink(missing_ok=True)


@click.command("gallery")
@click.option("--templates", default="100,10000,100000,1000000", show_default=True,
              help="gallery sizes (templates), comma-separated")
@click.option("--per-subject", type=click.IntRange(1, 1000), default=10, show_default=True,
              help="templates per subject (postures x scans)")
@click.option("--repeats", type=click.IntRange(5, 10_000), default=40, show_default=True)
@click.option("--top-k", type=click.IntRange(1, 100), default=None, help="candidates (default: inference.top_k)")
@click.option("--seed", type=int, default=0, show_default=True)
@click.pass_obj
def bench_gallery(obj, templates, per_subject, repeats, top_k, seed):
    """1:N identify latency by gallery size, beside the bare matvec limit; last line `ms_per_identify: N`."""
    import importlib.util

    from inference.matching import _blas_controller

    try:
        sizes = [int(x) for x in templates.split(",")]
    except ValueError:
        raise click.BadParameter(f"{templates!r}: give template counts like 100,10000",
                                 param_hint="--templates") from None
    if not sizes or min(sizes) < 1 or max(sizes) > 10_000_000:
        raise click.BadParameter("each size must be 1 to 10 000 000 templates", param_hint="--templates")
    s = obj.settings if obj is not None else __import__("pipeline.settings", fromlist=["Settings"]).Settings()
    cfg = s.inference
    top_k = top_k or cfg.top_k
    have_faiss = importlib.util.find_spec("faiss") is not None
    results = []
    with tempfile.TemporaryDirectory(prefix="thz-bench-gallery-") as tmp:
        for n in sizes:
            results.append(bench_size(n, per_subject, repeats, top_k, cfg.identify_threads, cfg.faiss_min_templates,
                                      have_faiss, seed, Path(tmp)))
    blas = ", ".join(f"{i['internal_api']} {i['version']} ({i['num_threads']} threads)" for i in _blas_controller().info())
    click.echo(f"1:N identify, top {top_k}, {per_subject} templates per subject, {repeats} repeats, float32 "
               f"{EMBEDDING}-d; search threads {cfg.identify_threads} (inference.identify_threads); BLAS {blas}; "
               f"faiss {'present' if have_faiss else 'not installed'}; load average "
               f"{os.getloadavg()[0]:.1f}")
    click.echo("limit = one bare float32 matvec of the same size at the search's thread count, same run")
    click.echo(f"{'templates':>10} {'path':<30}{'median ms':>11}{'p99 ms':>10}{'min ms':>10}{'vs limit':>10}")
    for r in results:
        for row in r["rows"]:
            click.echo(f"{r['templates']:>10} {row['path']:<30}{row['median_ms']:>11.3f}{row['p99_ms']:>10.3f}"
                       f"{row['min_ms']:>10.3f}{row['vs_limit']:>9.2f}x")
    click.echo(f"{'templates':>10}{'backend':>9}{'enrol s':>9}{'load+index s':>14}{'+1 enrol, search s':>20}"
               f"{'index B/tpl':>13}{'RSS B/tpl':>11}  faiss == numpy")
    for r in results:
        same = "-" if r["faiss_equals_numpy"] is None else ("yes" if r["faiss_equals_numpy"] else "NO")
        click.echo(f"{r['templates']:>10}{r['backend']:>9}{r['enrol_s']:>9.2f}{r['load_and_index_s']:>14.3f}"
                   f"{r['enrol_one_and_search_s']:>20.3f}{r['index_bytes_per_template']:>13.1f}{r['rss_bytes_per_template']:>11.1f}  {same}")
    faster = [r["templates"] for r in results
              if {"numpy", "faiss"} <= {x["path"] for x in r["rows"]}
              and _median(r, "faiss") < _median(r, "numpy")]
    click.echo("faiss faster than numpy (median) at: " + (", ".join(map(str, faster)) or "none of these sizes"))
    click.echo(json.dumps({"top_k": top_k, "threads": cfg.identify_threads, "faiss_min_templates":
                           cfg.faiss_min_templates, "results": results}))
    click.echo(f"ms_per_identify: {_median(results[-1], 'Gallery.identify'):.3f}")


def _median(result: dict, path: str) -> float:
    return next(x["median_ms"] for x in result["rows"] if x["path"] == path)

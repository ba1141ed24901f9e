"""`thz bench inference`: engine latency per ROI at batch 1 and small batches; threads 1 vs 2, spinning on/off.

Each row times `engine.infer` on seeded ROIs after a warm-up: median and p99 per call, ms per ROI,
ROIs per second, and the minimum (the cost without contention: on a shared 2-core machine the
median mostly measures the neighbours). A second table (ONNX Runtime) compares the reconstruction
routes at batch 1 with their MACs per ROI and the routed path's limit measured in the same run. `--load` runs a CPU-bound NumPy process beside the engine (as the Numba
processing stage does in `thz run`), which is where worker spinning hurts. The last line is
`ms_per_roi: N` for the configured engine at batch 1 (verification + posture, plus the
reconstruction when inference.reconstruction is on).
"""
from __future__ import annotations

import json
import multiprocessing as mp
import sys
import time

import click

from thz.cli import EXIT_DEVICE, EXIT_INPUT, EXIT_INTERNAL, EXIT_NEGATIVE, ThzError
import numpy as np


def _busy(stop_at: float) -> None:
    """CPU load standing in for the processing stage: FFTs and reductions in a loop."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 512, 128)).astype(np.float32)
    while time.time() < stop_at:
        np.abs(np.fft.rfft(x[:16], axis=-1)).sum()


def time_engine(engine, batch: int, reconstruction: bool, repeats: int, rng: np.random.Generator) -> dict:
    n = engine.bundle.input_size
    rois = rng.random((batch, n, n), dtype=np.float32)
    for _ in range(max(3, repeats // 10)):
        engine.infer(rois, reconstruction=reconstruction)
    t = np.empty(repeats)
    for i in range(repeats):
        t0 = time.perf_counter()
        engine.infer(rois, reconstruction=reconstruction)
        t[i] = time.perf_counter() - t0
    ms = t * 1e3
    return {"batch": batch, "median_ms": float(np.median(ms)), "p99_ms": float(np.percentile(ms, 99)),
            "min_ms": float(np.min(ms)),
            "ms_per_roi": float(np.median(ms) / batch), "rois_per_s": float(batch / np.median(t))}


def _timed_round_robin(fns: dict, repeats: int) -> dict[str, np.ndarray]:
    """Per-call times (ms) of each function, called in turn within every repeat so they share the load."""
    for f in fns.values():
        for _ in range(max(3, repeats // 10)):
            f()
    t = {k: np.empty(repeats) for k in fns}
    for i in range(repeats):
        for k, f in fns.items():
            t0 = time.perf_counter()
            f()
            t[k][i] = (time.perf_counter() - t0) * 1e3
    return t


def routing_rows(bundle, cfg, repeats: int, rng: np.random.Generator) -> list[dict]:
    """Batch-1 reconstruction by route, with MACs per ROI and the limit of the routed path measured beside it.

    Rows: verification + posture only; `graph` (the exported graph: every expert runs, a one-hot keeps
    one); `predicted` (trunk, then the argmax posture's expert only); `soft` (every expert, blended);
    and the limit of `predicted`: the trunk session and one expert session timed alone, back to back
    (the same two runs without the engine around them). Empty when the bundle has no per-posture experts.
    """
    from inference.bundle import CORE_OUTPUTS, INPUT_NAME
    from inference.engines.cost import graph_macs
    from inference.engines.graphs import network_graph
    from inference.engines.onnxrt import OnnxRuntimeEngine

    kw = dict(intra_op_threads=cfg.intra_op_threads, allow_spinning=cfg.allow_spinning,
              graph_optimization=cfg.graph_optimization, reconstruction=True)
    engines = {r: OnnxRuntimeEngine(bundle, reconstruction_route=r, **kw) for r in ("predicted", "soft", "graph")}
    parts = engines["predicted"].routed_parts()
    if parts is None:
        return []
    split, trunk, experts = parts
    n = bundle.input_size
    roi = rng.random((1, n, n), dtype=np.float32)
    x = bundle.prepare(roi)
    outs = trunk.run([*CORE_OUTPUTS, *split.features], {INPUT_NAME: x})
    k = int(np.argmax(outs[1][0]))
    feeds = {t: v for t, v in zip(split.features, outs[2:]) if t in split.expert_inputs[k]}
    macs_trunk, macs_expert = graph_macs(split.trunk), graph_macs(split.experts[k])
    macs = {"core": graph_macs(network_graph(bundle, CORE_OUTPUTS)), "graph": graph_macs(network_graph(bundle)),
            "predicted": macs_trunk + macs_expert, "soft": macs_trunk + sum(graph_macs(e) for e in split.experts)}
    fns = {"core": lambda: engines["predicted"].infer(roi, reconstruction=False),
           "graph": lambda: engines["graph"].infer(roi), "predicted": lambda: engines["predicted"].infer(roi),
           "soft": lambda: engines["soft"].infer(roi),
           "trunk alone": lambda: trunk.run([*CORE_OUTPUTS, *split.features], {INPUT_NAME: x}),
           "expert alone": lambda: experts[k].run([split.expert_outputs[k]], feeds)}
    t = _timed_round_robin(fns, repeats)
    limit = {s: t["trunk alone"] + t["expert alone"] for s in ("median", "min")}
    limit_med, limit_min = float(np.median(limit["median"])), float(np.min(limit["min"]))
    rows = []
    for name in ("core", "graph", "predicted", "soft"):
        v = t[name]
        rows.append({"path": name, "macs": macs[name], "median_ms": float(np.median(v)), "min_ms": float(v.min()),
                     "p99_ms": float(np.percentile(v, 99)), "limit_median_ms": limit_med, "limit_min_ms": limit_min,
                     "vs_limit": float(np.median(v)) / limit_med})
    for e in engines.values():
        e.close()
    return rows


def row_line(r: dict) -> str:
    """One row of the latency table."""
    spin = "-" if r["spinning"] is None else ("on" if r["spinning"] else "off")
    return (f"{r['engine']:<12}{str(r['threads'] or '-'):>4}{spin:>6}{'yes' if r['reconstruction'] else 'no':>7}"
            f"{r['batch']:>6}{r['median_ms']:>11.3f}{r['p99_ms']:>9.3f}{r['min_ms']:>9.3f}{r['ms_per_roi']:>9.3f}"
            f"{r['rois_per_s']:>9.0f}")


def _settings_and_bundle(obj, bundle: str | None):
    """The effective settings and the bundle to bench (--bundle, else inference.bundle); a clear error if absent."""
    from inference.bundle import load_bundle

    s = obj.settings if obj is not None else __import__("pipeline.settings", fromlist=["Settings"]).Settings()
    return s, load_bundle(bundle or s.inference.bundle)  # a BundleError: the CLI's table (4)


@click.command("inference")
@click.option("--bundle", default=None, help="model bundle (default: inference.bundle)")
@click.option("--engine", "kind", type=click.Choice(["auto", "tensorrt", "onnxruntime"]), default=None)
@click.option("--batches", default="1,2,4,8", show_default=True, help="batch sizes")
@click.option("--threads", default="1,2", show_default=True, help="ONNX Runtime intra-op threads to compare")
@click.option("--repeats", type=int, default=200, show_default=True)
@click.option("--load/--no-load", default=False, help="run a CPU-bound process beside the engine")
@click.option("--seed", type=int, default=0, show_default=True)
@click.pass_obj
def bench_inference(obj, bundle, kind, batches, threads, repeats, load, seed):
    """Latency table of the inference engines on this machine; last line `ms_per_roi: N`."""
    from inference.engines.choice import make_engine

    s, b = _settings_and_bundle(obj, bundle)
    cfg = s.inference
    kind = kind or cfg.engine
    batch_list = [int(x) for x in batches.split(",")]
    thread_list = [int(x) for x in threads.split(",")]
    rng = np.random.default_rng(seed)
    proc = None
    if load:
        proc = mp.get_context("spawn").Process(target=_busy, args=(time.time() + 3600,), daemon=True)
        proc.start()
    rows: list[dict] = []
    total = 0
    try:
        probe = make_engine(b, kind, cfg, reconstruction=False)
        if probe.name == "onnxruntime":
            variants = [(t, sp) for t in thread_list for sp in (False, True)]
        else:
            variants = [(None, None)]
        probe.close()
        total = len(variants) * 2 * len(batch_list)
        # the table is printed row by row as each is measured (click.echo flushes), so a long bench shows its
        # progress and a Ctrl-C keeps every row measured so far
        click.echo(f"inference engine latency, bundle {b.model_id} ({b.manifest.preset}), {repeats} repeats, "
                   f"load={'on' if load else 'off'}, {total} rows")
        click.echo(f"{'engine':<12}{'thr':>4}{'spin':>6}{'recon':>7}{'batch':>6}{'median ms':>11}{'p99 ms':>9}"
                   f"{'min ms':>9}{'ms/ROI':>9}{'ROI/s':>9}")
        for t, sp in variants:
            c = cfg.model_copy(update={} if t is None else {"intra_op_threads": t, "allow_spinning": sp})
            eng = make_engine(b, kind, c, reconstruction=True)
            for recon in (False, True):
                for bs in batch_list:
                    r = time_engine(eng, bs, recon, repeats, rng)
                    r.update(engine=eng.name, threads=t, spinning=sp, reconstruction=recon)
                    rows.append(r)
                    click.echo(row_line(r))
            eng.close()
        click.echo("timing the configured engine at batch 1 and the reconstruction routes ...", err=True)
        default = make_engine(b, kind, cfg)
        dflt = time_engine(default, 1, cfg.reconstruction, repeats, rng)
        info = default.describe()
        routing = routing_rows(b, cfg, repeats, rng) if probe.name == "onnxruntime" else []
    except KeyboardInterrupt:
        click.echo(json.dumps({"interrupted": True, "load": load, "rows": rows}))
        raise KeyboardInterrupt(f"interrupted: {len(rows)} of {total} rows measured, printed above and kept in the "
                                "JSON line") from None
    finally:
        if proc is not None:
            proc.terminate()
            proc.join()
    if routing:
        by = {r["path"]: r for r in routing}
        click.echo(f"reconstruction by route, batch 1, onnxruntime {cfg.intra_op_threads} thread(s); limit = the "
                   f"trunk and one expert session timed alone in the same run: median {routing[0]['limit_median_ms']:.3f}"
                   f" ms, min {routing[0]['limit_min_ms']:.3f} ms")
        click.echo(f"{'path':<34}{'MACs/ROI':>10}{'median ms':>11}{'p99 ms':>9}{'min ms':>9}{'vs limit':>10}")
        what = {"core": "verification + posture (no recon)", "graph": "graph: every expert, one-hot",
                "predicted": "predicted: the routed expert only", "soft": "soft: every expert, blended"}
        for r in routing:
            click.echo(f"{what[r['path']]:<34}{r['macs'] / 1e6:>9.1f}M{r['median_ms']:>11.3f}{r['p99_ms']:>9.3f}"
                       f"{r['min_ms']:>9.3f}{r['vs_limit']:>9.2f}x")
        click.echo(f"routed reconstruction: {by['graph']['macs'] / by['predicted']['macs']:.2f}x fewer MACs, "
                   f"{by['graph']['median_ms'] / by['predicted']['median_ms']:.2f}x faster (median), "
                   f"{by['graph']['min_ms'] / by['predicted']['min_ms']:.2f}x (min) than the whole graph")
    click.echo(json.dumps({"configured": info, "batch1": dflt, "load": load, "rows": rows, "routing": routing}))
    click.echo(f"ms_per_roi: {dflt['ms_per_roi']:.3f}")


@click.command("pipeline")
@click.option("--bundle", default=None, help="model bundle (default: inference.bundle)")
@click.option("--engine", "kind", type=click.Choice(["auto", "tensorrt", "onnxruntime"]), default=None)
@click.option("--results", "n_results", type=int, default=30, show_default=True, help="results to time")
@click.option("--raw-source", type=click.Choice(["direct", "emulator"]), default="emulator", show_default=True,
              help="emulator: device emulators on a pty and SCPI/TCP read by the acquisition daemon (the whole "
                   "pipeline); direct: the virtual scanner publishing raw frames itself")
@click.option("--reconstruction/--no-reconstruction", default=False, show_default=True)
@click.option("--stream-lines", type=click.IntRange(0, 1024), default=None,
              help="read each frame in parts of this many lines while it is scanned (acquisition.stream_lines; "
                   "0 = whole frames after *OPC?; default: the config's)")
@click.pass_obj
def bench_pipeline(obj, bundle, kind, n_results, raw_source, reconstruction, stream_lines):
    """Scan complete -> result published through the whole pipeline (virtual scanner, one subject)."""
    import queue as _queue

    from inference.engines.choice import make_engine
    from pipeline.compose import Pipeline
    from pipeline.run import subject_scene
    from thzcore.netsec import LOCAL_ANY
    from inference.results import STAGES

    s, b = _settings_and_bundle(obj, bundle)
    if stream_lines is not None:
        s = s.model_copy(update={"acquisition": s.acquisition.model_copy(update={"stream_lines": stream_lines})})
    stream_lines = s.acquisition.stream_lines
    import tempfile

    eng = make_engine(b, kind or s.inference.engine, s.inference, reconstruction=reconstruction)
    parts = (*STAGES, "scan_complete_to_published")
    rows: dict[str, list[float]] = {k: [] for k in parts}
    from pipeline.linkbench import recv_into_limit, transfer_rows

    frame_bytes = 2 * int(np.prod(s.scanner.raw_frame_shape))  # int16 IF samples of one frame
    limit = [recv_into_limit(frame_bytes, 10)]  # the same bytes on loopback: before, and after the run
    tmp = tempfile.TemporaryDirectory(prefix="thz-bench-")  # an empty gallery, not the operator's
    with tmp, Pipeline(s, eng, sim=True, result_endpoint=LOCAL_ANY, raw_source=raw_source, collect_rois=False,
                       gallery_path=f"{tmp.name}/gallery.sqlite") as pipe:
        pipe.set_scene(subject_scene(0, "front-center", True, 1))
        skip = s.processing.frames_averaged + 1  # the averaging window fills first
        while len(rows["scan_complete_to_published"]) < n_results:
            pipe.check_alive()
            try:
                c = pipe.collector.queue.get(timeout=30)
            except _queue.Empty:
                raise ThzError("no result in 30 s: a stage went silent", EXIT_DEVICE) from None
            if skip > 0:
                skip -= 1
                continue
            missing = [k for k in parts if k not in c.meta.latency_ms]
            if missing:
                raise ThzError(f"result of frame {c.msg.frame_id} lacks the stage stamps {missing}: an upstream "
                               "stage did not send scan_complete / processing times", EXIT_INTERNAL)
            for k in parts:
                rows[k].append(c.meta.latency_ms[k])
        frames = pipe.frames_acquired()
        timings = list(pipe.daemon.timings) if pipe.daemon is not None else []
    limit.append(recv_into_limit(frame_bytes, 10))
    limit_ms = np.concatenate(limit)
    lat = rows["scan_complete_to_published"]
    click.echo(f"pipeline latency from scan complete (last line digitized) to result published: {len(lat)} results, "
               f"{frames} raw frames, raw source {raw_source}, engine {eng.name}, "
               f"reconstruction {'on' if reconstruction else 'off'}, "
               + (f"streamed in parts of {stream_lines} lines" if stream_lines else "whole frames after *OPC?"))
    labels = {"transfer_to_processing": "raw frame to processing", "processing": "processing",
              "processing_to_inference": "ROI to inference stage", "queue": "inference queue",
              "inference": "inference", "scan_complete_to_published": "scan complete -> published"}
    for k in parts:
        v = rows[k]
        click.echo(f"  {labels[k]:<28} median {np.median(v):8.2f} ms   p99 {np.percentile(v, 99):8.2f} ms")
    transfer = transfer_rows(timings, limit_ms, stream_lines) if timings else []
    ratio = None
    if transfer:
        click.echo(f"raw frame after *OPC? ({len(timings)} frames through the daemon); limit: plain recv_into of the "
                   f"same {frame_bytes} bytes on loopback TCP in this run, median {np.median(limit_ms):.2f} ms "
                   f"(min {limit_ms.min():.2f})")
        for r in transfer:
            click.echo(f"  {r['what']:<34} median {r['median_ms']:8.2f} ms   p99 {r['p99_ms']:8.2f} ms   "
                       f"{r['vs_limit']:6.2f}x limit")
        ratio = next(r["vs_limit"] for r in transfer if r["part"] == "frame")
    click.echo(json.dumps({"raw_source": raw_source, "stream_lines": stream_lines, "results": len(lat),
                           "raw_frames": frames,
                           "p50_ms": float(np.median(lat)), "p99_ms": float(np.percentile(lat, 99)),
                           **{f"{k}_p50_ms": float(np.median(rows[k])) for k in parts[:-1]},
                           "recv_into_limit_ms": float(np.median(limit_ms)), "transfer": transfer}))
    if ratio is not None:
        click.echo(f"transfer_vs_limit: {ratio:.2f}x")
    click.echo(f"p99_latency_ms: {np.percentile(lat, 99):.3f}")


@click.command("parity")
@click.option("--bundle", default=None, help="model bundle (default: inference.bundle)")
@click.option("--images", "sources", multiple=True,
              help="ROI images (PNG), directories of them, or a dataset directory (its THz images); repeatable. "
                   "Default: seeded random ROIs, which exercise the arithmetic but not real faces")
@click.option("--limit", type=click.IntRange(2), default=64, show_default=True,
              help="ROIs compared (a seeded sample of the images)")
@click.option("--repeats", type=click.IntRange(1), default=100, show_default=True,
              help="timed batch-1 calls per engine and output set")
@click.option("--seed", type=int, default=0, show_default=True)
@click.pass_obj
def bench_parity(obj, bundle, sources, limit, repeats, seed):
    """Every engine buildable here against ONNX Runtime FP32 on the same ROIs: parity and batch-1 latency.

    Rows: ONNX Runtime FP32 (the reference), ONNX Runtime running the FP16 graph that TensorRT FP16 is
    built from (tensors between ops in FP16, arithmetic in FP32: the rewrite's rounding; its timing is
    not a production setting), and TensorRT FP32 / FP16 where an NVIDIA GPU and tensorrt are present
    (else listed as skipped, with why). Exits 1 when an engine breaks the contract; last line
    `parity: ok|FAIL`.
    """
    from inference.engines.choice import nvidia_gpu_present, tensorrt_installed, tensorrt_missing
    from inference.engines.onnxrt import OnnxRuntimeEngine
    from inference.engines.parity import contract_failures, cpu_name, image_paths, parity_stats
    from inference.sources import load_png_roi

    s, b = _settings_and_bundle(obj, bundle)
    cfg = s.inference
    rng = np.random.default_rng(seed)
    n = b.input_size
    if sources:
        from inference.sources import ImageError
        try:
            paths = image_paths(list(sources))
        except ImageError:
            raise  # an input refused (outside the directory, bad manifest): the CLI's exit 4
        except (OSError, ValueError) as exc:
            raise ThzError(str(exc), EXIT_INPUT) from None
        pick = np.sort(rng.choice(len(paths), size=min(limit, len(paths)), replace=False))
        rois = np.stack([load_png_roi(paths[i], n) for i in pick])
        what = f"{len(rois)} ROIs sampled from {len(paths)} images ({', '.join(sources)})"
    else:
        rois = rng.random((limit, n, n), dtype=np.float32)
        what = f"{limit} seeded random ROIs (pass --images for real scans)"

    def ort(precision, level):
        return lambda: OnnxRuntimeEngine(b, intra_op_threads=cfg.intra_op_threads, graph_optimization=level,
                                         reconstruction=True, precision=precision)

    # ONNX Runtime's CPU has no FP16 kernels for most of these ops and wraps them in casts: with graph
    # optimisation off the casts stay, so every tensor between ops is rounded to FP16 while each op
    # computes in FP32. That measures the rewrite's rounding (a lower bound on TensorRT FP16's error).
    candidates = [("onnxruntime", "fp32", ort("fp32", cfg.graph_optimization)),
                  ("onnxruntime", "fp16", ort("fp16", "disable"))]
    skipped = []
    missing = tensorrt_missing(nvidia_gpu_present(), tensorrt_installed())
    if missing:
        skipped.append({"engine": "tensorrt", "why": missing})
    else:
        from inference.engines.tensorrt import TensorRTEngine
        for p in ("fp32", "fp16"):
            candidates.append(("tensorrt", p, lambda p=p: TensorRTEngine(b, cfg, reconstruction=True, precision=p)))

    rows, ref, failed = [], None, []
    with click.progressbar(candidates, label="engines", file=sys.stderr,
                           item_show_func=lambda c: c and f"{c[0]} {c[1]}") as bar:
        for name, precision, build in bar:
            row: dict = {"engine": name, "precision": precision}
            try:
                eng = build()
                out = eng.infer(rois, reconstruction=True)
                info = eng.describe()
                row["device"] = info.get("gpu") or cpu_name()
                row["batch1_core_ms"] = time_engine(eng, 1, False, repeats, rng)["median_ms"]
                row["batch1_recon_ms"] = time_engine(eng, 1, True, repeats, rng)["median_ms"]
                eng.close()
            except Exception as exc:  # a build that fails on this machine is a result, not a crash
                row.update(error=f"{type(exc).__name__}: {exc}")
                failed.append(f"{name} {precision}: could not run ({exc})")
                rows.append(row)
                if ref is None:
                    raise ThzError(f"the reference engine (ONNX Runtime FP32) cannot run the bundle: {exc}",
                                   EXIT_INPUT) from exc
                continue
            if ref is None:
                ref = out  # ONNX Runtime FP32 is first
                row["reference"] = True
            else:
                row.update(parity_stats(ref, out, b.threshold))
                row["contract_failures"] = contract_failures(row, precision)
                failed += [f"{name} {precision}: {f}" for f in row["contract_failures"]]
            rows.append(row)

    click.echo(f"engine parity against onnxruntime fp32, bundle {b.model_id} ({b.manifest.preset}), {what}, "
               f"decision threshold {b.threshold:.4f}")
    click.echo(f"{'engine':<12}{'prec':>5}  {'1-cos max':>10}{'1-cos med':>10}{'posture':>9}{'pairs flipped':>16}"
               f"{'PSNR min':>9}{'PSNR med':>9}{'ms core':>9}{'ms +rec':>9}  device")
    for r in rows:
        if "error" in r:
            click.echo(f"{r['engine']:<12}{r['precision']:>5}  error: {r['error']}")
            continue
        if r.get("reference"):
            cells = f"{'reference':>10}{'':>10}{'':>9}{'':>16}{'':>9}{'':>9}"
        else:
            flips = f"{r['decision_flips']}/{r['pairs']}"
            cells = (f"{1 - r['cosine_min']:>10.1e}{1 - r['cosine_median']:>10.1e}{100 * r['posture_agreement']:>8.1f}%"
                     f"{flips:>16}{r['psnr_min_db']:>9.1f}{r['psnr_median_db']:>9.1f}")
        click.echo(f"{r['engine']:<12}{r['precision']:>5}  {cells}{r['batch1_core_ms']:>9.3f}"
                   f"{r['batch1_recon_ms']:>9.3f}  {r['device']}")
    for sk in skipped:
        click.echo(f"{sk['engine']:<12}{'':>5}  skipped: {sk['why']}")
    click.echo(json.dumps({"model_id": b.model_id, "rois": what, "rows": rows, "skipped": skipped}))
    if failed:
        click.echo("parity: FAIL (" + "; ".join(failed) + ")")
        raise SystemExit(EXIT_NEGATIVE)
    click.echo("parity: ok")

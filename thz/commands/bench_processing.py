"""`thz bench processing`: time one 64-line raw frame through the processor, NumPy reference vs Numba.

Prints a table (median and 90th percentile of many runs, ratio to the real-time budget of one
frame per second), the per-step split of the Numba path, the physical floor (raw bytes over the
memory bandwidth measured with a NumPy copy), then `speedup: <N>x` (Numba one core vs the NumPy
reference, both one core) and `ms_per_frame: <N>` (Numba one core, whole live path per frame:
process + 3-frame average + face ROI + subject range) as the last lines.
"""
from __future__ import annotations

import json
import os
import threading
import time
from typing import Callable

import click
import numpy as np


def _times(fn: Callable[[], object], runs: int, warm: int = 2) -> np.ndarray:
    for _ in range(warm):
        fn()
    t = np.empty(runs)
    for i in range(runs):
        t0 = time.perf_counter()
        fn()
        t[i] = time.perf_counter() - t0
    return t * 1e3


def ticker_gaps(work: Callable[[], object] | None, seconds: float) -> dict[str, float]:
    """A 1 ms Python ticker thread (time.sleep(0.001) in a loop) while this thread runs `work` back to back for
    `seconds` (None: this thread sleeps, the ticker's limit on this machine now). Returns the ticker's gap
    median / p99 / max (ms), the calls of `work` and their median ms, and the ticker time lost per call:
    the sum over gaps of what exceeds the limit's median gap, divided by the calls (about how long each call
    kept the ticker from running: the GIL held, plus the scheduler's share)."""
    stop = threading.Event()
    gaps: list[float] = []

    def tick() -> None:
        last = time.perf_counter()
        while not stop.is_set():
            time.sleep(0.001)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    t = threading.Thread(target=tick, name="gil-ticker", daemon=True)
    t.start()
    calls: list[float] = []
    t_end = time.perf_counter() + seconds
    while time.perf_counter() < t_end:
        if work is None:
            time.sleep(0.01)
            continue
        t0 = time.perf_counter()
        work()
        calls.append(time.perf_counter() - t0)
    stop.set()
    t.join()
    g = np.array(gaps[1:] or [0.0]) * 1e3
    return {"gap_median_ms": float(np.median(g)), "gap_p99_ms": float(np.percentile(g, 99)),
            "gap_max_ms": float(g.max()), "calls": len(calls),
            "call_median_ms": float(np.median(calls)) * 1e3 if calls else 0.0, "_gaps": g}


def gil_rows(steps: dict[str, Callable[[], object]], seconds: float) -> list[dict]:
    """ticker_gaps beside each step, the ticker alone first (the limit), in the same run."""
    alone = ticker_gaps(None, seconds)
    rows = [{"step": "ticker alone (limit)", **alone}]
    for name, fn in steps.items():
        fn()   # compiled and warm
        rows.append({"step": name, **ticker_gaps(fn, seconds)})
    base = alone["gap_median_ms"]
    for r in rows:
        g = r.pop("_gaps")
        lost = float(np.clip(g - base, 0.0, None).sum())
        r["lost_ms_per_call"] = lost / r["calls"] if r["calls"] else 0.0
        r["p99_vs_limit"] = r["gap_p99_ms"] / alone["gap_p99_ms"]
    return rows


def memory_bandwidth_gb_s(nbytes: int = 64 * 2**20, runs: int = 20) -> float:
    """Copy bandwidth (read + write bytes per second / 1e9) of a large NumPy copy."""
    a = np.ones(nbytes // 8)
    b = np.empty_like(a)
    t = _times(lambda: np.copyto(b, a), runs) / 1e3
    return 2 * nbytes / float(np.median(t)) / 1e9


@click.command("processing")
@click.option("--runs", default=40, show_default=True, help="timed runs per row (median reported)")
@click.option("--json-out", "json_out", is_flag=True, help="also print the results as one JSON line")
@click.option("--gil-seconds", type=click.FloatRange(0.0, 600.0), default=3.0, show_default=True,
              help="seconds of the 1 ms ticker beside each step (0: no GIL table)")
@click.pass_obj
def bench_processing(obj, runs: int, json_out: bool, gil_seconds: float) -> None:
    """Time the processor on one 64-line frame at the configured settings."""
    import numba

    from processing.processor import FrameProcessor
    from processing.stage import ProcessingStage
    from processing.synthetic import make_raw_frame, point_target

    settings = obj.settings
    sc, pc = settings.scanner, settings.processing
    cores = numba.config.NUMBA_NUM_THREADS
    raws = [make_raw_frame(sc, point_target(0.0, 0.0, 0.05), servo_lag_s=sc.raster.servo_lag_s,
                           feedback_delay_s=sc.raster.feedback_delay_s, noise_counts=30.0, seed=i, frame_id=i)
            for i in range(3)]
    raw = raws[0]
    serial = FrameProcessor(sc, pc.model_copy(update={"threads": 1}))
    serial.warm_up()
    rows: list[tuple[str, np.ndarray]] = []
    rows.append(("numpy reference, 1 core", _times(lambda: serial.process(raw, reference=True), max(5, runs // 4))))
    rows.append(("numba, 1 thread", _times(lambda: serial.process(raw), runs)))
    par = FrameProcessor(sc, pc.model_copy(update={"threads": 0}))
    par.warm_up()
    rows.append((f"numba, {cores} threads", _times(lambda: par.process(raw), runs)))
    numba.set_num_threads(1)
    # per-step split of the one-thread path
    p = serial.chirp_power(raw)
    steps = {
        "range gate (window, rfft, gate)": _times(lambda: serial.chirp_power(raw), runs),
        "positions + de-warp": _times(lambda: serial.power(raw, chirp_power=p), runs),
    }
    singles = [serial.process(r) for r in raws]
    steps["3-frame average + dB"] = _times(lambda: serial.average(singles), runs)
    avg = serial.average(singles)
    stage = ProcessingStage(sc, pc.model_copy(update={"threads": 1, "averaging": "sliding"}), warm_up=False)
    steps["face ROI"] = _times(lambda: stage.locator.locate(avg.image, avg.scale), runs)
    box = stage.locator.locate(avg.image, avg.scale).box_m
    if box is not None:  # a face was found in the bench scene: the rangefinder on its chirps
        steps["subject range (face chirps)"] = _times(lambda: stage._range(raws[-1], box), runs)
    for r in raws:
        stage.feed(r)
    k = iter(range(10**9))

    def live() -> None:
        i = next(k)
        r = raws[i % 3]
        r.frame_id = 3 + i  # consecutive ids keep the sliding window full
        stage.feed(r)
    live_ms = _times(live, runs)

    gil: list[dict] = []
    if gil_seconds > 0:
        gil = _gil_table(settings, serial, par, raws, gil_seconds)

    bw = memory_bandwidth_gb_s()
    floor_ms = sc.raw_frame_bytes / (bw * 1e9) * 1e3
    budget_ms = sc.raster.frame_duration_s * 1e3
    lines, chirps, n = sc.raw_frame_shape
    click.echo(f"one frame: {lines} lines x {chirps} chirps x {n} samples int16 = {sc.raw_frame_bytes / 1e6:.2f} MB; "
               f"gate bins {serial.k0}..{serial.k1}; real-time budget {budget_ms:.0f} ms/frame; "
               f"cpu cores {os.cpu_count()}")
    click.echo(f"{'path':36s} {'median ms':>10s} {'p90 ms':>8s} {'x budget':>9s} {'speedup':>8s}")
    ref_med = float(np.median(rows[0][1]))
    for name, t in rows:
        med = float(np.median(t))
        click.echo(f"{name:36s} {med:10.2f} {np.percentile(t, 90):8.2f} {med / budget_ms:9.4f} {ref_med / med:7.1f}x")
    click.echo(f"{'live stage.feed, 1 thread (all steps)':36s} {np.median(live_ms):10.2f} "
               f"{np.percentile(live_ms, 90):8.2f} {np.median(live_ms) / budget_ms:9.4f}")
    click.echo("numba 1-thread steps:")
    for name, t in steps.items():
        click.echo(f"  {name:34s} {np.median(t):10.2f}")
    click.echo(f"physical floor: {sc.raw_frame_bytes / 1e6:.2f} MB / {bw:.1f} GB/s (numpy copy, read+write) "
               f"= {floor_ms:.2f} ms per frame")
    if gil:
        click.echo(f"GIL: a 1 ms Python ticker thread beside each step run back to back for {gil_seconds:g} s "
                   "(limit: the ticker alone, same run); lost = ticker ms lost per call beyond the limit's median gap")
        click.echo(f"  {'step':44s} {'calls':>6s} {'ms/call':>8s} {'gap p50':>8s} {'p99':>7s} {'max':>7s} "
                   f"{'lost/call':>10s} {'p99 vs limit':>13s}")
        for r in gil:
            click.echo(f"  {r['step']:44s} {r['calls']:6d} {r['call_median_ms']:8.2f} {r['gap_median_ms']:8.2f} "
                       f"{r['gap_p99_ms']:7.2f} {r['gap_max_ms']:7.2f} {r['lost_ms_per_call']:10.2f} "
                       f"{r['p99_vs_limit']:12.2f}x")
    speedup = ref_med / float(np.median(rows[1][1]))
    ms_frame = float(np.median(live_ms))
    if json_out:
        click.echo(json.dumps({"numpy_ms": ref_med, "numba_1t_ms": float(np.median(rows[1][1])),
                               "numba_all_ms": float(np.median(rows[2][1])), "live_ms": ms_frame,
                               "steps_ms": {k: float(np.median(v)) for k, v in steps.items()},
                               "bandwidth_gb_s": bw, "floor_ms": floor_ms, "threads": cores, "gil": gil}))
    click.echo(f"speedup: {speedup:.1f}x")
    click.echo(f"ms_per_frame: {ms_frame:.2f}")


def _gil_table(settings, serial, par, raws, seconds: float) -> list[dict]:
    """The GIL rows: the live stage on frames of a concealed subject from the virtual scanner, its steps, and the
    range gate's parallel kernels (the one that keeps the GIL, and the nogil one under a thread-safe layer)."""
    import numba

    from processing.range_gate import (PIXEL_RULES, _range_gate_parallel, _range_gate_parallel_nogil,
                                       threadsafe_layer)
    from processing.stage import ProcessingStage
    from sim.scanner import VirtualScanner
    from sim.scene import Subject

    sc, pc = settings.scanner, settings.processing
    vs = VirtualScanner(sc, settings.sim, 0)
    vs.set_scene(Subject(identity=2, posture="front-center", concealed=True))
    faces = [vs.acquire_frame(i) for i in range(3)]
    stage = ProcessingStage(sc, pc.model_copy(update={"threads": 1, "averaging": "sliding"}), warm_up=False)
    for r in faces:
        out = stage.feed(r)
    roi = out.roi if out is not None else None
    k = iter(range(3, 10**9))

    def live() -> None:
        i = next(k)
        r = faces[i % 3]
        r.frame_id = i
        stage.feed(r)

    avg = serial.average([serial.process(r) for r in faces])
    p = serial.chirp_power(faces[0])
    steps: dict[str, Callable[[], object]] = {
        "live stage.feed, 1 thread (serial kernels)": live,
        "  range gate, serial (nogil)": lambda: serial.chirp_power(faces[0]),
        "  positions + de-warp (nogil)": lambda: serial.power(faces[0], chirp_power=p),
        "  3-frame average + dB": lambda: serial.average([avg, avg, avg]),
        "  face ROI (locate + resize)": lambda: stage.locator.locate(avg.image, avg.scale),
    }
    if roi is not None and roi.found and roi.box_m is not None:
        steps["  subject range (face chirps)"] = lambda: stage._range(faces[-1], roi.box_m)
    x = np.ascontiguousarray(raws[0].if_samples)
    w = np.ascontiguousarray(serial.window, dtype=np.float32)
    scale = np.float32(1.0 / float(w.sum()) ** 2)
    args = (x, w, serial.k0, serial.k1, PIXEL_RULES[pc.pixel_rule], scale)
    par.chirp_power(raws[0])   # a parallel region has run: the threading layer is chosen
    numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
    n = numba.config.NUMBA_NUM_THREADS
    steps[f"range gate, parallel {n} threads, keeps the GIL"] = lambda: _range_gate_parallel(*args)
    layer = threadsafe_layer()
    if layer is not None:
        steps[f"range gate, parallel {n} threads, nogil ({layer})"] = lambda: _range_gate_parallel_nogil(*args)
    try:
        return gil_rows(steps, seconds)
    finally:
        numba.set_num_threads(1)

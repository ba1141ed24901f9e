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


def memory_bandwidth_gb_s(nbytes: int = 64 * 2**20, runs: int = 20) -> float:
    """Copy bandwidth (read + write bytes per second / 1e9) of a large NumPy copy."""
    a = np.ones(nbytes // 8)
    b = np.empty_like(a)
    t = _times(lambda: np.copyto(b, a), runs) / 1e3
    return 2 * nbytes / float(np.median(t)) / 1e9


@click.command("processing")
@click.option("--runs", default=40, show_default=True, help="timed runs per row (median reported)")
@click.option("--json-out", "json_out", is_flag=True, help="also print the results as one JSON line")
@click.pass_obj
def bench_processing(obj, runs: int, json_out: bool) -> None:
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
    speedup = ref_med / float(np.median(rows[1][1]))
    ms_frame = float(np.median(live_ms))
    if json_out:
        click.echo(json.dumps({"numpy_ms": ref_med, "numba_1t_ms": float(np.median(rows[1][1])),
                               "numba_all_ms": float(np.median(rows[2][1])), "live_ms": ms_frame,
                               "steps_ms": {k: float(np.median(v)) for k, v in steps.items()},
                               "bandwidth_gb_s": bw, "floor_ms": floor_ms, "threads": cores}))
    click.echo(f"speedup: {speedup:.1f}x")
    click.echo(f"ms_per_frame: {ms_frame:.2f}")

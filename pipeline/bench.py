"""`thz bench sim`: time the virtual scanner (per frame: galvo, scene sampling, receiver) and a small dataset build.

The measurement (`measure`) uses only what every tree of this project has had since v1 (VirtualScanner,
Subject, the settings model, the dataset builder's make_dataset), so the very same file runs against an
older checkout: `run_tree(path)` starts it as a script in a child process whose import path is that
tree (`python -c "runpy.run_path(<this file>)"` with PYTHONPATH=tree and the working directory there),
pinned to one thread (OMP/MKL/OpenBLAS/Numba = 1). It prints one JSON line.

Figures (CPU time by time.process_time, medians; wall time beside it):
  frame            one acquire_frame of a concealed subject at the default settings, after a warm-up
  receiver         the receiver chain inside it (v2: sim.receiver.receive; v1: synth_if, if_filter_gain and
                   the gain drift), found by wrapping those functions; galvo likewise (servo + interpolation);
                   physics = frame - receiver - galvo (scene fields, sampling at the beam, speckle in v1)
  new scene        scene_maps() of a new capture (mesh, rasterisation, couplings), once per capture
  dataset          make_dataset of a small plan in this process (workers=0, no cluster): THz ROIs (units scanned,
                   processed and cut, found or not) per CPU-second of the build without the worker's one-time start (imports, Numba cache loads, processor warm-up),
                   which a real build pays once per process; the whole build's figure is printed beside it
  gil ticker       p99 and max gap of a 1 ms Python ticker thread while another thread simulates frames:
                   the stall a simulating thread imposes on the pipeline's Python threads
"""
from __future__ import annotations

import importlib
import json
import math
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable

TARGET_MS_PER_FRAME = 20.0      # issue 14: a whole frame (physics + synthesis) on one core
TARGET_ROIS_PER_CPU_S = 25.0    # issue 14: THz ROIs of `thz sim dataset` per CPU-second
ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "1"}


def _median(x: list[float]) -> float:
    s = sorted(x)
    n = len(s)
    return float("nan") if n == 0 else (s[n // 2] if n % 2 else 0.5 * (s[n // 2 - 1] + s[n // 2]))


def _percentile(x: list[float], q: float) -> float:
    s = sorted(x)
    return float("nan") if not s else s[min(len(s) - 1, int(math.ceil(q / 100 * len(s))) - 1)]


class _Clock:
    """CPU seconds spent inside wrapped functions (outermost calls only)."""

    def __init__(self) -> None:
        self.cpu = 0.0
        self._depth = 0

    def wrap(self, owner: Any, name: str) -> None:
        fn = getattr(owner, name)

        def timed(*args: Any, **kwargs: Any) -> Any:
            self._depth += 1
            c = time.process_time()
            try:
                return fn(*args, **kwargs)
            finally:
                self._depth -= 1
                if self._depth == 0:
                    self.cpu += time.process_time() - c
        setattr(owner, name, timed)


def _tree() -> Path:
    """The root of the tree being measured: where its `sim` package lies (run_tree puts it first on the path).

    v1 trees are told by their files, not by a failed import: a package v1 lacks (pipeline/, dataset/)
    would otherwise be found in the installed tree, the one being compared against."""
    import sim
    return Path(sim.__file__).resolve().parent.parent


def _settings() -> Any:
    if (_tree() / "pipeline" / "settings.py").is_file():
        from pipeline.settings import Settings
    else:                     # a v1 tree (run by run_tree): its settings lived in thz/, its builder in training/
        Settings = importlib.import_module("thz.settings").Settings
    return Settings()


def _dataset_module() -> Any:
    if (_tree() / "dataset" / "synth.py").is_file():
        return importlib.import_module("dataset.synth")
    return importlib.import_module("training.synth")   # a v1 tree


def _instrument() -> tuple[_Clock, _Clock]:
    """Wrap the receiver-chain and galvo functions the tree has; returns (receiver clock, galvo clock)."""
    import sim.galvo as galvo
    import sim.scanner as scanner

    rx, gv = _Clock(), _Clock()
    try:
        import sim.receiver as receiver
        rx.wrap(receiver, "receive")
    except ImportError:
        pass
    for name in ("synth_if", "if_filter_gain"):
        if hasattr(scanner, name):
            rx.wrap(scanner, name)
    if hasattr(scanner.VirtualScanner, "_gain_drift"):
        rx.wrap(scanner.VirtualScanner, "_gain_drift")
    for name in ("raster_response", "simulate_servo", "fast_command", "slow_command", "interp_uniform"):
        if hasattr(galvo, name):
            gv.wrap(galvo, name)
    return rx, gv


def _time_frames(frames: int) -> dict[str, float]:
    from sim.scanner import VirtualScanner
    from sim.scene import Subject

    s = _settings()
    rx, gv = _instrument()
    vs = VirtualScanner(s.scanner, s.sim, seed=3)
    vs.set_scene(Subject(identity=0, posture="front-center", concealed=True, capture_seed=99))
    vs.acquire_frame(0)                      # compile / load the kernels
    c = time.process_time()
    for i in range(3):                       # a new scene per capture: the maps
        vs.set_scene(Subject(identity=i, posture="front-center", concealed=True, capture_seed=100 + i))
        vs.scene_maps()
    scene_cpu = (time.process_time() - c) / 3
    vs.set_scene(Subject(identity=1, posture="front-left", concealed=True, capture_seed=17))
    vs.acquire_frame(0)                      # build the maps
    cpu, wall, rx_cpu, gv_cpu = [], [], [], []
    for f in range(1, frames + 1):
        r0, g0 = rx.cpu, gv.cpu
        t, c = time.perf_counter(), time.process_time()
        vs.acquire_frame(f)
        cpu.append(time.process_time() - c)
        wall.append(time.perf_counter() - t)
        rx_cpu.append(rx.cpu - r0)
        gv_cpu.append(gv.cpu - g0)
    c_ctor = time.process_time()
    for k in range(3):
        VirtualScanner(s.scanner, s.sim, seed=50 + k)
    ctor_cpu = (time.process_time() - c_ctor) / 3
    med = {k: 1e3 * _median(v) for k, v in (("frame_cpu_ms", cpu), ("frame_wall_ms", wall),
                                             ("receiver_cpu_ms", rx_cpu), ("galvo_cpu_ms", gv_cpu))}
    med["physics_cpu_ms"] = med["frame_cpu_ms"] - med["receiver_cpu_ms"] - med["galvo_cpu_ms"]
    med["new_scene_cpu_ms"] = 1e3 * scene_cpu
    med["scanner_init_cpu_ms"] = 1e3 * ctor_cpu
    med["frames"] = frames
    return med


def _gil_ticker(frames: int) -> dict[str, float]:
    """Gaps of a 1 ms ticker (time.sleep(0.001)) while another thread simulates `frames` frames."""
    from sim.scanner import VirtualScanner
    from sim.scene import Subject

    s = _settings()
    vs = VirtualScanner(s.scanner, s.sim, seed=5)
    vs.set_scene(Subject(identity=2, posture="front-right", concealed=False, capture_seed=9))
    vs.acquire_frame(0)
    done = threading.Event()

    def simulate() -> None:
        for f in range(1, frames + 1):
            vs.acquire_frame(f)
        done.set()

    gaps: list[float] = []
    th = threading.Thread(target=simulate)
    th.start()
    while not done.is_set():
        t = time.perf_counter()
        time.sleep(0.001)
        gaps.append(time.perf_counter() - t)
    th.join()
    return {"ticker_p99_ms": 1e3 * _percentile(gaps, 99), "ticker_max_ms": 1e3 * max(gaps),
            "ticker_median_ms": 1e3 * _median(gaps)}


def _time_dataset(identities: int, captures: int) -> dict[str, float]:
    synth = _dataset_module()
    s = _settings()
    start = _Clock()
    start.wrap(synth, "_init_worker")
    plan = synth.DatasetPlan(n_identities=identities, captures=captures, seed=7)
    with tempfile.TemporaryDirectory(prefix="thz-bench-") as out:
        c, t = time.process_time(), time.perf_counter()
        summary = synth.make_dataset(out, plan, s, workers=0, progress=False)  # in this process (v1 trees: <= 1)
        cpu, wall = time.process_time() - c, time.perf_counter() - t
        units = [json.loads(p.read_text()) for p in Path(out, "thz").rglob("*.json")]
    # a THz unit is one capture scanned, processed and cut (or reported as no face): the ROI step's output
    n_roi = len(units)
    unit_cpu = [float(u["cpu_s"]) for u in units if "cpu_s" in u]
    return {"rois": n_roi, "faces_found": int(summary.thz_images), "visible": int(summary.visible_images),
            "build_cpu_s": cpu, "build_wall_s": wall, "worker_start_cpu_s": start.cpu,
            "rois_per_cpu_s": n_roi / max(cpu - start.cpu, 1e-9), "rois_per_cpu_s_whole_build": n_roi / max(cpu, 1e-9),
            "unit_cpu_ms_median": 1e3 * _median(unit_cpu)}


def measure(frames: int = 12, identities: int = 2, captures: int = 2, ticker_frames: int = 12) -> dict[str, Any]:
    """All figures of this process's tree (see the module docstring)."""
    out: dict[str, Any] = {"tree": os.getcwd(), "python": sys.version.split()[0],
                           "threads": {k: os.environ.get(k) for k in ONE_THREAD}}
    try:
        out["commit"] = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                       check=False).stdout.strip()
    except OSError:
        out["commit"] = ""
    out.update(_time_frames(frames))
    out.update(_gil_ticker(ticker_frames))
    out.update(_time_dataset(identities, captures))
    return out


def run_tree(tree: str | Path, frames: int = 12, identities: int = 2, captures: int = 2,
             timeout_s: float = 1800.0) -> dict[str, Any]:
    """Run `measure` against the packages of `tree` in a child process pinned to one thread."""
    tree = Path(tree).resolve()
    if not (tree / "sim" / "scanner.py").is_file():
        raise ValueError(f"{tree} is not a thz-face tree (no sim/scanner.py)")
    env = {**os.environ, **ONE_THREAD, "PYTHONPATH": str(tree)}
    code = ("import runpy, sys; sys.argv = [sys.argv[0]] + sys.argv[1:]; "
            f"runpy.run_path({str(Path(__file__).resolve())!r}, run_name='__main__')")
    args = [sys.executable, "-c", code, "--frames", str(frames), "--identities", str(identities),
            "--captures", str(captures)]
    proc = subprocess.run(args, cwd=tree, env=env, capture_output=True, text=True, timeout=timeout_s, check=False)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"bench in {tree} failed (exit {proc.returncode}): {proc.stderr.strip()[-2000:]}")
    return json.loads(lines[-1])


def table(mine: dict[str, Any], baseline: dict[str, Any] | None = None) -> list[str]:
    """The bench table: figure, this tree, the target, and the baseline tree with the ratio when given."""
    rows: list[tuple[str, str, Callable[[dict[str, Any]], float], str, bool]] = [
        ("frame, CPU (median)", "ms", lambda r: r["frame_cpu_ms"], f"<= {TARGET_MS_PER_FRAME:g}", True),
        ("  physics (scene fields, sampling)", "ms", lambda r: r["physics_cpu_ms"], "", True),
        ("  receiver synthesis", "ms", lambda r: r["receiver_cpu_ms"], "", True),
        ("  galvo", "ms", lambda r: r["galvo_cpu_ms"], "", True),
        ("frame, wall (median)", "ms", lambda r: r["frame_wall_ms"], "", True),
        ("new scene (maps), once per capture", "ms", lambda r: r["new_scene_cpu_ms"], "", True),
        ("VirtualScanner() construction", "ms", lambda r: r["scanner_init_cpu_ms"], "", True),
        ("1 ms ticker beside a simulating thread, p99", "ms", lambda r: r["ticker_p99_ms"], "", True),
        ("  ... max", "ms", lambda r: r["ticker_max_ms"], "", True),
        ("dataset: THz ROIs per CPU-second", "/s", lambda r: r["rois_per_cpu_s"], f">= {TARGET_ROIS_PER_CPU_S:g}",
         False),
        ("  ... whole build incl. worker start", "/s", lambda r: r["rois_per_cpu_s_whole_build"], "", False),
        ("  CPU per THz unit (3 frames + processing)", "ms", lambda r: r["unit_cpu_ms_median"], "", True),
        ("  worker start (imports, kernels, warm-up)", "s", lambda r: r["worker_start_cpu_s"], "", True),
    ]
    head = f"{'figure':46s} {'unit':>4s} {'this tree':>10s} {'target':>8s}"
    if baseline is not None:
        head += f" {'baseline':>10s} {'speed-up':>9s}"
    out = [head, "-" * len(head)]
    for name, unit, get, target, lower_is_better in rows:
        v = get(mine)
        line = f"{name:46s} {unit:>4s} {v:10.2f} {target:>8s}"
        if baseline is not None:
            b = get(baseline)
            ratio = (b / v if lower_is_better else v / b) if v and b else float("nan")
            line += f" {b:10.2f} {ratio:8.1f}x"
        out.append(line)
    return out


def _main(argv: list[str]) -> None:
    import argparse

    ap = argparse.ArgumentParser(description="measure the virtual scanner of the tree on sys.path; prints JSON")
    ap.add_argument("--frames", type=int, default=12)
    ap.add_argument("--identities", type=int, default=2)
    ap.add_argument("--captures", type=int, default=2)
    a = ap.parse_args(argv)
    import logging
    logging.disable(logging.WARNING)
    print(json.dumps(measure(a.frames, a.identities, a.captures)))


if __name__ == "__main__":
    _main(sys.argv[1:])

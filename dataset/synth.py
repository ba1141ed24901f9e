"""The synthetic dataset: the virtual scanner and the live processor make the paper's data shape.

Shape (paper sec. 4.1): n identities x 5 postures x K captures x {concealed, unconcealed} THz face
ROIs (64x64, 16-bit grey PNG, value = round(65535 x ROI), the ROI in [0, 1] exactly as
processing.roi emits it live), plus one visible image per identity x posture x concealment
(64x64 8-bit PNG, nominal pose). Default 20 x 5 x 7 x 2 = 1400 THz + 200 visible.

Each THz image is one capture: a Subject placed in the field, scanned for `frames_per_capture`
consecutive raw frames by sim.scanner.VirtualScanner, processed by processing.FrameProcessor
(range gate, de-warp, line phase, 3-frame average, dB) and cut by processing.FaceLocator: the very
code of the live pipeline, so the network trains on what it will see.

Seeds. `seed` draws everything about captures: the placement of the head in the field
(uniform +-placement_x_m, +-placement_y_m), the Subject's capture_seed (pose jitter, range,
expression, balaclava fit) and the scanner noise; `population_seed` draws the identities
(sim.population). Every draw is keyed by (seed, identity, posture, capture, concealed) through
numpy SeedSequence, so a unit's image does not depend on worker count or order. By default a
capture's concealed and unconcealed scans are separate sittings (different pose draws); with
paired_pose they share the pose (only the balaclava and the noise differ).

Split (seeded, documented): for every identity and posture the capture indices 0..K-1 are
permuted with SeedSequence([seed, 0x5B1, identity, posture]); the first goes to test, the second to
val (when K >= 3), the rest to train. A capture index carries both its concealed and its
unconcealed scan, so the test set holds exactly one concealed and one unconcealed capture per
identity and posture and no capture is shared across splits. Visible images are listed with
split "train" (the teacher's privileged input; they are looked up by identity, posture and
concealment, never scored).

Engine: the units run on Dask distributed (dataset.cluster): a LocalCluster of `workers` single-threaded
processes by default, or an existing cluster (`scheduler`, e.g. one dask-jobqueue started on a SLURM
site). Each worker process makes its scanner, processor and locator once (a WorkerPlugin), each job
returns its row to the main process, which counts it and moves the progress bar as the futures
complete. Units are made in plan.build_order(): visible images, then capture-major, so a build that
stops has every identity. The bytes do not depend on the worker count or the order (tested: 1 vs 2
workers, stopped and resumed, content hash equal), and every result carries its worker's code hash,
so a worker running other code is refused rather than mixed in.

Resumable: every unit writes its PNG then its JSON sidecar atomically (temp file + rename); a unit
whose JSON exists is skipped. A scan where no face is found writes only the JSON (found = false)
and is left out of the manifest, like the paper's unusable captures. Ctrl-C or SIGTERM cancels the
queue, ends the local cluster and writes the manifest and dataset.json of what is made (complete =
false); the same command continues. The same command with a larger --identities grows a build (the
units are seeded per identity, so the grown build has a fresh build's bytes when the code is the same);
any other change of plan, or of the settings the images depend on, is refused.

Provenance (dataset.json): git_commit ('+dirty' when CODE_PATHS have uncommitted changes),
code_sha256_16 (the sources of CODE_PATHS themselves) and libraries (NumPy, SciPy, Numba, ... versions)
of the last run, and `runs`: every run that made images in the folder, with its provenance and how
many it made. A build resumed or grown with other code or libraries warns and sets `mixed_code`: its
earlier images keep their code's bytes, so its content hash need not be a fresh build's. Two builds of
one plan whose content hashes differ differ in one of these, or in the settings recorded beside them.
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
import signal
import threading
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Callable, Iterator, NamedTuple, Protocol

import numpy as np
from PIL import Image
from pydantic import BaseModel, ConfigDict

from dataset.contact_sheet import contact_sheet
from dataset.errors import BuildFailed, BuildInterrupted, OutputNotShared, WorkerCodeMismatch
from processing.config import ProcessingConfig
from sim.config import SimConfig
from thzcore.labels import POSTURES
from thzcore.logs import get_logger
from thzcore.manifest import Row, content_hash, write_manifest
from thzcore.provenance import code_hash, library_versions, source_commit
from thzcore.scanner import ScannerConfig

log = get_logger(__name__)
SUMMARY_FILE = "dataset.json"
CONTACT_SHEET = "contact_sheet.png"
CODE_PATHS = ("sim", "processing", "thzcore", "dataset/synth.py")  # the code an image's bytes depend on
LIBRARIES = ("numpy", "scipy", "numba", "rocket-fft", "pillow", "dask", "distributed")  # and the libraries


@functools.cache
def image_code_hash() -> str:
    """This process's sha256[:16] of CODE_PATHS' sources (thzcore.provenance.code_hash), computed once."""
    return code_hash(CODE_PATHS)


class DatasetSettings(Protocol):
    """The sections of the configuration the dataset builder reads (the composed pipeline.settings.Settings)."""

    scanner: ScannerConfig
    sim: SimConfig
    processing: ProcessingConfig

    def model_dump_json(self) -> str: ...


class _WorkerSettings(BaseModel):
    """DatasetSettings as a worker process rebuilds them from JSON; the other sections are ignored."""

    model_config = ConfigDict(extra="ignore")
    scanner: ScannerConfig = ScannerConfig()
    sim: SimConfig = SimConfig()
    processing: ProcessingConfig = ProcessingConfig()


@dataclass(frozen=True)
class DatasetPlan:
    """What to make. `small()` is the test size (4 identities x 5 postures x 3 captures)."""

    n_identities: int = 20
    captures: int = 7
    postures: tuple[str, ...] = POSTURES
    frames_per_capture: int = 3
    seed: int = 0
    population_seed: int = 1234
    paired_pose: bool = False
    placement_x_m: float = 0.05   # head centre drawn uniformly within +- this of the field centre (m)
    placement_y_m: float = 0.03
    bits: int = 16                # THz PNG bit depth (8 or 16)
    size: int = 64

    def __post_init__(self) -> None:
        if self.n_identities < 2:
            raise ValueError(f"n_identities={self.n_identities}: triplets need at least 2 identities")
        if self.captures < 2:
            raise ValueError(f"captures={self.captures}: the split needs at least 2 captures (test + train)")
        if self.bits not in (8, 16):
            raise ValueError(f"bits={self.bits}: choose 8 or 16")
        for p in self.postures:
            if p not in POSTURES:
                raise ValueError(f"posture {p!r} not in {POSTURES}")

    @classmethod
    def small(cls, **kw: Any) -> "DatasetPlan":
        return cls(**{"n_identities": 4, "captures": 3, **kw})

    def units(self) -> list["Unit"]:
        """Every THz unit in the manifest's order (identity, posture, capture, concealed first)."""
        return [Unit(i, p, k, c) for i in range(self.n_identities) for p in self.postures
                for k in range(self.captures) for c in (True, False)]

    def visible_jobs(self) -> list[tuple]:
        return [("visible", i, p, c) for i in range(self.n_identities) for p in self.postures for c in (True, False)]

    def build_order(self) -> list[tuple]:
        """The order units are made in: the visible images (cheap, ~40 ms each), then the THz units
        capture-major (capture, posture, identity, concealed first): after the first 2 x n_identities THz
        units every identity has a concealed and an unconcealed scan, and at any point of a stopped build
        no identity has more than one (capture, posture) pair more than another; no identity is left out
        whole. The images do not depend on this order (every draw is seeded per unit)."""
        thz = sorted(self.units(), key=lambda u: (u.capture, self.postures.index(u.posture), u.identity,
                                                  not u.concealed))
        return [*self.visible_jobs(), *(("thz", u) for u in thz)]

    def split_of(self, identity: int, posture: str, capture: int) -> str:
        ss = np.random.SeedSequence([self.seed & 0xFFFFFFFF, 0x5B1, identity, POSTURES.index(posture)])
        order = list(np.random.default_rng(ss).permutation(self.captures))
        pos = order.index(capture)
        if pos == 0:
            return "test"
        if pos == 1 and self.captures >= 3:
            return "val"
        return "train"


@dataclass(frozen=True)
class Unit:
    """One THz scan of the dataset."""

    identity: int
    posture: str
    capture: int
    concealed: bool

    @property
    def stem(self) -> str:
        return f"thz/id{self.identity:03d}/{self.posture}/{'concealed' if self.concealed else 'unconcealed'}_c{self.capture}"

    def draws(self, plan: DatasetPlan) -> tuple[float, float, int, int]:
        """(offset_x_m, offset_y_m, capture_seed, scanner_seed) of this unit."""
        pose_key = 2 if plan.paired_pose else int(self.concealed)
        ss = np.random.SeedSequence([plan.seed & 0xFFFFFFFF, 0xCA7, self.identity, POSTURES.index(self.posture),
                                     self.capture, pose_key])
        rng = np.random.default_rng(ss)
        ox = float(rng.uniform(-plan.placement_x_m, plan.placement_x_m))
        oy = float(rng.uniform(-plan.placement_y_m, plan.placement_y_m))
        capture_seed = int(rng.integers(0, 2**31 - 1))
        noise = np.random.default_rng(np.random.SeedSequence(
            [plan.seed & 0xFFFFFFFF, 0x401, self.identity, POSTURES.index(self.posture), self.capture,
             int(self.concealed)]))
        return ox, oy, capture_seed, int(noise.integers(0, 2**31 - 1))


def visible_path(identity: int, posture: str, concealed: bool) -> str:
    return f"visible/id{identity:03d}/{posture}_{'concealed' if concealed else 'unconcealed'}.png"


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _png_bytes(img: Image.Image) -> bytes:
    import io
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def roi_to_png(roi: np.ndarray, bits: int) -> Image.Image:
    """[0, 1] float ROI -> grey PNG image: round(x (2^bits - 1)); 16-bit is mode I;16."""
    x = np.clip(np.asarray(roi, dtype=np.float64), 0.0, 1.0)
    if bits == 16:
        return Image.fromarray(np.rint(x * 65535).astype(np.uint16))
    return Image.fromarray(np.rint(x * 255).astype(np.uint8), mode="L")


def visible_to_png(img: np.ndarray) -> Image.Image:
    """Visible render (H, W) or (H, W, 3) float in [0, 1] -> 8-bit grey or RGB PNG image."""
    a = np.rint(np.clip(np.asarray(img, dtype=np.float64), 0.0, 1.0) * 255).astype(np.uint8)
    if a.ndim == 3 and a.shape[0] in (1, 3) and a.shape[-1] not in (1, 3):
        a = np.moveaxis(a, 0, -1)
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    return Image.fromarray(a, mode="L" if a.ndim == 2 else "RGB")


# ---------------------------------------------------------------- worker side (one per process)
def _plan_overrides(plan: "DatasetPlan", s: _WorkerSettings) -> dict[str, dict[str, Any]]:
    """What the plan sets over the config in a worker, by section (so not part of the image settings)."""
    return {"sim": {"seed": plan.seed, "population_seed": plan.population_seed,
                    "n_identities": max(plan.n_identities, s.sim.n_identities)},
            "processing": {"threads": 1, "frames_averaged": plan.frames_per_capture, "roi_size": plan.size}}


class _Worker:
    """Holds the virtual scanner, processor and face locator of one process."""

    def __init__(self, settings_json: str, plan: DatasetPlan, out: str) -> None:
        from processing.processor import FrameProcessor
        from processing.roi import FaceLocator
        from sim.scanner import VirtualScanner
        s = _WorkerSettings.model_validate_json(settings_json)
        self.settings = s
        self.plan = plan
        self.out = Path(out)
        over = _plan_overrides(plan, s)
        self.sim_cfg = s.sim.model_copy(update=over["sim"])
        self.proc_cfg = s.processing.model_copy(update=over["processing"])
        self.VirtualScanner = VirtualScanner
        self.processor = FrameProcessor(s.scanner, self.proc_cfg)
        self.processor.warm_up()
        self.locator = FaceLocator(s.scanner, self.proc_cfg)
        self.scanner = VirtualScanner(s.scanner, self.sim_cfg, plan.seed)
        self.code = image_code_hash()

    def thz(self, unit: Unit) -> dict[str, Any]:
        from sim.scene import Subject

        t0, c0 = time.perf_counter(), time.process_time()
        ox, oy, capture_seed, noise_seed = unit.draws(self.plan)
        vs = self.VirtualScanner(self.settings.scanner, self.sim_cfg, noise_seed)
        vs.set_scene(Subject(identity=unit.identity, posture=unit.posture, concealed=unit.concealed,
                             offset_x_m=ox, offset_y_m=oy, capture_seed=capture_seed))
        raws = [vs.acquire_frame(f) for f in range(self.plan.frames_per_capture)]
        t_sim = time.perf_counter() - t0
        frame = self.processor.average(raws)
        roi = self.locator.locate(frame.image, frame.scale)
        t_all = time.perf_counter() - t0
        meta: dict[str, Any] = {**asdict(unit), "offset_x_m": ox, "offset_y_m": oy, "capture_seed": capture_seed,
                                "scanner_seed": noise_seed, "frame_ids": frame.frame_ids, "roi": roi.meta(),
                                "t_sim_s": round(t_sim, 4), "t_total_s": round(t_all, 4),
                                "cpu_s": round(time.process_time() - c0, 4),
                                "truth": raws[-1].meta.get("truth")}
        if roi.found and roi.image is not None:
            _atomic_write_bytes(self.out / f"{unit.stem}.png", _png_bytes(roi_to_png(roi.image, self.plan.bits)))
        _atomic_write_bytes(self.out / f"{unit.stem}.json", json.dumps(meta, default=str).encode())
        return meta

    def visible(self, identity: int, posture: str, concealed: bool) -> str:
        img = self.scanner.render_visible(identity, posture, concealed, size=self.plan.size, capture_seed=None)
        rel = visible_path(identity, posture, concealed)
        _atomic_write_bytes(self.out / rel, _png_bytes(visible_to_png(img)))
        return rel


_WORKERS: dict[str, _Worker] = {}   # this process's workers, by WorkerSpec.key (one per build it serves)
_WORKERS_LOCK = threading.Lock()     # a worker of several threads runs one unit at a time (Numba's layer)


@dataclass(frozen=True)
class WorkerSpec:
    """What a worker process needs to make units: the settings' sections, the plan, the output folder."""

    settings_json: str
    plan: DatasetPlan
    out: str

    @property
    def key(self) -> str:
        blob = json.dumps([self.settings_json, asdict(self.plan), self.out], sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:12]


def _init_worker(settings_json: str, plan: DatasetPlan, out: str) -> _Worker:
    """This process's worker for the build (the scanner, processor and locator are made once per process)."""
    key = WorkerSpec(settings_json, plan, out).key
    with _WORKERS_LOCK:
        if key not in _WORKERS:
            _WORKERS[key] = _Worker(settings_json, plan, out)
        return _WORKERS[key]


def _drop_worker(key: str) -> None:
    """Forget this process's worker of build `key` (the build is over; a site's worker stays up)."""
    with _WORKERS_LOCK:
        _WORKERS.pop(key, None)


Job = tuple  # ("thz", Unit) or ("visible", identity, posture, concealed)


class JobResult(NamedTuple):
    """What a worker sends back for one job."""

    kind: str     # "thz", "visible" or "error"
    value: Any    # the THz unit's meta, the visible image's path, or the error's text
    written: str  # the file that marks the job done (relative to out): the build's main side checks it sees it
    code: str     # the worker's image_code_hash(): every worker must run the same image code


def _done_marker(job: Job) -> str:
    """The file whose presence marks a job done (a THz unit's JSON sidecar, a visible image)."""
    return f"{job[1].stem}.json" if job[0] == "thz" else visible_path(*job[1:])


def _run_job(key: str, job: Job) -> JobResult:
    """One job, on a worker, with the _Worker its WorkerPlugin made in this process."""
    w = _WORKERS.get(key)
    if w is None:
        raise RuntimeError(f"dataset worker {key} not set up in this process (its WorkerPlugin did not run)")
    with _WORKERS_LOCK:
        try:
            value = w.thz(job[1]) if job[0] == "thz" else w.visible(*job[1:])
            return JobResult(job[0], value, _done_marker(job), w.code)
        except Exception as exc:  # reported and retried on the next run, never half-written
            return JobResult("error", f"{job!r}: {type(exc).__name__}: {exc}", "", w.code)


def _job_key(job: Job, spec_key: str) -> str:
    """The task's name on the scheduler (and its dashboard): what it makes, and which build."""
    what = job[1].stem if job[0] == "thz" else visible_path(*job[1:])
    return f"{what}-{spec_key}"


# ---------------------------------------------------------------- driver
@dataclass
class DatasetSummary:
    out: str
    plan: dict[str, Any]
    thz_images: int = 0
    visible_images: int = 0
    no_face: int = 0
    failed: int = 0
    made_now: int = 0
    skipped_done: int = 0
    seconds: float = 0.0
    workers: int = 1
    scheduler: str = ""          # the --scheduler address; '' for the LocalCluster of this build
    complete: bool = False       # every unit of the plan has its outputs (False after a stop or failures)
    splits: dict[str, int] = field(default_factory=dict)
    mean_quality: float = 0.0
    errors: list[str] = field(default_factory=list)
    content_sha256_16: str = ""  # manifest + every image's bytes: what a rebuild must reproduce
    git_commit: str = ""         # the code that made the images ('+dirty': uncommitted changes to it)
    code_sha256_16: str = ""     # sha256 of that code's sources (CODE_PATHS): same value = same image code
    libraries: dict[str, str] = field(default_factory=dict)  # versions of the numerical libraries used
    runs: list[dict[str, Any]] = field(default_factory=list)  # each run's provenance and images made, oldest first
    mixed_code: bool = False     # the images were made by more than one code or library set (see runs)


def pending_jobs(out: Path, plan: DatasetPlan) -> tuple[list[Job], int]:
    """Jobs whose outputs are missing, in the build order (plan.build_order()), and the count already done."""
    jobs: list[Job] = []
    done = 0
    for job in plan.build_order():
        if (out / _done_marker(job)).is_file():
            done += 1
        else:
            jobs.append(job)
    return jobs, done


def collect_rows(out: Path, plan: DatasetPlan) -> tuple[list[Row], list[dict]]:
    """Manifest rows of the finished units (THz with a face, then visible) and every THz unit's meta."""
    rows: list[Row] = []
    metas: list[dict] = []
    for u in plan.units():
        jp = out / f"{u.stem}.json"
        if not jp.is_file():
            continue
        m = json.loads(jp.read_text())
        metas.append(m)
        if m["roi"]["found"] and (out / f"{u.stem}.png").is_file():
            rows.append(Row(path=f"{u.stem}.png", identity=u.identity, posture=u.posture, concealed=u.concealed,
                            modality="thz", capture=u.capture, split=plan.split_of(u.identity, u.posture, u.capture)))
    for i in range(plan.n_identities):
        for p in plan.postures:
            for c in (True, False):
                rel = visible_path(i, p, c)
                if (out / rel).is_file():
                    rows.append(Row(path=rel, identity=i, posture=p, concealed=c, modality="visible", capture=-1,
                                    split="train"))
    return rows, metas


class _Progress:
    """Counts results into the summary and the progress bar; checks that every worker runs this code."""

    def __init__(self, out: Path, summary: DatasetSummary, total: int, progress: bool,
                 on_done: Callable[[str, Any], None] | None) -> None:
        self.out = out
        self.summary = summary
        self.total = total
        self.progress = progress
        self.on_done = on_done
        self.code = image_code_hash()
        self.bar: Any = None

    def open(self) -> None:
        """Show the bar (once the jobs can run: after the cluster answered)."""
        from tqdm import tqdm

        self.bar = tqdm(total=self.total, initial=self.summary.skipped_done, desc="dataset", unit="img",
                        disable=not self.progress, dynamic_ncols=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def __call__(self, result: JobResult) -> None:
        kind, value, written, code = result
        if code != self.code:
            raise WorkerCodeMismatch(f"a worker runs other image code (sources hash {code}, this checkout "
                                     f"{self.code}): start the cluster's workers from this commit")
        if written and not (self.out / written).is_file():
            raise OutputNotShared(f"a worker wrote {written} where this machine does not see it: the cluster's "
                                  f"workers must see {self.out} at the same path (a shared filesystem)")
        if kind == "error":
            self.summary.failed += 1
            self.summary.errors.append(str(value))
            log.error("dataset unit failed", extra={"error": str(value)})
        else:
            self.summary.made_now += 1
            if kind == "thz" and not value["roi"]["found"]:
                unit = (f"id{value['identity']:03d}/{value['posture']}/"
                        f"{'concealed' if value['concealed'] else 'unconcealed'}_c{value['capture']}")
                log.warning("no face found; capture left out", extra={"unit": unit, "reason": value["roi"]["reason"]})
        if self.on_done is not None:
            self.on_done(kind, value)
        if self.bar is not None:
            self.bar.update(1)


def _run_here(spec: WorkerSpec, jobs: list[Job], handle: _Progress) -> None:
    """workers=0: every job in this process, in order (benchmarks, profilers); no cluster."""
    _init_worker(spec.settings_json, spec.plan, spec.out)
    handle.open()
    for job in jobs:
        handle(_run_job(spec.key, job))


def _run_on_cluster(spec: WorkerSpec, jobs: list[Job], handle: _Progress, summary: DatasetSummary) -> None:
    """Every job on the Dask cluster (a LocalCluster of summary.workers, or summary.scheduler's)."""
    from dataset.cluster import open_client, run_ordered, set_up_workers, worker_count

    with open_client(summary.workers, summary.scheduler or None) as client:
        if summary.scheduler:
            summary.workers = worker_count(client)
        setup = partial(_init_worker, spec.settings_json, spec.plan, spec.out)
        with set_up_workers(client, f"thz-dataset-{spec.key}", setup, partial(_drop_worker, spec.key)):
            handle.open()
            run_ordered(client, partial(_run_job, spec.key), jobs, [_job_key(j, spec.key) for j in jobs], handle)


@contextmanager
def _signals_interrupt() -> Iterator[None]:
    """SIGINT (Ctrl-C, `kill -INT`, even where the shell started the build with SIGINT ignored) and SIGTERM
    (a batch system's stop, `kill`) raise KeyboardInterrupt in the build's main thread while it runs."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    old = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)


def make_dataset(out: str | Path, plan: DatasetPlan, settings: DatasetSettings, workers: int = 1, progress: bool = True,
                 on_done: Callable[[str, Any], None] | None = None, scheduler: str | None = None) -> DatasetSummary:
    """Make (or finish) the dataset in `out`; returns the summary also written to out/dataset.json.

    The units run on Dask distributed: a LocalCluster of `workers` processes, or the cluster whose
    scheduler is at `scheduler` (then `workers` is ignored); workers=0 runs them in this process.
    Ctrl-C or SIGTERM cancels what is queued, ends the local cluster, writes the manifest and summary
    of what was made and raises BuildInterrupted; the same call again continues."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    _check_plan_file(out, plan)
    settings_json = settings.model_dump_json()
    jobs, done = pending_jobs(out, plan)
    earlier = _earlier_runs(out, settings_json) if done else []
    summary = DatasetSummary(str(out), asdict(plan), skipped_done=done, workers=max(0, workers),
                             scheduler=scheduler or "", runs=earlier)
    t0 = time.perf_counter()
    spec = WorkerSpec(_WorkerSettings.model_validate_json(settings_json).model_dump_json(), plan, str(out.resolve()))
    handle = _Progress(out, summary, len(jobs) + done, progress, on_done)
    try:
        with _signals_interrupt():
            if jobs and workers == 0 and not scheduler:
                _run_here(spec, jobs, handle)
            elif jobs:
                _run_on_cluster(spec, jobs, handle, summary)
    except KeyboardInterrupt:
        handle.close()
        raise BuildInterrupted(f"interrupted: {_kept(out, plan, summary, settings_json, t0)}; "
                               "run the same command again to continue") from None
    except BuildFailed as exc:
        handle.close()
        raise type(exc)(f"{exc}; {_kept(out, plan, summary, settings_json, t0)}; once that is fixed the same "
                        "command continues") from None
    finally:
        handle.close()
    return _finish(out, plan, summary, settings_json, t0)


def _kept(out: Path, plan: DatasetPlan, summary: DatasetSummary, settings_json: str, t0: float) -> str:
    """Write the manifest and summary of a stopped build; say what is kept."""
    _finish(out, plan, summary, settings_json, t0)
    made = summary.thz_images + summary.no_face + summary.visible_images
    return f"{made} of {len(plan.units()) + len(plan.visible_jobs())} images made and kept in {out}"


def _finish(out: Path, plan: DatasetPlan, summary: DatasetSummary, settings_json: str, t0: float) -> DatasetSummary:
    """Manifest, counts, contact sheet, content hash and provenance of what is in `out` now."""
    rows, metas = collect_rows(out, plan)
    write_manifest(out, rows)
    thz_rows = [r for r in rows if r.modality == "thz"]
    summary.thz_images = len(thz_rows)
    summary.visible_images = len(rows) - len(thz_rows)
    summary.no_face = sum(1 for m in metas if not m["roi"]["found"])
    summary.complete = len(metas) == len(plan.units()) and summary.visible_images == len(plan.visible_jobs())
    summary.splits = {s: sum(1 for r in thz_rows if r.split == s) for s in ("train", "val", "test")}
    q = [m["roi"]["quality"] for m in metas if m["roi"]["found"]]
    summary.mean_quality = float(np.mean(q)) if q else 0.0
    summary.seconds = round(time.perf_counter() - t0, 2)
    if thz_rows:
        _atomic_write_bytes(out / CONTACT_SHEET, _png_bytes(contact_sheet(out, rows, seed=plan.seed)))
    summary.content_sha256_16 = content_hash(out) if rows else ""
    summary.git_commit = source_commit(CODE_PATHS)
    summary.code_sha256_16 = image_code_hash()
    summary.libraries = library_versions(LIBRARIES)
    summary.runs = _with_this_run(summary.runs, _provenance(summary), summary.made_now)
    summary.mixed_code = len({_code_key(r) for r in summary.runs}) > 1
    _atomic_write_bytes(out / SUMMARY_FILE, json.dumps({**asdict(summary), "settings": json.loads(settings_json)},
                                                       indent=2, default=str).encode())
    return summary


def _provenance(info: DatasetSummary | dict[str, Any]) -> dict[str, Any]:
    d = asdict(info) if isinstance(info, DatasetSummary) else info
    return {k: d.get(k, "") for k in ("git_commit", "code_sha256_16", "libraries")}


def _code_key(run: dict[str, Any]) -> str:
    """What an image's bytes depend on besides plan and settings: the image code and the library versions."""
    return json.dumps([run.get("code_sha256_16", ""), run.get("libraries", {})], sort_keys=True)


def _with_this_run(runs: list[dict[str, Any]], prov: dict[str, Any], made: int) -> list[dict[str, Any]]:
    """runs + this run's entry; a run with the last entry's provenance is added to it, one that made nothing is
    left out (unless it is the first)."""
    runs = [dict(r) for r in runs]
    if runs and {**runs[-1], "made": 0} == {**prov, "made": 0}:
        runs[-1]["made"] += made
    elif made or not runs:
        runs.append({**prov, "made": made})
    return runs


def _image_settings(settings: dict[str, Any]) -> dict[str, Any]:
    """The settings the images depend on, without what the plan sets over them (seeds, sizes, frames)."""
    w = _WorkerSettings.model_validate(settings)
    s = w.model_dump(mode="json")
    unused = {"processing": ("publish_endpoint",)}   # the builder publishes nothing
    for section, keys in _plan_overrides(DatasetPlan(), w).items():
        for k in (*keys, *unused.get(section, ())):
            s[section].pop(k, None)
    return s


def _differences(a: Any, b: Any, at: str = "") -> list[str]:
    """Dotted paths where two JSON values differ."""
    if isinstance(a, dict) and isinstance(b, dict):
        return [d for k in sorted(set(a) | set(b)) for d in _differences(a.get(k), b.get(k), f"{at}.{k}" if at else k)]
    return [] if a == b else [at]


def _earlier_runs(out: Path, settings_json: str) -> list[dict[str, Any]]:
    """The runs that made the images already in `out` (its dataset.json). Refuses other image settings (a
    different dataset); warns when the code or the libraries differ from this process's."""
    p = out / SUMMARY_FILE
    if not p.is_file():
        return []
    info = json.loads(p.read_text())
    if "settings" in info:
        diff = _differences(_image_settings(info["settings"]), _image_settings(json.loads(settings_json)))
        if diff:
            raise ValueError(f"{out} holds images made with other settings ({', '.join(diff[:3])}"
                             f"{', ...' if len(diff) > 3 else ''}); choose another --out or use the settings of "
                             f"{p}")
    runs = info.get("runs") or [{**_provenance(info), "made": int(info.get("thz_images", 0))
                                 + int(info.get("no_face", 0)) + int(info.get("visible_images", 0))}]
    now = {"code_sha256_16": image_code_hash(), "libraries": library_versions(LIBRARIES)}
    if any(_code_key(r) != _code_key(now) for r in runs):
        log.warning("resuming a build made by other code or libraries: its images keep their bytes, the "
                    "summary records each run (mixed_code)",
                    extra={"out": str(out), "earlier": [r.get("git_commit") for r in runs],
                           "now": source_commit(CODE_PATHS)})
    return runs


def _check_plan_file(out: Path, plan: DatasetPlan) -> None:
    """Refuse to resume a directory made with a different plan (seeds, sizes): it would mix datasets.

    A plan that differs only in having more identities grows the build: every unit and split is seeded
    per identity (Unit.draws, DatasetPlan.split_of, Population.identity), so the units already made are
    the ones the larger plan would make, and the grown build has the bytes of a fresh one."""
    p = out / "plan.json"
    mine = json.loads(json.dumps(asdict(plan)))   # as it reads back (tuples become lists)
    if p.is_file():
        theirs = json.loads(p.read_text())
        if theirs == mine:
            return
        grows = ({k: v for k, v in theirs.items() if k != "n_identities"}
                 == {k: v for k, v in mine.items() if k != "n_identities"}
                 and plan.n_identities > int(theirs.get("n_identities", 0)))
        if not grows:
            raise ValueError(f"{out} holds a dataset made with a different plan ({p}); choose another --out "
                             "or delete it to start over (only --identities may grow)")
    _atomic_write_bytes(p, json.dumps(mine, sort_keys=True).encode())

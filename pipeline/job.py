"""The main job: scanner -> acquisition -> processing -> inference -> results, as threads of one process.

Stages (each a thread with its own ZMQ sockets; one stop event; Ctrl-C in the main thread stops all):
  raw source   --sim: the scanner emulator (galvo on a pty, receiver on SCPI/TCP) driven by the
               acquisition daemon when `acquisition.daemon` is available, else the virtual scanner
               publishing `raw` directly (SimRawSource); without --sim: the acquisition daemon on
               the configured hardware
  processing   processing.stage.ProcessingStage.serve: SUB raw -> PUB frame/roi
  inference    inference.stage.InferenceStage: SUB roi -> XPUB result
  collector    this module: SUB result and roi, hands results to the job's main loop
The siblings upstream (sim, acquisition, processing) are imported here only, inside functions,
since inference itself needs none of them.

--sim sequence: enrol every subject from unconcealed scans (one template per posture, posture
told by the operator, i.e. the scene), then scan each concealed in every posture and verify it
against its true identity and one impostor. After a scene change, only results whose averaged
frames all belong to the new scene are scored ("clean"): the averaging window must refill.
"""
from __future__ import annotations

import queue
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import zmq

from inference.engines.base import Engine
from inference.gallery import Gallery
from inference.results import ResultMeta, decode_result
from inference.stage import InferenceStage
from pipeline.summary import ScanRecord, percentile, stage_medians, summarise
from thzcore.logs import get_logger
from thzcore.wire import Message, WireError, decode, encode

log = get_logger(__name__)
LOCAL_ANY = "tcp://127.0.0.1:*"
# --sim raw sources: emulator = device emulators + acquisition daemon; direct = the virtual scanner
# publishing `raw` itself; auto = emulator when the acquisition daemon is installed, else direct
RAW_SOURCES = ("auto", "emulator", "direct")


class JobError(RuntimeError):
    """The job cannot run as configured; the message says what to change."""


def _echo(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# --- raw sources ------------------------------------------------------------------------------------
class SimRawSource:
    """The virtual scanner publishing `raw` frames directly (no device emulation, no acquisition daemon).

    Frames are acquired back to back with the current scene; t_acquired is the wall-clock time the
    frame was complete. The XPUB socket waits for the processing stage's subscription before the
    first frame, so none is lost to a slow joiner.
    """

    def __init__(self, settings, seed: int = 0, endpoint: str = LOCAL_ANY, context: zmq.Context | None = None,
                 realtime: bool = False) -> None:
        self.settings = settings
        self.seed = seed
        self.endpoint = endpoint
        self.ctx = context or zmq.Context.instance()
        self.realtime = realtime
        self.bound: str | None = None
        self.ready = threading.Event()
        self.frames = 0
        self.error: BaseException | None = None
        self._scene = None
        self._lock = threading.Lock()

    def set_scene(self, scene: dict | None) -> None:
        from sim.scene import scene_from_json
        with self._lock:
            self._scene = scene_from_json(scene) if scene is not None else None

    def run(self, stop: threading.Event) -> None:
        from sim.scanner import VirtualScanner

        pub = self.ctx.socket(zmq.XPUB)
        pub.setsockopt(zmq.LINGER, 0)
        pub.setsockopt(zmq.SNDHWM, 8)
        try:
            pub.bind(self.endpoint)
            self.bound = pub.getsockopt_string(zmq.LAST_ENDPOINT)
            vs = VirtualScanner(self.settings.scanner, self.settings.sim, self.seed)
            self.ready.set()
            while not stop.is_set() and not pub.poll(100):  # wait for the processing stage's subscription
                pass
            if stop.is_set():
                return
            pub.recv()
            scene, frame_id = None, 0
            period = self.settings.scanner.raster.frame_duration_s
            t_next = time.time()
            while not stop.is_set():
                with self._lock:
                    want = self._scene
                if want != scene:
                    vs.set_scene(want)
                    scene = want
                if scene is None:
                    stop.wait(0.05)
                    continue
                raw = vs.acquire_frame(frame_id)
                if self.realtime:
                    t_next += period
                    stop.wait(max(0.0, t_next - time.time()))
                raw.t_acquired = time.time()
                raw.meta["t_complete"] = raw.t_acquired  # this source stamps the frame when it is complete
                raw.scanner_id = self.settings.scanner.scanner_id
                raw.meta["calibration_id"] = self.settings.acquisition.calibration_id or None
                while pub.poll(0):  # subscription events, not needed after the first
                    pub.recv()
                pub.send_multipart(encode(raw.to_message(seq=frame_id)))
                frame_id += 1
                self.frames += 1
        except BaseException as exc:
            self.error = exc
            self.ready.set()
            log.exception("sim raw source died")
        finally:
            pub.close(0)


# --- collector ------------------------------------------------------------------------------------
@dataclass
class Collected:
    msg: Message
    meta: ResultMeta
    roi: np.ndarray | None
    reconstruction: np.ndarray | None


class Collector:
    """SUB `result` (and `roi` for the report): results go to `queue`, ROIs are kept by frame id."""

    def __init__(self, result_endpoint: str, roi_endpoint: str | None, context: zmq.Context,
                 view=None, status_endpoint: str | None = None) -> None:
        self.result_endpoint = result_endpoint
        self.roi_endpoint = roi_endpoint
        self.ctx = context
        self.view = view  # pipeline.view.LiveView, fed with frames, results and link state
        self.status_endpoint = status_endpoint
        self.queue: "queue.Queue[Collected]" = queue.Queue()
        self.ready = threading.Event()
        self.rois: dict[tuple[str, int], np.ndarray] = {}
        self.malformed = 0

    def run(self, stop: threading.Event) -> None:
        res = self.ctx.socket(zmq.SUB)
        res.setsockopt(zmq.LINGER, 0)
        res.setsockopt(zmq.SUBSCRIBE, b"result")
        res.connect(self.result_endpoint)
        poller = zmq.Poller()
        poller.register(res, zmq.POLLIN)
        roi = status = None
        if self.roi_endpoint:
            roi = self.ctx.socket(zmq.SUB)
            roi.setsockopt(zmq.LINGER, 0)
            roi.setsockopt(zmq.SUBSCRIBE, b"roi")
            if self.view is not None:
                roi.setsockopt(zmq.SUBSCRIBE, b"frame")
            roi.connect(self.roi_endpoint)
            poller.register(roi, zmq.POLLIN)
        if self.view is not None and self.status_endpoint:
            status = self.ctx.socket(zmq.SUB)
            status.setsockopt(zmq.LINGER, 0)
            status.setsockopt(zmq.SUBSCRIBE, b"status")
            status.connect(self.status_endpoint)
            poller.register(status, zmq.POLLIN)
        self.ready.set()
        pending: list[tuple[float, Message, ResultMeta]] = []  # results whose ROI has not arrived yet
        try:
            while not stop.is_set():
                ev = dict(poller.poll(20 if pending else 100))
                if roi is not None and roi in ev:
                    while True:
                        try:
                            m = decode(roi.recv_multipart(zmq.NOBLOCK))
                        except zmq.Again:
                            break
                        except WireError:
                            self.malformed += 1
                            continue
                        if m.topic == "frame" and self.view is not None and "frame" in m.arrays:
                            self.view.on_frame(m.frame_id, m.arrays["frame"], m.meta)
                        elif m.topic == "roi" and "roi" in m.arrays:
                            self.rois[(m.scanner_id, m.frame_id)] = np.array(m.arrays["roi"], np.float32)
                            if len(self.rois) > 512:
                                self.rois.pop(next(iter(self.rois)))
                if status is not None and status in ev:
                    while True:
                        try:
                            m = decode(status.recv_multipart(zmq.NOBLOCK), expect_topic="status")
                        except zmq.Again:
                            break
                        except WireError:
                            self.malformed += 1
                            continue
                        self.view.on_status(str(m.meta.get("state", "?")), str(m.meta.get("reason", "")))
                if res in ev:
                    while True:
                        try:
                            msg, meta = decode_result(res.recv_multipart(zmq.NOBLOCK))
                        except zmq.Again:
                            break
                        except WireError:
                            self.malformed += 1
                            continue
                        pending.append((time.time(), msg, meta))
                now = time.time()
                keep = []
                for t, msg, meta in pending:  # the two SUB sockets race: wait up to 1 s for the ROI
                    image = self.rois.get((msg.scanner_id, msg.frame_id))
                    if image is None and roi is not None and now - t < 1.0:
                        keep.append((t, msg, meta))
                        continue
                    rec = msg.arrays.get("reconstruction")
                    c = Collected(msg, meta, image, None if rec is None else np.array(rec))
                    if self.view is not None:
                        self.view.on_result(msg.frame_id, meta, image, c.reconstruction)
                    self.queue.put(c)
                pending = keep
        finally:
            res.close(0)
            for sock in (roi, status):
                if sock is not None:
                    sock.close(0)


# --- the pipeline -----------------------------------------------------------------------------------
@dataclass
class _Worker:
    name: str
    thread: threading.Thread
    error: Callable[[], BaseException | None] = lambda: None


class Pipeline:
    """Start/stop the stages as threads of this process. Use as a context manager.

    `endpoints` overrides result/roi/raw publish endpoints (default: loopback ephemeral ports
    for the internal hops and inference.result_endpoint for results, so clients can subscribe).
    """

    def __init__(self, settings, engine: Engine | None, sim: bool = True, gallery_path: str | Path | None = None,
                 result_endpoint: str | None = None, reconstruction: bool | None = None, seed: int | None = None,
                 collect_rois: bool = True, raw_source: str = "auto", view=None, calibration=None) -> None:
        if raw_source not in RAW_SOURCES:
            raise ValueError(f"raw_source={raw_source!r}: choose one of {RAW_SOURCES}")
        self.raw_source = raw_source
        self.view = view
        self.settings = settings
        self.calibration = calibration  # ProcessingCalibration in force (pipeline.prescan), or None: uncalibrated
        self.engine = engine
        self.sim = sim
        self.gallery_path = gallery_path
        self.result_endpoint = result_endpoint or settings.inference.result_endpoint
        self.reconstruction = reconstruction
        self.seed = settings.sim.seed if seed is None else seed
        self.collect_rois = collect_rois
        self.ctx = zmq.Context()
        self.stop_event = threading.Event()
        self.workers: list[_Worker] = []
        self.source: Any = None
        self.emulator: Any = None
        self.processing: Any = None
        self.stage: InferenceStage | None = None
        self.collector: Collector | None = None
        self.roi_endpoint: str | None = None
        self.daemon: Any = None
        self._daemon_dir: Any = None
        self.truth_margin = 0  # frames to skip after the first one labelled with a new scene
        self.t_started = 0.0

    def __enter__(self) -> "Pipeline":
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def _thread(self, name: str, target: Callable[[], None], error: Callable[[], BaseException | None]) -> None:
        t = threading.Thread(target=target, name=name, daemon=True)
        t.start()
        self.workers.append(_Worker(name, t, error))

    def start(self) -> None:
        self.t_started = time.time()
        raw_endpoint = self._start_raw_source()
        self._start_processing(raw_endpoint)
        if self.engine is not None:
            self.stage = InferenceStage(self.engine, self.settings.inference, roi_endpoint=self.roi_endpoint,
                                        result_endpoint=self.result_endpoint, gallery_path=self.gallery_path,
                                        min_subscribers=1, reconstruction=self.reconstruction, context=self.ctx)
            self.stage.start()
            self.workers.append(_Worker("inference", self.stage._thread, lambda: self.stage.error))
            status = self.daemon.endpoints.get("status") if self.daemon is not None else None
            self.collector = Collector(self.stage.bound_endpoint,
                                       self.roi_endpoint if (self.collect_rois or self.view) else None, self.ctx,
                                       view=self.view, status_endpoint=status)
        else:
            self.collector = Collector("inproc://none", self.roi_endpoint, self.ctx)
        self._thread("collector", lambda: self.collector.run(self.stop_event), lambda: None)
        self.collector.ready.wait(5)
        if self.stage is not None and not self.stage.subscribed.wait(10):  # XPUB handshake, no sleep
            raise JobError("the result collector's subscription never reached the inference stage")

    def _start_raw_source(self) -> str:
        if self.sim:
            daemon_cls = _acquisition_daemon() if self.raw_source != "direct" else None
            if self.raw_source == "emulator" and daemon_cls is None:
                raise JobError("raw source 'emulator' needs the acquisition daemon (acquisition.daemon)")
            if daemon_cls is not None:
                return self._start_emulated_hardware(daemon_cls)
            self.source = SimRawSource(self.settings, self.seed, LOCAL_ANY, self.ctx)
            self._thread("sim-source", lambda: self.source.run(self.stop_event), lambda: self.source.error)
            if not self.source.ready.wait(30) or self.source.error is not None:
                raise JobError(f"virtual scanner failed to start: {self.source.error}")
            return self.source.bound
        daemon_cls = _acquisition_daemon()
        if daemon_cls is None:
            raise JobError("`thz run` without --sim needs the acquisition daemon (acquisition.daemon), which this "
                           "installation lacks; use `thz run --sim`")
        return self._start_daemon(daemon_cls, {})

    def _start_emulated_hardware(self, daemon_cls) -> str:
        """The scanner emulator (real pty + SCPI transports) in this process, driven by the acquisition daemon."""
        from sim.emulators.server import ScannerEmulator

        self.emulator = ScannerEmulator(self.settings.scanner, self.settings.sim, seed=self.seed, realtime=False)
        ends = self.emulator.start()
        self.truth_margin = 1  # the daemon labels a frame when it arrives: the scene may have changed mid-frame
        return self._start_daemon(daemon_cls, {"galvo_port": ends["galvo_port"],
                                               "galvo_baudrate": ends["galvo_baudrate"],
                                               "receiver_resource": ends["receiver_resource"],
                                               "raw_endpoint": LOCAL_ANY, "status_endpoint": LOCAL_ANY,
                                               "record": False},
                                  truth=self._emulated_truth)

    def _emulated_truth(self) -> dict | None:
        scene = self.emulator.physics.scene()
        if scene is None:
            return None
        return {"scene": scene, **{k: scene[k] for k in ("identity", "posture", "concealed") if k in scene}}

    def _start_daemon(self, daemon_cls, overrides: dict, truth=None) -> str:
        """The acquisition daemon in a thread; `overrides` replace acquisition settings (emulator addresses)."""
        acq = self.settings.acquisition.model_copy(update=overrides)
        settings = self.settings.model_copy(update={"acquisition": acq})
        out_dir = None
        if not acq.record:
            self._daemon_dir = tempfile.TemporaryDirectory(prefix="thz-run-")  # run log only
            out_dir = self._daemon_dir.name
        self.daemon = daemon_cls(settings, out_dir=out_dir, sim_seed=self.seed if self.sim else None,
                                 publish=True, record=acq.record, truth=truth)
        result: list = []

        def run() -> None:
            try:
                result.append(self.daemon.run())
            except BaseException as exc:
                result.append(exc)

        def error():
            if result and isinstance(result[0], BaseException):
                return result[0]
            if result and getattr(result[0], "exit_code", 0) != 0 and not self.stop_event.is_set():
                return JobError(f"acquisition ended: {result[0].reason}")
            return None

        self._thread("acquisition", run, error)
        deadline = time.time() + 60
        while "raw" not in self.daemon.endpoints:  # bound in the daemon's first step
            if result or time.time() > deadline:
                raise JobError(f"acquisition daemon did not come up: {error() or 'timeout'}")
            self.stop_event.wait(0.05)
        return self.daemon.endpoints["raw"]

    def _start_processing(self, raw_endpoint: str) -> None:
        from processing.stage import ProcessingStage

        self.processing = ProcessingStage(self.settings.scanner, self.settings.processing,
                                          calibration=self.calibration,
                                          calibration_dir=self.settings.calibration.store)
        ready, bound = threading.Event(), []
        err: list[BaseException] = []

        def serve() -> None:
            try:
                self.processing.serve(raw_endpoint, LOCAL_ANY, stop=self.stop_event, ready=ready, bound=bound)
            except BaseException as exc:
                err.append(exc)
                ready.set()
                log.exception("processing stage died")

        self._thread("processing", serve, lambda: err[0] if err else None)
        if not ready.wait(60) or err:
            raise JobError(f"processing stage failed to start: {err[0] if err else 'timeout'}")
        self.roi_endpoint = bound[0]

    def set_scene(self, scene: dict | None) -> None:
        if self.emulator is not None:
            self.emulator.handle({"cmd": "set_scene", "scene": scene})
        elif isinstance(self.source, SimRawSource):
            self.source.set_scene(scene)
        else:
            raise JobError("no simulated scene to set: this pipeline runs on hardware")

    def check_alive(self) -> None:
        for w in self.workers:
            err = w.error()
            if err is not None:
                raise JobError(f"{w.name} stage failed: {err}")
            if not w.thread.is_alive() and not self.stop_event.is_set():
                raise JobError(f"{w.name} stage stopped unexpectedly")

    def frames_acquired(self) -> int:
        if isinstance(self.source, SimRawSource):
            return self.source.frames
        if self.daemon is not None:
            return int(self.daemon.frames)
        if self.processing is not None:
            return self.processing.counters.received
        return 0

    def stop(self) -> None:
        self.stop_event.set()
        if self.daemon is not None:
            self.daemon.request_stop("thz run stopping")
        if self.stage is not None:
            self.stage.stop()
        for w in self.workers:
            w.thread.join(15)
        if self.emulator is not None:
            self.emulator.stop()
        if self._daemon_dir is not None:
            self._daemon_dir.cleanup()
        self.ctx.destroy(linger=0)

    # --- scanning ---
    def clean_results(self, scene: dict, n: int, timeout_s: float,
                      on_result: Callable[[Collected], None] | None = None) -> list[Collected]:
        """Show `scene`, return the next `n` results whose averaged frames all show it."""
        assert self.collector is not None
        self.set_scene(scene)
        first_new: int | None = None
        out: list[Collected] = []
        deadline = time.time() + timeout_s
        while len(out) < n:
            self.check_alive()
            left = deadline - time.time()
            if left <= 0:
                raise JobError(f"no clean result for scene {scene} within {timeout_s:.0f} s "
                               f"({len(out)}/{n}); frames acquired so far: {self.frames_acquired()}")
            try:
                c = self.collector.queue.get(timeout=min(0.5, left))
            except queue.Empty:
                continue
            truth = c.meta.truth or {}
            if truth.get("scene") != scene:
                continue
            ids = c.meta.frame_ids or [c.msg.frame_id]
            if first_new is None:  # the newest frame of the first matching average shows the scene
                first_new = max(ids) + self.truth_margin
            if min(ids) >= first_new:
                out.append(c)
                if on_result is not None:
                    on_result(c)
        return out

    def clean_rois(self, scene: dict, n: int, timeout_s: float) -> list[tuple[Message, np.ndarray]]:
        """Like clean_results, for ROIs of the processing stage (no inference stage needed)."""
        from sim.scene import scene_from_json  # noqa: F401  (validates that sim is importable)

        sub = self.ctx.socket(zmq.SUB)
        sub.setsockopt(zmq.LINGER, 0)
        sub.setsockopt(zmq.SUBSCRIBE, b"roi")
        sub.connect(self.roi_endpoint)
        try:
            # the processing PUB has no handshake: ROIs lost while this SUB joins are not clean anyway
            self.set_scene(scene)
            first_new, out = None, []
            deadline = time.time() + timeout_s
            while len(out) < n:
                self.check_alive()
                if time.time() > deadline:
                    raise JobError(f"no clean ROI for scene {scene} within {timeout_s:.0f} s")
                if not sub.poll(500):
                    continue
                try:
                    m = decode(sub.recv_multipart(), expect_topic="roi")
                except WireError:
                    continue
                if (m.meta.get("truth") or {}).get("scene") != scene:
                    continue
                ids = m.meta.get("frame_ids") or [m.frame_id]
                if first_new is None:
                    first_new = max(ids) + self.truth_margin
                if min(ids) >= first_new and "roi" in m.arrays:
                    out.append((m, np.array(m.arrays["roi"], np.float32)))
            return out
        finally:
            sub.close(0)


def _acquisition_daemon():
    """The acquisition daemon class when that package provides it, else None."""
    try:
        from acquisition.daemon import AcquisitionDaemon  # type: ignore[import-not-found]
    except ImportError:
        return None
    return AcquisitionDaemon


def subject_scene(identity: int, posture: str, concealed: bool, capture_seed: int) -> dict:
    """The scene JSON of population member `identity` in `posture` (the backdoor and SimRawSource take it)."""
    from sim.scene import Subject
    return Subject(identity=identity, posture=posture, concealed=concealed,
                   capture_seed=capture_seed).model_dump(mode="json")


def subject_id(identity: int) -> str:
    return f"sim-{identity:03d}"


# --- entry points ---------------------------------------------------------------------------------------
def run_sim(settings, engine: Engine, n_subjects: int = 4, postures: list[str] | None = None,
            scans_per_posture: int = 1, gallery_path: str | None = None, report_dir: str | None = None,
            seed: int | None = None, result_endpoint: str | None = None, scene_timeout_s: float = 60.0,
            raw_source: str = "auto", view=None, echo: Callable[[str], None] = _echo, calibration=None,
            identities: list[int] | None = None) -> dict:
    """Enrol, scan concealed, verify genuine + impostor claims, summarise, write the report.

    The subjects are population members 0..n_subjects-1, or `identities` when given (e.g. people the
    model never trained on).
    """
    from thzcore.labels import POSTURES

    postures = list(postures or POSTURES)
    identities = sorted(set(identities)) if identities is not None else list(range(n_subjects))
    n_subjects = len(identities)
    if n_subjects < 2:
        raise JobError(f"{n_subjects} subject(s): need at least 2 (each scan is also checked against an impostor)")
    outside = [i for i in identities if i >= settings.sim.n_identities]
    if outside:
        raise JobError(f"identities {outside} are outside the simulated population of sim.n_identities="
                       f"{settings.sim.n_identities} (0..{settings.sim.n_identities - 1}): set [sim] n_identities = "
                       f"{max(outside) + 1} or more in the config file (each member is drawn from its own index, "
                       "so the others stay the same)")
    seed = settings.sim.seed if seed is None else seed
    rng = np.random.default_rng([seed, 0x5EED])
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out_dir = Path(report_dir or Path(settings.inference.report_dir) / f"run-{stamp}")
    out_dir.mkdir(parents=True, exist_ok=True)
    gpath = Path(gallery_path) if gallery_path else out_dir / "gallery.sqlite"
    records: list[ScanRecord] = []
    t0 = time.time()
    info: dict[str, Any] = {"engine": engine.name, "model_id": engine.model_id, "preset": engine.bundle.manifest.preset,
                            "threshold": engine.bundle.threshold, "subjects": ", ".join(map(subject_id, identities)),
                            "postures": ",".join(postures),
                            "gallery": str(gpath), "seed": seed, "scanner_id": settings.scanner.scanner_id}
    interrupted = False
    pipe = Pipeline(settings, engine, sim=True, gallery_path=gpath, result_endpoint=result_endpoint,
                    seed=seed, raw_source=raw_source, view=view, calibration=calibration)
    try:
        with pipe:
            info["raw_source"] = "emulator+acquisition" if pipe.emulator is not None else "virtual scanner (direct)"
            echo(f"pipeline up: {info['raw_source']} -> processing -> {engine.name} -> results at "
                 f"{pipe.stage.bound_endpoint}")
            # 1) enrolment from unconcealed scans, the posture told by the operator (the scene)
            with Gallery(gpath, engine.model_id, engine.bundle.manifest.embedding_size) as gallery:
                for i in identities:
                    for p in postures:
                        scene = subject_scene(i, p, False, int(rng.integers(1 << 31)))
                        got = pipe.clean_results(scene, 1, scene_timeout_s)
                        roi = got[0].roi
                        if roi is None:
                            raise JobError(f"no ROI image for frame {got[0].msg.frame_id} (collector missed it)")
                        emb = engine.infer(roi)["embedding"][0]
                        gallery.enroll(subject_id(i), emb, p, source=f"sim:{got[0].msg.frame_id}",
                                       frame_id=got[0].msg.frame_id)
                    echo(f"enrolled {subject_id(i)}: {len(postures)} postures (unconcealed)")
            info["enrolment_s"] = round(time.time() - t0, 1)
            # 2) concealed scans, genuine + one impostor claim each
            total = n_subjects * len(postures) * scans_per_posture
            for i in identities:
                for p in postures:
                    impostor = identities[(identities.index(i) + 1 + int(rng.integers(n_subjects - 1))) % n_subjects]
                    claims = [subject_id(i), subject_id(impostor)]
                    pipe.stage.set_claims(claims)
                    scene = subject_scene(i, p, True, int(rng.integers(1 << 31)))
                    for c in pipe.clean_results(scene, scans_per_posture, scene_timeout_s):
                        r = _record(c, subject_id(i), p, claims[1])
                        records.append(r)
                        echo(_progress(len(records), total, r))
            pipe.stage.set_claims([])
            counters = pipe.stage.counters.to_json()
            frames = pipe.frames_acquired()
            proc_counters = pipe.processing.counters.to_json()
    except KeyboardInterrupt:
        interrupted = True
        echo("interrupted: all stages stopped; summary of the scans so far")
        counters, frames, proc_counters = (pipe.stage.counters.to_json() if pipe.stage else {}), \
            pipe.frames_acquired(), (pipe.processing.counters.to_json() if pipe.processing else {})
    summary = summarise(records, engine.bundle.threshold)
    summary.update(raw_frames=frames, duration_s=round(time.time() - t0, 1), engine=engine.name,
                   model_id=engine.model_id, subjects=n_subjects, interrupted=interrupted,
                   inference_counters={k: counters.get(k) for k in ("received", "published", "dropped_malformed",
                                                                    "dropped_stale", "decision_errors")},
                   processing_counters={k: proc_counters.get(k) for k in ("received", "emitted", "faces", "no_face",
                                                                          "dropped_malformed")})
    report = write_report_files(out_dir, summary, records, info)
    summary["report"] = str(report)
    echo(_summary_text(summary))
    return summary


def write_report_files(out_dir: Path, summary: dict, records: list[ScanRecord], info: dict) -> Path:
    from pipeline.report import write_report
    return write_report(out_dir / "report.html", summary, records, info)


def _record(c: Collected, subject: str, posture: str, impostor: str) -> ScanRecord:
    m = c.meta
    v = {x.claim: x for x in m.verification}
    g, im = v.get(subject), v.get(impostor)
    return ScanRecord(
        frame_id=c.msg.frame_id, subject=subject, posture_true=posture, posture_pred=m.posture.name,
        posture_prob=max(m.posture.probabilities.values()),
        genuine_distance=g.distance if g else None, genuine_accepted=g.accepted if g else None,
        impostor_claim=impostor, impostor_distance=im.distance if im else None,
        impostor_accepted=im.accepted if im else None,
        identified=m.identification.identity if m.identification else None,
        latency_ms=m.scan_to_result_ms(),
        inference_ms=m.latency_ms.get("inference", float("nan")), errors=list(m.errors), roi=c.roi,
        stages_ms=m.stages_ms(),
        reconstruction=c.reconstruction)


def _progress(k: int, total: int, r: ScanRecord) -> str:
    ok = "ok" if r.posture_pred == r.posture_true else "WRONG"
    g = i = "-"
    if r.genuine_accepted is not None:
        g = f"{'accept' if r.genuine_accepted else 'REJECT'} {r.genuine_distance:.3f}"
    if r.impostor_accepted is not None:
        i = f"{'ACCEPT' if r.impostor_accepted else 'reject'} {r.impostor_distance:.3f}"
    return (f"[{k}/{total}] {r.subject} {r.posture_true:<12} concealed: posture {r.posture_pred} "
            f"({r.posture_prob:.2f}, {ok}); genuine {g}; impostor {r.impostor_claim} {i}; "
            f"id {r.identified}; {r.latency_ms:.0f} ms")


def _summary_text(s: dict) -> str:
    def pct(v):
        return "-" if v is None else f"{100 * v:.1f}%"

    def ms(v):
        return "-" if v is None else f"{v:.1f} ms"
    return (f"summary: {s['frames']} concealed scans, {s['raw_frames']} raw frames, {s['duration_s']} s\n"
            f"  posture accuracy       {pct(s['posture_accuracy'])}\n"
            f"  verification accuracy  {pct(s['verification_accuracy'])} over {s['claims']} claims "
            f"(genuine accepted {pct(s['genuine_accept_rate'])}, impostors rejected {pct(s['impostor_reject_rate'])})\n"
            f"  identification rank-1  {pct(s['identification_rank1'])}\n"
            f"  latency scan->result   p50 {ms(s['p50_latency_ms'])}, p99 {ms(s['p99_latency_ms'])}; "
            f"inference {ms(s['inference_ms_p50'])}\n"
            + ("  stages (p50)           " + ", ".join(f"{k.replace('_', ' ')} {ms(v)}"
                                                        for k, v in s["stage_p50_ms"].items()) + "\n"
               if s.get("stage_p50_ms") else "")
            + f"  report                 {s.get('report', '-')}")


def run_hardware(settings, engine: Engine, gallery_path: str | None = None, max_results: int | None = None,
                 result_endpoint: str | None = None, view=None, echo: Callable[[str], None] = _echo,
                 calibration=None) -> dict:
    """Run the configured scanner until Ctrl-C (or max_results), printing each result."""
    lat: list[float] = []
    splits: list[dict[str, float]] = []
    n = 0
    t0 = time.time()
    interrupted = False
    pipe = Pipeline(settings, engine, sim=False, gallery_path=gallery_path, collect_rois=False,
                    result_endpoint=result_endpoint, view=view, calibration=calibration)
    try:
        with pipe:
            echo(f"running: results published at {pipe.stage.bound_endpoint}; Ctrl-C stops")
            while max_results is None or n < max_results:
                pipe.check_alive()
                try:
                    c = pipe.collector.queue.get(timeout=0.5)
                except queue.Empty:
                    continue
                n += 1
                lat.append(c.meta.scan_to_result_ms())
                splits.append(c.meta.stages_ms())
                ident = c.meta.identification.identity if c.meta.identification else None
                echo(f"frame {c.msg.frame_id}: posture {c.meta.posture.name} "
                     f"({max(c.meta.posture.probabilities.values()):.2f}) id {ident} {lat[-1]:.0f} ms")
    except KeyboardInterrupt:
        interrupted = True
    return {"frames": n, "posture_accuracy": None, "verification_accuracy": None,
            "p50_latency_ms": percentile(lat, 50), "p99_latency_ms": percentile(lat, 99),
            "stage_p50_ms": stage_medians(splits),
            "duration_s": round(time.time() - t0, 1), "interrupted": interrupted, "engine": engine.name,
            "model_id": engine.model_id}


__all__ = ["Pipeline", "JobError", "run_sim", "run_hardware", "SimRawSource", "subject_id"]

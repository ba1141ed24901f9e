"""The Pipeline: scanner -> acquisition -> processing -> inference -> results, as threads of one process.

Stages (each a thread with its own ZMQ sockets; one stop event; Ctrl-C in the main thread stops all):
  raw source   --sim: the scanner emulator (galvo on a pty, receiver on SCPI/TCP) driven by the
               acquisition daemon, or with raw_source="direct" the virtual scanner publishing `raw`
               itself (pipeline.sim_source); without --sim: the acquisition daemon on the configured
               hardware
  processing   processing.stage.ProcessingStage.serve: SUB raw -> PUB frame/roi
  inference    inference.stage.InferenceStage: SUB roi -> XPUB result
  collector    pipeline.collector: SUB result and roi, hands results to the caller (pipeline.run)
No stage knows who feeds it: this module alone connects them, endpoint to endpoint.
After a scene change, only results whose averaged frames all belong to the new scene are
"clean" (`clean_results`): the averaging window must refill.
"""
from __future__ import annotations

import queue
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import zmq

from acquisition.daemon import AcquisitionDaemon
from inference.engines.base import Engine
from inference.stage import InferenceStage
from pipeline.collector import Collected, Collector
from pipeline.settings import Settings
from pipeline.sim_source import SimRawSource
from pipeline.view import LiveView
from processing.calibration_model import ProcessingCalibration
from processing.stage import ProcessingStage
from sim.emulators.client import BackdoorClient, SimScanner
from thzcore.logs import get_logger
from thzcore.netsec import LOCAL_ANY
from thzcore.stage import Ready, Serve, StageError, StageRunner
from thzcore.wire import Message, WireError, decode

log = get_logger(__name__)
# --sim raw sources: emulator = the device emulators (a process) read by the acquisition daemon;
# direct = the virtual scanner publishing `raw` itself (no transports, no daemon)
RAW_SOURCES = ("emulator", "direct")


# (step index, steps in all, what starts now), called as each start-up step begins; (total, total, "up") at the end
OnStep = Callable[[int, int, str], None]


def startup_steps(sim: bool, raw_source: str = "emulator", engine: bool = True) -> list[str]:
    """What Pipeline.start starts, in order (the labels its `on_step` callback gets)."""
    if not sim:
        raw = ["acquisition daemon (hardware)"]
    elif raw_source == "direct":
        raw = ["virtual scanner (direct)"]
    else:
        raw = ["device emulators", "acquisition daemon"]
    return [*raw, "processing (Numba kernels)", *(["inference"] if engine else []), "result collector"]


class JobError(RuntimeError):
    """The job failed while running: a stage died or never came up, results stopped coming (the CLI exits 5)."""


class JobConfigError(JobError):
    """The job cannot run as asked; the message says what to change (the CLI exits 2)."""


class NoCleanResult(JobError):
    """The scene gave no clean result in time: at 340 GHz, most often a pose whose glints are too weak
    for the face locator (the subject is asked to face the scanner again: a new capture)."""


class Pipeline:
    """Build each stage from its config section, start it through the one lifecycle, connect it by endpoint.

    Every stage runs as a StageRunner (thzcore.stage) on one stop event: start() returns the
    endpoint it bound, check_alive() reports the first that died. Use as a context manager.
    `result_endpoint` overrides inference.result_endpoint; the internal hops bind loopback
    ephemeral ports, and the `raw` hop from the emulator's daemon an ipc:// socket in a private
    temporary folder (8.4 MB frames handed over without copies).
    """

    def __init__(self, settings: Settings, engine: Engine | None, sim: bool = True,
                 gallery_path: str | Path | None = None, result_endpoint: str | None = None,
                 reconstruction: bool | None = None, seed: int | None = None, collect_rois: bool = True,
                 raw_source: str = "emulator", view: LiveView | None = None,
                 calibration: ProcessingCalibration | None = None, on_step: OnStep | None = None) -> None:
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
        self.stages: list[StageRunner] = []
        self.source: SimRawSource | None = None
        self.emulator: SimScanner | None = None
        self.daemon: AcquisitionDaemon | None = None
        self.processing: ProcessingStage | None = None
        self.stage: InferenceStage | None = None
        self.collector: Collector | None = None
        self.roi_endpoint: str | None = None
        self._daemon_dir: tempfile.TemporaryDirectory | None = None
        self._ipc_dir: tempfile.TemporaryDirectory | None = None
        self.truth_margin = 0  # frames to skip after the first one labelled with a new scene
        self.t_started = 0.0
        self.on_step = on_step
        self._steps = startup_steps(sim, raw_source, engine is not None)
        self._step_no = 0

    def _step(self, label: str | None = None) -> None:
        """Report the next start-up step (its label, from startup_steps) to on_step; None: all are up."""
        if self.on_step is None:
            return
        n = len(self._steps)
        if label is None:
            self.on_step(n, n, "up")
            return
        self.on_step(min(self._step_no, n - 1), n, label)
        self._step_no += 1

    def __enter__(self) -> "Pipeline":
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self, name: str, serve: Serve, on_stop: Callable[[], None] | None = None,
             timeout_s: float = 60.0) -> str | None:
        """Start one stage on the pipeline's stop event; returns the endpoint it bound."""
        runner = StageRunner(name, serve, stop=self.stop_event, on_stop=on_stop)
        self.stages.append(runner)
        try:
            return runner.start(timeout_s)
        except StageError as exc:
            raise JobError(str(exc)) from exc

    def start(self) -> None:
        self.t_started = time.time()
        raw_endpoint = self._start_raw_source()
        self._step("processing (Numba kernels)")
        self.processing = ProcessingStage(self.settings.scanner, self.settings.processing,
                                          calibration=self.calibration,
                                          calibration_dir=str(self.settings.calibration.store_dir))
        processing = self.processing
        self.roi_endpoint = self._run("processing", lambda stop, ready: processing.serve(
            raw_endpoint, LOCAL_ANY, stop=stop, ready=ready))
        if self.engine is not None:
            self._step("inference")
            self.stage = InferenceStage(self.engine, self.settings.inference, roi_endpoint=self.roi_endpoint,
                                        result_endpoint=self.result_endpoint, gallery_path=self.gallery_path,
                                        min_subscribers=1, reconstruction=self.reconstruction, context=self.ctx)
            stage = self.stage
            result_endpoint = self._run("inference", lambda stop, ready: stage.run(stop, ready=ready),
                                        timeout_s=30.0)
            status = self.daemon.endpoints.get("status") if self.daemon is not None else None
            self.collector = Collector(result_endpoint,
                                       self.roi_endpoint if (self.collect_rois or self.view) else None, self.ctx,
                                       view=self.view, status_endpoint=status)
        else:
            self.collector = Collector(None, self.roi_endpoint, self.ctx)
        self._step("result collector")
        self._run("collector", self.collector.serve, timeout_s=5.0)
        if self.stage is not None and not self.stage.subscribed.wait(10):  # XPUB handshake, no sleep
            raise JobError("the result collector's subscription never reached the inference stage")
        self._step(None)

    def _start_raw_source(self) -> str:
        if not self.sim:
            self._step("acquisition daemon (hardware)")
            return self._start_daemon(self.settings, {})
        if self.raw_source == "direct":
            self._step("virtual scanner (direct)")
            self.source = SimRawSource(self.settings, self.seed, LOCAL_ANY, self.ctx)
            endpoint = self._run("sim-source", self.source.serve, timeout_s=30.0)
            _require_endpoint(endpoint, "sim-source")
            return endpoint
        # the device emulators, started the one way (`thz sim scanner`, a process of its own) and read
        # through the real transports by the acquisition daemon
        self._step("device emulators")
        self.emulator = SimScanner.start(self.settings, seed=self.seed, realtime=False)
        self.truth_margin = 1  # the daemon labels a frame when it arrives: the scene may have changed mid-frame
        truth_link = BackdoorClient(self.emulator.endpoints["backdoor"])  # the daemon thread's own REQ socket
        self._step("acquisition daemon")
        return self._start_daemon(self.emulator.settings_for(self.settings),
                                  {"raw_endpoint": self._local_raw_endpoint(), "status_endpoint": LOCAL_ANY,
                                   "record": False},
                                  truth=lambda: _scene_truth(truth_link.truth()))

    def _local_raw_endpoint(self) -> str:
        """The `raw` hop inside this process: ipc:// in a private (0700) temporary folder where ZMQ has it.

        8.4 MB a frame: over ipc a zero-copy hand-off measured 0.9 ms against 2.6 ms over loopback TCP
        (docs/processing.md); the folder keeps other users off the socket.
        """
        if not zmq.has("ipc"):
            return LOCAL_ANY
        self._ipc_dir = tempfile.TemporaryDirectory(prefix="thz-ipc-")
        return f"ipc://{self._ipc_dir.name}/raw"

    def _start_daemon(self, settings: Settings, overrides: dict[str, Any],
                      truth: Callable[[], dict | None] | None = None) -> str:
        """The acquisition daemon as a stage; `overrides` replace acquisition settings (emulator addresses)."""
        acq = settings.acquisition.model_copy(update=overrides)
        settings = settings.model_copy(update={"acquisition": acq})
        out_dir = None
        if not acq.record:
            self._daemon_dir = tempfile.TemporaryDirectory(prefix="thz-run-")  # run log only
            out_dir = self._daemon_dir.name
        daemon = AcquisitionDaemon(settings, out_dir=out_dir, sim_seed=self.seed if self.sim else None,
                                   publish=True, record=acq.record, truth=truth)
        self.daemon = daemon

        def serve(stop: threading.Event, ready: Ready) -> None:
            daemon.on_ready = lambda endpoints: ready(endpoints["raw"])
            result = daemon.run()
            if result.exit_code != 0 and not stop.is_set():
                raise StageError(f"acquisition ended: {result.reason}")

        endpoint = self._run("acquisition", serve, on_stop=lambda: daemon.request_stop("thz run stopping"))
        _require_endpoint(endpoint, "acquisition")
        return endpoint

    def set_scene(self, scene: dict | None) -> None:
        if self.emulator is not None:
            self.emulator.backdoor.set_scene(scene)
        elif self.source is not None:
            self.source.set_scene(scene)
        else:
            raise JobConfigError("no simulated scene to set: this pipeline runs on hardware")

    def check_alive(self) -> None:
        """Raise JobError naming the first stage that died or ended on its own."""
        for runner in self.stages:
            try:
                runner.check()
            except StageError as exc:
                raise JobError(str(exc)) from exc

    def frames_acquired(self) -> int:
        if self.source is not None:
            return self.source.frames
        if self.daemon is not None:
            return int(self.daemon.frames)
        if self.processing is not None:
            return self.processing.counters.received
        return 0

    def stop(self) -> None:
        self.stop_event.set()
        for runner in self.stages:
            runner.stop()
        if self.emulator is not None:
            self.emulator.stop()
        if self._daemon_dir is not None:
            self._daemon_dir.cleanup()
        if self._ipc_dir is not None:
            self._ipc_dir.cleanup()
            self._ipc_dir = None
        self.ctx.destroy(linger=0)

    # --- scanning ---
    def clean_results(self, scene: dict, n: int, timeout_s: float,
                      on_result: Callable[[Collected], None] | None = None,
                      max_frames: int | None = None) -> list[Collected]:
        """Show `scene`, return the next `n` results whose averaged frames all show it.

        NoCleanResult after `timeout_s`, or once `max_frames` raw frames have been acquired since the
        scene was shown without the n results (a pose in which no face is found)."""
        if self.collector is None:
            raise JobError("clean_results before start(): use the Pipeline as a context manager")
        self.set_scene(scene)
        first_new: int | None = None
        out: list[Collected] = []
        deadline = time.time() + timeout_s
        frames0 = self.frames_acquired()
        while len(out) < n:
            self.check_alive()
            left = deadline - time.time()
            seen = self.frames_acquired() - frames0
            if left <= 0 or (max_frames is not None and seen > max_frames):
                raise NoCleanResult(f"no clean result for scene {scene} within "
                                    + (f"{timeout_s:.0f} s" if left <= 0 else f"{seen} frames")
                                    + f" ({len(out)}/{n}); frames acquired so far: {self.frames_acquired()}")
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
        first_new: list[int] = []

        def shows_scene(m: Message) -> bool:
            if (m.meta.get("truth") or {}).get("scene") != scene:
                return False
            ids = m.meta.get("frame_ids") or [m.frame_id]
            if not first_new:
                first_new.append(max(ids) + self.truth_margin)
            return min(ids) >= first_new[0]

        # the processing PUB has no handshake: ROIs lost while the SUB joins are not clean anyway
        return self._rois(n, timeout_s, shows_scene, f"no clean ROI for scene {scene}", before=lambda: self.set_scene(scene))

    def next_rois(self, n: int, timeout_s: float) -> list[tuple[Message, np.ndarray]]:
        """The next `n` face ROIs of whatever is in front of the scanner (the hardware: no scene to check)."""
        return self._rois(n, timeout_s, lambda m: True, "no face ROI")

    def _rois(self, n: int, timeout_s: float, accept: Callable[[Message], bool], what: str,
              before: Callable[[], None] | None = None) -> list[tuple[Message, np.ndarray]]:
        if self.roi_endpoint is None:
            raise JobError("ROIs before start(): use the Pipeline as a context manager")
        sub = self.ctx.socket(zmq.SUB)
        sub.setsockopt(zmq.LINGER, 0)
        sub.setsockopt(zmq.SUBSCRIBE, b"roi")
        sub.connect(self.roi_endpoint)
        try:
            if before is not None:
                before()
            out: list[tuple[Message, np.ndarray]] = []
            deadline = time.time() + timeout_s
            while len(out) < n:
                self.check_alive()
                if time.time() > deadline:
                    raise JobError(f"{what} within {timeout_s:.0f} s ({len(out)}/{n})")
                if not sub.poll(500):
                    continue
                try:
                    m = decode(sub.recv_multipart(), expect_topic="roi")
                except WireError:
                    continue
                if "roi" in m.arrays and accept(m):
                    out.append((m, np.array(m.arrays["roi"], np.float32)))
            return out
        finally:
            sub.close(0)


def _scene_truth(truth: dict[str, Any]) -> dict[str, Any] | None:
    """What a frame's meta needs of the emulator's truth: the scene and who stands in it (None: empty field)."""
    scene = truth.get("scene")
    if scene is None:
        return None
    return {"scene": scene, **{k: scene[k] for k in ("identity", "posture", "concealed") if k in scene}}


def _require_endpoint(endpoint: str | None, stage: str) -> str:
    """The endpoint a raw source reported ready with; a source that reported none is a JobError."""
    if not endpoint:
        raise JobError(f"{stage} stage came up without an endpoint to read raw frames from")
    return endpoint

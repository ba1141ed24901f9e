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
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import zmq

from inference.engines.base import Engine
from inference.stage import InferenceStage
from pipeline.collector import Collected, Collector
from pipeline.sim_source import SimRawSource
from thzcore.logs import get_logger
from thzcore.netsec import LOCAL_ANY
from thzcore.wire import Message, WireError, decode

log = get_logger(__name__)
# --sim raw sources: emulator = device emulators + acquisition daemon; direct = the virtual scanner
# publishing `raw` itself; auto = emulator when the acquisition daemon is installed, else direct
RAW_SOURCES = ("auto", "emulator", "direct")


class JobError(RuntimeError):
    """The job cannot run as configured; the message says what to change."""


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



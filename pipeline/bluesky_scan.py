"""The scanner for Bluesky: ophyd-async devices (the galvo, the receiver and the face scanner they make) and a
plan that takes face scans and emits event-model documents (the optional extra `bluesky`).

    from bluesky import RunEngine
    from ophyd_async.core import init_devices
    from pipeline.bluesky_scan import FaceScanner, face_scan

    RE = RunEngine()
    with init_devices():
        thz = FaceScanner(settings, engine, gallery_path)          # name "thz" from the variable
    RE(face_scan(thz, num=3, mode="verify", subject="alice"), print)

One run per plan: `start` (plan_name face_scan, mode, subject, scanner and model ids), one `descriptor`
(the result's data keys; the configuration of the galvo, the receiver and the model), one `event` per scan
(frame id, ROI found and quality, posture and its probability, the decision with its distance, identity,
latency from scan complete), and `stop`. Modes: `identify` (1:N against the gallery), `verify` (1:1 against
`subject`), `enroll` (a template for `subject`). No image and no embedding goes into a document (biometric data
stays in the gallery).

The devices drive the configured hardware, or the emulators (`sim.emulators.client.SimScanner.settings_for`),
through acquisition's ScannerSession: `stage` runs the pre-scan gate (exposure limit, calibration record in
force: pipeline.prescan), opens and identifies both instruments and starts the raster; each `trigger` acquires
frames until the live processing stage (block averages of processing.frames_averaged frames, face ROI) finds a
face or `max_frames` pass, then infers and decides; `unstage` parks the mirrors and closes both links. All device
I/O runs on one worker thread of the scanner's own (the links and the gallery's SQLite connection belong to it).
"""
from __future__ import annotations

import asyncio
import math
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Generator

import bluesky.plan_stubs as bps
import bluesky.preprocessors as bpp
from bluesky.protocols import Triggerable
from ophyd_async.core import AsyncStatus, StandardReadable, StandardReadableFormat, soft_signal_r_and_setter, \
    soft_signal_rw

from acquisition.galvo_protocol import GalvoFaultError
from acquisition.session import ScannerSession
from inference.engines.base import Engine
from inference.gallery import Gallery
from thzcore.softmax import softmax
from inference.quality import enrolment_refusal
from pipeline.prescan import prepare_scan
from pipeline.settings import Settings
from processing.stage import ProcessingStage
from thzcore.labels import POSTURES
from thzcore.logs import get_logger

log = get_logger(__name__)
MODES = ("identify", "verify", "enroll")
CONFIG = StandardReadableFormat.CONFIG_SIGNAL
HINTED = StandardReadableFormat.HINTED_SIGNAL


class Galvo(StandardReadable):
    """The galvo controller: its identity, port and raster as configuration, the mirror position (read after
    each scan) as data."""

    def __init__(self, session: ScannerSession, name: str = "") -> None:
        plan = session.plan
        with self.add_children_as_readables(CONFIG):
            self.idn, self.set_idn = soft_signal_r_and_setter(str, "")
            self.port, _ = soft_signal_r_and_setter(str, session.acq.galvo_port)
            self.fast_amplitude, _ = soft_signal_r_and_setter(float, plan.fast.amplitude_m, units="m")
            self.slow_amplitude, _ = soft_signal_r_and_setter(float, plan.slow.amplitude_m, units="m")
            self.fast_hz, _ = soft_signal_r_and_setter(float, session.scanner.raster.fast_axis_hz, units="Hz")
        with self.add_children_as_readables():
            self.x, self.set_x = soft_signal_r_and_setter(float, math.nan, units="m")
            self.y, self.set_y = soft_signal_r_and_setter(float, math.nan, units="m")
        super().__init__(name=name)


class Receiver(StandardReadable):
    """The FMCW receiver: identity, VISA resource and frame shape as configuration, the last frame number as data."""

    def __init__(self, session: ScannerSession, name: str = "") -> None:
        lines, chirps, samples = session.shape
        with self.add_children_as_readables(CONFIG):
            self.idn, self.set_idn = soft_signal_r_and_setter(str, "")
            self.resource, _ = soft_signal_r_and_setter(str, session.acq.receiver_resource)
            self.lines, _ = soft_signal_r_and_setter(int, lines)
            self.chirps_per_line, _ = soft_signal_r_and_setter(int, chirps)
            self.samples_per_chirp, _ = soft_signal_r_and_setter(int, samples)
        with self.add_children_as_readables():
            self.frame_no, self.set_frame_no = soft_signal_r_and_setter(int, -1)
        super().__init__(name=name)


class FaceScanner(StandardReadable, Triggerable):
    """The face scanner as one Bluesky detector: `galvo` and `receiver` children, `mode` and `subject` to set,
    one face decision per trigger."""

    def __init__(self, settings: Settings, engine: Engine, gallery_path: str | Path | None = None,
                 sim: bool = False, max_frames: int | None = None, allow_stale_calibration: bool = False,
                 name: str = "") -> None:
        self.settings = settings
        self.engine = engine
        self.gallery_path = Path(gallery_path) if gallery_path else settings.inference.gallery_path
        self.sim = sim
        self.allow_stale = allow_stale_calibration
        n_avg = settings.processing.frames_averaged
        self.max_frames = max_frames or 4 * n_avg
        self.session = ScannerSession(settings.scanner, settings.acquisition)  # the raster checked here, nothing opened
        self._executor: ThreadPoolExecutor | None = None
        self._stage: ProcessingStage | None = None
        self._gallery: Gallery | None = None
        self._calibration_id = ""
        with self.add_children_as_readables():
            self.galvo = Galvo(self.session)
            self.receiver = Receiver(self.session)
        with self.add_children_as_readables(CONFIG):
            self.scanner_id, _ = soft_signal_r_and_setter(str, settings.scanner.scanner_id)
            self.model_id, _ = soft_signal_r_and_setter(str, engine.model_id)
            self.threshold, _ = soft_signal_r_and_setter(float, float(engine.bundle.threshold))
            self.frames_averaged, _ = soft_signal_r_and_setter(int, n_avg)
            self.calibration_id, self._set_calibration_id = soft_signal_r_and_setter(str, "")
        with self.add_children_as_readables():
            self.mode = soft_signal_rw(str, "identify")
            self.subject = soft_signal_rw(str, "")
        self._result: dict[str, Callable[[Any], None]] = {}
        with self.add_children_as_readables(HINTED):
            self.decision, self._result["decision"] = soft_signal_r_and_setter(str, "")
            self.identity, self._result["identity"] = soft_signal_r_and_setter(str, "")
            self.distance, self._result["distance"] = soft_signal_r_and_setter(float, math.nan, precision=4)
        with self.add_children_as_readables():
            self.frame_id, self._result["frame_id"] = soft_signal_r_and_setter(int, -1)
            self.roi_found, self._result["roi_found"] = soft_signal_r_and_setter(bool, False)
            self.roi_quality, self._result["roi_quality"] = soft_signal_r_and_setter(float, 0.0, precision=3)
            self.posture, self._result["posture"] = soft_signal_r_and_setter(str, "")
            self.posture_probability, self._result["posture_probability"] = soft_signal_r_and_setter(
                float, math.nan, precision=3)
            self.frames, self._result["frames"] = soft_signal_r_and_setter(int, 0)
            self.latency_ms, self._result["latency_ms"] = soft_signal_r_and_setter(float, math.nan, units="ms")
        super().__init__(name=name)

    # --- the worker thread that owns the links and the gallery
    async def _call(self, fn: Callable[..., Any], *args: Any) -> Any:
        if self._executor is None:
            raise RuntimeError(f"{self.name}: not staged (use it in a plan, or stage it first)")
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    def _open(self) -> dict[str, str]:
        settings, calibration = prepare_scan(self.settings, allow_stale=self.allow_stale, sim=self.sim)
        self._calibration_id = calibration.calibration_id if calibration is not None else ""
        self.session.check_present()
        # the kernels compile (seconds) before the raster starts: the galvo's watchdog parks a silent host
        cfg = self.settings.processing.model_copy(update={"averaging": "block"})
        self._stage = ProcessingStage(self.settings.scanner, cfg, calibration=calibration,
                                      calibration_dir=str(self.settings.calibration.store_dir))
        self._gallery = Gallery(self.gallery_path, self.engine.model_id, self.engine.bundle.manifest.embedding_size)
        try:
            idn = self.session.connect()
            self.session.apply()
        except BaseException:
            self.session.close()
            self._gallery.close()
            raise
        return idn

    def _close(self) -> None:
        try:
            if not self.session.park():
                log.warning("galvo not parked at unstage")
        finally:
            self.session.close()
            if self._gallery is not None:
                self._gallery.close()
                self._gallery = None

    @AsyncStatus.wrap
    async def stage(self) -> None:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(1, thread_name_prefix=f"thz-bluesky-{self.name}")
        idn = await self._call(self._open)
        self.galvo.set_idn(idn.get("galvo", ""))
        self.receiver.set_idn(idn.get("receiver", ""))
        self._set_calibration_id(self._calibration_id)
        await super().stage()

    @AsyncStatus.wrap
    async def unstage(self) -> None:
        try:
            await self._call(self._close)
        finally:
            if self._executor is not None:
                self._executor.shutdown(wait=True)
                self._executor = None
            await super().unstage()

    @AsyncStatus.wrap
    async def trigger(self) -> None:
        mode, subject = await self.mode.get_value(), (await self.subject.get_value()).strip()
        if mode not in MODES:
            raise ValueError(f"{self.name}: mode {mode!r} is not one of {MODES}")
        if mode in ("verify", "enroll") and not subject:
            raise ValueError(f"{self.name}: mode {mode} needs a subject (set {self.subject.name})")
        result = await self._call(self._scan, mode, subject)
        for k, v in result.items():
            if k in self._result:
                self._result[k](v)
            elif k == "galvo":
                self.galvo.set_x(v[0])
                self.galvo.set_y(v[1])
            elif k == "frame_no":
                self.receiver.set_frame_no(v)

    def _acquire(self, first: bool) -> Any:
        """One raw frame; before a scan's first frame, a raster the galvo's watchdog parked (the plan paused longer
        than acquisition.galvo_watchdog_s between scans) is started again, once."""
        try:
            return self.session.acquire()[0]
        except GalvoFaultError as exc:
            if not first or "watchdog" not in str(exc).lower():
                raise
            log.info("raster parked by the galvo watchdog between scans; starting it again", extra={"error": str(exc)})
            self.session.apply()
            return self.session.acquire()[0]

    def _scan(self, mode: str, subject: str) -> dict[str, Any]:
        """Frames until an average shows a face (or max_frames), then the decision of `mode` (worker thread)."""
        assert self._stage is not None and self._gallery is not None
        stage, out, raw, n = self._stage, None, None, 0
        stage.reset()  # a trigger is a scan of its own: no frame of the previous one in its average
        while n < self.max_frames:
            raw = self._acquire(first=n == 0)
            n += 1
            got = stage.feed(raw)
            if got is not None and got.roi.found and got.roi.image is not None:
                out = got
                break
        res: dict[str, Any] = {"frames": n, "frame_no": int(raw.frame_id) if raw is not None else -1}
        try:
            res["galvo"] = self.session.galvo.position()
        except Exception as exc:  # noqa: BLE001 - a reading, not a reason to fail the scan
            log.warning("galvo position not read", extra={"error": str(exc)})
            res["galvo"] = (math.nan, math.nan)
        if out is None:
            return {**res, "frame_id": res["frame_no"], "roi_found": False, "roi_quality": 0.0, "posture": "",
                    "posture_probability": math.nan, "decision": "no face", "identity": "", "distance": math.nan,
                    "latency_ms": math.nan}
        x = self.engine.infer(out.roi.image[None])
        emb, probs = x["embedding"][0], softmax(x["posture_logits"])[0]
        posture = POSTURES[int(probs.argmax())]
        fid = int(out.frame.frame_id)
        thr = float(self.engine.bundle.threshold)
        source = f"bluesky:{self.name}:{fid}"
        refusal = (enrolment_refusal({"roi": out.roi.meta()}, self.settings.inference.enroll_min_quality)
                   if mode == "enroll" else None)
        if refusal is not None:   # the quality gate of every enrolment (inference/quality.py)
            log.warning("not enrolled", extra={"subject": subject, "why": refusal})
            decision, identity, distance = "refused (low quality)", subject, math.nan
        elif mode == "enroll":
            self._gallery.enroll(subject, emb, posture, source=source, frame_id=fid)
            decision, identity, distance = "enrolled", subject, math.nan
        elif mode == "verify":
            v_thr, by_posture, cohort = self.engine.bundle.verification_rule(posture)
            v = self._gallery.verify(emb, subject, v_thr, frame_id=fid, source=source, posture=by_posture,
                                     cohort=cohort)
            decision, identity, distance = ("accepted" if v.accepted else "rejected"), subject, float(v.distance)
        else:
            ident = self._gallery.identify(emb, thr, frame_id=fid, source=source)
            best = ident.candidates[0][1] if ident.candidates else math.nan
            decision = "identified" if ident.identity else "unknown"
            identity, distance = ident.identity or "", float(best)
        t_complete = raw.meta.get("t_complete") if raw is not None else None
        return {**res, "frame_id": fid, "roi_found": True, "roi_quality": float(out.roi.quality), "posture": posture,
                "posture_probability": float(probs.max()), "decision": decision, "identity": identity,
                "distance": distance,
                "latency_ms": (time.time() - float(t_complete)) * 1e3 if t_complete else math.nan}


def face_scan(scanner: FaceScanner, num: int = 1, mode: str = "identify", subject: str = "",
              md: dict[str, Any] | None = None) -> Generator[Any, Any, str]:
    """`num` face scans in one run (start, descriptor, one event per scan, stop); returns the run's uid."""
    if mode not in MODES:
        raise ValueError(f"mode {mode!r} is not one of {MODES}")
    if num < 1:
        raise ValueError(f"num={num}: take at least one scan")
    _md = {"plan_name": "face_scan", "plan_args": {"scanner": scanner.name, "num": num, "mode": mode,
                                                   "subject": subject},
           "detectors": [scanner.name], "num_points": num, "num_intervals": num - 1, "mode": mode,
           "subject": subject, "scanner_id": scanner.settings.scanner.scanner_id, "model_id": scanner.engine.model_id,
           **(md or {})}
    yield from bps.mv(scanner.mode, mode, scanner.subject, subject)

    @bpp.stage_decorator([scanner])
    @bpp.run_decorator(md=_md)
    def inner() -> Generator[Any, Any, None]:
        for _ in range(num):
            yield from bps.trigger_and_read([scanner])

    return (yield from inner())


__all__ = ["FaceScanner", "Galvo", "Receiver", "MODES", "face_scan"]

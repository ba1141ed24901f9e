"""The inference stage: SUB `roi` -> engine -> gallery decisions -> XPUB `result`.

The publisher is an XPUB socket, so the stage sees subscriptions arrive: with
`min_subscribers=N` it reads no ROI until N subscriptions to `result` have come in, and a
subscriber that connected before the run starts gets the very first result (no sleep involved).
Malformed ROI messages (bad header, payload, shape, NaN, a meta that breaks the `roi` schema, a frame
id more than `max_frame_jump` ahead) and stale ones (acquired longer ago than `stale_after_s`, or not
newer than the last frame from the same scanner) are counted and dropped; so is any message whose
handling raises (`dropped_failed`): no message stops the stage.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import zmq

from inference.config import InferenceConfig
from inference.engines.base import Engine
from inference.fusion import ScanFusion, roi_quality
from inference.gallery import Gallery, GalleryError
from thzcore.softmax import softmax
from inference.quality import enrolment_refusal
from inference.results import (IdentificationResult, PostureResult, ResultMeta, VerificationResult,
                               encode_result)
from thzcore.labels import POSTURES
from thzcore.logs import RateLimitedLog, get_logger
from thzcore.netsec import secure_bind
from thzcore.stage import Ready, StageCounters
from thzcore.wire import Message, WireError, decode

log = get_logger(__name__)


@dataclass
class InferenceCounters(StageCounters):
    """received, dropped_malformed, last_error (every stage's) and what inference adds."""

    processed: int = 0
    published: int = 0
    dropped_stale: int = 0
    dropped_failed: int = 0      # a message whose handling raised: dropped, the stage goes on
    decision_errors: int = 0
    engine_errors: int = 0
    enrolled: int = 0
    subscribers: int = 0
    batches: int = 0


@dataclass
class _Roi:
    msg: Message
    image: np.ndarray
    t_received: float
    claims: list[str] = field(default_factory=list)


def roi_from_message(msg: Message, size: int) -> np.ndarray:
    """The (size, size) float32 image of a `roi` message: array `roi`, or the only array carried."""
    if "roi" in msg.arrays:
        a = msg.arrays["roi"]
    elif len(msg.arrays) == 1:
        a = next(iter(msg.arrays.values()))
    else:
        raise WireError(f"roi message carries {sorted(msg.arrays)}; expected an array named 'roi'")
    a = np.asarray(a)
    if a.dtype.kind != "f":
        raise WireError(f"roi dtype {a.dtype}; expected float")
    a = a.reshape(a.shape[-2:]) if a.ndim > 2 and all(s == 1 for s in a.shape[:-2]) else a
    if a.shape != (size, size):
        raise WireError(f"roi shape {a.shape}; expected ({size}, {size})")
    if not np.all(np.isfinite(a)):
        raise WireError("roi contains NaN or infinity")
    return a.astype(np.float32, copy=False)


class InferenceStage:
    """Run with `start()` (a thread) or `run(stop_event)`; sockets live in the running thread only.

    The operator's side: `set_claims([...])` sets the identities claimed for the next scans (each is
    verified 1:1 and audited), `set_enrolment(subject)` turns the next scans into enrolment
    templates for `subject` (None stops enrolling). ROI messages may carry `meta.claims` too.
    """

    def __init__(self, engine: Engine, settings: InferenceConfig | None = None, roi_endpoint: str | None = None,
                 result_endpoint: str | None = None, gallery_path: str | Path | None = None,
                 min_subscribers: int = 0, reconstruction: bool | None = None,
                 context: zmq.Context | None = None, clock: Callable[[], float] = time.time,
                 on_result: Callable[[ResultMeta], None] | None = None) -> None:
        self.engine = engine
        self.cfg = settings or InferenceConfig()
        self.roi_endpoint = roi_endpoint or self.cfg.roi_endpoint
        self.result_endpoint = result_endpoint or self.cfg.result_endpoint
        self.gallery_path = Path(gallery_path).expanduser() if gallery_path else self.cfg.gallery_path
        self.min_subscribers = min_subscribers
        # default: what the engine was built for (the operator's --reconstruction / inference.reconstruction)
        self.reconstruction = engine.reconstruction if reconstruction is None else reconstruction
        self.identify_threshold = (self.cfg.identify_threshold if self.cfg.identify_threshold is not None
                                   else engine.bundle.threshold)
        self.ctx = context or zmq.Context.instance()
        self.clock = clock
        self.on_result = on_result
        self.counters = InferenceCounters()
        self.bound_endpoint: str | None = None
        self.ready = threading.Event()        # sockets bound/connected
        self.subscribed = threading.Event()   # min_subscribers reached
        self.stopped = threading.Event()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._claims: list[str] = []
        self._enrol_as: str | None = None
        self._last_frame: dict[str, tuple[int, float]] = {}  # scanner -> (frame id, local receive time)
        self._warn = RateLimitedLog(log)
        self._fusion = (ScanFusion(self.cfg.fusion_scans, self.cfg.fusion_weight, self.cfg.fusion_max_gap_s)
                        if self.cfg.fusion_scans > 1 else None)
        self._seq = 0
        self._thread: threading.Thread | None = None
        self.error: BaseException | None = None

    # --- control (any thread) -----------------------------------------------------------------------
    def set_claims(self, claims: list[str]) -> None:
        with self._lock:
            self._claims = [str(c) for c in claims]

    def set_enrolment(self, subject: str | None) -> None:
        with self._lock:
            self._enrol_as = subject

    def start(self) -> "InferenceStage":
        self._thread = threading.Thread(target=self._thread_main, name="inference-stage", daemon=True)
        self._thread.start()
        if not self.ready.wait(30.0) and self.error is None:
            raise TimeoutError("inference stage did not come up in 30 s")
        if self.error is not None:
            raise RuntimeError(f"inference stage failed to start: {self.error}") from self.error
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _thread_main(self) -> None:
        try:
            self.run(self._stop)
        except BaseException as exc:  # reported to the owner through .error
            self.error = exc
            log.exception("inference stage died")
            self.ready.set()

    # --- the loop -----------------------------------------------------------------------------------
    def run(self, stop: threading.Event, ready: Ready | None = None) -> None:
        """Serve until `stop`; `ready(endpoint)` gets the bound result endpoint (thzcore.stage's lifecycle)."""
        sub = self.ctx.socket(zmq.SUB)
        pub = self.ctx.socket(zmq.XPUB)
        auth = None
        gallery = None
        try:
            for s in (sub, pub):
                s.setsockopt(zmq.LINGER, 0)
            sub.setsockopt(zmq.RCVHWM, 64)
            sub.setsockopt(zmq.SUBSCRIBE, b"roi")
            pub.setsockopt(zmq.XPUB_VERBOSE, 1)
            pub.setsockopt(zmq.SNDHWM, 1000)
            self.bound_endpoint, auth = secure_bind(pub, self.result_endpoint, self.cfg.curve_secret_key_file,
                                                    self.cfg.curve_clients_dir, "inference.result_endpoint")
            sub.connect(self.roi_endpoint)
            gallery = Gallery(self.gallery_path, self.engine.model_id, self.engine.bundle.manifest.embedding_size,
                              faiss_min_templates=self.cfg.faiss_min_templates, search_threads=self.cfg.identify_threads)
            poller = zmq.Poller()
            poller.register(pub, zmq.POLLIN)
            log.info("inference stage up", extra={"roi": self.roi_endpoint, "result": self.bound_endpoint,
                                                  **self.engine.describe()})
            self.ready.set()
            if ready is not None:
                ready(self.bound_endpoint)
            if self.min_subscribers <= 0:
                self.subscribed.set()
            sub_registered = False
            while not stop.is_set():
                if self.subscribed.is_set() and not sub_registered:
                    poller.register(sub, zmq.POLLIN)
                    sub_registered = True
                events = dict(poller.poll(100))
                if pub in events:
                    self._subscriptions(pub)
                if sub_registered and sub in events:
                    batch = self._drain(sub)
                    if batch:
                        self._process(batch, pub, gallery)
        finally:
            if gallery is not None:
                gallery.close()
            sub.close(0)
            pub.close(0)
            if auth is not None:
                auth.stop()
            log.info("inference stage stopped", extra=self.counters.to_json())
            self.stopped.set()

    def _subscriptions(self, pub: zmq.Socket) -> None:
        while True:
            try:
                ev = pub.recv(zmq.NOBLOCK)
            except zmq.Again:
                return
            if not ev:
                continue
            topic = ev[1:]
            if not b"result".startswith(topic):  # a subscription that does not cover `result`
                continue
            self.counters.subscribers += 1 if ev[0] == 1 else -1 if ev[0] == 0 else 0
            if self.counters.subscribers >= self.min_subscribers:
                self.subscribed.set()

    def _drain(self, sub: zmq.Socket) -> list[_Roi]:
        """Read what is queued, up to max_batch ROIs, dropping malformed and stale ones."""
        out: list[_Roi] = []
        size = self.engine.bundle.input_size
        with self._lock:
            claims = list(self._claims)
        while len(out) < self.cfg.max_batch:
            try:
                frames = sub.recv_multipart(zmq.NOBLOCK, copy=True)
            except zmq.Again:
                break
            self.counters.received += 1
            now = self.clock()
            try:
                msg = decode(frames, expect_topic="roi")
                image = roi_from_message(msg, size)
                extra_claims = msg.meta.get("claims") or []
                stale = self._staleness(msg, now)
            except WireError as exc:
                self._drop("malformed", exc)
                continue
            except Exception as exc:  # noqa: BLE001 - no message may kill the stage
                self._drop("failed", exc)
                continue
            if stale is not None:
                self.counters.dropped_stale += 1
                self._warn.warning("dropped stale roi", extra={"frame_id": msg.frame_id, "why": stale},
                                   kind="stale")
                continue
            self._last_frame[msg.scanner_id] = (msg.frame_id, now)
            out.append(_Roi(msg, image, now, claims + [c for c in extra_claims if c not in claims]))
        return out

    def _staleness(self, msg: Message, now: float) -> str | None:
        """Why `msg` is stale (None when fresh); WireError for a frame id that jumps too far ahead.

        Per scanner, the last accepted frame id and the local time it was received: an id not newer
        than that one is stale; an id more than max_frame_jump ahead is refused without becoming the
        new reference, so one corrupt id cannot make every later frame stale. A scanner silent for
        stale_after_s starts afresh (a restarted daemon may number its frames from 0 again).
        """
        # only the past is stale: a source faster than real time (the direct virtual scanner) stamps frames
        # ahead of the wall clock, and a frame id far ahead is caught below
        age = now - msg.t_acquired
        if age > self.cfg.stale_after_s:
            return f"acquired {age:.3f} s ago, beyond stale_after_s={self.cfg.stale_after_s}"
        last = self._last_frame.get(msg.scanner_id)
        if last is None or now - last[1] > self.cfg.stale_after_s:
            return None
        last_id = last[0]
        if msg.frame_id <= last_id:
            return f"frame id {msg.frame_id} not newer than {last_id}"
        if msg.frame_id - last_id > self.cfg.max_frame_jump:
            raise WireError(f"frame id {msg.frame_id} jumps {msg.frame_id - last_id} ahead of {last_id} "
                            f"(more than inference.max_frame_jump={self.cfg.max_frame_jump})")
        return None

    def _drop(self, why: str, exc: BaseException) -> None:
        if why == "malformed":
            self.counters.dropped_malformed += 1
        else:
            self.counters.dropped_failed += 1
        text = str(exc) if isinstance(exc, WireError) else f"{type(exc).__name__}: {exc}"
        self.counters.last_error = text
        self._warn.warning(f"dropped {why} roi", extra={"error": text}, kind=why)

    def _process(self, batch: list[_Roi], pub: zmq.Socket, gallery: Gallery) -> None:
        with self._lock:
            enrol_as = self._enrol_as
        t0 = self.clock()
        try:
            out = self.engine.infer(np.stack([r.image for r in batch]), reconstruction=self.reconstruction)
        except Exception as exc:  # a failing engine drops the batch, never the stage
            self.counters.engine_errors += 1
            self.counters.last_error = f"engine: {exc}"
            log.error("inference failed; batch dropped", extra={"error": str(exc), "rois": len(batch)})
            return
        t1 = self.clock()
        self.counters.batches += 1
        probs = softmax(out["posture_logits"])
        for i, r in enumerate(batch):
            try:
                self._publish_one(i, r, out, probs, len(batch), enrol_as, t0, t1, pub, gallery)
            except Exception as exc:  # noqa: BLE001 - a failure with one message drops it, never the stage
                self._drop("failed", exc)

    def _publish_one(self, i: int, r: _Roi, out: dict, probs: np.ndarray, n_batch: int, enrol_as: str | None,
                     t0: float, t1: float, pub: zmq.Socket, gallery: Gallery) -> None:
        errors: list[str] = []
        k = int(np.argmax(probs[i]))
        posture = PostureResult(name=POSTURES[k], index=k,
                                probabilities={p: round(float(v), 6) for p, v in zip(POSTURES, probs[i])})
        emb = out["embedding"][i]
        fid = r.msg.frame_id
        source = f"{r.msg.scanner_id}:{fid}"
        fused: list[int] = []
        if self._fusion is not None:   # one subject in one posture as far as the stage can tell (inference/fusion.py)
            key = (posture.name, tuple(r.claims), enrol_as)
            emb, fused = self._fusion.add(r.msg.scanner_id, key, fid, r.msg.t_acquired, emb, roi_quality(r.msg.meta))
            if len(fused) > 1:
                source += f" fused {','.join(map(str, fused))}"
        verifications, ident, enrolled = [], None, None
        try:
            refusal = enrolment_refusal(r.msg.meta, self.cfg.enroll_min_quality) if enrol_as is not None else None
            if refusal is not None:
                errors.append(f"enrol {enrol_as}: {refusal}")
            elif enrol_as is not None:
                gallery.enroll(enrol_as, emb, posture.name, source=source, frame_id=fid)
                enrolled = enrol_as
                self.counters.enrolled += 1
            for claim in r.claims:
                try:
                    thr, by_posture, cohort = self.engine.bundle.verification_rule(posture.name)
                    v = gallery.verify(emb, claim, thr, frame_id=fid, source=source, posture=by_posture, cohort=cohort)
                    verifications.append(VerificationResult(**v.to_json()))
                except GalleryError as exc:
                    errors.append(f"verify {claim}: {exc}")
            if enrol_as is None and gallery.has_templates():
                idn = gallery.identify(emb, self.identify_threshold, self.cfg.top_k, frame_id=fid, source=source)
                ident = IdentificationResult(**idn.to_json())
        except GalleryError as exc:
            errors.append(str(exc))
        if errors:
            self.counters.decision_errors += len(errors)
            self.counters.last_error = errors[-1]
        t2 = self.clock()
        ts = {k2: float(v2) for k2, v2 in (r.msg.meta.get("timestamps") or {}).items()
              if isinstance(v2, (int, float)) and not isinstance(v2, bool)}
        ts.update(acquired=r.msg.t_acquired, received=r.t_received, inference_start=t0, inference_end=t1,
                  published=t2)
        meta = ResultMeta(
            calibration_id=_str_or_none(r.msg.meta.get("calibration_id")), model_id=self.engine.model_id,
            engine=self.engine.name, posture=posture, verification=verifications, identification=ident,
            enrolled=enrolled, errors=errors, timestamps=ts,
            latency_ms=_latencies(ts, n_batch),
            truth=r.msg.meta.get("truth") if isinstance(r.msg.meta.get("truth"), dict) else None,
            roi_seq=r.msg.seq, batch=n_batch, frame_ids=_frame_ids(r.msg), fused_frames=fused)
        recon = out["reconstruction"][i] if self.reconstruction and "reconstruction" in out else None
        self._seq += 1
        pub.send_multipart(encode_result(self._seq, fid, r.msg.scanner_id, r.msg.t_acquired, meta, recon))
        self.counters.processed += 1
        self.counters.published += 1
        if self.on_result is not None:
            self.on_result(meta)


def _latencies(ts: dict[str, float], batch: int) -> dict[str, float]:
    """Per-stage latencies (ms) from the stage timestamps; scan_complete and the processing stamps
    are present when the upstream stages sent them."""
    def ms(a: str, b: str) -> float:
        return round((ts[b] - ts[a]) * 1e3, 3)
    out = {"inference": round((ts["inference_end"] - ts["inference_start"]) * 1e3 / batch, 3),
           "queue": ms("received", "inference_start"), "acquired_to_published": ms("acquired", "published")}
    if "scan_complete" in ts:
        out["scan_complete_to_published"] = ms("scan_complete", "published")
        if "processing_received" in ts:
            out["transfer_to_processing"] = ms("scan_complete", "processing_received")
    if "processing_received" in ts and "processing_done" in ts:
        out["processing"] = ms("processing_received", "processing_done")
        out["processing_to_inference"] = ms("processing_done", "received")
    return out


def _frame_ids(msg: Message) -> list[int]:
    ids = msg.meta.get("frame_ids")
    if isinstance(ids, list) and ids and all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
        return ids[:64]
    return [msg.frame_id]


def _str_or_none(v) -> str | None:
    return v if isinstance(v, str) else None

"""The processing stage: raw frames (memory, HDF5 recording, ZMQ `raw`) -> averaged frames and face ROIs.

Output per averaged frame (`feed` returns a StageOutput; `serve` publishes):
  topic `frame`: array `frame` float32 (lines, samples_per_line) in the configured scale; header meta:
                 frame_ids, n_averaged, calibration_id, scale, empty_lines, roi {found, quality, reason,
                 box_px, box_m, and when measured range_m, range_spread_m, range_chirps, focus,
                 range_gate_edge}, truth (passed through from the raw frame when simulated), timestamps
                 {scan_complete (acquisition's t_complete of the newest frame), processing_received,
                 processing_done} (wall clock, s)
  topic `roi`:   array `roi` float32 (roi_size, roi_size) in [0, 1], same meta; published only when a
                 face was found (a frame without a face says why in its `frame` message).
Averaging: "sliding" emits the mean of the last frames_averaged frames for every new frame once the
window is full; "block" emits once per frames_averaged new frames. The window restarts when a
frame id is not the previous + 1 (a dropped frame) or the scanner changes.
Streaming (acquisition.stream_lines): `lines` parts of the frame being scanned are range-gated as they
arrive; its `raw` frame (same seq) then skips the range gate, so at scan complete only the last part,
de-warp, averaging and the ROI remain. A frame whose parts did not all arrive in order is gated whole.
Malformed `raw` and `lines` messages are dropped and counted, never raised.
"""
from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from processing.calibration_model import ProcessingCalibration
from processing.config import ProcessingConfig
from processing.processor import FrameProcessor, ProcessedFrame
from processing.rangefinder import RangeEstimate, subject_range
from processing.roi import FaceLocator, RoiResult
from thzcore.frames import RawFrame
from thzcore.logs import RateLimitedLog, get_logger
from thzcore.recording import iter_frames
from thzcore.scanner import ScannerConfig
from thzcore.stage import Ready, StageCounters
from thzcore.wire import Message, WireError, decode, encode

log = get_logger(__name__)


@dataclass
class StageOutput:
    frame: ProcessedFrame
    roi: RoiResult

    def meta(self) -> dict:
        m = self.frame.header_meta()
        m["roi"] = self.roi.meta()
        return m


@dataclass
class ProcessingCounters(StageCounters):
    """received, dropped_malformed, last_error (every stage's) and what processing adds."""

    processed: int = 0
    emitted: int = 0
    faces: int = 0
    no_face: int = 0
    errors: int = 0
    window_restarts: int = 0
    parts: int = 0            # `lines` parts gated as they arrived
    parts_skipped: int = 0    # parts that did not continue the frame in progress (its `raw` is gated whole)
    streamed: int = 0         # raw frames whose gating was done from their parts


@dataclass
class _Parts:
    """The gated power of a frame's parts so far (lines, chirps), and the next line expected."""

    power: np.ndarray
    next_line: int


def check_local_endpoint(endpoint: str) -> None:
    """Refuse to bind anything but loopback/ipc/inproc: the stage publishes face images (biometric data)."""
    try:
        ProcessingConfig(publish_endpoint=endpoint)
    except ValueError as exc:
        raise ValueError(f"refusing to publish frames and face ROIs on {endpoint!r}: bind a loopback address "
                         "(tcp://127.0.0.1:PORT, the default) and let a CURVE-secured stage relay them") from exc


class ProcessingStage:
    """Owns a FrameProcessor and a FaceLocator; keeps the averaging window."""

    def __init__(self, scanner: ScannerConfig, config: ProcessingConfig | None = None,
                 calibration: ProcessingCalibration | None = None, calibration_dir: str | None = None,
                 find_roi: bool = True, warm_up: bool = True) -> None:
        self.config = config or ProcessingConfig()
        self.processor = FrameProcessor(scanner, self.config, calibration, calibration_dir)
        self.locator = FaceLocator(scanner, self.config)
        self.find_roi = find_roi
        self.counters = ProcessingCounters()
        self._window: deque[ProcessedFrame] = deque(maxlen=self.config.frames_averaged)
        self._since_emit = 0
        self._seq = 0
        self._parts: dict[int, _Parts] = {}   # the frames being streamed (topic `lines`), by seq
        if warm_up:
            self.processor.warm_up()

    # ---- frame by frame
    def reset(self) -> None:
        """Start a new averaging window: the next output averages only frames fed from now on."""
        self._window.clear()
        self._since_emit = 0

    def _restart_needed(self, f: ProcessedFrame) -> bool:
        if not self._window:
            return False
        last = self._window[-1]
        return f.frame_ids[0] != last.frame_id + 1 or f.scanner_id != last.scanner_id

    def feed_part(self, seq: int, first_line: int, lines: int, if_samples: np.ndarray) -> bool:
        """Range-gate a part of the frame being scanned (topic `lines`, int16 (count, chirps, N)); True when
        taken. A frame's parts are taken in order from line 0 under its seq (the two newest frames are kept);
        a part out of order (a message lost, a frame the daemon gave up) drops that frame's parts, and its
        `raw` frame is then gated whole."""
        if if_samples.ndim != 3 or if_samples.dtype != np.int16 or first_line + if_samples.shape[0] > lines:
            raise ValueError(f"a part of lines {first_line}..{first_line + if_samples.shape[0] - 1} "
                             f"{if_samples.dtype}{list(if_samples.shape)} does not fit a frame of {lines} lines")
        st = self._parts.get(seq)
        if first_line == 0:   # a frame starts (or the same seq again: the frame before it was rejected)
            self._parts.pop(seq, None)
            st = self._parts[seq] = _Parts(np.empty(0, np.float32), 0)
            while len(self._parts) > 2:
                self._parts.pop(next(iter(self._parts)))
        elif st is None or first_line != st.next_line:
            self._parts.pop(seq, None)
            self.counters.parts_skipped += 1
            return False
        p = self.processor.gate(if_samples)
        if first_line == 0:
            st.power = np.empty((lines, p.shape[1]), p.dtype)
        elif st.power.shape[1] != p.shape[1]:
            raise ValueError(f"a part of {p.shape[1]} chirps per line after parts of {st.power.shape[1]}")
        st.power[first_line:first_line + p.shape[0]] = p
        st.next_line = first_line + p.shape[0]
        self.counters.parts += 1
        return True

    def parts_missing(self, seq: int) -> bool:
        """Whether parts of frame `seq` may still come: some arrived and not all, or none did while the
        daemon streams (this stage has gated parts before)."""
        st = self._parts.get(seq)
        return st.next_line < st.power.shape[0] if st is not None else self.counters.parts > 0

    def streamed_power(self, seq: int, raw: RawFrame) -> np.ndarray | None:
        """The gated power of `raw` built from its parts, when every line of it arrived under `seq`."""
        st = self._parts.pop(seq, None)
        if st is None or st.next_line != st.power.shape[0] or st.power.shape != raw.if_samples.shape[:2]:
            return None
        return st.power

    def feed(self, raw: RawFrame, chirp_power: np.ndarray | None = None) -> StageOutput | None:
        """Process one raw frame; return an output when the averaging window says so. `chirp_power`: its gated
        power when already computed (streamed_power)."""
        self.counters.received += 1
        if chirp_power is not None:
            self.counters.streamed += 1
        single = self.processor.process(raw, chirp_power=chirp_power)
        self.counters.processed += 1
        if self._restart_needed(single):
            self.counters.window_restarts += 1
            log.info("averaging window restarted", extra={"frame_id": single.frame_id,
                                                          "previous": self._window[-1].frame_id})
            self._window.clear()
            self._since_emit = 0
        self._window.append(single)
        self._since_emit += 1
        n = self.config.frames_averaged
        if len(self._window) < n:
            return None
        if self.config.averaging == "block" and self._since_emit < n:
            return None
        self._since_emit = 0
        frame = self.processor.average(list(self._window))
        if self.config.averaging == "block":
            self._window.clear()
        roi = (self.locator.locate(frame.image, frame.scale) if self.find_roi
               else RoiResult(False, None, None, None, 0.0, "ROI search disabled"))
        if roi.found and roi.box_m is not None:
            roi = roi.with_focus(self._range(raw, roi.box_m), self.config.roi_min_quality)
        self.counters.emitted += 1
        if roi.found:
            self.counters.faces += 1
        else:
            self.counters.no_face += 1
        return StageOutput(frame, roi)

    def _range(self, raw: RawFrame, box_m: tuple[float, float, float, float]) -> RangeEstimate | None:
        """The subject's range from the newest frame's face chirps (never fails a frame)."""
        p = self.processor
        try:
            x = p.positions(raw, p.line_lag_s)
            return subject_range(raw.if_samples, x, raw.feedback_y, box_m, p.window, p.k0, p.k1, p.scanner)
        except (ValueError, FloatingPointError) as exc:
            log.warning("subject range not measured", extra={"frame_id": raw.frame_id, "error": str(exc)})
            return None

    def run(self, frames: Iterable[RawFrame]) -> Iterator[StageOutput]:
        """Process frames from memory (any iterable), yielding outputs as they are ready."""
        for raw in frames:
            out = self.feed(raw)
            if out is not None:
                yield out

    def run_recording(self, path: str | Path, start: int = 0, stop: int | None = None) -> Iterator[StageOutput]:
        yield from self.run(iter_frames(path, start, stop))

    def _take_parts(self, sock, warn: RateLimitedLog, seq: int | None = None) -> None:
        """Take the `lines` parts queued on `sock`; with `seq` (a `raw` frame that just arrived), also wait, 20 ms
        at a time while they keep coming, for its parts not in yet: the daemon sent them before the frame, but
        on another connection. A stage that never saw a part does not wait."""
        while True:
            if not sock.poll(20 if seq is not None and self.parts_missing(seq) else 0):
                return
            try:
                self._take_part(decode(sock.recv_multipart(copy=False), expect_topic="lines"))
            except Exception as exc:  # noqa: BLE001 - as for `raw`: dropped and counted
                self._dropped(exc, warn)

    def _dropped(self, exc: Exception, warn: RateLimitedLog) -> None:
        self.counters.dropped_malformed += 1
        self.counters.last_error = str(exc) if isinstance(exc, WireError) else f"{type(exc).__name__}: {exc}"
        warn.warning("dropped malformed message", extra={"error": self.counters.last_error}, kind="malformed")

    def _take_part(self, msg: Message) -> None:
        """A `lines` message -> feed_part (which checks the part's dtype and shape); a bad one raises (the
        caller drops and counts it)."""
        a = msg.arrays.get("if_samples")
        if a is None:
            raise WireError("lines message lacks 'if_samples'")
        self.feed_part(msg.seq, int(msg.meta["first_line"]), int(msg.meta["lines"]), a)

    # ---- wire
    def messages(self, out: StageOutput, t_received: float | None = None) -> list[Message]:
        """The `frame` message and, when a face was found, the `roi` message of one output.
        `t_received` (wall clock, s) is when the newest raw frame arrived; with it the meta's
        `timestamps` gain `processing_received` and `processing_done` beside acquisition's
        `scan_complete`, so the last stage can split the latency."""
        f = out.frame
        meta = out.meta()
        if t_received is not None:
            meta["timestamps"] = {**meta.get("timestamps", {}), "processing_received": float(t_received),
                                  "processing_done": time.time()}
        self._seq += 1
        msgs = [Message("frame", self._seq, f.frame_id, f.scanner_id, f.t_acquired, {"frame": f.image}, meta)]
        if out.roi.found and out.roi.image is not None:
            msgs.append(Message("roi", self._seq, f.frame_id, f.scanner_id, f.t_acquired, {"roi": out.roi.image},
                                meta))
        return msgs

    def serve(self, raw_endpoint: str, publish_endpoint: str | None = None, stop: threading.Event | None = None,
              max_outputs: int | None = None, ready: Ready | None = None, poll_ms: int = 100) -> ProcessingCounters:
        """SUB `raw` (and `lines`) at raw_endpoint, PUB `frame`/`roi` on publish_endpoint, until `stop` is set or
        max_outputs outputs were published. `ready(endpoint)` gets the bound endpoint (tcp://...:* resolved):
        the stage lifecycle of thzcore.stage."""
        import zmq

        endpoint = publish_endpoint or self.config.publish_endpoint
        check_local_endpoint(endpoint)
        ctx = zmq.Context.instance()
        sub, sub_lines, pub = ctx.socket(zmq.SUB), ctx.socket(zmq.SUB), ctx.socket(zmq.PUB)
        warn = RateLimitedLog(log)
        drain_ms = 0  # on stop: drop what is queued; after max_outputs: let the last messages leave
        try:
            for s in (sub, sub_lines, pub):
                s.setsockopt(zmq.LINGER, 0)
            sub.setsockopt(zmq.RCVHWM, 8)  # 8 raw frames = 67 MB: drop rather than fall behind
            sub.setsockopt(zmq.SUBSCRIBE, b"raw")
            # the parts of the frame being scanned come on a socket of their own, so they never crowd raw
            # frames out of its high-water mark: two frames' worth of lines at most
            sub_lines.setsockopt(zmq.RCVHWM, 2 * self.processor.scanner.raster.lines_per_frame)
            sub_lines.setsockopt(zmq.SUBSCRIBE, b"lines")
            pub.bind(endpoint)
            sub.connect(raw_endpoint)
            sub_lines.connect(raw_endpoint)
            poller = zmq.Poller()
            poller.register(sub, zmq.POLLIN)
            poller.register(sub_lines, zmq.POLLIN)
            log.info("processing stage up", extra={"raw": raw_endpoint, "publish": endpoint})
            if ready is not None:
                ready(pub.getsockopt_string(zmq.LAST_ENDPOINT))
            published = 0
            while not (stop is not None and stop.is_set()):
                waiting = dict(poller.poll(poll_ms))
                if sub_lines in waiting:
                    self._take_parts(sub_lines, warn)
                if sub not in waiting:
                    continue
                parts = sub.recv_multipart(copy=False)  # the arrays are views of the ZMQ messages: no 8 MB copy
                t_received = time.time()
                try:
                    msg = decode(parts, expect_topic="raw")
                    raw = RawFrame.from_message(msg)
                except Exception as exc:  # noqa: BLE001 - WireError, or anything else: no message kills the stage
                    self._dropped(exc, warn)
                    continue
                self._take_parts(sub_lines, warn, seq=msg.seq)  # its last parts may still be on their way
                try:
                    out = self.feed(raw, self.streamed_power(msg.seq, raw))
                    msgs = [] if out is None else [encode(m) for m in self.messages(out, t_received)]
                except Exception as exc:  # noqa: BLE001 - a frame that cannot be processed is dropped, counted
                    self.counters.errors += 1
                    self.counters.last_error = f"{type(exc).__name__}: {exc}"
                    warn.warning("frame not processed", extra={"frame_id": raw.frame_id,
                                                               "error": self.counters.last_error}, kind="error")
                    continue
                if out is None:
                    continue
                for m in msgs:
                    pub.send_multipart(m)
                published += 1
                if max_outputs is not None and published >= max_outputs:
                    drain_ms = 1000  # LINGER 0 would discard the `roi` still queued behind `frame`
                    break
        finally:
            sub.close(0)
            sub_lines.close(0)
            pub.close(drain_ms)
            log.info("processing stage stopped", extra=self.counters.to_json())
        return self.counters


__all__ = ["ProcessingStage", "StageOutput", "ProcessingCounters", "check_local_endpoint"]

"""The acquisition daemon: connect, identify, apply, stream frames to HDF5 and ZMQ, survive faults, park on exit.

Fault policy (acquisition.errors):
    LinkSuspect         park, close both links, back off, reopen, re-identify, re-apply, resume at a frame boundary
    DeviceFault         park, back off, re-apply (links kept; reopened if that fails on the link)
    FrameRejected       drop the frame (never recorded), carry on; too many in a row -> failed
    ConfigurationError  fatal: failed, exit code 2, the message names the setting
Every outage is a gap: from the last frame recorded to the first frame after it, with the first
error as its reason, in the HDF5 file (/entry/gaps) and the run log. Capped exponential backoff;
`reconnect_max_attempts` failed recoveries in a row -> failed, exit code 3.

About 400 lines: the state machine, the fault policy and the recovery loop share the daemon's
state (session, recorder, publishers, gap bookkeeping) step by step; split, each part would reach
into the others' fields.
"""
from __future__ import annotations

import secrets
import signal
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import zmq

from acquisition.config import AcquisitionSettings
from acquisition.errors import (AcquisitionError, ConfigurationError, DeviceFault, DeviceNotFound, FrameRejected,
                                LinkSuspect)
from acquisition.publish import RawPublisher, StatusPublisher, check_bind
from acquisition.runlog import RunLog
from acquisition.session import ScannerSession
from acquisition.state import State, StateMachine, Transition, backoff_delays
from thzcore.frames import RawFrame
from thzcore.logs import get_logger
from thzcore.netsec import stop_authenticator
from thzcore.provenance import software_version
from thzcore.recording import Recorder

log = get_logger(__name__)

# RunResult.exit_code, the status `thz acquire` exits with: the values of the one policy (README "Exit codes",
# thz/cli.py EXIT_*): done, a bug, the settings refused, the devices lost after every retry, stopped early
EXIT_OK, EXIT_ERROR, EXIT_CONFIG, EXIT_FAILED, EXIT_INTERRUPTED = 0, 70, 2, 5, 130


class _Fatal(Exception):
    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass
class RunResult:
    exit_code: int
    status: str            # closed | interrupted | failed
    frames: int
    gaps: int
    rejected: int
    reason: str
    recording: Path | None
    runlog: Path | None
    endpoints: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"exit_code": self.exit_code, "status": self.status, "frames": self.frames, "gaps": self.gaps,
                "rejected": self.rejected, "reason": self.reason,
                "recording": str(self.recording) if self.recording else None,
                "runlog": str(self.runlog) if self.runlog else None, "endpoints": self.endpoints}


@dataclass
class _Gap:
    after_frame_id: int
    t_start: float
    reason: str


class AcquisitionDaemon:
    """Streams frames from the configured devices.

        daemon = AcquisitionDaemon(settings, out_dir="recordings")
        result = daemon.run(frames=10)          # RunResult; exit_code 0 when all 10 were recorded

    settings:  pipeline.settings.Settings (scanner, acquisition, and sim for the seed attribute)
    out_dir:   where the session's HDF5 file and JSONL run log go (default acquisition.record_dir)
    publish:   bind the `raw` and `status` PUB sockets (endpoints in `self.endpoints` once bound)
    record:    write the HDF5 file (default acquisition.record)
    on_frame:  called with each delivered RawFrame (already renumbered, meta filled) in the daemon thread
    truth:     in simulation, returns the scene placed in front of the scanner, stored in frame meta
    clock, wall, sleep: injected time (monotonic, Unix, and a stop-aware sleep) so tests run fast
    """

    def __init__(self, settings: AcquisitionSettings, *, out_dir: str | Path | None = None, sim_seed: int | None = None,
                 publish: bool = True, record: bool | None = None,
                 on_frame: Callable[[RawFrame], None] | None = None,
                 truth: Callable[[], dict | None] | None = None,
                 clock: Callable[[], float] = time.monotonic, wall: Callable[[], float] = time.time,
                 sleep: Callable[[float], None] | None = None, session_id: str | None = None) -> None:
        self.settings = settings
        self.acq = settings.acquisition
        self.scanner = settings.scanner
        self.out_dir = Path(out_dir) if out_dir is not None else self.acq.record_root
        self.sim_seed = sim_seed
        self.publish, self.record = publish, self.acq.record if record is None else record
        self.on_frame, self.truth = on_frame, truth
        self.clock, self.wall = clock, wall
        self._stop = threading.Event()
        self.sleep = sleep or (lambda s: self._stop.wait(s))
        self.session_id = session_id or secrets.token_hex(4)
        self.sm = StateMachine(clock)
        self.sm.listeners.append(self._on_transition)
        self.session: ScannerSession | None = None
        self.recorder: Recorder | None = None
        self.runlog: RunLog | None = None
        self._status: StatusPublisher | None = None
        self._raw: RawPublisher | None = None
        self._ctx: zmq.Context | None = None
        self.endpoints: dict[str, str] = {}
        self.on_ready: Callable[[dict[str, str]], None] | None = None  # called once `raw`/`status` are bound
        self.idn: dict[str, str] = {}
        self.frames = 0
        self.seq = 0
        self.rejected = 0
        self.gaps = 0
        self._bad_in_row = 0
        self._streak = 0  # faults since the last good frame
        self._gap: _Gap | None = None
        self._last_id: int | None = None
        self._last_t: float | None = None
        self.ready = threading.Event()  # set once the first frame was delivered (or the run ended)
        # per delivered frame: the session's exchange times after *OPC? (ms) and this daemon's record/publish
        self.timings: deque[dict[str, float]] = deque(maxlen=1024)

    # --- control ---
    @property
    def state(self) -> State:
        return self.sm.state

    def request_stop(self, reason: str = "stop requested") -> None:
        """Finish the exchange in progress, then park and close (safe from a signal handler or another thread)."""
        if not self._stop.is_set():
            log.info("stop requested", extra={"reason": reason})
        self._stop.set()

    def install_signal_handlers(self) -> None:
        """SIGINT/SIGTERM request a clean stop; a second one interrupts (the galvo is still parked on the way out)."""
        def handler(signum, _frame):
            if self._stop.is_set():
                raise KeyboardInterrupt
            self.request_stop(f"signal {signal.Signals(signum).name}")

        signal.signal(signal.SIGINT, handler)
        signal.signal(signal.SIGTERM, handler)

    # --- run ---
    def run(self, frames: int | None = None) -> RunResult:
        if frames is not None and frames < 1:
            raise ValueError(f"frames={frames} must be >= 1 (or None to run until stopped)")
        status, exit_code, reason = "closed", EXIT_OK, ""
        try:
            try:
                self._open_outputs()
                self.session = ScannerSession(self.scanner, self.acq)  # limit check of the plan: fatal
                self.session.check_present()  # a device path that does not exist: fatal now, not after the retries
                self.sm.to(State.CONNECTING, "start")
                self._recover(reopen=True, first=True)
                self._start_recording()
                while not self._stop.is_set() and (frames is None or self.frames < frames):
                    self._step()
                if self._stop.is_set() and (frames is None or self.frames < frames):
                    status, exit_code = "interrupted", EXIT_INTERRUPTED
            except ConfigurationError as exc:
                raise _Fatal(f"configuration error: {exc}", EXIT_CONFIG) from exc
            except DeviceNotFound as exc:
                raise _Fatal(str(exc), EXIT_FAILED) from exc
        except _Fatal as exc:
            status, exit_code, reason = "failed", exc.exit_code, str(exc)
            log.error("acquisition failed", extra={"reason": reason})
            if self.sm.state != State.FAILED:
                self.sm.to(State.FAILED, reason)
        except KeyboardInterrupt:
            status, exit_code, reason = "interrupted", EXIT_INTERRUPTED, "interrupted"
        except Exception as exc:  # a bug: still park and close, and say what happened
            status, exit_code, reason = "failed", EXIT_ERROR, f"{type(exc).__name__}: {exc}"
            log.exception("acquisition crashed")
            if self.sm.state != State.FAILED:
                self.sm.to(State.FAILED, reason)
        finally:
            self._shutdown(status, exit_code, reason)
        return RunResult(exit_code, status, self.frames, self.gaps, self.rejected, reason,
                         self.recorder.path if self.recorder else None, self.runlog.path if self.runlog else None,
                         dict(self.endpoints))

    def _require_session(self) -> ScannerSession:
        """The run's scanner session; connecting, configuring and scanning need it (run() opens it first)."""
        if self.session is None:
            raise AcquisitionError("no scanner session: run() opens one before it connects, configures or scans")
        return self.session

    def _step(self) -> None:
        self._require_session()
        try:
            frame, head = self.session.acquire(on_part=self._publish_part)
        except ConfigurationError:
            raise
        except LinkSuspect as exc:
            self._fault(exc, reopen=True)
        except DeviceFault as exc:
            self._fault(exc, reopen=False)
        except FrameRejected as exc:
            self._reject(exc)
        else:
            self._deliver(frame, head.frame_no)

    # --- outputs ---
    def _open_outputs(self) -> None:
        a = self.acq
        if self.publish:
            check_bind(a.raw_endpoint, a.curve_secret_key_file, a.curve_clients_dir, "raw_endpoint")
            check_bind(a.status_endpoint, a.curve_secret_key_file, a.curve_clients_dir, "status_endpoint")
            self._ctx = zmq.Context()
            self._status = StatusPublisher(self._ctx, a.status_endpoint, self.scanner.scanner_id, a.heartbeat_s,
                                           a.curve_secret_key_file, a.curve_clients_dir, self.wall)
            self._raw = RawPublisher(self._ctx, a.raw_endpoint, a.raw_hwm, a.curve_secret_key_file,
                                     a.curve_clients_dir)
            self.endpoints = {"raw": self._raw.endpoint, "status": self._status.endpoint}
            if self.on_ready is not None:  # the stage lifecycle (thzcore.stage): the endpoints are bound
                self.on_ready(dict(self.endpoints))
        self.out_dir.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(self.wall()))
        safe_id = "".join(c if c.isalnum() or c in "-_." else "_" for c in self.scanner.scanner_id)
        self._stem = f"{safe_id}_{stamp}_{self.session_id}"
        self.runlog = RunLog(self.out_dir / f"{self._stem}.jsonl", self.wall)
        self.runlog.event("start", session_id=self.session_id, scanner_id=self.scanner.scanner_id,
                          software_version=software_version(), galvo_port=self.acq.galvo_port,
                          receiver_resource=self.acq.receiver_resource, endpoints=self.endpoints,
                          calibration_id=self.acq.calibration_id, sim_seed=self.sim_seed,
                          raw_frame_shape=list(self.scanner.raw_frame_shape))

    def _start_recording(self) -> None:
        if not self.record:
            return
        attrs = {"config_json": self.settings.model_dump_json(), "calibration_id": self.acq.calibration_id,
                 "sim_seed": -1 if self.sim_seed is None else int(self.sim_seed),
                 "galvo_port": self.acq.galvo_port, "receiver_resource": self.acq.receiver_resource}
        self._require_session()
        self.recorder = Recorder(self.out_dir / f"{self._stem}.h5", self.session.shape,
                                 {"session_id": self.session_id, "scanner_id": self.scanner.scanner_id, **attrs},
                                 grow=16, instrument={"galvo": {"idn": self.idn.get("galvo", ""),
                                                                "resource": self.acq.galvo_port},
                                                      "receiver": {"idn": self.idn.get("receiver", ""),
                                                                   "resource": self.acq.receiver_resource}},
                                 compression=self.acq.record_compression)
        if self.runlog:
            self.runlog.event("recording", path=str(self.recorder.path))

    def _shutdown(self, status: str, exit_code: int, reason: str) -> None:
        parked = False
        if self.session is not None:
            parked = self.session.park()
            self.session.close()
        if self.sm.state != State.DISCONNECTED:
            self.sm.to(State.DISCONNECTED, f"shutdown ({status})")
        if self._gap is not None:
            self._close_gap(resume_frame_id=-1, t_end=self.wall())
        if self.recorder is not None:
            try:
                self.recorder.close(status)
            except Exception as exc:  # leave the file to `thz recover`
                log.error("closing the recording failed; run `thz recover`", extra={"error": str(exc)})
        if self.runlog is not None:
            self.runlog.event("stop", status=status, exit_code=exit_code, reason=reason, frames=self.frames,
                              gaps=self.gaps, rejected=self.rejected, galvo_parked=parked)
            self.runlog.close()
        if self._status is not None:
            self._status.close()
        if self._raw is not None:
            self._raw.close()
        if self._ctx is not None:
            stop_authenticator(self._ctx)
            self._ctx.term()
        self.ready.set()

    # --- faults ---
    def _open_gap(self, reason: str) -> None:
        if self._gap is None:
            self._gap = _Gap(-1 if self._last_id is None else self._last_id, self.wall(), reason)

    def _close_gap(self, resume_frame_id: int, t_end: float) -> None:
        g, self._gap = self._gap, None
        if g is None:
            return
        self.gaps += 1
        if self.recorder is not None and not self.recorder.closed:
            self.recorder.gap(g.after_frame_id, resume_frame_id, g.t_start, t_end, g.reason)
        if self.runlog is not None:
            self.runlog.event("gap", after_frame_id=g.after_frame_id, resume_frame_id=resume_frame_id,
                              t_start=g.t_start, t_end=t_end, seconds=round(t_end - g.t_start, 3), reason=g.reason)
        log.info("gap closed", extra={"after_frame_id": g.after_frame_id, "resume_frame_id": resume_frame_id,
                                      "reason": g.reason})

    def _event(self, event: str, /, **fields: Any) -> None:
        if self.runlog is not None:
            self.runlog.event(event, **fields)

    def _fault(self, exc: AcquisitionError, reopen: bool) -> None:
        reason = f"{type(exc).__name__}: {exc}"
        log.warning("fault", extra={"error": reason, "reopen": reopen})
        self._event("fault", error=reason, kind="link" if reopen else "device")
        self._open_gap(reason)
        self._require_session()
        self.session.park()
        self._streak += 1
        if self._streak > self.acq.reconnect_max_attempts:
            raise _Fatal(f"{self._streak} faults in a row without a good frame (acquisition.reconnect_max_attempts); "
                         f"last: {reason}", EXIT_FAILED)
        self._recover(reopen=reopen)

    def _reject(self, exc: FrameRejected) -> None:
        reason = f"{type(exc).__name__}: {exc}"
        self.rejected += 1
        self._bad_in_row += 1
        log.warning("frame rejected", extra={"error": reason})
        self._event("frame_rejected", error=reason)
        self._open_gap(reason)
        self.sm.to(State.DEGRADED, reason)
        if self._bad_in_row >= self.acq.max_bad_frames:
            raise _Fatal(f"{self._bad_in_row} frames rejected in a row (acquisition.max_bad_frames); last: {reason}",
                         EXIT_FAILED)

    def _recover(self, reopen: bool, first: bool = False) -> None:
        """(Re)connect and (re)apply with capped exponential backoff; _Fatal when every attempt failed."""
        self._require_session()
        a = self.acq
        # the backoff keeps growing across recoveries that do not lead to a good frame
        skip = max(0, self._streak - 1)
        delays = backoff_delays(a.reconnect_initial_s, a.reconnect_max_s, a.reconnect_max_attempts + skip)[skip:]
        last = ""
        for attempt, delay in enumerate(delays):
            if self._stop.is_set():
                return
            if reopen:
                if self.sm.state != State.CONNECTING:
                    self.sm.to(State.RECONNECTING, last or "link suspect")
            else:
                self.sm.to(State.DEGRADED, last or "device fault")
            if not (first and attempt == 0):
                self._event("backoff", attempt=attempt + 1, seconds=delay)
                self.sleep(delay)
                if self._stop.is_set():
                    return
            try:
                if reopen:
                    if self.sm.state != State.CONNECTING:
                        self.sm.to(State.CONNECTING, f"attempt {attempt + 1}")
                    self.session.close()
                    self.idn = self.session.connect()
                    self._event("identified", attempt=attempt + 1, **self.idn)
                self.session.apply()
            except ConfigurationError:
                raise
            except (LinkSuspect, DeviceFault, FrameRejected) as exc:
                last = f"{type(exc).__name__}: {exc}"
                log.warning("recovery attempt failed", extra={"attempt": attempt + 1, "error": last})
                self._event("recovery_failed", attempt=attempt + 1, error=last)
                if isinstance(exc, LinkSuspect):
                    reopen = True
                self.session.park()
                continue
            if self.sm.state == State.CONNECTING:
                self.sm.to(State.READY, "identified and configured")
            self._event("applied", attempt=attempt + 1)
            return
        raise _Fatal(f"gave up after {len(delays)} recovery attempts (acquisition.reconnect_max_attempts); "
                     f"last error: {last}", EXIT_FAILED)

    # --- frames ---
    def _publish_part(self, first_line: int, if_samples) -> None:
        """A part of the frame being scanned, on `lines` under the seq its `raw` frame will have."""
        if self._raw is not None:
            self._raw.publish_part(self.seq, self.scanner.scanner_id, first_line, self.scanner.raw_frame_shape[0],
                                   if_samples, self.wall())

    def _deliver(self, frame: RawFrame, instrument_frame_no: int) -> None:
        # daemon frame ids only grow and skip the frames lost in a gap (counted in frame periods)
        if self._last_id is None:
            fid = 0
        else:
            n = round((frame.t_acquired - (self._last_t or frame.t_acquired)) * self.scanner.raster.slow_axis_hz)
            fid = self._last_id + max(1, int(n))
        skipped = 0 if self._last_id is None else fid - self._last_id - 1
        frame.frame_id = fid
        frame.meta.update(calibration_id=self.acq.calibration_id, instrument_frame_no=int(instrument_frame_no),
                          session_id=self.session_id)  # beside the session's own (t_complete)
        t_truth = time.perf_counter()
        if self.truth is not None:
            try:
                frame.meta["truth"] = self.truth()
            except Exception as exc:  # the truth is a convenience of simulation; never fail a frame for it
                log.warning("sim truth unavailable", extra={"error": str(exc)})
        t0 = time.perf_counter()
        if self._gap is not None:
            self._close_gap(resume_frame_id=fid, t_end=frame.t_acquired)
        if self.recorder is not None:
            self.recorder.write(frame, self.seq, instrument_frame_no)
        t1 = time.perf_counter()
        if self._raw is not None:
            self._raw.publish(frame, self.seq)
        t2 = time.perf_counter()
        if self.session is not None:
            self.timings.append({**self.session.last_timings, "truth": 1e3 * (t0 - t_truth), "record": 1e3 * (t1 - t0),
                                 "publish": 1e3 * (t2 - t1)})
        self._event("frame", frame_id=fid, seq=self.seq, instrument_frame_no=int(instrument_frame_no),
                    t_acquired=frame.t_acquired, skipped=skipped)
        self._last_id, self._last_t = fid, frame.t_acquired
        self.frames += 1
        self.seq += 1
        self._bad_in_row = 0
        self._streak = 0
        if self.sm.state != State.SCANNING:
            self.sm.to(State.SCANNING, "frames flowing")
        if self._status is not None:
            self._status.update(frames=self.frames, frame_id=fid, gaps=self.gaps, rejected=self.rejected)
        if self.on_frame is not None:
            self.on_frame(frame)
        self.ready.set()

    def _on_transition(self, tr: Transition) -> None:
        log.info("state", extra={"old": tr.old.value, "new": tr.new.value, "reason": tr.reason})
        if self.runlog is not None:
            self.runlog.event("state", old=tr.old.value, new=tr.new.value, reason=tr.reason)
        if self._status is not None:
            self._status.update(state=tr.new.value, reason=tr.reason, frames=self.frames, gaps=self.gaps)

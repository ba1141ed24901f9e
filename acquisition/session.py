"""ScannerSession: both instruments as one scanner: connect, identify, apply the raster, acquire checked frames."""
from __future__ import annotations

import os
import re
import time
from typing import Callable

import numpy as np

from acquisition.buffers import BufferPool
from acquisition.config import AcquisitionConfig
from acquisition.errors import AcquisitionError, ConfigurationError, DeviceNotFound, FrameRejected, LinkSuspect
from acquisition.galvo import GalvoController
from acquisition.galvo_protocol import GalvoError
from acquisition.raster import GalvoLimits, RasterPlan, optical_angle_mapping
from acquisition.receiver import Receiver, ReceiverSettings
from acquisition.scpi import FrameCorruptError, FrameHead
from thzcore.frames import RawFrame
from thzcore.logs import get_logger
from thzcore.scanner import ScannerConfig

log = get_logger(__name__)

# the exchanges of `acquire` after *OPC? returned, in order (ScannerSession.last_timings, ms): `galvo_send` sends
# STAT?, `galvo` reads and judges its reply after the frame block
TIMED_PARTS = ("galvo_send", "errors", "head", "frame", "feedback", "galvo", "check")


class FeedbackRejected(FrameRejected):
    """The galvo feedback of a frame shows the mirror did not scan (stall) or holds impossible values."""


class SampleRejected(FrameRejected):
    """IF samples outside the digitizer's range: the block is not what the ADC produced."""


def device_path(address: str) -> str | None:
    """The file a serial port or a VISA serial resource names (`/dev/ttyUSB0`, `ASRL/dev/ttyUSB1::INSTR`), or
    None where the address is not a file: a pyserial URL (`socket://`, `rfc2217://`, `loop://`), a TCP/IP or USB
    VISA resource, a Windows COM port, a numbered ASRL board."""
    a = address.strip()
    m = re.fullmatch(r"(?i)ASRL(.+?)(::INSTR)?", a)
    if m:
        a = m.group(1)
    if "://" in a or not a.startswith("/"):
        return None
    return a


def check_device_paths(acq: AcquisitionConfig) -> None:
    """DeviceNotFound naming the first configured device path that does not exist; nothing is opened."""
    for what, field, address in (("galvo port", "galvo_port", acq.galvo_port),
                                 ("receiver resource", "receiver_resource", acq.receiver_resource)):
        path = device_path(address)
        if path is not None and not os.path.exists(path):
            raise DeviceNotFound(f"{what} {path} does not exist (acquisition.{field}={address!r}): is the device "
                                 "plugged in and powered? `ls /dev/serial/by-id` lists the serial adapters")


class ScannerSession:
    """The galvo controller and the receiver configured as one raster scanner.

    Methods raise the acquisition error classes (LinkSuspect, DeviceFault, FrameRejected,
    ConfigurationError); the daemon decides what to do with them. The raster plan is checked
    against the limits at construction, so a session is never built around an unsafe command.
    """

    def __init__(self, scanner: ScannerConfig, acq: AcquisitionConfig) -> None:
        self.scanner, self.acq = scanner, acq
        self.limits = GalvoLimits.from_config(scanner, acq)
        self.plan = RasterPlan.from_config(scanner, acq)
        self.plan.check(self.limits)  # GalvoLimitError (a ConfigurationError) before anything is opened
        to_deg, to_m = optical_angle_mapping(scanner.optics.standoff_m)
        self.galvo = GalvoController(acq.galvo_port, acq.galvo_baudrate, acq.timeout_s, self.limits, to_deg, to_m)
        self.receiver = Receiver(acq.receiver_resource, acq.timeout_s, acq.visa_library, acq.read_termination,
                                 acq.write_termination, acq.chunk_size, acq.block_reader)
        self.rx_settings = ReceiverSettings.from_config(scanner, acq.line_trigger_timeout_s)
        self.frame_s = scanner.raster.frame_duration_s
        wd_min = 2.0 * self.frame_s + acq.timeout_s  # the longest silence towards the galvo: one frame wait
        if 0 < acq.galvo_watchdog_s < wd_min:
            raise ConfigurationError(
                f"acquisition.galvo_watchdog_s={acq.galvo_watchdog_s} s would park the raster during a frame wait "
                f"(up to 2 x {self.frame_s:g} s frame + {acq.timeout_s:g} s timeout); set it to at least "
                f"{wd_min:g} s, or 0 to disable the watchdog")
        self.last_head: FrameHead | None = None
        self.last_timings: dict[str, float] = {}  # ms of each exchange of the last acquire after *OPC? returned
        # IF blocks are received straight into these; one is reused once no frame built on it is alive
        self.if_buffers = BufferPool(self.shape, "<i2", slots=acq.frame_buffers)

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.rx_settings.shape

    # --- link ---
    def check_present(self) -> None:
        """DeviceNotFound at once when a configured device path does not exist (no retry can make it appear)."""
        check_device_paths(self.acq)

    def identify(self) -> dict[str, str]:
        """Check the paths, open both links, identify both instruments and close again: that the configured
        devices answer, before anyone is asked to place a target. Raises DeviceNotFound or the link's error."""
        self.check_present()
        try:
            return self.connect()
        finally:
            self.close()

    def connect(self) -> dict[str, str]:
        """Open both links and identify both instruments; returns their *IDN strings."""
        self.galvo.open()
        self.receiver.open()
        return {"galvo": self.galvo.identify(), "receiver": self.receiver.identify()}

    def close(self) -> None:
        self.galvo.close()
        self.receiver.close()

    def apply(self) -> None:
        """Put both instruments in the configured state and start the raster (resumes at a frame boundary)."""
        g = self.galvo
        g.check_controller_limits()
        g.reset()
        g.drain_errors()
        g.set_axis(self.plan.fast)
        g.set_axis(self.plan.slow)
        g.set_watchdog(self.acq.galvo_watchdog_s)
        self.receiver.reset()
        self.receiver.configure(self.rx_settings)
        g.arm()
        g.start()
        g.check_ok()

    def park(self) -> bool:
        """Park the mirrors (best effort: reopens a suspect serial link once). True when the controller confirmed."""
        path = device_path(self.acq.galvo_port)
        if not self.galvo.is_open and path is not None and not os.path.exists(path):
            log.warning("galvo not parked: its port does not exist", extra={"port": path})  # nothing to reach
            return False
        for attempt in range(2):
            try:
                if not self.galvo.is_open:
                    self.galvo.open()
                self.galvo.park(self.plan.park_x_m, self.plan.park_y_m)
                return True
            except (GalvoError, LinkSuspect, AcquisitionError) as exc:
                log.warning("park failed", extra={"attempt": attempt + 1, "error": str(exc)})
                self.galvo.close()
        return False

    # --- frames ---
    def parts(self) -> list[tuple[int, int]]:
        """(first line, count) of each FETC:PART? of a frame (acquisition.stream_lines; [] = whole frames)."""
        n, k = self.shape[0], self.acq.stream_lines
        return [(f, min(k, n - f)) for f in range(0, n, k)] if k else []

    def _read_part(self, buf: np.ndarray, first: int, count: int, crc: int, bad: SampleRejected | None,
                   on_part: Callable[[int, np.ndarray], None] | None) -> tuple[int, SampleRejected | None]:
        """One part into its lines of `buf`, its samples checked, handed to `on_part` while none was bad;
        (the CRC continued over it, the first sample problem so far). An aborted frame raises its error."""
        rx = self.receiver
        lines = buf[first:first + count]
        got = rx.fetch_part(first, lines, crc, 2.0 * self.frame_s + self.acq.timeout_s)
        if got is None:
            rx.check_errors()   # the reason of the abort (-231 no line trigger, ...): a DeviceFault
            raise FrameRejected(f"the receiver aborted the frame while lines {first}..{first + count - 1} "
                                "were awaited, and queued no reason")
        bad = bad or self._sample_problem(lines)
        if on_part is not None and bad is None:
            on_part(first, lines)
        return got, bad

    def acquire(self, on_part: Callable[[int, np.ndarray], None] | None = None) -> tuple[RawFrame, FrameHead]:
        """Arm, wait, fetch and check one frame. frame_id is the receiver's frame number (the daemon renumbers).

        With acquisition.stream_lines, every part but the last is fetched while the galvo still sweeps,
        its samples checked and handed to `on_part(first_line, lines)` (a view of the frame buffer) as it
        arrives; after *OPC? only the last part is left. A problem found in a part is raised once the
        frame is complete, so the receiver is never left armed."""
        self.galvo.check_ok()
        rx = self.receiver
        rx.arm()
        buf = self.if_buffers.take()
        parts, crc, bad = self.parts(), 0, None
        for first, count in parts[:-1]:
            crc, bad = self._read_part(buf, first, count, crc, bad, on_part)
        rx.wait(2.0 * self.frame_s + self.acq.timeout_s)
        t_complete = time.time()  # *OPC? returned: the last line is digitized (scan complete, host clock)
        t = [time.perf_counter()]
        # a stall during the frame invalidates it: STAT? goes out now (the frame is complete) and its reply
        # crosses the serial line while the receiver's block is read; it is judged after the block
        self.galvo.begin_check()
        t.append(time.perf_counter())
        try:
            rx.check_errors()  # an aborted frame (no line trigger) or a pushed instrument error
            t.append(time.perf_counter())
            head = rx.head()
            if head.shape != self.shape:
                raise FrameRejected(f"frame {head.frame_no} has shape {head.shape}, configured {self.shape}")
            t.append(time.perf_counter())
            if parts:
                crc, bad = self._read_part(buf, *parts[-1], crc, bad, on_part)
                if crc != head.crc_if:
                    raise FrameCorruptError(f"frame {head.frame_no}: IF parts' CRC-32 {crc:08x} != head "
                                            f"{head.crc_if:08x}")
                if_samples = buf
            else:
                if_samples = rx.fetch_frame(head, out=buf)
            t.append(time.perf_counter())
            fx, fy, direction = rx.fetch_feedback(head)
            t.append(time.perf_counter())
        except BaseException:
            self.galvo.abandon_check()   # keep the serial line in step for the next exchange
            raise
        self.galvo.finish_check()
        t.append(time.perf_counter())
        bad = bad if parts else self._sample_problem(if_samples)   # streamed parts were checked as they came
        if bad is not None:
            raise bad
        self.check_feedback(fx)
        t.append(time.perf_counter())
        self.last_timings = {k: 1e3 * (t[i + 1] - t[i]) for i, k in enumerate(TIMED_PARTS)}
        self.last_head = head
        frame = RawFrame(head.frame_no, head.t_start, self.scanner.scanner_id, if_samples, fx, fy, direction,
                         {"t_complete": t_complete})
        return frame, head

    def _sample_problem(self, if_samples: np.ndarray) -> SampleRejected | None:
        """SampleRejected when IF samples lie outside the digitizer's range, else None."""
        full = 1 << (self.scanner.fmcw.adc_bits - 1)
        lo, hi = int(if_samples.min()), int(if_samples.max())
        if lo < -full or hi > full - 1:
            return SampleRejected(f"IF samples span [{lo}, {hi}], outside the {self.scanner.fmcw.adc_bits}-bit "
                                  f"range [{-full}, {full - 1}]")
        return None

    def check_feedback(self, feedback_x: np.ndarray) -> None:
        """FeedbackRejected when the fast axis did not scan or reports impossible positions."""
        span = float(feedback_x.max() - feedback_x.min())
        want = 2.0 * self.plan.fast.amplitude_m
        if span < self.acq.min_feedback_span * want:
            raise FeedbackRejected(f"fast-axis feedback spans {span * 1e3:.1f} mm of the commanded "
                                   f"{want * 1e3:.1f} mm (< {self.acq.min_feedback_span:.0%}): the mirror did not scan")
        reach = 1.5 * (self.limits.x.max_excursion_m + self.limits.y.max_excursion_m)
        if float(np.abs(feedback_x).max()) > reach:
            raise FeedbackRejected(f"fast-axis feedback reaches {float(np.abs(feedback_x).max()):.3f} m, "
                                   "beyond any reachable position")

"""The measurement path through the real acquisition daemon and drivers to the device emulators.

    thz sim scanner (subprocess: pty galvo, SCPI receiver, JSON backdoor)
        <- pyserial galvo driver, pyvisa receiver driver <- AcquisitionDaemon (acquisition.simlink.grab_frames)

Targets, beam and noise are set through the emulator's backdoor, exactly as a technician places
a target in the lab; frames come back as RawFrames from the daemon, which the procedures process
with the real FrameProcessor. Each `acquire` is one short daemon run (connect, identify, apply the
raster, acquire n frames, park, close), so a changed fast-axis amplitude is applied by the daemon
like any configuration.
"""
from __future__ import annotations

from typing import Any

from calibration.sources import scaled_fast_axis
from thzcore.frames import RawFrame
from thzcore.logs import get_logger
from thzcore.scanner import ScannerConfig

log = get_logger(__name__)


class DaemonSource:
    source_kind = "sim"

    def __init__(self, settings: Any, seed: int | None = None, realtime: bool = False,
                 min_timeout_s: float = 30.0) -> None:
        from acquisition.simlink import SimScanner
        # the emulator computes a frame on demand; on a loaded machine a new target's first frame
        # (map build, kernel compile) can outlast the 5 s default I/O timeout
        a = settings.acquisition
        timeout = max(a.timeout_s, min_timeout_s)
        upd: dict[str, Any] = {"timeout_s": timeout}
        if a.galvo_watchdog_s:  # the watchdog must outlast a frame wait (the acquisition config checks it)
            upd["galvo_watchdog_s"] = max(a.galvo_watchdog_s,
                                          timeout + 2 * settings.scanner.raster.frame_duration_s + 5.0)
        acq = a.model_validate({**a.model_dump(), **upd})
        settings = settings.model_copy(update={"acquisition": acq})
        self._settings = settings
        self._base = self._scanner = settings.scanner
        self.seed = settings.sim.seed if seed is None else int(seed)
        self.sim = SimScanner.start(settings, seed=self.seed, realtime=realtime)
        self._beam: dict[str, Any] = {}
        self._noise: dict[str, Any] = {}
        self._galvo: dict[str, Any] = {}
        self.frames_acquired = 0
        self.description = (f"AcquisitionDaemon + galvo/receiver drivers -> device emulators "
                            f"(thz sim scanner, seed {self.seed}, {'realtime' if realtime else 'fast'})")

    @property
    def scanner(self) -> ScannerConfig:
        return self._scanner

    def place(self, scene: dict[str, Any] | None) -> None:
        self.sim.backdoor.set_scene(scene)

    def set_beam(self, **kw: Any) -> None:
        self.sim.backdoor.set_beam(**kw)
        self._beam.update(kw)

    def set_noise(self, **kw: Any) -> None:
        self.sim.backdoor.set_noise(**kw)
        self._noise.update(kw)

    def set_galvo(self, **kw: Any) -> None:
        """The TRUE servo of the virtual scanner (servo_natural_hz, servo_damping, feedback_delay_s)."""
        self.sim.backdoor.set_galvo(**kw)
        self._galvo.update(kw)

    def acquire(self, n_frames: int) -> list[RawFrame]:
        from acquisition.simlink import grab_frames
        s = self._settings.model_copy(update={"scanner": self._scanner})
        frames = grab_frames(self.sim.settings_for(s), n_frames)
        self.frames_acquired += len(frames)
        return frames

    def set_fast_amplitude(self, scale: float) -> ScannerConfig:
        self._scanner = self._base if scale == 1.0 else scaled_fast_axis(self._base, scale)
        return self._scanner

    def truth(self) -> dict[str, Any]:
        """What the backdoor set (the emulator does not report the simulator's internals)."""
        return {"beam_override": dict(self._beam), "noise_override": dict(self._noise),
                "galvo_override": dict(self._galvo), "seed": self.seed}

    def close(self) -> None:
        self.sim.stop()

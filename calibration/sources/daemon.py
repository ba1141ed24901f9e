"""The measurement path through the real acquisition daemon and drivers to the device emulators.

    thz sim scanner (subprocess: pty galvo, SCPI receiver, JSON backdoor)
        <- pyserial galvo driver, pyvisa receiver driver <- AcquisitionDaemon (acquisition.grab.grab_frames)

Targets, beam and noise are set through the emulator's backdoor, exactly as a technician places
a target in the lab; frames come back as RawFrames from the daemon, which the procedures process
with the real FrameProcessor. Each `acquire` is one short daemon run (connect, identify, apply the
raster, acquire n frames, park, close), so a changed fast-axis amplitude is applied by the daemon
like any configuration.
"""
from __future__ import annotations

from typing import Any, Callable

from calibration.config import CalibrationSettings
from calibration.sources.base import scaled_fast_axis
from thzcore.frames import RawFrame
from thzcore.logs import get_logger
from thzcore.scanner import ScannerConfig

log = get_logger(__name__)


def patient_settings(settings: CalibrationSettings, min_timeout_s: float) -> Any:
    """Settings whose I/O timeout is at least min_timeout_s, the galvo watchdog outlasting a frame wait."""
    a = settings.acquisition
    timeout = max(a.timeout_s, min_timeout_s)
    upd: dict[str, Any] = {"timeout_s": timeout}
    if a.galvo_watchdog_s:  # the watchdog must outlast a frame wait (the acquisition config checks it)
        upd["galvo_watchdog_s"] = max(a.galvo_watchdog_s,
                                      timeout + 2 * settings.scanner.raster.frame_duration_s + 5.0)
    acq = a.model_validate({**a.model_dump(), **upd})
    return settings.model_copy(update={"acquisition": acq})


def describe_scene(scene: dict[str, Any] | None) -> str:
    """What the technician must put in front of the scanner, in words."""
    if scene is None:
        return "Clear the field of view: nothing but the absorbing background in front of the scanner."
    if "identity" in scene:
        return (f"Place the head phantom ({'with' if scene.get('concealed') else 'without'} balaclava, posture "
                f"{scene.get('posture', 'front-center')}) at the standoff, centred in the field.")
    kind = scene.get("kind", "?")
    what = {"knife_edge": f"the knife-edge plate, edge along {'y' if scene.get('edge_axis', 'x') == 'x' else 'x'}",
            "point": "the point reflector", "plate": f"the flat reference plate, tilted {scene.get('tilt_deg', 0)} deg",
            "grid": f"the grid target (pitch {scene.get('grid_pitch_m', 0.05) * 100:.1f} cm)"}.get(kind, kind)
    return (f"Place {what} at range {scene.get('range_m', 0):.3f} m, offset x {scene.get('offset_x_m', 0):+.4f} m, "
            f"y {scene.get('offset_y_m', 0):+.4f} m.")


class _DaemonFrames:
    """Frames of the devices `settings` addresses, one short daemon run per `acquire`; the fast-axis
    amplitude is changed through the configuration like any other raster setting."""

    def __init__(self, settings: CalibrationSettings) -> None:
        self._settings = settings
        self._base = self._scanner = settings.scanner
        self.frames_acquired = 0

    @property
    def scanner(self) -> ScannerConfig:
        return self._scanner

    def acquire(self, n_frames: int) -> list[RawFrame]:
        from acquisition.grab import grab_frames
        frames = grab_frames(self._settings.model_copy(update={"scanner": self._scanner}), n_frames)
        self.frames_acquired += len(frames)
        return frames

    def set_fast_amplitude(self, scale: float) -> ScannerConfig:
        self._scanner = self._base if scale == 1.0 else scaled_fast_axis(self._base, scale)
        return self._scanner


class HardwareSource(_DaemonFrames):
    """The configured devices through the real daemon and drivers; each target is placed by the technician.

    The devices are opened and identified when the source is made, before anyone is asked to place
    a target: a missing port fails at once (DeviceNotFound), a device that does not answer with its
    link error. `ask(message, scene)` is called whenever the scene changes and returns once the
    target is in place (`thz calibrate` prompts on the terminal). Nothing of the truth is known:
    `truth()` is empty.
    """

    source_kind = "hardware"

    def __init__(self, settings: CalibrationSettings, ask: Callable[[str, dict[str, Any] | None], None]) -> None:
        from acquisition.session import ScannerSession
        super().__init__(settings)
        self.ask = ask
        self._placed: Any = _NOTHING_YET
        a = settings.acquisition
        self.idn = ScannerSession(settings.scanner, a).identify()  # AcquisitionError: the CLI's device failure
        log.info("devices identified", extra=self.idn)
        self.description = (f"AcquisitionDaemon + galvo/receiver drivers -> {a.galvo_port} ({self.idn['galvo']}) and "
                            f"{a.receiver_resource} ({self.idn['receiver']}) (hardware; targets placed by hand)")

    def place(self, scene: dict[str, Any] | None) -> None:
        if scene != self._placed:
            self.ask(describe_scene(scene), scene)
            self._placed = scene

    def truth(self) -> dict[str, Any]:
        return {}

    def close(self) -> None:
        pass


_NOTHING_YET = object()


class DaemonSource(_DaemonFrames):
    source_kind = "sim"

    def __init__(self, settings: CalibrationSettings, seed: int | None = None, realtime: bool = False,
                 min_timeout_s: float = 30.0) -> None:
        from sim.emulators.client import SimScanner
        # the emulator computes a frame on demand; on a loaded machine a new target's first frame
        # (map build, kernel compile) can outlast the 5 s default I/O timeout
        settings = patient_settings(settings, min_timeout_s)
        self.seed = settings.sim.seed if seed is None else int(seed)
        self.sim = SimScanner.start(settings, seed=self.seed, realtime=realtime)
        super().__init__(self.sim.settings_for(settings))  # the daemon talks to the emulator's devices
        self._beam: dict[str, Any] = {}
        self._noise: dict[str, Any] = {}
        self._galvo: dict[str, Any] = {}
        self.description = (f"AcquisitionDaemon + galvo/receiver drivers -> device emulators "
                            f"(thz sim scanner, seed {self.seed}, {'realtime' if realtime else 'fast'})")

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

    def truth(self) -> dict[str, Any]:
        """What the backdoor set (the emulator does not report the simulator's internals)."""
        return {"beam_override": dict(self._beam), "noise_override": dict(self._noise),
                "galvo_override": dict(self._galvo), "seed": self.seed}

    def close(self) -> None:
        self.sim.stop()

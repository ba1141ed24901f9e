"""The one physical state behind both emulated devices: a VirtualScanner, its scene, beam and noise."""
from __future__ import annotations

import threading
from typing import Any

from pydantic import ValidationError

from sim.config import SimConfig
from sim.emulators.galvo_device import MirrorState
from sim.scene import scene_from_json
from thzcore.frames import RawFrame
from thzcore.logs import get_logger
from thzcore.scanner import ScannerConfig

log = get_logger(__name__)


def _sim_scanner():
    from sim.scanner import RasterDrive, VirtualScanner  # heavy (numba kernels): only when started
    return VirtualScanner, RasterDrive


class Physics:
    """A VirtualScanner shared by the galvo (drive) and the receiver (samples), behind one lock.

    When the receiver is configured to other chirp/sampling values, or the galvo to other
    frequencies, than the scanner model was built with, the model is rebuilt with those values
    (scene, beam and noise carried over); values the model rejects raise ValueError, which the
    receiver reports as a settings conflict.
    """

    def __init__(self, scanner_cfg: ScannerConfig, sim_cfg: SimConfig, seed: int) -> None:
        self.sim_cfg, self.seed = sim_cfg, int(seed)
        self._lock = threading.RLock()
        self._scene: Any = None
        self._noise: dict[str, Any] = {}
        self._beam: dict[str, Any] = {}
        self._galvo: dict[str, Any] = {}
        self.scanner_cfg = scanner_cfg
        self.rebuilds = 0
        self._vs = self._build(scanner_cfg)

    def _build(self, cfg: ScannerConfig):
        VirtualScanner, _ = _sim_scanner()
        vs = VirtualScanner(cfg, self.sim_cfg, self.seed)
        vs.set_scene(self._scene)
        if self._noise:
            vs.set_noise(**self._noise)
        if self._beam:
            vs.set_beam(**self._beam)
        if self._galvo:
            vs.set_galvo(**self._galvo)
        return vs

    # --- backdoor ---
    def set_scene(self, data: dict | str | None) -> dict | None:
        scene = scene_from_json(data) if data is not None else None
        with self._lock:
            self._vs.set_scene(scene)
            self._scene = scene
        return None if scene is None else scene.model_dump(mode="json")

    def set_noise(self, **kw: Any) -> None:
        with self._lock:
            self._vs.set_noise(**kw)
            self._noise.update(kw)

    def set_beam(self, **kw: Any) -> None:
        with self._lock:
            self._vs.set_beam(**kw)
            self._beam.update(kw)

    def set_galvo(self, **kw: Any) -> None:
        """The TRUE servo and feedback-sensor parameters (servo_natural_hz, servo_damping, feedback_delay_s)."""
        with self._lock:
            self._vs.set_galvo(**kw)
            self._galvo.update(kw)

    def truth(self) -> dict[str, Any]:
        """Scene and true beam/servo parameters, as the virtual scanner reports them."""
        with self._lock:
            return self._vs.truth()

    def warm_up(self) -> float:
        """Compute one frame on the configured raster so kernels are compiled and maps cached; returns seconds."""
        import time
        _, RasterDrive = _sim_scanner()
        t = time.monotonic()
        with self._lock:
            self._vs.acquire_frame(0, RasterDrive.from_config(self.scanner_cfg))
        return time.monotonic() - t

    def scene(self) -> dict | None:
        with self._lock:
            return None if self._scene is None else self._scene.model_dump(mode="json")

    # --- devices ---
    def ensure(self, fmcw: dict[str, float], fast_hz: float, slow_hz: float) -> None:
        """Make the model match the receiver's FMCW settings and the galvo's frequencies."""
        with self._lock:
            cur = self.scanner_cfg
            want = cur.model_dump()
            want["fmcw"].update(fmcw)
            want["raster"].update(fast_axis_hz=fast_hz, slow_axis_hz=slow_hz)
            if want == cur.model_dump():
                return
            try:
                cfg = ScannerConfig.model_validate(want)
            except ValidationError as exc:
                first = exc.errors()[0]
                raise ValueError(str(first.get("msg", exc))) from None
            log.info("scanner model rebuilt for new device settings", extra={"fmcw": fmcw, "fast_hz": fast_hz,
                                                                             "slow_hz": slow_hz})
            self._vs = self._build(cfg)
            self.scanner_cfg = cfg
            self.rebuilds += 1

    def acquire(self, frame_no: int, mirror: MirrorState) -> RawFrame:
        """The frame the receiver digitises while the mirrors follow `mirror` (static when not running)."""
        _, RasterDrive = _sim_scanner()
        if mirror.running and not mirror.stalled:
            drive = RasterDrive(mirror.fast_amplitude_m, mirror.fast_offset_m, mirror.fast_hz,
                                mirror.slow_amplitude_m, mirror.slow_offset_m, mirror.slow_hz)
        else:
            drive = RasterDrive(0.0, mirror.x_m, mirror.fast_hz, 0.0, mirror.y_m, mirror.slow_hz)
        with self._lock:
            return self._vs.acquire_frame(frame_no, drive)

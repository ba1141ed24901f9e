"""The virtual scanner in-process as a measurement source (no transports): quick runs and tests."""
from __future__ import annotations

from typing import Any

from calibration.config import CalibrationSettings
from calibration.sources.base import scaled_fast_axis
from thzcore.frames import RawFrame
from thzcore.scanner import ScannerConfig

class VirtualSource:
    """sim.scanner.VirtualScanner driven in-process with the configured raster (no transports).

    The frames are the same physics the emulators serve, without the serial/VISA/ZMQ hops
    (`thz calibrate --sim --direct`).
    """

    source_kind = "sim"

    def __init__(self, settings: CalibrationSettings, seed: int | None = None) -> None:
        from sim.scanner import VirtualScanner
        self._settings = settings
        self._base = settings.scanner
        self._scanner = settings.scanner
        self.seed = settings.sim.seed if seed is None else int(seed)
        self._vs = VirtualScanner(self._scanner, settings.sim, self.seed)
        self._scene: dict[str, Any] | None = None
        self._beam: dict[str, Any] = {}
        self._noise: dict[str, Any] = {}
        self._galvo: dict[str, Any] = {}
        self._frame_no = 0
        self.description = f"sim.scanner.VirtualScanner in-process (seed {self.seed})"

    @property
    def scanner(self) -> ScannerConfig:
        return self._scanner

    def _rebuild(self) -> None:
        from sim.scanner import VirtualScanner
        self._vs = VirtualScanner(self._scanner, self._settings.sim, self.seed)
        self._apply()

    def _apply(self) -> None:
        from sim.scene import scene_from_json
        self._vs.set_scene(scene_from_json(self._scene) if self._scene is not None else None)
        if self._noise:
            self._vs.set_noise(**self._noise)
        if self._beam:
            self._vs.set_beam(**self._beam)
        if self._galvo:
            self._vs.set_galvo(**self._galvo)

    def place(self, scene: dict[str, Any] | None) -> None:
        from sim.scene import scene_from_json
        self._scene = scene
        self._vs.set_scene(scene_from_json(scene) if scene is not None else None)

    def set_beam(self, **kw: Any) -> None:
        self._beam.update(kw)
        self._vs.set_beam(**kw)

    def set_noise(self, **kw: Any) -> None:
        self._noise.update(kw)
        self._vs.set_noise(**kw)

    def set_galvo(self, **kw: Any) -> None:
        self._galvo.update(kw)
        self._vs.set_galvo(**kw)

    def drive(self):
        from sim.scanner import RasterDrive
        return RasterDrive.from_config(self._scanner)

    def acquire(self, n_frames: int) -> list[RawFrame]:
        out = []
        for _ in range(n_frames):
            out.append(self._vs.acquire_frame(self._frame_no, self.drive()))
            self._frame_no += 1
        return out

    def set_fast_amplitude(self, scale: float) -> ScannerConfig:
        new = self._base if scale == 1.0 else scaled_fast_axis(self._base, scale)
        if new != self._scanner:
            self._scanner = new
            self._rebuild()
        return self._scanner

    def truth(self) -> dict[str, Any]:
        """The simulator's true beam, lag and noise (the scene-specific parts are left out)."""
        vs = self._vs
        return {"beam": dict(vs.true_beam), "line_lag_s": vs.true_line_lag_s, "servo_lag_s": vs.true_servo_lag_s,
                "feedback_delay_s": vs.true_feedback_delay_s, "noise": vs.noise.model_dump(mode="json")}

    def close(self) -> None:
        pass

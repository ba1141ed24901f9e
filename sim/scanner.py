"""The virtual scanner: scene + galvo dynamics + beam + FMCW synthesis -> one RawFrame per call.

Timing of a frame (bidirectional raster, defaults in brackets): a frame starts at t0 with the fast
axis commanded at its left turnaround; line l (of 64) lasts T_line = 1 / (2 f_fast) [15.625 ms]
and holds C chirps [512] starting every T_line / C [30.52 us] at t_lc = t0 + l T_line + c T_line / C.
Even lines sweep forward (+x), odd lines backward.

True and reported positions:
    beam of chirp (l, c):   x_true(t_lc + j_l + T_c / 2)  (mid-chirp; j_l the line trigger jitter)
    feedback_x[l, c]:       x_true(t_lc - d) + sensor noise  (d = feedback delay)
    feedback_y[l]:          y_true(t0 + (l + 1/2) T_line - d) + sensor noise
so the feedback trails the beam by `true_line_lag_s` = d + T_c / 2, and the beam trails the
command by `true_servo_lag_s` = phi / omega of the 2nd-order servo (their sum is the lag of the
feedback behind the command).
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from sim import galvo, receiver
from sim.capture import draw_capture
from sim.config import NoiseConfig, SimConfig
from sim.maps import MapGrid, Optics, SceneMaps, subject_maps, target_maps
from sim.population import Population
from sim.motion import Sway
from sim.sampling import sample_layers
from sim.scene import Scene, Subject, Target
from thzcore.frames import RawFrame
from thzcore.logs import get_logger
from thzcore.scanner import SPEED_OF_LIGHT, RasterConfig, ScannerConfig

log = get_logger(__name__)

_SERVO_DT = 5e-6         # servo integration step (s)
_SERVO_WARMUP = 0.04     # servo run-in before the frame (s), > 30 time constants


IF_FILTER_CORNER = 0.45  # anti-alias low-pass of the IF chain: corner (cycles/sample) and order
IF_FILTER_ORDER = 6


def if_filter_gain(cyc: np.ndarray, corner: float = IF_FILTER_CORNER, order: int = IF_FILTER_ORDER) -> np.ndarray:
    """Anti-alias low-pass of the IF chain: |H| = (1 + (|f_b| / f_corner)^(2 order))^(-1/2), f in cycles/sample.

    Returns beyond the range window (beat above Nyquist, 0.5 cycles/sample) are attenuated instead of
    folding back into the image at full strength: -6.5 dB at Nyquist, -15 dB at 0.6, -30 dB at 0.8.
    """
    return 1.0 / np.sqrt(1.0 + (np.abs(cyc) / corner) ** (2 * order))


class RasterDrive(BaseModel):
    """The commanded galvo state, metres at the standoff plane and Hz.

    RasterDrive(fast_amplitude_m, fast_offset_m, fast_hz, slow_amplitude_m, slow_offset_m, slow_hz), by
    position or keyword; amplitudes of 0 hold the mirror still at the offset (a parked or static beam).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    fast_amplitude_m: float = Field(ge=0, description="fast-axis half amplitude (m)")
    fast_offset_m: float = Field(0.0, description="fast-axis centre (m)")
    fast_hz: float = Field(gt=0, description="fast-axis sinusoid frequency (Hz)")
    slow_amplitude_m: float = Field(ge=0, description="slow-axis half amplitude (m)")
    slow_offset_m: float = Field(0.0, description="slow-axis centre (m)")
    slow_hz: float = Field(gt=0, description="slow-axis sawtooth frequency (Hz)")

    def __init__(self, *args: float, **kwargs: Any) -> None:
        names = ("fast_amplitude_m", "fast_offset_m", "fast_hz", "slow_amplitude_m", "slow_offset_m", "slow_hz")
        if len(args) > len(names):
            raise TypeError(f"RasterDrive takes at most {len(names)} positional arguments, got {len(args)}")
        for name, value in zip(names, args):
            if name in kwargs:
                raise TypeError(f"RasterDrive got {name!r} both by position and by keyword")
            kwargs[name] = value
        super().__init__(**kwargs)

    @classmethod
    def from_config(cls, scanner_cfg: ScannerConfig) -> "RasterDrive":
        r = scanner_cfg.raster
        return cls(fast_amplitude_m=r.fast_amplitude_m, fast_offset_m=0.0, fast_hz=r.fast_axis_hz,
                   slow_amplitude_m=0.5 * r.fov_y_m, slow_offset_m=0.0, slow_hz=r.slow_axis_hz)

    def check_limits(self, raster: RasterConfig) -> None:
        """Refuse a command outside the galvo's configured limits."""
        if abs(self.fast_offset_m) + self.fast_amplitude_m > raster.max_fast_amplitude_m + 1e-12:
            raise ValueError(f"fast axis |offset| + amplitude = {abs(self.fast_offset_m) + self.fast_amplitude_m:.4f} m "
                             f"exceeds raster.max_fast_amplitude_m={raster.max_fast_amplitude_m}")
        if abs(self.slow_offset_m) + self.slow_amplitude_m > raster.max_slow_amplitude_m + 1e-12:
            raise ValueError(f"slow axis |offset| + amplitude = {abs(self.slow_offset_m) + self.slow_amplitude_m:.4f} m "
                             f"exceeds raster.max_slow_amplitude_m={raster.max_slow_amplitude_m}")


class VirtualScanner:
    """A 340 GHz FMCW standoff scanner in software (see the module docstring for timing).

    vs = VirtualScanner(scanner_cfg, sim_cfg, seed); vs.set_scene(Subject(...) | Target(...) | None);
    raw = vs.acquire_frame(frame_id). A frame depends only on (seed, frame_id, scene, drive, true
    parameters): the same inputs give bit-identical frames. Not thread-safe (it caches the scene
    maps): share one between threads behind a lock, as the emulator does.
    """

    def __init__(self, scanner_cfg: ScannerConfig | None = None, sim_cfg: SimConfig | None = None, seed: int = 0) -> None:
        self.cfg = scanner_cfg or ScannerConfig()
        self.sim_cfg = sim_cfg or SimConfig()
        self.seed = int(seed)
        self.population = Population(self.sim_cfg.n_identities, self.sim_cfg.population_seed, self.sim_cfg.difficulty)
        o = self.cfg.optics
        self.optics = Optics(o.carrier_hz, o.wavelength_m, o.w0_m, o.waist_range_m, o.standoff_m)
        self.noise: NoiseConfig = self.sim_cfg.noise.model_copy()
        r = self.cfg.raster
        self.servo_natural_hz, self.servo_damping, self.feedback_delay_s = r.servo_natural_hz, r.servo_damping, r.feedback_delay_s
        self.scene: Scene | None = None
        self._maps: tuple[Any, SceneMaps] | None = None

    # -- configuration of the true state ----------------------------------------------------------
    def set_scene(self, scene: Scene | None) -> None:
        if scene is not None and not isinstance(scene, (Subject, Target)):
            raise TypeError(f"scene must be a Subject, a Target or None, got {type(scene).__name__}")
        if isinstance(scene, Subject):
            self.population.identity(scene.identity)      # validates the identity index
        self.scene = scene
        self._maps = None

    def set_noise(self, **overrides: Any) -> None:
        """Override noise fields (names of sim.config.NoiseConfig); unknown names are rejected."""
        self.noise = NoiseConfig.model_validate({**self.noise.model_dump(), **overrides})

    def set_beam(self, waist_diameter_m: float | None = None, waist_range_m: float | None = None) -> None:
        """Set the TRUE beam (calibration tests measure it back)."""
        if waist_diameter_m is not None:
            if not waist_diameter_m > 0:
                raise ValueError(f"{waist_diameter_m=} must be > 0")
            self.optics.w0_m = 0.5 * float(waist_diameter_m)
        if waist_range_m is not None:
            if not waist_range_m > 0:
                raise ValueError(f"{waist_range_m=} must be > 0")
            self.optics.waist_range_m = float(waist_range_m)
        self._maps = None

    def set_galvo(self, servo_natural_hz: float | None = None, servo_damping: float | None = None,
                  feedback_delay_s: float | None = None) -> None:
        """Set the TRUE servo and feedback-sensor parameters (calibration tests measure the lag back)."""
        if servo_natural_hz is not None:
            if not servo_natural_hz > 0:
                raise ValueError(f"{servo_natural_hz=} must be > 0")
            self.servo_natural_hz = float(servo_natural_hz)
        if servo_damping is not None:
            if not servo_damping > 0:
                raise ValueError(f"{servo_damping=} must be > 0")
            self.servo_damping = float(servo_damping)
        if feedback_delay_s is not None:
            if not feedback_delay_s >= 0:
                raise ValueError(f"{feedback_delay_s=} must be >= 0")
            self.feedback_delay_s = float(feedback_delay_s)

    # -- true values for tests ---------------------------------------------------------------------
    @property
    def true_feedback_delay_s(self) -> float:
        return self.feedback_delay_s

    @property
    def true_line_lag_s(self) -> float:
        """Time by which the feedback trails the beam position of a chirp: d + T_c / 2 (s)."""
        return self.feedback_delay_s + 0.5 * self.cfg.fmcw.chirp_duration_s

    @property
    def true_servo_lag_s(self) -> float:
        """Time by which the beam trails the fast-axis command at the configured frequency (s)."""
        return galvo.servo_phase_lag_s(self.cfg.raster.fast_axis_hz, self.servo_natural_hz, self.servo_damping)

    @property
    def true_beam(self) -> dict[str, float]:
        return {"waist_diameter_m": 2 * self.optics.w0_m, "waist_range_m": self.optics.waist_range_m,
                "rayleigh_range_m": self.optics.rayleigh_range_m, "depth_of_focus_m": 2 * self.optics.rayleigh_range_m,
                "divergence_rad": self.optics.theta0}

    def truth(self) -> dict[str, Any]:
        """The scene and the true parameters, as written into every frame's meta."""
        sc = self.scene
        d: dict[str, Any] = {"scene": None if sc is None else sc.model_dump(mode="json")}
        if isinstance(sc, Subject):
            d.update(identity=sc.identity, posture=sc.posture, concealed=sc.concealed)
        if self._maps is not None:
            d.update(self._maps[1].truth)
        d.update(beam=self.true_beam, line_lag_s=self.true_line_lag_s, servo_lag_s=self.true_servo_lag_s,
                 feedback_delay_s=self.feedback_delay_s)
        return d

    # -- the scene maps ----------------------------------------------------------------------------
    def _grid_for(self, drive: RasterDrive) -> MapGrid:
        margin = 3.0 * self.optics.w0_m * 2.0 + 0.01
        return MapGrid.covering(drive.fast_amplitude_m + margin, drive.slow_amplitude_m + margin,
                                self.sim_cfg.map_pitch_m, drive.fast_offset_m, drive.slow_offset_m)

    def scene_maps(self, drive: RasterDrive | None = None) -> SceneMaps:
        """The maps of the current scene on the grid the drive covers (cached)."""
        drive = drive or RasterDrive.from_config(self.cfg)
        grid = self._grid_for(drive)
        key = (grid, self.optics.w0_m, self.optics.waist_range_m, self.scene)
        if self._maps is not None and self._maps[0] == key:
            return self._maps[1]
        sc = self.scene
        if sc is None:
            w = float(self.optics.w(self.optics.standoff_m))
            maps = SceneMaps.empty(grid, self.optics.standoff_m, w)
        elif isinstance(sc, Subject):
            cap = draw_capture(sc, self.sim_cfg, self.optics.standoff_m)
            maps = subject_maps(self.population.identity(sc.identity), cap, sc.concealed, grid, self.optics,
                                self.sim_cfg)
            if sc.capture_seed is not None:
                c = self.sim_cfg.capture
                maps.sway = Sway.draw(cap.motion_seed, c.sway_rotation_deg, c.sway_position_m, c.sway_band_hz)
        else:
            maps = target_maps(sc, grid, self.optics, self.sim_cfg)
        self._maps = (key, maps)
        return maps

    # -- one frame -----------------------------------------------------------------------------------
    def acquire_frame(self, frame_id: int, drive: RasterDrive | None = None, t0: float | None = None) -> RawFrame:
        """Simulate one raster frame: int16 IF (lines, chirps, samples) plus the galvo feedback."""
        drive = drive or RasterDrive.from_config(self.cfg)
        raster, fm = self.cfg.raster, self.cfg.fmcw
        drive.check_limits(raster)
        n_lines, n_chirps, n_samp = self.cfg.raw_frame_shape
        t_line = 1.0 / ((2.0 if raster.bidirectional else 1.0) * drive.fast_hz)
        t_chirp = t_line / n_chirps
        if t_chirp < fm.chirp_duration_s:
            raise ValueError(f"drive.fast_hz={drive.fast_hz}: {n_chirps} chirps of {fm.chirp_duration_s * 1e6:.2f} us "
                             f"do not fit in a line of {t_line * 1e3:.3f} ms")
        t_frame = float(frame_id) * n_lines * t_line if t0 is None else float(t0)
        scene_key = 0 if self.scene is None else self.scene.key()
        rng = np.random.default_rng([self.seed, int(frame_id) & 0xFFFFFFFF, scene_key, 0xF4A])
        nz = self.noise

        # galvo: servo response to the commanded raster on a fine grid of times from the frame start (the
        # servo starts at rest 40 ms before each frame, so the response depends on the drive, not on t0: cached)
        x_true, y_true = galvo.raster_response(
            drive.fast_amplitude_m, drive.fast_offset_m, drive.fast_hz, drive.slow_amplitude_m, drive.slow_offset_m,
            drive.slow_hz, self.servo_natural_hz, self.servo_damping, n_lines * t_line + 0.002, _SERVO_DT,
            _SERVO_WARMUP)
        t_start = -_SERVO_WARMUP
        line_start = t_line * np.arange(n_lines)
        t_lc = (line_start[:, None] + t_chirp * np.arange(n_chirps)[None, :]).ravel()      # from the frame start
        jitter = np.repeat(nz.line_jitter_s * rng.standard_normal(n_lines), n_chirps)
        t_beam_rel = t_lc + jitter + 0.5 * fm.chirp_duration_s
        u_beam = galvo.interp_uniform(t_beam_rel, t_start, _SERVO_DT, x_true)
        v_beam = galvo.interp_uniform(t_beam_rel, t_start, _SERVO_DT, y_true)
        fb_x = galvo.interp_uniform(t_lc - self.feedback_delay_s, t_start, _SERVO_DT, x_true)
        fb_x += nz.feedback_noise_m * rng.standard_normal(fb_x.size)
        fb_y = galvo.interp_uniform(line_start + 0.5 * t_line - self.feedback_delay_s, t_start, _SERVO_DT, y_true)
        fb_y += nz.feedback_noise_m * rng.standard_normal(n_lines)
        t_beam = t_frame + t_beam_rel

        # scene returns along the true beam path; the head sways between frames (sim.motion)
        maps = self.scene_maps(drive)
        yaw = pitch = du = dv = dz = 0.0
        if maps.sway is not None and nz.micro_motion:
            t_mid = t_frame + 0.5 * n_lines * t_line
            yaw, pitch, dx, dy, dz = maps.sway.at(t_mid)
            du, dv = dx / maps.range_scale, dy / maps.range_scale
        amps, phase_r, beat_r = maps.fields_shared(yaw, pitch)
        dr = dz + maps.breathing_amplitude_m * np.sin(2 * math.pi * self.sim_cfg.capture.breathing_hz * t_beam
                                                      + maps.breathing_phase_rad)
        phase_per_m = 4.0 * math.pi * self.optics.carrier_hz / SPEED_OF_LIGHT
        cyc_per_m = 2.0 * fm.slope_hz_per_s / (SPEED_OF_LIGHT * fm.sample_rate_hz)
        # a lateral sway of the head moves the whole field: sample it where the head's point under the beam was
        amp, phase, cyc = sample_layers(
            u_beam - du, v_beam - dv, dr, maps.grid.u0, maps.grid.v0, maps.grid.pitch, amps, phase_r, beat_r,
            phase_per_m, cyc_per_m, fm.reference_range_m)

        # receiver (sim.receiver, one kernel): IF filter, gain drift, leakage with phase noise, thermal noise, ADC
        adc_max = 2 ** (fm.adc_bits - 1) - 1
        iq = receiver.receive(amp, phase, cyc, n_samp, adc_max / nz.full_scale_amplitude, adc_max, noise=nz,
                              draws=receiver.FrameDraws.draw(rng, nz), chirp_period_s=t_chirp,
                              leak_cyc=cyc_per_m * (nz.leakage_range_m - fm.reference_range_m),
                              if_filter=(IF_FILTER_CORNER, IF_FILTER_ORDER))

        direction = np.ones(n_lines, dtype=np.int8)
        if raster.bidirectional:
            direction[1::2] = -1
        meta = {"truth": self.truth(), "sim_seed": self.seed, "t0": t_frame, "drive": drive.model_dump()}
        return RawFrame(frame_id=int(frame_id), t_acquired=t_frame, scanner_id=self.cfg.scanner_id,
                        if_samples=iq.reshape(n_lines, n_chirps, n_samp),
                        feedback_x=fb_x.reshape(n_lines, n_chirps).astype(np.float32),
                        feedback_y=fb_y.astype(np.float32), direction=direction, meta=meta)

    # -- visible -------------------------------------------------------------------------------------
    def render_visible(self, identity: int, posture: str, concealed: bool, size: int = 64,
                       capture_seed: int | None = None) -> np.ndarray:
        """Shaded visible image (size, size) float32 in [0, 1] of the same head (see sim.visible)."""
        from sim.visible import render_visible
        return render_visible(self.population, self.sim_cfg, identity, posture, concealed, size, capture_seed,
                              self.optics.standoff_m)

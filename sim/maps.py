"""Scene maps: the field the beam couples back at each position of the standoff plane, per capture.

A map is a regular grid over (u, v), the beam position in metres at the standoff plane (angle x
standoff, the coordinate of the galvo feedback), row i <-> v = v0 + i h, column j <-> u = u0 + j h.
Each tone layer of a scene (the skin and, for a concealed head, the fabric's front face: two
returns inside one range cell that interfere in the receiver) gives, for a beam centred at a
cell, three maps:

    amp     complex field coupled into the receive mode (plate in the waist = 1), eq. (1) of
            sim.physical_optics for subjects: a coherent facet sum, never a shading model
    phase_r range (m) whose carrier phase 2k (R - R_ref) multiplies amp (the scene's reference range
            for subjects, whose amp already holds exp(j 2k (R - R_s)); the surface range for targets)
    beat_r  range (m) that sets the beat frequency: the coherent range moment, eq. (5)

Subjects: the posed head, neck and shoulders are z-buffered onto the grid; each pixel becomes a
facet with the Fresnel reflection of skin (or eye), the two-way transmission of hair, shirt or
balaclava, the coherent loss of its roughness and a weak diffuse part from the same roughness
(fixed per capture: a rough surface does not change between frames), and the beam sum is done by
FFT. The head's facets keep their spectrum, so a frame's micro-rotation of the head (sim.motion)
costs one inverse FFT over the head's block; neck and shoulders are summed once.
Calibration targets keep their closed forms (the beam integral done analytically).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np
from scipy.ndimage import gaussian_filter, zoom
from scipy.special import erfc

from sim import beam
from sim.capture import Capture
from sim.config import SimConfig
from sim.head import (A_CLOTH, A_COVER, A_EYE, A_HAIR, A_HEAD, A_TEX_U, A_TEX_V, Mesh, body_mesh, head_mesh,
                      head_outward_sign, rotation)
from sim.mesh_raster import rasterize
from sim.motion import Sway
from sim.physical_optics import (BeamGeometry, FacetConvolver, diffuse_pixel_variance, effective_range,
                                 fresnel_power_at, index_from_reflectivity)
from sim.surface import SkinOptics, fabric_facets, skin_facets
from sim.population import HeadShape
from sim.scene import Target


@dataclass(frozen=True)
class MapGrid:
    u0: float
    v0: float
    pitch: float
    nx: int
    ny: int

    @staticmethod
    def covering(half_u: float, half_v: float, pitch: float, centre_u: float = 0.0, centre_v: float = 0.0) -> "MapGrid":
        nx = int(math.ceil(2 * half_u / pitch)) + 1
        ny = int(math.ceil(2 * half_v / pitch)) + 1
        return MapGrid(centre_u - half_u, centre_v - half_v, pitch, nx, ny)

    def axes(self) -> tuple[np.ndarray, np.ndarray]:
        return self.u0 + self.pitch * np.arange(self.nx), self.v0 + self.pitch * np.arange(self.ny)


@dataclass
class Optics:
    """The true optics the simulator uses (may differ from the configured values in calibration tests)."""

    carrier_hz: float
    wavelength_m: float
    w0_m: float
    waist_range_m: float
    standoff_m: float

    def w(self, range_m):
        return beam.beam_radius(range_m, self.w0_m, self.waist_range_m, self.wavelength_m)

    @property
    def k(self) -> float:
        return 2.0 * math.pi / self.wavelength_m

    @property
    def theta0(self) -> float:
        return beam.divergence(self.w0_m, self.wavelength_m)

    @property
    def rayleigh_range_m(self) -> float:
        return beam.rayleigh_range(self.w0_m, self.wavelength_m)


@dataclass
class ToneLayer:
    """One return per chirp: a static field plus the block that moves with the head."""

    static_e0: np.ndarray                       # (ny, nx) complex64
    static_e1: np.ndarray                       # (ny, nx) complex64, range moment (m x field)
    ref_range_m: float                          # R_s of eq. (2)
    moving: tuple[FacetConvolver, int, int] | None = None   # (convolver, first row, first column) of the head block


@dataclass
class SceneMaps:
    grid: MapGrid
    w_map_m: float                     # beam radius at the scene, in standoff-plane metres
    layers: list[ToneLayer] | None = None
    target: tuple[np.ndarray, np.ndarray] | None = None   # closed-form (amp, range) of a calibration target
    head_mask: np.ndarray | None = None
    surface_range: list[np.ndarray] = field(default_factory=list)   # per layer: z-buffered range (nan: none)
    breathing_amplitude_m: float = 0.0
    breathing_phase_rad: float = 0.0
    sway: Sway | None = None
    centre_uv: tuple[float, float] = (0.0, 0.0)          # head centre on the map (rotation axis)
    k: float = 0.0
    range_scale: float = 1.0                              # R / s of the subject (physical per map metre)
    truth: dict[str, Any] = field(default_factory=dict)
    _buffers: tuple[np.ndarray, np.ndarray, np.ndarray] | None = field(default=None, repr=False)

    @staticmethod
    def empty(grid: MapGrid, range_m: float, w_map_m: float) -> "SceneMaps":
        z = np.zeros((grid.ny, grid.nx))
        return SceneMaps(grid, w_map_m, target=(z, np.full_like(z, range_m)))

    @property
    def n_layers(self) -> int:
        return 1 if self.layers is None else len(self.layers)

    def fields(self, yaw_rad: float = 0.0, pitch_rad: float = 0.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(amp (L, ny, nx) complex64, phase_r (L, ny, nx), beat_r (L, ny, nx)) for a head rotated by
        (yaw, pitch) from its capture pose (the frame's micro-motion; targets ignore it)."""
        amps, phase_r, beat_r = self.fields_shared(yaw_rad, pitch_rad)
        return amps.copy(), phase_r.copy(), beat_r.copy()

    def fields_shared(self, yaw_rad: float = 0.0, pitch_rad: float = 0.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """`fields` in buffers of these maps that the next call overwrites, handed out read-only (the scanner's
        per-frame path): outside the head's block they never change, so a frame recomputes the block only."""
        if self._buffers is None:
            self._buffers = self._static_fields()
        amps, phase_r, beat_r = self._buffers
        if self.layers is not None:
            # eq. (4): the ramp exp(j q.(x - u_c)), q = 2k (R/s) angle, per map metre
            q = (2.0 * self.k * self.range_scale * yaw_rad, 2.0 * self.k * self.range_scale * pitch_rad)
            for li, layer in enumerate(self.layers):
                if layer.moving is None:
                    continue
                conv, i0, j0 = layer.moving
                m0, m1 = conv.field(q)
                blk = (slice(i0, i0 + m0.shape[0]), slice(j0, j0 + m0.shape[1]))
                e0 = layer.static_e0[blk] + m0
                amps[li][blk] = e0
                beat_r[li][blk] = effective_range(e0, layer.static_e1[blk] + m1, layer.ref_range_m)
        views = tuple(a.view() for a in self._buffers)
        for v in views:
            v.flags.writeable = False
        return views   # type: ignore[return-value]

    def _static_fields(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if self.layers is None:
            a, r = self.target
            return a.astype(np.complex64)[None], r[None].astype(np.float64), r[None].astype(np.float64)
        return (np.stack([la.static_e0 for la in self.layers]),
                np.stack([np.full(la.static_e0.shape, la.ref_range_m) for la in self.layers]),
                np.stack([effective_range(la.static_e0, la.static_e1, la.ref_range_m) for la in self.layers]))


def _smooth_noise(shape: tuple[int, int], sigma_px: float, rng: np.random.Generator) -> np.ndarray:
    """A smooth random field scaled to about [-1, 1] (drawn coarse and interpolated when sigma is large)."""
    f = max(1, int(sigma_px // 4))
    coarse = (-(-shape[0] // f) + 1, -(-shape[1] // f) + 1) if f > 1 else shape
    n = gaussian_filter(rng.standard_normal(coarse), sigma_px / f, mode="wrap")
    if f > 1:
        n = zoom(n, f, order=1)[:shape[0], :shape[1]]
    return np.clip(n / (2.5 * n.std() + 1e-12), -1.0, 1.0)


@lru_cache(maxsize=1)
def _body() -> Mesh:
    """Neck and shoulders as one mesh (the same for everybody; posed per capture)."""
    return Mesh.concat(list(body_mesh()))


def _rasterize_subject(head: Mesh, head_rot: np.ndarray, body: Mesh, body_rot: np.ndarray, cap: Capture,
                       grid: MapGrid, s: float) -> tuple[np.ndarray, np.ndarray]:
    """Head and body posed, projected and z-buffered together (the nearest surface wins; A_HEAD tells which).

    The head is a closed surface: its triangles that face away from the scanner are skipped (sim.mesh_raster).
    """
    px, py, depth = [], [], []
    for mesh, rot in ((head, head_rot), (body, body_rot)):
        v = mesh.vertices @ rot.T
        rng_v = cap.range_m - v[:, 2]                       # Z out of the face -> towards the scanner
        px.append(((v[:, 0] + cap.x_m) * s / rng_v - grid.u0) / grid.pitch)
        py.append(((v[:, 1] + cap.y_m) * s / rng_v - grid.v0) / grid.pitch)
        depth.append(rng_v)
    tris = np.concatenate([head.triangles, body.triangles + head.vertices.shape[0]])
    return rasterize(np.concatenate(px), np.concatenate(py), np.concatenate(depth),
                     np.concatenate([head.attrs, body.attrs]), tris, grid.ny, grid.nx,
                     n_closed=head.triangles.shape[0], outward=head_outward_sign())


def subject_maps(shape: HeadShape, cap: Capture, concealed: bool, grid: MapGrid, optics: Optics,
                 cfg: SimConfig) -> SceneMaps:
    """Rasterise the posed head (and neck, shoulders) and sum their facets under the beam."""
    b = cfg.balaclava
    rf = cfg.reflection
    s = optics.standoff_m
    k = optics.k
    head = head_mesh(shape, cap.expression(), eye_slot_w=b.eye_opening_width_m, eye_slot_h=b.eye_opening_height_m)
    zbuf, att = _rasterize_subject(head, rotation(cap.yaw_deg, cap.pitch_deg, cap.roll_deg), _body(),
                                   rotation(0.5 * cap.yaw_deg), cap, grid, s)
    valid = np.isfinite(zbuf)
    on_head = valid & (att[..., A_HEAD] > 0.5)

    geom = BeamGeometry.at_range(cap.range_m, optics.w0_m, optics.waist_range_m, optics.wavelength_m, s)
    scale = cap.range_m / s                              # physical metres per map metre
    ref = cap.range_m
    cloth = np.ascontiguousarray(att[..., A_CLOTH])
    covered = valid & (att[..., A_COVER] > 0.5) & (cloth < 0.5) if concealed else np.zeros_like(valid)
    n_skin = index_from_reflectivity(rf.skin_power_reflectivity)
    n_eye = index_from_reflectivity(rf.eye_power_reflectivity)
    skin = SkinOptics(
        pitch=grid.pitch, k=k, ref_range_m=ref, scale2=scale * scale,
        n_skin=n_skin, skin_r0=rf.skin_power_reflectivity / fresnel_power_at(1.0, n_skin),
        n_eye=n_eye, eye_r0=rf.eye_power_reflectivity / fresnel_power_at(1.0, n_eye),
        hair_t=10 ** (-2 * rf.hair_loss_db / 20), cloth_t=10 ** (-2 * rf.clothing_loss_db / 20),
        cover_t=10 ** (-2 * cap.loss_db / 20),
        rms_height_m=rf.skin_rms_height_m, corr_length_m=rf.skin_correlation_length_m,
        hair_sigma0=10 ** (rf.hair_backscatter_db / 10),
        diffuse_per_sigma0=diffuse_pixel_variance(optics.wavelength_m, grid.pitch * scale))
    # the diffuse part: a random facet field fixed for the capture (the same rough skin every frame)
    rng = np.random.default_rng([cap.fabric_seed, 0xD1F])
    white_re = rng.standard_normal(zbuf.shape)
    white_im = rng.standard_normal(zbuf.shape)
    rho_skin, rho_skin_r = skin_facets(np.where(valid, zbuf, ref), valid, np.ascontiguousarray(att[..., A_HAIR]),
                                       np.ascontiguousarray(att[..., A_EYE]), cloth, covered, white_re, white_im, skin)

    centre = (cap.x_m * s / cap.range_m, cap.y_m * s / cap.range_m)      # the head centre on the map
    layers = [_layer(rho_skin, rho_skin_r, valid, on_head, grid, geom, ref, centre)]
    maps = SceneMaps(grid, geom.w_map_m, layers=layers, k=k, range_scale=scale)
    maps.head_mask = on_head
    maps.surface_range = [np.where(valid, zbuf, np.nan)]
    maps.breathing_amplitude_m = cap.breathing_amplitude_m
    maps.breathing_phase_rad = cap.breathing_phase_rad
    maps.centre_uv = centre
    if concealed:
        frng = np.random.default_rng([cap.fabric_seed, 0xFAB])
        gap = cap.gap_mm * (0.7 + 0.3 * _smooth_noise(zbuf.shape, 15.0, frng))
        gap = np.clip(gap, 0.0, b.gap_max_mm) * 1e-3
        fr = np.where(covered, zbuf - gap - b.thickness_mm * 1e-3, np.nan)
        # the knit: the fabric's reflectivity is modulated by the stitch pattern (6 mm, a few
        # wavelengths: its diffraction is the fabric's "diffuse" echo) and by uneven thickness
        grain = _smooth_noise(zbuf.shape, 2.0, frng)
        angle = math.radians(cap.knit_angle_deg)
        echo = rf.skin_power_reflectivity * 10 ** (cap.echo_db / 10)
        rho_fab, rho_fab_r = fabric_facets(
            np.where(covered, fr, ref), covered, np.ascontiguousarray(att[..., A_TEX_U]),
            np.ascontiguousarray(att[..., A_TEX_V]), grain, grid.pitch, k, ref, math.sqrt(echo), math.cos(angle),
            math.sin(angle), cap.knit_shift_u_m, cap.knit_shift_v_m, b.knit_period_mm * 1e-3, b.knit_depth)
        maps.surface_range.append(fr)
        layers.append(_layer(rho_fab, rho_fab_r, covered, covered & on_head, grid, geom, ref, centre))
    maps.truth = {"capture": cap.model_dump(), "beam_radius_at_subject_m": float(optics.w(cap.range_m))}
    return maps


def _box(mask: np.ndarray, pad: int) -> tuple[slice, slice] | None:
    """The bounding box of `mask`, grown by `pad` pixels (clipped to the map); None when it is empty."""
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    ny, nx = mask.shape
    return (slice(max(rows[0] - pad, 0), min(rows[-1] + pad + 1, ny)),
            slice(max(cols[0] - pad, 0), min(cols[-1] + pad + 1, nx)))


def _convolver(rho: np.ndarray, rho_r: np.ndarray, mask: np.ndarray, blk: tuple[slice, slice], grid: MapGrid,
               geom: BeamGeometry, centre: tuple[float, float]) -> FacetConvolver:
    m = mask[blk]
    return FacetConvolver(np.where(m, rho[blk], 0.0), np.where(m, rho_r[blk], 0.0), grid.pitch, geom,
                          (grid.u0 + blk[1].start * grid.pitch, grid.v0 + blk[0].start * grid.pitch), centre)


def _layer(rho: np.ndarray, rho_r: np.ndarray, valid: np.ndarray, moving: np.ndarray, grid: MapGrid,
           geom: BeamGeometry, ref: float, centre: tuple[float, float]) -> ToneLayer:
    """Split a layer's facets into the head block (moves per frame about `centre`) and the rest (summed once).

    Each part is summed on the bounding box of its facets grown by the beam's reach (the field is zero
    farther out), not on the whole map.
    """
    pad = geom.reach_px(grid.pitch)
    e0 = np.zeros((grid.ny, grid.nx), dtype=np.complex64)
    e1 = np.zeros_like(e0)
    fixed = valid & ~moving
    blk = _box(fixed, pad)
    if blk is not None:
        f0, f1 = _convolver(rho, rho_r, fixed, blk, grid, geom, centre).field()
        e0[blk], e1[blk] = f0, f1
    layer = ToneLayer(e0, e1, ref)
    blk = _box(moving, pad)
    if blk is not None:
        layer.moving = (_convolver(rho, rho_r, moving, blk, grid, geom, centre), blk[0].start, blk[1].start)
    return layer


def target_maps(t: Target, grid: MapGrid, optics: Optics, cfg: SimConfig) -> SceneMaps:
    """Analytic maps of a calibration target (the beam integration done in closed form)."""
    s = optics.standoff_m
    u, v = grid.axes()
    U, V = np.meshgrid(u, v)
    beta = math.radians(t.tilt_deg)
    # plane through (0, 0, D) with normal (sin beta, 0, cos beta); ray (u/s, v/s, 1) * tau
    tau = t.range_m * math.cos(beta) / (U / s * math.sin(beta) + math.cos(beta))
    x, y = tau * U / s, tau * V / s
    rng_map = tau * np.sqrt(1.0 + (U / s) ** 2 + (V / s) ** 2)
    cos_a = np.abs((U / s * math.sin(beta) + math.cos(beta)) / np.sqrt(1.0 + (U / s) ** 2 + (V / s) ** 2))
    alpha = np.arccos(np.clip(cos_a, -1.0, 1.0))
    w = optics.w(rng_map)
    w_map = float(optics.w(t.range_m)) * s / t.range_m
    focus = optics.w0_m / w
    rf = cfg.reflection
    gamma = math.sqrt(t.reflectivity)
    diff = np.zeros_like(U)
    if t.kind == "plate":
        amp = gamma * np.sqrt(beam.tilt_coupling(alpha, optics.theta0)) * focus
    elif t.kind == "knife_edge":
        edge = (x - t.offset_x_m) if t.edge_axis == "x" else (y - t.offset_y_m)
        amp = gamma * np.sqrt(beam.tilt_coupling(alpha, optics.theta0)) * focus * 0.5 * erfc(-math.sqrt(2.0) * edge / w)
    elif t.kind == "point":
        r2 = (x - t.offset_x_m) ** 2 + (y - t.offset_y_m) ** 2
        amp = gamma * rf.point_target_amplitude * focus**2 * np.exp(-2.0 * r2 / w**2)
    elif t.kind == "grid":
        p = t.grid_pitch_m
        amp = np.zeros_like(U)
        fx = np.round((x - t.offset_x_m) / p)
        fy = np.round((y - t.offset_y_m) / p)
        for di in range(-2, 3):
            for dj in range(-2, 3):
                dx = x - (t.offset_x_m + (fx + di) * p)
                dy = y - (t.offset_y_m + (fy + dj) * p)
                amp += np.exp(-2.0 * (dx * dx + dy * dy) / w**2)
        amp *= gamma * rf.point_target_amplitude * focus**2
        diff = np.full_like(U, math.sqrt(10 ** (rf.grid_board_diffuse_db / 10))) * focus
    else:  # pragma: no cover - pydantic restricts kind
        raise ValueError(f"unknown target kind {t.kind!r}")
    amp = amp.astype(np.complex128)
    if diff.any():
        # the board's diffuse echo: a fixed rough-surface field (complex Gaussian, beam-sized grain)
        rng = np.random.default_rng([t.key(), 0xB0A4D])
        sig = 0.5 * w_map / grid.pitch
        z = rng.standard_normal((2, *diff.shape))
        z = gaussian_filter(z[0], sig) + 1j * gaussian_filter(z[1], sig)
        z /= math.sqrt(float(np.mean(np.abs(z) ** 2)))
        amp += diff * z
    maps = SceneMaps(grid, w_map, target=(amp, rng_map))
    maps.truth = {"beam_radius_at_target_m": float(optics.w(t.range_m))}
    return maps

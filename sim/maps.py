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
from typing import Any

import numpy as np
from scipy.ndimage import gaussian_filter, zoom
from scipy.special import erfc

from sim import beam
from sim.capture import Capture
from sim.config import SimConfig
from sim.head import A_CLOTH, A_COVER, A_EYE, A_HAIR, A_HEAD, A_TEX_U, A_TEX_V, Mesh, body_mesh, head_mesh, rotation
from sim.mesh_raster import rasterize
from sim.motion import Sway
from sim.physical_optics import (BeamGeometry, FacetConvolver, effective_range, facet_phase_factors, facet_phasors,
                                 fresnel_power, index_from_reflectivity)
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
    """One return per chirp: a static field plus blocks that move with the head."""

    static_e0: np.ndarray                       # (ny, nx) complex64
    static_e1: np.ndarray                       # (ny, nx) complex64, range moment (m x field)
    ref_range_m: float                          # R_s of eq. (2)
    moving: list[tuple[FacetConvolver, int, int]] = field(default_factory=list)   # (convolver, row, col)


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
        ny, nx = self.grid.ny, self.grid.nx
        if self.layers is None:
            a, r = self.target
            return (a.astype(np.complex64)[None], r[None].astype(np.float64), r[None].astype(np.float64))
        # eq. (4): the ramp exp(j q.(x - u_c)), q = 2k (R/s) angle, per map metre
        q = (2.0 * self.k * self.range_scale * yaw_rad, 2.0 * self.k * self.range_scale * pitch_rad)
        amps = np.empty((len(self.layers), ny, nx), dtype=np.complex64)
        phase_r = np.empty((len(self.layers), ny, nx))
        beat_r = np.empty((len(self.layers), ny, nx))
        for li, layer in enumerate(self.layers):
            e0 = layer.static_e0.copy()
            e1 = layer.static_e1.copy()
            for conv, i0, j0 in layer.moving:
                m0, m1 = conv.field(q)
                h, w = m0.shape
                e0[i0:i0 + h, j0:j0 + w] += m0
                e1[i0:i0 + h, j0:j0 + w] += m1
            amps[li] = e0
            phase_r[li] = layer.ref_range_m
            beat_r[li] = effective_range(e0, e1, layer.ref_range_m)
        return amps, phase_r, beat_r


def _smooth_noise(shape: tuple[int, int], sigma_px: float, rng: np.random.Generator) -> np.ndarray:
    """A smooth random field scaled to about [-1, 1] (drawn coarse and interpolated when sigma is large)."""
    f = max(1, int(sigma_px // 4))
    coarse = (-(-shape[0] // f) + 1, -(-shape[1] // f) + 1) if f > 1 else shape
    n = gaussian_filter(rng.standard_normal(coarse), sigma_px / f, mode="wrap")
    if f > 1:
        n = zoom(n, f, order=1)[:shape[0], :shape[1]]
    return np.clip(n / (2.5 * n.std() + 1e-12), -1.0, 1.0)


def _project(mesh: Mesh, rot: np.ndarray, cap: Capture, grid: MapGrid, s: float):
    v = mesh.vertices @ rot.T
    x = v[:, 0] + cap.x_m
    y = v[:, 1] + cap.y_m
    rng_v = cap.range_m - v[:, 2]                       # Z out of the face -> towards the scanner
    px = (x * s / rng_v - grid.u0) / grid.pitch
    py = (y * s / rng_v - grid.v0) / grid.pitch
    return rasterize(px, py, rng_v, mesh.attrs, mesh.triangles, grid.ny, grid.nx)


def rough_surface_backscatter(cos_i: np.ndarray, gamma2: np.ndarray, k: float, rms_height_m: float,
                              corr_length_m: float) -> np.ndarray:
    """sigma0 of a slightly rough surface (first-order Kirchhoff / physical optics, Gaussian correlation):

        sigma0(theta) = |Gamma|^2 (2 k sigma cos theta)^2 (k l)^2 exp(-(k l sin theta)^2)

    sigma the rms height, l the correlation length (Ulaby, Moore, Fung, Microwave Remote Sensing II,
    ch. 12: the incoherent term for k sigma << 1). Per unit area, dimensionless.
    """
    c = np.clip(cos_i, 0.0, 1.0)
    s2 = 1.0 - c * c
    kl2 = (k * corr_length_m) ** 2
    return gamma2 * (2.0 * k * rms_height_m * c) ** 2 * kl2 * np.exp(-kl2 * s2)


def diffuse_pixel_variance(sigma0: np.ndarray, wavelength_m: float, pixel_m: float) -> np.ndarray:
    """E|rho_d|^2 per map pixel that gives the received diffuse power sigma0 lambda^2 / (4 pi^2 w^2).

    The received power of an incoherent surface under a monostatic Gaussian beam is
    P / P_plate = sigma0 lambda^2 / (4 pi^2 w^2) (radar equation with the beam's on-axis gain); a
    white field of variance D per pixel of physical side h_phys gives D h_phys^2 / (pi w^2) through
    eq. (1), so D = sigma0 lambda^2 / (4 pi h_phys^2).
    """
    return sigma0 * wavelength_m ** 2 / (4.0 * math.pi * pixel_m ** 2)


def subject_maps(shape: HeadShape, cap: Capture, concealed: bool, grid: MapGrid, optics: Optics,
                 cfg: SimConfig) -> SceneMaps:
    """Rasterise the posed head (and neck, shoulders) and sum their facets under the beam."""
    b = cfg.balaclava
    rf = cfg.reflection
    s = optics.standoff_m
    k = optics.k
    head = head_mesh(shape, cap.expression(), eye_slot_w=b.eye_opening_width_m, eye_slot_h=b.eye_opening_height_m)
    neck, shoulders = body_mesh()
    z_head, att_head = _project(head, rotation(cap.yaw_deg, cap.pitch_deg, cap.roll_deg), cap, grid, s)
    body = Mesh.concat([neck, shoulders])
    z_body, att_body = _project(body, rotation(0.5 * cap.yaw_deg), cap, grid, s)
    on_head = np.isfinite(z_head) & (z_head <= z_body)
    on_body = np.isfinite(z_body) & ~on_head
    zbuf = np.where(on_head, z_head, z_body)
    att = np.where(on_head[..., None], att_head, att_body)
    valid = on_head | on_body

    geom = BeamGeometry.at_range(cap.range_m, optics.w0_m, optics.waist_range_m, optics.wavelength_m, s)
    scale = cap.range_m / s                              # physical metres per map metre
    pixel_m = grid.pitch * scale
    ref = cap.range_m
    phasor, carrier, du, dv = facet_phasors(np.where(valid, zbuf, ref), valid, grid.pitch, k, ref)
    slope2 = (du * du + dv * dv) / (scale * scale)       # physical |grad R|^2
    cos_i = 1.0 / np.sqrt(1.0 + slope2)

    hair, eye, cloth = att[..., A_HAIR], att[..., A_EYE], att[..., A_CLOTH]
    n_skin = index_from_reflectivity(rf.skin_power_reflectivity)
    n_eye = index_from_reflectivity(rf.eye_power_reflectivity)
    gamma2 = (rf.skin_power_reflectivity * fresnel_power(cos_i, n_skin) / fresnel_power(np.ones(1), n_skin)[0]
              * (1.0 - eye)
              + rf.eye_power_reflectivity * fresnel_power(cos_i, n_eye) / fresnel_power(np.ones(1), n_eye)[0] * eye)
    t_hair = 10 ** (-2 * rf.hair_loss_db * hair / 20)   # two-way amplitude
    t_cloth = 10 ** (-2 * rf.clothing_loss_db * cloth / 20)
    covered = valid & (att[..., A_COVER] > 0.5) & (cloth < 0.5) if concealed else np.zeros_like(valid)
    t_bal = np.where(covered, 10 ** (-2 * cap.loss_db / 20), 1.0)
    trans = t_hair * t_cloth * t_bal

    # coherent part: Fresnel x transmission x the roughness (Debye-Waller) loss exp(-(2 k sigma cos)^2 / 2)
    coherent = np.sqrt(gamma2) * trans * np.exp(-0.5 * (2.0 * k * rf.skin_rms_height_m * cos_i) ** 2)
    # diffuse part: a random facet field fixed for the capture (the same rough skin every frame)
    rng = np.random.default_rng([cap.fabric_seed, 0xD1F])
    sigma0 = rough_surface_backscatter(cos_i, gamma2, k, rf.skin_rms_height_m, rf.skin_correlation_length_m)
    sigma0 = sigma0 * (1.0 - hair) + hair * 10 ** (rf.hair_backscatter_db / 10) * cos_i
    dvar = diffuse_pixel_variance(sigma0, optics.wavelength_m, pixel_m)
    white = (rng.standard_normal(zbuf.shape) + 1j * rng.standard_normal(zbuf.shape)) * math.sqrt(0.5)
    rho_skin = np.where(valid, coherent * phasor + np.sqrt(dvar) * trans * white * carrier, 0.0)

    centre = (cap.x_m * s / cap.range_m, cap.y_m * s / cap.range_m)      # the head centre on the map
    layers = [_layer(rho_skin, zbuf, valid, on_head, grid, geom, ref, centre)]
    maps = SceneMaps(grid, geom.w_map_m, layers=layers, k=k, range_scale=scale)
    maps.head_mask = on_head & (att[..., A_HEAD] > 0.5)
    maps.surface_range = [np.where(valid, zbuf, np.nan)]
    maps.breathing_amplitude_m = cap.breathing_amplitude_m
    maps.breathing_phase_rad = cap.breathing_phase_rad
    maps.centre_uv = centre
    if concealed:
        frng = np.random.default_rng([cap.fabric_seed, 0xFAB])
        gap = cap.gap_mm * (0.7 + 0.3 * _smooth_noise(zbuf.shape, 15.0, frng))
        gap = np.clip(gap, 0.0, b.gap_max_mm) * 1e-3
        fr = np.where(covered, zbuf - gap - b.thickness_mm * 1e-3, np.nan)
        fvalid = np.isfinite(fr)
        fphasor, _, _ = facet_phase_factors(np.nan_to_num(fr, nan=ref), fvalid, grid.pitch, k, ref)
        # the knit: the fabric's reflectivity is modulated by the stitch pattern (6 mm, a few
        # wavelengths: its diffraction is the fabric's "diffuse" echo) and by uneven thickness
        tu, tv = att[..., A_TEX_U], att[..., A_TEX_V]
        ca, sa = math.cos(math.radians(cap.knit_angle_deg)), math.sin(math.radians(cap.knit_angle_deg))
        tu, tv = ca * tu - sa * tv + cap.knit_shift_u_m, sa * tu + ca * tv + cap.knit_shift_v_m
        p = b.knit_period_mm * 1e-3
        knit = 1.0 + b.knit_depth * np.cos(2 * np.pi * tu / p) * np.cos(2 * np.pi * tv / (0.8 * p))
        knit *= 1.0 + 0.3 * _smooth_noise(zbuf.shape, 2.0, frng)
        echo = rf.skin_power_reflectivity * 10 ** (cap.echo_db / 10)
        rho_fab = np.where(fvalid, math.sqrt(echo) * np.clip(knit, 0.0, None) * fphasor, 0.0)
        maps.surface_range.append(fr)
        layers.append(_layer(rho_fab, np.nan_to_num(fr, nan=ref), fvalid, fvalid & on_head, grid, geom, ref, centre))
    maps.truth = {"capture": cap.model_dump(), "beam_radius_at_subject_m": float(optics.w(cap.range_m))}
    return maps


def _layer(rho: np.ndarray, rng_map: np.ndarray, valid: np.ndarray, moving: np.ndarray, grid: MapGrid,
           geom: BeamGeometry, ref: float, centre: tuple[float, float]) -> ToneLayer:
    """Split a layer's facets into the head block (moves per frame about `centre`) and the rest (summed once)."""
    rho_r = rho * np.where(valid, rng_map - ref, 0.0)
    fixed = ~moving
    static = FacetConvolver(np.where(fixed, rho, 0.0), np.where(fixed, rho_r, 0.0), grid.pitch, geom,
                            (grid.u0, grid.v0), centre)
    e0, e1 = static.field()
    layer = ToneLayer(e0.copy(), e1.copy(), ref)
    if moving.any():
        rows = np.where(moving.any(axis=1))[0]
        cols = np.where(moving.any(axis=0))[0]
        pad = geom.reach_px(grid.pitch)
        i0, i1 = max(rows[0] - pad, 0), min(rows[-1] + pad + 1, grid.ny)
        j0, j1 = max(cols[0] - pad, 0), min(cols[-1] + pad + 1, grid.nx)
        blk = (slice(i0, i1), slice(j0, j1))
        mv = moving[blk]
        conv = FacetConvolver(np.where(mv, rho[blk], 0.0), np.where(mv, rho_r[blk], 0.0), grid.pitch, geom,
                              (grid.u0 + j0 * grid.pitch, grid.v0 + i0 * grid.pitch), centre)
        layer.moving.append((conv, int(i0), int(j0)))
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

"""Scene maps: what the beam sees at each position of the standoff plane, built once per scene.

A map is a regular grid over (u, v), the beam position in metres at the standoff plane (angle x
standoff, the coordinate of the galvo feedback), row i <-> v = v0 + i h, column j <-> u = u0 + j h.
For each of two layers (skin, fabric) it holds:

    amp    the specular return amplitude (plate in the waist = 1) for a beam centred there, already
           integrated over the beam footprint: sqrt(|Gamma|^2 eta_tilt eta_curv) x transmission x focus
    range  the range of that return (m), smoothed at the beam scale and filled outside the surface
    diff   the diffuse amplitude density sqrt(sigma_d) (before the beam integration); every frame
           draws a fresh complex Gaussian field with it and convolves with the two-way pattern
           (speckle), normalised so a uniform density sigma_d gives E|S|^2 = sigma_d

Approximations (see docs/scanner_physics.md): one return per layer per beam position (range =
beam-weighted mean), the specular amplitude blurred by the beam instead of a coherent integral
over the footprint (the tilt and curvature coupling stand for that integral), one beam radius per
scene for the blur.
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
from sim.head import (A_CLOTH, A_COVER, A_EYE, A_HAIR, A_HEAD, A_TEX_U, A_TEX_V, Mesh, body_mesh, head_mesh,
                      rotation)
from sim.population import HeadShape
from sim.raster import rasterize
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
    def theta0(self) -> float:
        return beam.divergence(self.w0_m, self.wavelength_m)

    @property
    def rayleigh_range_m(self) -> float:
        return beam.rayleigh_range(self.w0_m, self.wavelength_m)


@dataclass
class SceneMaps:
    grid: MapGrid
    w_map_m: float                     # beam radius at the scene, in standoff-plane metres
    skin_amp: np.ndarray
    skin_range: np.ndarray
    skin_diff: np.ndarray
    fabric_amp: np.ndarray | None = None
    fabric_range: np.ndarray | None = None
    fabric_diff: np.ndarray | None = None
    head_mask: np.ndarray | None = None
    breathing_amplitude_m: float = 0.0
    breathing_phase_rad: float = 0.0
    truth: dict[str, Any] = field(default_factory=dict)

    @staticmethod
    def empty(grid: MapGrid, range_m: float, w_map_m: float) -> "SceneMaps":
        z = np.zeros((grid.ny, grid.nx))
        return SceneMaps(grid, w_map_m, z, np.full_like(z, range_m), z.copy())


def _gauss(a: np.ndarray, sigma_px: float) -> np.ndarray:
    return gaussian_filter(a, sigma_px, mode="constant", truncate=3.0)


def _fill_range(r: np.ndarray, valid: np.ndarray, sigma_px: float, default: float) -> np.ndarray:
    """Beam-weighted mean range where the surface is, extended to the beam's reach around it.

    Farther out the return amplitude is zero and the range only sets the beat of a silent tone,
    so it takes the median range of the surface (or `default` when there is none).
    """
    m = valid.astype(np.float64)
    num = _gauss(np.where(valid, r, 0.0), sigma_px)
    den = _gauss(m, sigma_px)
    fill = float(np.median(r[valid])) if valid.any() else default
    return np.where(den > 1e-3, num / np.maximum(den, 1e-12), fill)


def surface_coupling(r_smooth: np.ndarray, grid: MapGrid, optics: Optics, w_surface: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(eta, cos alpha): power coupling of the locally quadric surface under a beam centred at each cell.

    With u = x s / R, the slope in physical units is grad R = dR/du * s / R (a surface of constant
    range faces the beam everywhere). Around the beam centre the surface is z = g.x + x^T H x / 2;
    in the principal frame of H (curvatures kappa_i, slope components g_i) the overlap of the
    Gaussian mode with the reflected field is, per direction (beam.quadric_coupling),

        eta_i = (1 + beta_i^2)^(-1/2) exp(-(k g_i w)^2 / (1 + beta_i^2)),   beta_i = k kappa_i w^2 / 2

    which is exp(-(2 alpha / theta0)^2) for a flat tilted surface and a beam-sized spot on a
    strongly curved one.
    """
    s = optics.standoff_m
    h = grid.pitch
    scale = s / r_smooth
    dv, du = np.gradient(r_smooth, h)
    gx, gy = du * scale, dv * scale
    cos_a = 1.0 / np.sqrt(1.0 + gx * gx + gy * gy)
    dvv, dvu = np.gradient(dv, h)
    duv, duu = np.gradient(du, h)
    a, c, b = duu * scale**2, dvv * scale**2, 0.5 * (dvu + duv) * scale**2
    # principal curvatures and directions of the 2x2 Hessian [[a, b], [b, c]]
    mean, dif = 0.5 * (a + c), np.sqrt((0.5 * (a - c)) ** 2 + b * b)
    k1, k2 = mean + dif, mean - dif
    theta = 0.5 * np.arctan2(2.0 * b, a - c)            # angle of the k1 direction
    g1 = gx * np.cos(theta) + gy * np.sin(theta)
    g2 = -gx * np.sin(theta) + gy * np.cos(theta)
    eta = (beam.quadric_coupling(g1, k1, w_surface, optics.wavelength_m)
           * beam.quadric_coupling(g2, k2, w_surface, optics.wavelength_m))
    return eta, cos_a


def _smooth_noise(shape: tuple[int, int], sigma_px: float, rng: np.random.Generator) -> np.ndarray:
    """A smooth random field scaled to about [-1, 1] (drawn coarse and interpolated when sigma is large)."""
    f = max(1, int(sigma_px // 4))
    coarse = (-(-shape[0] // f) + 1, -(-shape[1] // f) + 1) if f > 1 else shape
    n = gaussian_filter(rng.standard_normal(coarse), sigma_px / f, mode="wrap")
    if f > 1:
        n = zoom(n, f, order=1)[:shape[0], :shape[1]]
    return np.clip(n / (2.5 * n.std() + 1e-12), -1.0, 1.0)


def subject_maps(shape: HeadShape, cap: Capture, concealed: bool, grid: MapGrid, optics: Optics,
                 cfg: SimConfig) -> SceneMaps:
    """Rasterise the posed head (and neck, shoulders) and turn it into beam-scale return maps."""
    b = cfg.balaclava
    rf = cfg.reflection
    s = optics.standoff_m
    head = head_mesh(shape, cap.expression(), eye_slot_w=b.eye_opening_width_m, eye_slot_h=b.eye_opening_height_m)
    neck, shoulders = body_mesh()
    rot_head = rotation(cap.yaw_deg, cap.pitch_deg, cap.roll_deg)
    rot_body = rotation(0.5 * cap.yaw_deg)
    parts = []
    for m, rot in ((head, rot_head), (neck, rot_body), (shoulders, rot_body)):
        v = m.vertices @ rot.T
        parts.append(Mesh(v, m.triangles, m.attrs))
    mesh = Mesh.concat(parts)
    x = mesh.vertices[:, 0] + cap.x_m
    y = mesh.vertices[:, 1] + cap.y_m
    rng_v = cap.range_m - mesh.vertices[:, 2]             # Z out of the face -> towards the scanner
    px = (x * s / rng_v - grid.u0) / grid.pitch
    py = (y * s / rng_v - grid.v0) / grid.pitch
    zbuf, att = rasterize(px, py, rng_v, mesh.attrs, mesh.triangles, grid.ny, grid.nx)
    valid = np.isfinite(zbuf)

    w_scene = float(optics.w(cap.range_m))
    w_map = w_scene * s / cap.range_m
    sig = 0.5 * w_map / grid.pitch                      # g = exp(-2 r^2 / w^2) is a Gaussian of sigma w/2
    r_s = _fill_range(zbuf, valid, sig, cap.range_m)
    w_surf = optics.w(r_s)
    eta, cos_a = surface_coupling(r_s, grid, optics, w_surf)
    focus = optics.w0_m / w_surf                        # amplitude; power (w0/w)^2

    hair, eye = att[..., A_HAIR], att[..., A_EYE]
    cloth = att[..., A_CLOTH]
    gamma2 = rf.skin_power_reflectivity * (1.0 - eye) + rf.eye_power_reflectivity * eye
    t_hair = 10 ** (-2 * rf.hair_loss_db * hair / 20)   # two-way amplitude
    t_cloth = 10 ** (-2 * rf.clothing_loss_db * cloth / 20)
    covered = valid & (att[..., A_COVER] > 0.5) & (cloth < 0.5) if concealed else np.zeros_like(valid)
    t_bal = np.where(covered, 10 ** (-2 * cap.loss_db / 20), 1.0)
    trans = t_hair * t_cloth * t_bal

    # the coupling already integrates over the footprint; material edges (silhouette, eye slot)
    # are integrated by blurring the material factor with the two-way pattern
    skin_amp = np.sqrt(eta) * focus * _gauss(np.where(valid, np.sqrt(gamma2) * trans, 0.0), sig)
    diff_pow = rf.skin_power_reflectivity * (10 ** (rf.skin_diffuse_db / 10) * cos_a ** rf.diffuse_cos_power
                                             + hair * 10 ** (rf.hair_diffuse_db / 10))
    skin_diff = np.where(valid, np.sqrt(diff_pow) * trans * focus, 0.0)

    maps = SceneMaps(grid, w_map, skin_amp, r_s, skin_diff)
    maps.head_mask = valid & (att[..., A_HEAD] > 0.5)
    maps.breathing_amplitude_m = cap.breathing_amplitude_m
    maps.breathing_phase_rad = cap.breathing_phase_rad
    if concealed:
        frng = np.random.default_rng([cap.fabric_seed, 0xFAB])
        gap = cap.gap_mm * (0.7 + 0.3 * _smooth_noise(zbuf.shape, 15.0, frng))
        gap = np.clip(gap, 0.0, b.gap_max_mm) * 1e-3
        fr = np.where(covered, zbuf - gap - b.thickness_mm * 1e-3, np.nan)
        fvalid = np.isfinite(fr)
        maps.fabric_range = _fill_range(np.nan_to_num(fr), fvalid, sig, cap.range_m)
        echo = rf.skin_power_reflectivity * 10 ** (cap.echo_db / 10)
        maps.fabric_amp = np.sqrt(echo * b.echo_specular_fraction * eta) * focus * _gauss(fvalid.astype(float), sig)
        tu, tv = att[..., A_TEX_U], att[..., A_TEX_V]
        p = b.knit_period_mm * 1e-3
        knit = 1.0 + b.knit_depth * np.cos(2 * np.pi * tu / p) * np.cos(2 * np.pi * tv / (0.8 * p))
        knit *= 1.0 + 0.3 * _smooth_noise(zbuf.shape, 2.0, frng)
        fd = echo * (1.0 - b.echo_specular_fraction) * np.clip(knit, 0.0, None) * cos_a ** rf.diffuse_cos_power
        maps.fabric_diff = np.where(fvalid, np.sqrt(fd) * focus, 0.0)
    maps.truth = {"capture": cap.model_dump(), "beam_radius_at_subject_m": w_scene}
    return maps


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
    maps = SceneMaps(grid, w_map, amp, rng_map, diff)
    maps.truth = {"beam_radius_at_target_m": float(optics.w(t.range_m))}
    return maps

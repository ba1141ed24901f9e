"""Head phantom geometry: a star-shaped head surface from anatomical parameters, plus neck and shoulders.

The head is r(d) along unit directions d from the head centre (head frame: X towards the subject's
left = the scanner's right at yaw 0, Y up, Z out of the face towards the scanner):

    r(d) = smax(r_skull(d), r_face(d)) + sum of feature displacements(d) + hair(d)

r_skull is a superellipsoid (flatter at the front by `face_flatness`, wider at the top by
`crown_taper`); r_face the ray's intersection with a lower, forward "face and jaw" ellipsoid;
smax a polynomial smooth maximum. Features are smooth bumps evaluated at the base surface point
(X0, Y0): brow ridge, eye sockets, nose (ridge growing to the tip, widening to the alae),
cheekbones, lips, chin; ears as lateral bumps. Vertex attributes carry the materials (hair, eye,
lips, brows), whether the balaclava covers the point (all but the eye slot) and knit texture
coordinates that move with the head.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from sim.population import HeadShape

# vertex attribute columns
A_HAIR, A_EYE, A_COVER, A_LIP, A_BROW, A_HEAD, A_CLOTH, A_TEX_U, A_TEX_V = range(9)
N_ATTR = 9


@dataclass(frozen=True)
class Expression:
    """Small per-capture changes of the face (m): lips, jaw opening, brow raise, cheek (smile)."""

    lip_delta: float = 0.0
    jaw_open: float = 0.0
    brow_raise: float = 0.0
    cheek_delta: float = 0.0


@dataclass
class Mesh:
    """Triangle mesh: vertices (V, 3) in metres, triangles (T, 3) int32, attributes (V, N_ATTR)."""

    vertices: np.ndarray
    triangles: np.ndarray
    attrs: np.ndarray

    @staticmethod
    def concat(meshes: list["Mesh"]) -> "Mesh":
        verts, tris, attrs, off = [], [], [], 0
        for m in meshes:
            verts.append(m.vertices)
            tris.append(m.triangles + off)
            attrs.append(m.attrs)
            off += m.vertices.shape[0]
        return Mesh(np.concatenate(verts), np.concatenate(tris).astype(np.int32), np.concatenate(attrs))


def _smoothstep(e0: float, e1: float, x: np.ndarray) -> np.ndarray:
    t = np.clip((x - e0) / (e1 - e0), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _smax(a: np.ndarray, b: np.ndarray, k: float) -> np.ndarray:
    """Polynomial smooth maximum with blend width k."""
    h = np.maximum(k - np.abs(a - b), 0.0) / k
    return np.maximum(a, b) + h * h * h * k / 6.0


@lru_cache(maxsize=8)
def _grid_triangles(n_rows: int, n_cols: int, wrap: bool) -> np.ndarray:
    """Two triangles per quad of an (n_rows, n_cols) vertex grid, columns wrapping when `wrap` (read-only)."""
    i, j = np.meshgrid(np.arange(n_rows - 1), np.arange(n_cols if wrap else n_cols - 1), indexing="ij")
    i, j = i.ravel(), j.ravel()
    j1 = (j + 1) % n_cols
    a, b, c, d = i * n_cols + j, (i + 1) * n_cols + j, (i + 1) * n_cols + j1, i * n_cols + j1
    tris = np.concatenate([np.stack([a, b, c], 1), np.stack([a, c, d], 1)]).astype(np.int32)
    tris.flags.writeable = False
    return tris


@lru_cache(maxsize=4)
def _directions(n_theta: int, n_phi: int) -> tuple[np.ndarray, ...]:
    """(theta, phi, dx, dy, dz) on the head's (n_theta, n_phi) vertex grid: unit rays from the head centre."""
    th = np.linspace(0.0, math.pi, n_theta)
    ph = np.linspace(-math.pi, math.pi, n_phi, endpoint=False)
    TH, PH = np.meshgrid(th, ph, indexing="ij")
    out = (TH, PH, np.sin(TH) * np.sin(PH), np.cos(TH), np.sin(TH) * np.cos(PH))
    for a in out:
        a.flags.writeable = False
    return out


@lru_cache(maxsize=4)
def head_outward_sign(n_theta: int = 96, n_phi: int = 192) -> float:
    """+1 when head_mesh's triangles wind so that (b - a) x (c - a) points out of the head, else -1.

    Every head is a star-shaped surface r(d) > 0 over the same grid of directions d, a radial deformation
    of the unit sphere that keeps orientation, so the sign is the sphere's: that of its signed volume.
    """
    _, _, dx, dy, dz = _directions(n_theta, n_phi)
    v = np.stack([dx, dy, dz], axis=-1).reshape(-1, 3)
    t = _grid_triangles(n_theta, n_phi, wrap=True)
    a, b, c = v[t[:, 0]], v[t[:, 1]], v[t[:, 2]]
    return 1.0 if float(np.einsum("ij,ij->i", a, np.cross(b, c)).sum()) > 0.0 else -1.0


def _pow4(x: np.ndarray) -> np.ndarray:
    x2 = x * x
    return x2 * x2


def _ray_ellipsoid(dx: np.ndarray, dy: np.ndarray, dz: np.ndarray, centre: tuple[float, float, float],
                   semi: tuple[float, float, float]) -> np.ndarray:
    """Distance t along unit rays d from the origin to the far intersection with an ellipsoid.

    |(t d - c) / e| = 1  ->  a t^2 - 2 b t + q = 0 (the origin lies inside, so q < 0 and t > 0).
    """
    c, e = centre, semi
    a = (dx / e[0]) ** 2 + (dy / e[1]) ** 2 + (dz / e[2]) ** 2
    b = dx * c[0] / e[0] ** 2 + dy * c[1] / e[1] ** 2 + dz * c[2] / e[2] ** 2
    q = (c[0] / e[0]) ** 2 + (c[1] / e[1]) ** 2 + (c[2] / e[2]) ** 2 - 1.0
    return (b + np.sqrt(np.maximum(b * b - a * q, 0.0))) / a


def head_mesh(shape: HeadShape, expr: Expression = Expression(), n_theta: int = 96, n_phi: int = 192,
              eye_slot_w: float = 0.11, eye_slot_h: float = 0.035) -> Mesh:
    """The head surface in the head frame (m), with material attributes."""
    s = shape
    TH, PH, dx, dy, dz = _directions(n_theta, n_phi)

    # skull: superellipsoid, flatter at the front, tapered towards the crown
    ax = s.head_half_width * (1.0 + s.crown_taper * dy)
    p = 2.0 + 2.0 * s.face_flatness * _smoothstep(0.0, 0.6, dz)
    r_skull = 1.0 / (np.abs(dx / ax) ** p + np.abs(dy / s.head_half_height) ** p
                     + np.abs(dz / s.head_half_depth) ** p) ** (1.0 / p)

    # face and jaw: an ellipsoid lower and forward; r = ray from the head centre hits its surface
    y_n = s.eye_y + 0.006                        # nasion
    y_t = y_n - s.nose_length                    # nose tip
    y_m = y_t - s.mouth_drop - 0.3 * expr.jaw_open  # mouth line
    y_c = y_m - s.chin_drop - expr.jaw_open      # chin point
    r_face = _ray_ellipsoid(dx, dy, dz, (0.0, 0.5 * (s.eye_y + y_c) - 0.01, -0.01),
                            (s.head_half_width * s.jaw_width * 0.95, 0.5 * (s.eye_y - y_c) + 0.03, s.head_half_depth * 0.97))
    # forehead: a flatter cap whose front faces the scanner a little above the brow
    r_fore = _ray_ellipsoid(dx, dy, dz, (0.0, s.brow_y + 0.02, s.head_half_depth + s.forehead_fullness - 0.05),
                            (0.07, 0.06, 0.05))
    r = _smax(_smax(r_skull, r_face, 0.03), r_fore, 0.03)

    X0, Y0 = r * dx, r * dy
    front = _smoothstep(0.25, 0.65, dz)
    g = np.exp
    dr = np.zeros_like(r)
    dr += (s.brow_projection + 0.5 * expr.brow_raise) * g(-((Y0 - s.brow_y - expr.brow_raise) / 0.012) ** 2
                                                         - _pow4(X0 / 0.055))
    sockets = sum(g(-((X0 - sx) / 0.017) ** 2 - ((Y0 - s.eye_y) / 0.012) ** 2) for sx in (-s.eye_half_spacing,
                                                                                        s.eye_half_spacing))
    dr -= s.eye_socket_depth * sockets
    # forehead: recedes with height by forehead_slope beyond the population's mean inclination
    dr -= s.forehead_slope * np.clip(Y0 - s.brow_y - 0.01, 0.0, None) * (np.abs(X0) < 0.07)
    t = np.clip((y_n - Y0) / s.nose_length, 0.0, 1.0)
    Xn = X0 - s.nose_deviation * t                     # a nose deviates more towards its tip
    prof = np.where(Y0 >= y_t, s.nose_projection * t ** 1.3,
                    s.nose_projection * g(-((Y0 - y_t) / s.nose_tip_radius) ** 2))
    hw = 0.005 + (0.5 * s.nose_width - 0.005) * t ** 1.5
    dr += prof * g(-(Xn / hw) ** 2)
    dr += s.nasal_bridge * g(-((Y0 - y_n + 0.004) / 0.009) ** 2 - (X0 / 0.008) ** 2)
    y_cb = s.eye_y - 0.025
    dr += sum((s.cheekbone_projection + expr.cheek_delta + side * s.asymmetry)
              * g(-((X0 - side * s.cheekbone_x) / 0.02) ** 2 - ((Y0 - y_cb) / 0.016) ** 2) for side in (-1.0, 1.0))
    dr += s.cheek_fullness * sum(g(-((X0 - sx) / 0.022) ** 2 - ((Y0 - y_m - 0.012) / 0.02) ** 2)
                                 for sx in (-0.042, 0.042))
    lips = g(-_pow4(X0 / (0.5 * s.mouth_width)) - ((Y0 - y_m) / 0.010) ** 2)
    dr += (s.lip_projection + expr.lip_delta) * lips
    dr += s.chin_projection * g(-(X0 / s.chin_width) ** 2 - ((Y0 - y_c) / 0.013) ** 2)
    dr *= front
    # ears: lateral bumps a little behind the coronal plane
    ear_y = s.eye_y - 0.012
    for side in (-1.0, 1.0):
        dphi = PH - side * (0.5 * math.pi + 0.12)
        dr += s.ear_protrusion * g(-(dphi / 0.22) ** 2 - ((Y0 - ear_y) / (0.5 * s.ear_height)) ** 2)
    # hair on the top and back of the head
    hair = np.clip(_smoothstep(s.hairline_y - 0.01, s.hairline_y + 0.01, Y0)
                   + _smoothstep(-0.1, -0.5, dz) * _smoothstep(ear_y - 0.03, ear_y + 0.01, Y0), 0.0, 1.0)
    hair *= 1.0 - _smoothstep(0.5, 0.9, np.abs(dx)) * _smoothstep(s.hairline_y, s.hairline_y - 0.04, Y0)
    dr += s.hair_thickness * hair
    r = r + dr

    verts = np.stack([r * dx, r * dy, r * dz], axis=-1).reshape(-1, 3)
    attrs = np.zeros((n_theta, n_phi, N_ATTR))
    attrs[..., A_HAIR] = hair
    attrs[..., A_EYE] = front * sum(g(-((X0 - sx) / 0.011) ** 2 - ((Y0 - s.eye_y) / 0.006) ** 2)
                                    for sx in (-s.eye_half_spacing, s.eye_half_spacing))
    slot = ((X0 / (0.5 * eye_slot_w)) ** 2 + ((Y0 - s.eye_y) / (0.5 * eye_slot_h)) ** 2 < 1.0) & (dz > 0.3)
    attrs[..., A_COVER] = np.where(slot, 0.0, 1.0)
    attrs[..., A_LIP] = front * lips
    attrs[..., A_BROW] = front * g(-((Y0 - s.brow_y + 0.004) / 0.005) ** 2) * (np.abs(X0) > 0.01) * (
        np.abs(X0) < 0.05)
    attrs[..., A_HEAD] = 1.0
    rm = 0.09
    attrs[..., A_TEX_U] = PH * rm
    attrs[..., A_TEX_V] = (0.5 * math.pi - TH) * rm
    return Mesh(verts, _grid_triangles(n_theta, n_phi, wrap=True), attrs.reshape(-1, N_ATTR))


def body_mesh(n_h: int = 24, n_a: int = 48) -> tuple[Mesh, Mesh]:
    """Neck (elliptic cylinder) and shoulders (ellipsoid cap) in the body frame (head centre at origin)."""
    hh = np.linspace(-0.05, -0.30, n_h)
    aa = np.linspace(-math.pi, math.pi, n_a, endpoint=False)
    H, A = np.meshgrid(hh, aa, indexing="ij")
    # the neck leans forward (top ahead of the base, ~18 deg), so its front does not face the beam
    lean = math.radians(18.0)
    neck_v = np.stack([0.056 * np.sin(A), H, -0.015 + 0.060 * np.cos(A) + (H + 0.05) * math.tan(lean)],
                      -1).reshape(-1, 3)
    neck_a = np.zeros((neck_v.shape[0], N_ATTR))
    neck_a[:, A_COVER] = 1.0
    neck_a[:, A_TEX_U] = (A * 0.058).ravel()
    neck_a[:, A_TEX_V] = H.ravel()
    neck = Mesh(neck_v, _grid_triangles(n_h, n_a, wrap=True), neck_a)

    th = np.linspace(0.0, 0.5 * math.pi, n_h)
    TH, A = np.meshgrid(th, aa, indexing="ij")
    sh_v = np.stack([0.21 * np.sin(TH) * np.sin(A), -0.35 + 0.12 * np.cos(TH),
                     -0.03 + 0.12 * np.sin(TH) * np.cos(A)], -1).reshape(-1, 3)
    sh_a = np.zeros((sh_v.shape[0], N_ATTR))
    sh_a[:, A_CLOTH] = 1.0
    sh_a[:, A_TEX_U] = sh_v[:, 0]
    sh_a[:, A_TEX_V] = sh_v[:, 1]
    shoulders = Mesh(sh_v, _grid_triangles(n_h, n_a, wrap=True), sh_a)
    return neck, shoulders


def rotation(yaw_deg: float, pitch_deg: float = 0.0, roll_deg: float = 0.0) -> np.ndarray:
    """Head-frame -> scanner-frame rotation: yaw about Y (+ turns the nose towards +X), then pitch, roll."""
    y, p, r = np.radians([yaw_deg, pitch_deg, roll_deg])
    ry = np.array([[math.cos(y), 0, math.sin(y)], [0, 1, 0], [-math.sin(y), 0, math.cos(y)]])
    rx = np.array([[1, 0, 0], [0, math.cos(p), -math.sin(p)], [0, math.sin(p), math.cos(p)]])
    rz = np.array([[math.cos(r), -math.sin(r), 0], [math.sin(r), math.cos(r), 0], [0, 0, 1]])
    return ry @ rx @ rz

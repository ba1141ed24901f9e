"""Visible-light rendering of the same head surface: Lambert shading with per-identity albedo.

The camera looks along the scanner axis (orthographic), framing a 0.30 m square centred on the
head; the image is grey in [0, 1]. When concealed, the knitted balaclava (dark, with a stitch
texture) covers everything but the eye slot, as in the paper's visible images.
"""
from __future__ import annotations

import math

import numpy as np

from sim.capture import draw_capture
from sim.config import SimConfig
from sim.head import (A_BROW, A_CLOTH, A_COVER, A_EYE, A_HAIR, A_LIP, A_TEX_U, A_TEX_V, Mesh, body_mesh,
                      head_mesh, rotation)
from sim.population import Population
from sim.mesh_raster import rasterize
from sim.scene import Subject

FRAME_M = 0.30              # side of the square framed around the head (m)
BACKGROUND = 0.85           # grey of the wall behind
SHIRT = 0.45                # grey of the shirt
BALACLAVA = 0.18            # grey of the knitted fabric
_LIGHT = np.array([-0.35, 0.45, 0.82])   # towards the light, scanner frame (x right, y up, z to camera)
_SUPERSAMPLE = 3


def render_visible(pop: Population, cfg: SimConfig, identity: int, posture: str, concealed: bool,
                   size: int = 64, capture_seed: int | None = None, standoff_m: float = 6.0) -> np.ndarray:
    if size < 8:
        raise ValueError(f"{size=} must be >= 8")
    subj = Subject(identity=identity, posture=posture, concealed=concealed, capture_seed=capture_seed)
    cap = draw_capture(subj, cfg, standoff_m)
    shape = pop.identity(identity)
    b = cfg.balaclava
    head = head_mesh(shape, cap.expression(), eye_slot_w=b.eye_opening_width_m, eye_slot_h=b.eye_opening_height_m)
    neck, shoulders = body_mesh()
    parts = []
    for m, rot in ((head, rotation(cap.yaw_deg, cap.pitch_deg, cap.roll_deg)), (neck, rotation(0.5 * cap.yaw_deg)),
                   (shoulders, rotation(0.5 * cap.yaw_deg))):
        parts.append(Mesh(m.vertices @ rot.T, m.triangles, m.attrs))
    mesh = Mesh.concat(parts)
    n = size * _SUPERSAMPLE
    pix = FRAME_M / n
    # orthographic camera centred on the nominal head position (capture jitter moves the head in frame)
    x = mesh.vertices[:, 0] + (cap.x_m - subj.offset_x_m)
    y = mesh.vertices[:, 1] + (cap.y_m - subj.offset_y_m)
    px = (x + 0.5 * FRAME_M) / pix - 0.5
    py = (0.5 * FRAME_M - y) / pix - 0.5
    depth = -mesh.vertices[:, 2]
    zbuf, att = rasterize(px, py, depth, mesh.attrs, mesh.triangles, n, n)
    valid = np.isfinite(zbuf)
    z = np.where(valid, zbuf, np.nanmax(np.where(valid, zbuf, np.nan)) + 0.05 if valid.any() else 0.0)
    # normal from the depth map: z towards the camera is -depth; rows go down in y
    dzr, dzc = np.gradient(-z, pix)
    nx, ny = -dzc, dzr
    norm = np.sqrt(nx * nx + ny * ny + 1.0)
    shade = np.clip((nx * _LIGHT[0] + ny * _LIGHT[1] + _LIGHT[2]) / norm / np.linalg.norm(_LIGHT), 0.0, 1.0)
    light = 0.25 + 0.75 * shade

    skin = shape.skin_albedo
    alb = np.full((n, n), skin)
    hair, eye, lip, brow = att[..., A_HAIR], att[..., A_EYE], att[..., A_LIP], att[..., A_BROW]
    alb = alb * (1 - lip) + skin * shape.lip_albedo * lip
    alb = alb * (1 - np.clip(brow, 0, 1)) + skin * shape.brow_albedo * np.clip(brow, 0, 1)
    alb = alb * (1 - hair) + shape.hair_albedo * hair
    eye_w = np.clip(2.0 * eye, 0.0, 1.0)
    alb = alb * (1 - eye_w) + 0.12 * eye_w
    cloth = att[..., A_CLOTH] > 0.5
    alb = np.where(cloth, SHIRT, alb)
    if concealed:
        covered = valid & (att[..., A_COVER] > 0.5) & ~cloth
        p = b.knit_period_mm * 1e-3
        knit = 1.0 + 0.35 * np.cos(2 * math.pi * att[..., A_TEX_U] / p) * np.cos(2 * math.pi * att[..., A_TEX_V] / (0.8 * p))
        alb = np.where(covered, BALACLAVA * knit, alb)
    img = np.where(valid, alb * light, BACKGROUND)
    img = img.reshape(size, _SUPERSAMPLE, size, _SUPERSAMPLE).mean(axis=(1, 3))
    return np.clip(img, 0.0, 1.0).astype(np.float32)

"""Measurements that say whether the virtual scanner's faces look like 340 GHz faces.

Pure functions over images and scene maps (no files, no plotting): `thz sim demo` calls them and
docs/scanner_physics.md quotes what they measure.

Definitions (power = |field|^2, in the 3-frame mean peak-in-gate image; face = the true head pixels):
    dynamic range, spread     10 log10(P90 / P10) of the face pixels' power
    dynamic range, peak       10 log10(P_max / P50) over the face pixels (glint above the typical face pixel)
    face to background        10 log10(P50 face / P50 background)
    sparsity                  fraction of face pixels within 3 dB and within 6 dB of the face's peak
    glints                    local maxima of the face power within 10 dB of the peak (3 x 5 pixel
                              neighbourhood), with their positions relative to the head centre
    decorrelation vs yaw      Pearson correlation of the noise-free field power |E|^2 over the face
                              between the capture pose and the head turned by d yaw
"""
from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

from sim.maps import SceneMaps


def face_statistics(power: np.ndarray, face: np.ndarray, background: np.ndarray | None = None) -> dict[str, float]:
    """Dynamic range, sparsity and contrast of one face image (see the module docstring)."""
    ok = face & np.isfinite(power)
    p = power[ok]
    if p.size < 10:
        raise ValueError(f"face mask holds {p.size} finite pixels; need at least 10")
    peak = float(p.max())
    bg = power[(~face if background is None else background) & np.isfinite(power)]
    return {
        "dr_spread_db": float(10 * np.log10(np.percentile(p, 90) / np.percentile(p, 10))),
        "dr_peak_db": float(10 * np.log10(peak / np.median(p))),
        "face_to_background_db": float(10 * np.log10(np.median(p) / np.median(bg))) if bg.size else float("nan"),
        "within_3db": float(np.mean(p >= peak * 10 ** (-0.3))),
        "within_6db": float(np.mean(p >= peak * 10 ** (-0.6))),
    }


def glints(power: np.ndarray, face: np.ndarray, below_peak_db: float = 10.0,
           size: tuple[int, int] = (3, 5)) -> list[tuple[int, int, float]]:
    """Local maxima of the face within `below_peak_db` of its peak: (row, col, dB below the peak)."""
    x = np.where(face & np.isfinite(power), power, 0.0)
    peak = x.max()
    if peak <= 0:
        return []
    is_max = (x == ndimage.maximum_filter(x, size=size, mode="constant")) & (x >= peak * 10 ** (-below_peak_db / 10))
    rows, cols = np.nonzero(is_max)
    return [(int(r), int(c), float(10 * np.log10(peak / x[r, c]))) for r, c in zip(rows, cols)]


def field_power(maps: SceneMaps, yaw_rad: float = 0.0, pitch_rad: float = 0.0) -> np.ndarray:
    """|sum of the layers' fields|^2 on the map grid (the layers share a range cell, so they add coherently)."""
    amps, _, _ = maps.fields(yaw_rad, pitch_rad)
    return np.abs(amps.sum(axis=0)) ** 2


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    a = a - a.mean()
    b = b - b.mean()
    d = math.sqrt(float((a * a).sum() * (b * b).sum()))
    return float((a * b).sum() / d) if d > 0 else float("nan")


def yaw_decorrelation(maps: SceneMaps, dyaw_deg: np.ndarray) -> np.ndarray:
    """Correlation of the face's field power at the capture pose with the head turned by each d yaw."""
    face = maps.head_mask
    ref = field_power(maps)[face]
    return np.array([_corr(ref, field_power(maps, math.radians(float(d)))[face]) for d in dyaw_deg])


def map_correlation(a: SceneMaps, b: SceneMaps) -> float:
    """Correlation of two scenes' field power over the pixels that are face in both (same grid)."""
    face = a.head_mask & b.head_mask
    return _corr(field_power(a)[face], field_power(b)[face])


def head_image(maps: SceneMaps, half_width_m: float = 0.13, half_height_m: float = 0.15, size: int = 64,
               floor: float = 10 ** (-4.8)) -> np.ndarray:
    """The noise-free field power around the head centre, in dB over a receiver floor, size x size.

    The floor (-48 dB relative to a plate, this receiver's leakage-skirt floor in the gate) stands in
    for the receiver, so the physics alone can be compared: what a template matcher could use.
    """
    p = field_power(maps)
    g = maps.grid
    uc, vc = maps.centre_uv
    u = uc + np.linspace(-half_width_m, half_width_m, size)
    v = vc + 0.02 + np.linspace(half_height_m, -half_height_m, size)
    j = np.clip(np.round((u - g.u0) / g.pitch).astype(int), 0, g.nx - 1)
    i = np.clip(np.round((v - g.v0) / g.pitch).astype(int), 0, g.ny - 1)
    # the field is smooth at the beam scale: a 2.5 pitch average then nearest sampling is enough
    p = ndimage.uniform_filter(p, size=3)
    return 10.0 * np.log10(p[np.ix_(i, j)] + floor)


def template_rank1(images: dict[tuple[int, int], np.ndarray]) -> float:
    """Rank-1 identification by raw-pixel cosine: capture 0 of each identity is the gallery, the rest probe."""
    ids = sorted({i for i, _ in images})
    gallery = np.stack([images[(i, 0)].ravel() for i in ids])
    gallery = gallery - gallery.mean(axis=1, keepdims=True)
    gallery /= np.linalg.norm(gallery, axis=1, keepdims=True)
    hits = n = 0
    for (i, k), im in images.items():
        if k == 0:
            continue
        x = im.ravel() - im.mean()
        x /= np.linalg.norm(x)
        hits += int(ids[int(np.argmax(gallery @ x))] == i)
        n += 1
    return hits / max(n, 1)

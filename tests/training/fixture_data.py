"""A tiny procedural dataset in the manifest format, with learnable identity and posture.

Identity i: a constellation of Gaussian blobs drawn from Generator((7, i)), the same in every image of i.
Posture p: the constellation shifted horizontally by (p - 1.5) * 5 px and squeezed for full profiles,
plus a posture-coded bright bar at the top. Concealed: the face attenuated by 2 dB (power), a knit
texture (vertical stripes) and extra noise. Captures: 1-px jitter and noise from Generator((11, i, p, k, c)).
Splits by capture: 0 -> test, 1 -> val, the others -> train. Visible images: one per identity x posture
x concealment, RGB, with the same constellation in colour.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from thzcore.labels import POSTURES
from thzcore.manifest import Row, write_manifest

N = 64


def _blobs(identity: int) -> np.ndarray:
    rng = np.random.default_rng([7, identity])
    n = 5
    return np.stack([rng.uniform(18, 46, n), rng.uniform(18, 50, n), rng.uniform(2.5, 5.0, n),
                     rng.uniform(0.5, 1.0, n)], 1)  # x, y, sigma (px), amplitude


def render(identity: int, posture: int, concealed: bool, capture: int) -> np.ndarray:
    rng = np.random.default_rng([11, identity, posture, capture, int(concealed)])
    yy, xx = np.mgrid[0:N, 0:N].astype(np.float64)
    img = np.zeros((N, N))
    shift = (posture - 1.5) * 5.0 + rng.uniform(-1, 1)
    squeeze = 0.6 if posture >= 3 else 1.0
    for x, y, s, a in _blobs(identity):
        cx = 32 + (x - 32) * squeeze + shift
        img += a * np.exp(-((xx - cx) ** 2 + (yy - y - rng.uniform(-1, 1)) ** 2) / (2 * s * s))
    img[2:6, 4 + 11 * posture: 13 + 11 * posture] += 0.8  # posture code
    if concealed:
        img *= 10 ** (-2 / 10)
        img += 0.15 * (np.sin(xx * 1.3) > 0.3)
        img += rng.normal(0, 0.05, img.shape)
    img += rng.normal(0, 0.02, img.shape)
    return np.clip(img / 1.6, 0, 1)


def make_dataset(root: str | Path, n_identities: int = 6, captures: int = 4, with_visible: bool = True,
                 drop_visible: int = 0) -> Path:
    """Write PNGs and manifest.csv under root; drop_visible removes that many visible images (the first ones)."""
    root = Path(root)
    (root / "thz").mkdir(parents=True, exist_ok=True)
    (root / "visible").mkdir(exist_ok=True)
    rows: list[Row] = []
    for i in range(n_identities):
        for p, pname in enumerate(POSTURES):
            for c in (False, True):
                for k in range(captures):
                    split = "test" if k == 0 else "val" if k == 1 else "train"
                    rel = f"thz/{i:03d}_{p}_{int(c)}_{k}.png"
                    Image.fromarray((render(i, p, c, k) * 255).astype(np.uint8)).save(root / rel)
                    rows.append(Row(path=rel, identity=i, posture=pname, concealed=c, modality="thz", capture=k,
                                    split=split))
                if with_visible:
                    g = render(i, p, False, 99)
                    rgb = np.stack([g, g * 0.8, g * 0.6], -1)
                    if c:
                        rgb[20:64] *= 0.2  # the balaclava hides the lower face in the visible image
                    rel = f"visible/{i:03d}_{p}_{int(c)}.png"
                    Image.fromarray((rgb * 255).astype(np.uint8)).save(root / rel)
                    rows.append(Row(path=rel, identity=i, posture=pname, concealed=c, modality="visible", capture=-1,
                                    split="train"))
    if drop_visible:
        vis = [r for r in rows if r.modality == "visible"][:drop_visible]
        rows = [r for r in rows if r not in vis]
    write_manifest(root, rows)
    return root

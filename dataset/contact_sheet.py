"""The dataset's contact sheet: a labelled grid of THz concealed, THz unconcealed and visible images."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from thzcore.labels import POSTURES
from thzcore.manifest import Row


def _tile(path: Path, px: int) -> Image.Image:
    with Image.open(path) as im:
        if im.mode.startswith("I"):
            a = np.asarray(im, dtype=np.float64) / 65535.0
            im2 = Image.fromarray(np.rint(a * 255).astype(np.uint8), mode="L")
        else:
            im2 = im.convert("L")
        return im2.convert("RGB").resize((px, px), Image.Resampling.NEAREST)


def contact_sheet(root: Path, rows: list[Row], seed: int = 0, n_identities: int = 4, px: int = 96) -> Image.Image:
    """A labelled grid: for up to n_identities identities (seeded sample), per posture the THz concealed
    (b), THz unconcealed (n) ROI of one capture and the unconcealed visible image (v)."""
    from PIL import ImageDraw

    ids = sorted({r.identity for r in rows if r.modality == "thz"})
    rng = np.random.default_rng(seed)
    pick = sorted(rng.choice(ids, size=min(n_identities, len(ids)), replace=False).tolist())
    by_key: dict[tuple, Row] = {}
    for r in sorted(rows, key=lambda r: (r.capture, r.path)):
        by_key.setdefault((r.identity, r.posture, r.concealed, r.modality), r)
    kinds = (("b", True, "thz"), ("n", False, "thz"), ("v", False, "visible"))
    label_w, head_h, gap = 70, 34, 6
    cols = len(POSTURES) * len(kinds)
    W = label_w + cols * px + (len(POSTURES) - 1) * gap
    H = head_h + len(pick) * (px + 4)
    sheet = Image.new("RGB", (W, H), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    for pi, p in enumerate(POSTURES):
        x0 = label_w + pi * (len(kinds) * px + gap)
        draw.text((x0 + 4, 2), p, fill=(0, 0, 0))
        for ki, (tag, _, _) in enumerate(kinds):
            draw.text((x0 + ki * px + px // 2 - 3, 18), tag, fill=(90, 90, 90))
    for ri, i in enumerate(pick):
        y0 = head_h + ri * (px + 4)
        draw.text((4, y0 + px // 2 - 6), f"id {i}", fill=(0, 0, 0))
        for pi, p in enumerate(POSTURES):
            x0 = label_w + pi * (len(kinds) * px + gap)
            for ki, (_, conc, mod) in enumerate(kinds):
                r = by_key.get((i, p, conc, mod))
                if r is not None and (root / r.path).is_file():
                    sheet.paste(_tile(root / r.path, px), (x0 + ki * px, y0))
                else:
                    draw.rectangle([x0 + ki * px, y0, x0 + (ki + 1) * px - 1, y0 + px - 1], outline=(200, 0, 0))
    return sheet

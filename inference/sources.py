"""ROIs as image files: PNG in and out, for `thz enroll / verify / identify --image` (recordings and live scans: pipeline.rois)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np


@dataclass
class RoiInput:
    """One ROI (H, W) float32 in [0, 1] and where it came from."""

    image: np.ndarray
    source: str
    frame_id: int | None = None
    meta: dict[str, Any] = field(default_factory=dict)


def load_png_roi(path: str | Path, size: int = 64) -> np.ndarray:
    """A grayscale image file -> (size, size) float32 in [0, 1] (8-bit / 255, 16-bit / 65535).

    Colour images are converted to luminance; other sizes are resized (bicubic) with a warning in
    the source string left to the caller, since a resized ROI is not what processing produces.
    """
    from PIL import Image

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"image {str(p)!r} does not exist")
    with Image.open(p) as im:
        im.load()
        if im.mode in ("I;16", "I;16B", "I;16L", "I"):
            a = np.asarray(im, dtype=np.float64)
            scale = 65535.0 if im.mode.startswith("I;16") or a.max() > 255 else 255.0
            a = a / scale
        elif im.mode == "F":
            a = np.asarray(im, dtype=np.float64)
        else:
            a = np.asarray(im.convert("L"), dtype=np.float64) / 255.0
    if a.shape != (size, size):
        from PIL import Image as _I
        a = np.asarray(_I.fromarray(a.astype(np.float32), mode="F").resize((size, size), _I.BICUBIC))
    return np.clip(a, 0.0, 1.0).astype(np.float32)


def save_png_roi(path: str | Path, image: np.ndarray) -> Path:
    """(H, W) in [0, 1] -> 8-bit grayscale PNG (the format `load_png_roi` reads back)."""
    from PIL import Image

    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((np.clip(image, 0, 1) * 255.0 + 0.5).astype(np.uint8), mode="L").save(p)
    return p


def rois_from_images(paths: list[str], size: int = 64) -> Iterator[RoiInput]:
    for p in paths:
        yield RoiInput(load_png_roi(p, size), f"image:{p}")

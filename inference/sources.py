"""ROIs as image files: PNG in and out, for `thz enroll / verify / identify --image` (recordings and live scans: pipeline.rois)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from thzcore.imagefile import opened_image


@dataclass
class RoiInput:
    """One ROI (H, W) float32 in [0, 1] and where it came from."""

    image: np.ndarray
    source: str
    frame_id: int | None = None
    meta: dict[str, Any] = field(default_factory=dict)


MAX_IMAGE_PIXELS = 4096 * 4096  # refused before decoding: no ROI is bigger, and a bomb must not be decoded
MIN_RESIZE_SIDE = 16            # smaller than this cannot be resized into a face ROI


class ImageError(ValueError):
    """An image file that cannot be used as a ROI: unreadable, not a THz ROI (size, colour, bit depth), or holding NaN."""


# Pillow modes of a single-channel image: 8-bit, 16-bit, 32-bit integer, 32-bit float
GRAY_MODES = ("L", "I;16", "I;16B", "I;16L", "I", "F")
# modes that may hold a grayscale image in a colour or palette container (accepted when every pixel is gray)
CONTAINER_MODES = ("RGB", "RGBA", "LA", "P", "PA")


def _as_gray(im, p: Path) -> np.ndarray:
    """The pixels of a loaded image as float64 in [0, 1], or ImageError naming why it is not a ROI's."""
    mode = im.mode
    if mode == "1":
        raise ImageError(f"image {p}: 1-bit black and white; a THz ROI is grayscale (8- or 16-bit, or float)")
    if mode in ("I;16", "I;16B", "I;16L", "I"):
        a = np.asarray(im, dtype=np.float64)
        if a.size and (a.min() < 0 or a.max() > 65535):
            raise ImageError(f"image {p}: 32-bit integer pixels span [{a.min():.0f}, {a.max():.0f}]; a ROI is 8- or "
                             "16-bit grayscale (0..255 or 0..65535)")
        scale = 65535.0 if mode.startswith("I;16") or a.max() > 255 else 255.0
        return a / scale
    if mode == "F":
        a = np.asarray(im, dtype=np.float64)
        if not np.all(np.isfinite(a)):
            raise ImageError(f"image {p}: holds NaN or infinite pixels")
        if a.size and (a.min() < -1e-6 or a.max() > 1 + 1e-6):
            raise ImageError(f"image {p}: float pixels span [{a.min():.4g}, {a.max():.4g}]; a ROI's lie in [0, 1]")
        return a
    if mode == "L":
        return np.asarray(im, dtype=np.float64) / 255.0
    if mode not in CONTAINER_MODES:
        raise ImageError(f"image {p}: mode {mode}; a THz ROI is a single-channel grayscale image "
                         "(8-bit L, 16-bit I;16 or float F, as `thz` writes it)")
    rgba = np.asarray(im.convert("RGBA"), dtype=np.int16)
    if np.any(rgba[..., 3] != 255):
        raise ImageError(f"image {p}: has transparent pixels; a THz ROI is an opaque grayscale image")
    spread = int((rgba[..., :3].max(axis=-1) - rgba[..., :3].min(axis=-1)).max()) if rgba.size else 0
    if spread > 2:
        raise ImageError(f"image {p}: a colour image ({mode}, channels differ by up to {spread}/255); a THz ROI is "
                         "grayscale")
    return rgba[..., :3].mean(axis=-1) / 255.0


def load_png_roi(path: str | Path, size: int = 64, resize: bool = False) -> np.ndarray:
    """A THz ROI image file -> (size, size) float32 in [0, 1] (8-bit / 255, 16-bit / 65535, float as is).

    A ROI is what processing writes: square, `size` x `size` (the bundle's input), one grayscale
    channel, holding a signal (percentile-normalised, so never flat). Anything else is refused
    with the reason: colour or transparency (a grayscale image in an RGB or palette container is
    accepted), 1-bit, integers beyond 16 bits, floats outside [0, 1] or not finite, a flat image,
    a side other than `size` unless `resize` (bicubic; a resampled image is not what processing
    produces), a non-square image always, and above MAX_IMAGE_PIXELS before it is decoded.
    """
    from PIL import Image

    p = Path(path)
    with opened_image(p, MAX_IMAGE_PIXELS, ImageError) as im:
        w, h = im.size
        if w != h:
            raise ImageError(f"image {p}: {w}x{h} is not square; a THz ROI is {size}x{size}")
        if w != size and not resize:
            raise ImageError(f"image {p}: {w}x{h}, a ROI is {size}x{size}; pass --resize to resample it "
                             "(a resampled image is not what processing produces)")
        if w != size and w < MIN_RESIZE_SIDE:
            raise ImageError(f"image {p}: {w}x{h} is too small to resample into a {size}x{size} ROI")
        im.load()
        a = _as_gray(im, p)
    if not np.all(np.isfinite(a)):
        raise ImageError(f"image {p}: holds NaN or infinite pixels")
    if a.size and float(a.max() - a.min()) < 1.0 / 255:
        raise ImageError(f"image {p}: flat (every pixel {a.flat[0]:.3f}); a THz ROI holds a face's glints")
    if a.shape != (size, size):
        a = np.asarray(Image.fromarray(a.astype(np.float32), mode="F").resize((size, size), Image.BICUBIC))
    return np.clip(a, 0.0, 1.0).astype(np.float32)


def save_png_roi(path: str | Path, image: np.ndarray) -> Path:
    """(H, W) in [0, 1] -> 8-bit grayscale PNG (the format `load_png_roi` reads back)."""
    from PIL import Image

    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((np.clip(image, 0, 1) * 255.0 + 0.5).astype(np.uint8), mode="L").save(p)
    return p


def image_size(path: str | Path) -> tuple[int, int]:
    """(width, height) of an image file, read from its header (nothing decoded); ImageError if unreadable."""
    with opened_image(path, MAX_IMAGE_PIXELS, ImageError) as im:
        return im.size


def sidecar_meta(path: str | Path) -> dict[str, Any]:
    """The `roi` record of the JSON sidecar `thz` writes beside a ROI image (<stem>.json), or {} when there is none.

    It carries the face locator's quality, which gates enrolment (inference/quality.py)."""
    import json

    side = Path(path).with_suffix(".json")
    try:
        d = json.loads(side.read_text())
    except (OSError, ValueError):
        return {}
    roi = d.get("roi") if isinstance(d, dict) else None
    return {"roi": roi} if isinstance(roi, dict) else {}


def rois_from_images(paths: list[str], size: int = 64, resize: bool = False) -> Iterator[RoiInput]:
    for p in paths:
        yield RoiInput(load_png_roi(p, size, resize), f"image:{p}" + (" (resized)" if resize else ""),
                       meta=sidecar_meta(p))

"""A processed frame as an image file: what `thz enroll / verify / identify --image` runs through the ROI finder.

A frame image holds one processed frame (lines x samples_per_line of the scanner, in dB, as the
processing stage publishes it) in one of two forms:
  - a 32-bit float TIFF (Pillow mode F) whose pixels are the dB values themselves: the form a lab's
    own tools write most easily;
  - a 16-bit grayscale PNG, pixel = round((dB - db_low) / (db_high - db_low) * 65535), with its scale
    in PNG text chunks `thz:db_low` and `thz:db_high` (dB) and `thz:kind` = `frame` (save_frame_image).
    Quantisation: (db_high - db_low) / 65535 dB, 0.9 mdB over a 60 dB span.
The face finder thresholds in dB above the frame's background, so a frame without its dB scale (a
plain 8-bit screenshot) cannot be searched and is refused with the reason.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from thzcore.imagefile import opened_image

KIND = "frame"
MAX_FRAME_PIXELS = 4096 * 4096  # refused before decoding


class FrameImageError(ValueError):
    """A frame image that cannot be read as a processed frame in dB; the message says why."""


def save_frame_image(path: str | Path, db_frame: np.ndarray, frame_id: int | None = None) -> Path:
    """(lines, samples) dB frame -> 16-bit PNG with its dB scale in text chunks (read back by load_frame_image)."""
    from PIL import Image, PngImagePlugin

    a = np.asarray(db_frame, dtype=np.float64)
    if a.ndim != 2 or not np.all(np.isfinite(a)):
        raise FrameImageError(f"a frame image is a finite 2-D dB array, got shape {a.shape}")
    lo, hi = float(a.min()), float(a.max())
    hi = hi if hi > lo else lo + 1.0                     # a flat frame keeps a valid scale
    counts = np.rint((a - lo) / (hi - lo) * 65535.0).astype(np.uint16)
    info = PngImagePlugin.PngInfo()
    info.add_text("thz:kind", KIND)
    info.add_text("thz:db_low", repr(lo))
    info.add_text("thz:db_high", repr(hi))
    if frame_id is not None:
        info.add_text("thz:frame_id", str(int(frame_id)))
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(counts).save(p, pnginfo=info)            # uint16 -> mode I;16
    return p


def _scale(im, p: Path) -> tuple[float, float]:
    text = getattr(im, "text", {}) or {}
    if "thz:db_low" not in text or "thz:db_high" not in text:
        raise FrameImageError(
            f"frame image {p}: no dB scale (PNG text thz:db_low / thz:db_high); the face finder works in dB: "
            "save the frame as a float TIFF of dB values, or with thzcore.frameimage.save_frame_image")
    try:
        lo, hi = float(text["thz:db_low"]), float(text["thz:db_high"])
    except ValueError:
        raise FrameImageError(f"frame image {p}: thz:db_low / thz:db_high are not numbers") from None
    if not (np.isfinite(lo) and np.isfinite(hi) and hi > lo):
        raise FrameImageError(f"frame image {p}: dB scale [{lo}, {hi}] is not an increasing finite range")
    return lo, hi


def load_frame_image(path: str | Path) -> tuple[np.ndarray, int | None]:
    """A frame image file -> ((lines, samples) float64 dB frame, frame id or None)."""
    with opened_image(path, MAX_FRAME_PIXELS, FrameImageError, "frame image") as im:
        p = Path(path)
        im.load()
        if im.mode == "F":
            db = np.asarray(im, dtype=np.float64)
        elif im.mode in ("I;16", "I;16B", "I;16L", "I", "L"):
            lo, hi = _scale(im, p)
            full = 255.0 if im.mode == "L" else 65535.0
            db = lo + np.asarray(im, dtype=np.float64) / full * (hi - lo)
        else:
            raise FrameImageError(f"frame image {p}: mode {im.mode}; a frame is one channel of dB (float TIFF) "
                                  "or 16-bit PNG with its dB scale")
        text = getattr(im, "text", {}) or {}
    if not np.all(np.isfinite(db)):
        raise FrameImageError(f"frame image {path}: holds NaN or infinite pixels")
    fid = text.get("thz:frame_id")
    return db, (int(fid) if fid is not None and str(fid).lstrip("-").isdigit() else None)

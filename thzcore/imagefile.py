"""Opening an image file that a user names: missing, too large or unreadable is one clear error."""
from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


@contextmanager
def opened_image(path: str | Path, max_pixels: int, error: type[ValueError], what: str = "image") -> Iterator:
    """The Pillow image of `path`, its size checked against `max_pixels` before anything is decoded.

    FileNotFoundError when there is no such file; `error` ("<what> <path>: ...") when it is too large or
    not a readable image, including a decoding failure inside the block. An `error` raised inside the
    block passes through unchanged."""
    from PIL import Image, UnidentifiedImageError

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"image {str(p)!r} does not exist")
    try:
        with Image.open(p) as im:
            w, h = im.size
            if w * h > max_pixels:
                raise error(f"{what} {p}: {w}x{h} pixels, above the {max_pixels} accepted")
            yield im
    except error:
        raise
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, SyntaxError, ValueError) as exc:
        raise error(f"{what} {p}: not a readable image ({type(exc).__name__}: {exc})") from None

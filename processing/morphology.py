"""Binary dilation by a row-convex symmetric element (the face locator's glint-grouping ellipse), in Numba.

`scipy.ndimage.binary_dilation` with the 13 x 47 ellipse of the default 4 cm grouping radius held the GIL
for 5-30 ms a frame on this machine (docs/processing.md, "The GIL"). An element whose every row is one
run centred on the middle column is described by the half-width of each row, and the dilation paints,
for every run of set pixels in a row, the element's rows widened by the run: the same set as
binary_dilation with that structure and border 0 (tested), at a cost that grows with the runs and
not with pixels x element, and without the GIL.
"""
from __future__ import annotations

import numpy as np
from numba import njit


def row_half_widths(element: np.ndarray) -> np.ndarray:
    """Half-width of each row of a (2 ry + 1, 2 rx + 1) boolean element made of centred runs (-1: empty
    row); ValueError for any other element (binary_dilation then stays the way to dilate by it)."""
    e = np.asarray(element, dtype=bool)
    if e.ndim != 2 or e.shape[0] % 2 == 0 or e.shape[1] % 2 == 0:
        raise ValueError(f"element of shape {e.shape}: odd rows and columns needed")
    cx = e.shape[1] // 2
    hw = np.array([int(np.abs(np.flatnonzero(r) - cx).max()) if r.any() else -1 for r in e], np.int64)
    cols = np.arange(e.shape[1]) - cx
    rebuilt = np.abs(cols)[None, :] <= hw[:, None]
    if not np.array_equal(rebuilt, e):
        raise ValueError("element rows are not runs centred on the middle column")
    return hw


@njit(cache=True, nogil=True)
def dilate_rows(mask, half_widths):
    """mask (H, W) bool dilated by the element of `half_widths` (one per element row, -1 = empty row)."""
    h, w = mask.shape
    r = (half_widths.shape[0] - 1) // 2
    out = np.zeros((h, w), np.bool_)
    for y in range(h):
        x = 0
        while x < w:
            if not mask[y, x]:
                x += 1
                continue
            a = x
            while x < w and mask[y, x]:
                x += 1
            b = x - 1
            for k in range(2 * r + 1):
                hw = half_widths[k]
                yy = y + k - r
                if hw < 0 or yy < 0 or yy >= h:
                    continue
                lo = max(0, a - hw)
                hi = min(w - 1, b + hw)
                for xx in range(lo, hi + 1):
                    out[yy, xx] = True
    return out

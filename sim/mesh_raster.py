"""Z-buffer rasterisation of a triangle mesh onto a regular map grid (nearest surface wins)."""
from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def rasterize(px: np.ndarray, py: np.ndarray, depth: np.ndarray, attrs: np.ndarray, tris: np.ndarray,
              ny: int, nx: int, n_closed: int = 0, outward: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Rasterise triangles given in pixel coordinates.

    px, py: (V,) vertex positions in pixel units (pixel (i, j) has its centre at px = j, py = i)
    depth:  (V,) range of each vertex (m); the smallest range wins
    attrs:  (V, A) attributes interpolated barycentrically
    n_closed: the first n_closed triangles form a closed surface whose winding gives its outward normal
              along `outward` (+1 or -1) x (the projected signed area): those facing away are skipped (the
              first surface a ray meets on a closed one faces it, so the image is the same)
    returns zbuf (ny, nx) with +inf where empty, and the attributes (ny, nx, A)
    """
    n_attr = attrs.shape[1]
    zbuf = np.full((ny, nx), np.inf)
    out = np.zeros((ny, nx, n_attr))
    for t in range(tris.shape[0]):
        i0, i1, i2 = tris[t, 0], tris[t, 1], tris[t, 2]
        x0, y0, x1, y1, x2, y2 = px[i0], py[i0], px[i1], py[i1], px[i2], py[i2]
        area = (x1 - x0) * (y2 - y0) - (x2 - x0) * (y1 - y0)
        if area == 0.0 or (t < n_closed and area * outward < 0.0):
            continue
        jmin = max(int(np.ceil(min(x0, x1, x2))), 0)
        jmax = min(int(np.floor(max(x0, x1, x2))), nx - 1)
        imin = max(int(np.ceil(min(y0, y1, y2))), 0)
        imax = min(int(np.floor(max(y0, y1, y2))), ny - 1)
        if jmin > jmax or imin > imax:
            continue
        inv = 1.0 / area
        for i in range(imin, imax + 1):
            for j in range(jmin, jmax + 1):
                w0 = ((x1 - j) * (y2 - i) - (x2 - j) * (y1 - i)) * inv
                w1 = ((x2 - j) * (y0 - i) - (x0 - j) * (y2 - i)) * inv
                w2 = 1.0 - w0 - w1
                if w0 < -1e-9 or w1 < -1e-9 or w2 < -1e-9:
                    continue
                z = w0 * depth[i0] + w1 * depth[i1] + w2 * depth[i2]
                if z < zbuf[i, j]:
                    zbuf[i, j] = z
                    for a in range(n_attr):
                        out[i, j, a] = w0 * attrs[i0, a] + w1 * attrs[i1, a] + w2 * attrs[i2, a]
    return zbuf, out

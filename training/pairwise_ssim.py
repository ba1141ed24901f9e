"""SSIM of every (probe, reference) pair, fast enough for template matching over whole datasets.

The definition is `training.losses.ssim` (the project's one SSIM: 11x11 Gaussian window, sigma 1.5,
'valid' borders, C1 = (0.01 L)^2, C2 = (0.03 L)^2, per-pixel map averaged), evaluated for an (n, m)
grid of pairs instead of (B,) aligned pairs. With the window G, per pair (x, y):

    SSIM(x, y) = mean_o [(2 mu_x mu_y + C1) (2 (G(xy) - mu_x mu_y) + C2)] / [(mu_x^2 + mu_y^2 + C1) (s_xx + s_yy + C2)]

mu = G(x), s_xx = G(x^2) - mu_x^2 depend on one image each and are filtered once per image
(banded-matrix GEMMs); only G(xy) is per pair. One Numba kernel filters it (separable,
11 taps each way) and sums the ratio, pair by pair, in cache: about 2x less CPU than filtering
G(xy) with banded-matrix GEMMs, and no (pairs, H', W') temporaries. Equal to
`losses.ssim(x_i, y_j)` to float32 rounding (tests/training/test_baselines.py).

Reference: Wang et al., "Image quality assessment: from error visibility to structural similarity",
IEEE TIP 2004 (eq. 13).
"""
from __future__ import annotations

from collections.abc import Callable

import numba
import numpy as np
import torch

from training.losses import SSIM_K1, SSIM_K2, SSIM_WINDOW, gaussian_window

# fastmath without `nnan`/`ninf`: a NaN in an image must come out as NaN, not be optimised away
_FASTMATH = {"nsz", "arcp", "contract", "afn", "reassoc"}


@numba.njit(fastmath=_FASTMATH, nogil=True, cache=True)
def _ssim_pairs(x, y, mu_x, mu_y, qx, qy, ux, uy, g, c1, c2, out):  # pragma: no cover - compiled
    """out[a, b] = mean over the valid map of SSIM(x_a, y_b) (Wang eq. 13) from per-image moments.

    x (n, H, W), y (m, H, W); mu_x, mu_y (., H', W') local means; qx = mu_x^2 + C1, qy = mu_y^2;
    ux = s_xx + C2, uy = s_yy (local variances); g the 1-D window. Per pair only E[xy] = G(x y) is
    filtered: horizontally row by row (the product row once, then w taps), then vertically, and the
    ratio is summed at once: no per-pair temporaries beyond one (H, W') buffer.
    """
    n, hh, ww = x.shape
    m = y.shape[0]
    w = g.shape[0]
    ho, wo = hh - w + 1, ww - w + 1
    h = np.empty((hh, wo), np.float32)     # G_h(x y)
    prod = np.empty(ww, np.float32)
    v = np.empty(wo, np.float32)
    for a in range(n):
        for b in range(m):
            for r in range(hh):
                for c in range(ww):
                    prod[c] = x[a, r, c] * y[b, r, c]
                for c in range(wo):
                    h[r, c] = 0.0
                for t in range(w):
                    gt = g[t]
                    for c in range(wo):
                        h[r, c] += gt * prod[c + t]
            acc = 0.0
            for r in range(ho):
                for c in range(wo):
                    v[c] = 0.0
                for t in range(w):
                    gt = g[t]
                    for c in range(wo):
                        v[c] += gt * h[r + t, c]
                for c in range(wo):
                    p = 2.0 * mu_x[a, r, c] * mu_y[b, r, c]
                    den = (qx[a, r, c] + qy[b, r, c]) * (ux[a, r, c] + uy[b, r, c])
                    acc += (p + c1) * (2.0 * v[c] - p + c2) / den
            out[a, b] = acc / (ho * wo)


def _band(n: int, g: np.ndarray) -> np.ndarray:
    """(n - w + 1, n): row o holds the window g at columns o..o+w-1 ('valid' 1-D filtering as a matmul)."""
    m = np.zeros((n - len(g) + 1, n), g.dtype)
    for o in range(len(m)):
        m[o, o:o + len(g)] = g
    return m


def _moments(a: np.ndarray, g: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Local mean and variance under the separable window, 'valid' region, as `losses.ssim_map` takes them.

    Filtered as Gv a Gh^T with banded matrices (BLAS): torch's conv2d with a 1x11 kernel is ~20x slower
    here, and these are computed for every call (the triplets call with a few images at a time).
    """
    gv, gh = _band(a.shape[1], g), _band(a.shape[2], g)

    def blur(u: np.ndarray) -> np.ndarray:
        return gv @ u @ gh.T
    mu = blur(a)
    return mu, blur(a * a) - mu * mu


def ssim_matrix(x: np.ndarray, y: np.ndarray, data_range: float = 1.0, rows_per_block: int = 8,
                threads: int = 2, progress: Callable[[int], None] | None = None) -> np.ndarray:
    """(n, m) float32: SSIM(x_i, y_j) of every pair, `training.losses.ssim`'s definition.

    x (n, H, W) or (n, 1, H, W), y (m, ...) of the same image size (grey images; a channel axis of 1
    is dropped). Blocks of `rows_per_block` rows of x run on `threads` Python threads (the kernel
    releases the GIL; no Numba parallel layer). `progress(k)` is called with the number of pairs
    finished after each block.
    """
    x, y = _grey(x, "x"), _grey(y, "y")
    if x.shape[1:] != y.shape[1:]:
        raise ValueError(f"ssim_matrix needs images of one size, got {x.shape[1:]} and {y.shape[1:]}")
    if min(x.shape[1:]) < SSIM_WINDOW:
        raise ValueError(f"ssim needs images of at least {SSIM_WINDOW}x{SSIM_WINDOW}, got {x.shape[1:]}")
    n, m = len(x), len(y)
    out = np.empty((n, m), np.float32)
    if n == 0 or m == 0:
        return out
    c1, c2 = (SSIM_K1 * data_range) ** 2, (SSIM_K2 * data_range) ** 2
    g = gaussian_window(dtype=torch.float32).numpy()
    mu_x, sxx = _moments(x, g)
    mu_y, syy = _moments(y, g)
    # the per-image parts of the two denominators; C1 and C2 ride on x's side
    qx, qy, ux, uy = mu_x * mu_x + np.float32(c1), mu_y * mu_y, sxx + np.float32(c2), syy

    def block(i: int) -> int:
        r = slice(i, min(n, i + rows_per_block))
        _ssim_pairs(x[r], y, mu_x[r], mu_y, qx[r], qy, ux[r], uy, g, np.float32(c1), np.float32(c2), out[r])
        return (r.stop - r.start) * m

    starts = range(0, n, rows_per_block)
    if threads <= 1 or len(starts) == 1:
        for i in starts:
            done = block(i)
            if progress is not None:
                progress(done)
        return out
    from concurrent.futures import ThreadPoolExecutor
    with ThreadPoolExecutor(threads) as pool:
        for done in pool.map(block, starts):
            if progress is not None:
                progress(done)
    return out


def _grey(a: np.ndarray, name: str) -> np.ndarray:
    a = np.asarray(a)
    if a.ndim == 4:
        if a.shape[1] != 1:
            raise ValueError(f"ssim_matrix takes grey images; {name} has {a.shape[1]} channels")
        a = a[:, 0]
    if a.ndim != 3:
        raise ValueError(f"ssim_matrix needs (n, H, W) or (n, 1, H, W) images, {name} has shape {a.shape}")
    return np.ascontiguousarray(a, np.float32)

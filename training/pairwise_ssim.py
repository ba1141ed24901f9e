"""SSIM of every (probe, reference) pair, fast enough for template matching over whole datasets.

The definition is `training.losses.ssim` (the project's one SSIM: 11x11 Gaussian window, sigma 1.5,
'valid' borders, C1 = (0.01 L)^2, C2 = (0.03 L)^2, per-pixel map averaged), evaluated for an (n, m)
grid of pairs instead of (B,) aligned pairs. With the window G, per pair (x, y):

    SSIM(x, y) = mean_o [(2 mu_x mu_y + C1) (2 (G(xy) - mu_x mu_y) + C2)] / [(mu_x^2 + mu_y^2 + C1) (s_xx + s_yy + C2)]

mu = G(x), s_xx = G(x^2) - mu_x^2 depend on one image each and are filtered once per image; only
G(xy) is per pair. It is filtered as Gv (x * y) Gh^T with banded window matrices (two GEMMs, BLAS),
and the ratio and mean run in one Numba loop (no (pairs, H', W') temporaries). Equal to
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
def _ssim_means(exy, mu_x, mu_y, qx, qy, ux, uy, c1, c2, out):  # pragma: no cover - compiled
    """out[a, b] = mean_k (p + c1)(2 exy[a,b,k] - p + c2) / ((qx + qy)(ux + uy)),  p = 2 mu_x[a,k] mu_y[b,k].

    exy (r, m, K) = G(x_a y_b) flattened; qx = mu_x^2 + C1, qy = mu_y^2; ux = s_xx + C2, uy = s_yy.
    """
    r, m, k_n = exy.shape
    for a in range(r):
        for b in range(m):
            acc = 0.0
            for k in range(k_n):
                p = 2.0 * mu_x[a, k] * mu_y[b, k]
                acc += (p + c1) * (2.0 * exy[a, b, k] - p + c2) / ((qx[a, k] + qy[b, k]) * (ux[a, k] + uy[b, k]))
            out[a, b] = acc / k_n


def _band(n: int, g: torch.Tensor) -> torch.Tensor:
    """(n - w + 1, n): row o holds the window g at columns o..o+w-1 ('valid' 1-D filtering as a matmul)."""
    w = len(g)
    m = torch.zeros(n - w + 1, n, dtype=g.dtype)
    for o in range(n - w + 1):
        m[o, o:o + w] = g
    return m


class _Blur:
    """Separable 'valid' Gaussian filtering of (..., H, W) stacks as two GEMMs.

    The result is the filtered map TRANSPOSED, (..., W', H'): every moment goes through the same
    filter, and the SSIM mean does not depend on the orientation of the map.
    """

    def __init__(self, h: int, w: int):
        g = gaussian_window(dtype=torch.float32)
        self.gh_t = _band(w, g).T.contiguous()   # (W, W')
        self.gv_t = _band(h, g).T.contiguous()   # (H, H')

    def __call__(self, t: torch.Tensor) -> torch.Tensor:
        *lead, h, w = t.shape
        a = (t.reshape(-1, w) @ self.gh_t).reshape(*lead, h, -1).transpose(-1, -2)   # (..., W', H)
        return (a.reshape(-1, h) @ self.gv_t).reshape(*lead, a.shape[-2], -1)         # (..., W', H')


def ssim_matrix(x: np.ndarray, y: np.ndarray, data_range: float = 1.0, pairs_per_block: int = 2048,
                progress: Callable[[int], None] | None = None) -> np.ndarray:
    """(n, m) float32: SSIM(x_i, y_j) of every pair, `training.losses.ssim`'s definition.

    x (n, H, W) or (n, 1, H, W), y (m, ...) of the same image size (grey images; a channel axis of 1
    is dropped). `progress(k)` is called with the number of pairs finished after each block.
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
    blur = _Blur(*x.shape[1:])
    c1, c2 = (SSIM_K1 * data_range) ** 2, (SSIM_K2 * data_range) ** 2
    tx, ty = torch.from_numpy(x), torch.from_numpy(y)
    flat = lambda t: t.reshape(len(t), -1).numpy()  # noqa: E731
    mu_x, mu_y = blur(tx), blur(ty)
    sxx, syy = blur(tx * tx) - mu_x * mu_x, blur(ty * ty) - mu_y * mu_y
    # per-image parts of the two denominators: C1 and C2 ride on x's side
    qx, qy, ux, uy = flat(mu_x * mu_x + c1), flat(mu_y * mu_y), flat(sxx + c2), flat(syy)
    mx, my = flat(mu_x), flat(mu_y)
    cols = min(m, pairs_per_block)
    rows = max(1, pairs_per_block // cols)
    for i in range(0, n, rows):
        ri = slice(i, min(n, i + rows))
        for j in range(0, m, cols):
            cj = slice(j, min(m, j + cols))
            exy = blur(tx[ri, None] * ty[None, cj])                      # (r, c, W', H')
            exy = exy.reshape(exy.shape[0], exy.shape[1], -1).numpy()
            _ssim_means(exy, mx[ri], my[cj], qx[ri], qy[cj], ux[ri], uy[cj], np.float32(c1), np.float32(c2),
                        out[ri, cj])
            if progress is not None:
                progress(exy.shape[0] * exy.shape[1])
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

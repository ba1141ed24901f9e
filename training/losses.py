"""Losses of the multi-task objective: SupCon, label-smoothed CE, Charbonnier, SSIM (the one definition).

References:
    Khosla et al., "Supervised Contrastive Learning", NeurIPS 2020 (eq. 2, L_out).
    Wang et al., "CosFace: Large Margin Cosine Loss for Deep Face Recognition", CVPR 2018 (eq. 4, LMCL).
    Wang et al., "Image quality assessment: from error visibility to structural similarity", IEEE TIP 2004.
    Charbonnier et al., ICIP 1994 (the robust L1: sqrt(d^2 + eps^2)).
    Bergman et al., Sensors 2026: tau = 0.07, label smoothing 0.1, eps = 1e-3, 11x11 Gaussian sigma 1.5.

`ssim` here is THE structural similarity of this project: the loss, model selection and the test
metrics all call it (the authors' code had three different ones).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

SSIM_WINDOW = 11      # Gaussian window side (pixels)
SSIM_SIGMA = 1.5      # Gaussian window sigma (pixels)
SSIM_K1, SSIM_K2 = 0.01, 0.03


def supcon_loss(emb: torch.Tensor, labels: torch.Tensor, tau: float = 0.07,
                mask: torch.Tensor | None = None, margin: float = 0.0) -> torch.Tensor:
    """Supervised contrastive loss L_out (Khosla eq. 2) over L2-normalised embeddings.

    margin m >= 0 subtracts m from the cosine of every positive pair before the temperature
    (an additive cosine margin, as CosFace does for class weights): a positive must beat the
    negatives by m, which tightens identities that the training set has few of. m = 0 is eq. 2.

    emb (N, E) unit vectors; labels (N,) identity ids: positives of i are all j != i with the same
    identity, whatever their concealment or posture. The denominator runs over all a != i.
    mask (N,) bool selects which samples take part (others are dropped before anything is computed).
    Anchors without a positive contribute nothing; the result is the mean over anchors that have one.
    """
    if not (tau > 0 and math.isfinite(tau)):
        raise ValueError(f"SupCon temperature {tau=} must be a positive finite number")
    if not (0.0 <= margin < 2.0):
        raise ValueError(f"SupCon margin {margin=} must be in [0, 2) (a cosine difference)")
    if mask is not None:
        emb, labels = emb[mask], labels[mask]
    n = emb.shape[0]
    if n < 2:
        return emb.sum() * 0.0
    self_mask = torch.eye(n, dtype=torch.bool, device=emb.device)
    pos = (labels[:, None] == labels[None, :]) & ~self_mask
    cos = emb @ emb.T
    if margin:
        cos = cos - margin * pos.to(cos.dtype)                         # (z_i . z_p - m) for positives
    sim = (cos / tau).masked_fill(self_mask, float("-inf"))            # (N,N) z_i . z_a / tau
    log_prob = sim - torch.logsumexp(sim, dim=1, keepdim=True)         # log softmax over a != i
    n_pos = pos.sum(1)
    has = n_pos > 0
    if not has.any():
        return emb.sum() * 0.0
    mean_log_prob_pos = log_prob.masked_fill(~pos, 0.0).sum(1)[has] / n_pos[has]
    return -mean_log_prob_pos.mean()


def cosface_loss(emb: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor, scale: float = 30.0,
                 margin: float = 0.35) -> torch.Tensor:
    """Large margin cosine loss (CosFace eq. 4): softmax over every training identity's class vector.

    L = -log( e^{s (cos theta_y - m)} / (e^{s (cos theta_y - m)} + sum_{j != y} e^{s cos theta_j}) ),
    cos theta_j = W_j . x / (|W_j| |x|). Unlike SupCon, whose negatives are the few identities of the
    batch, every identity of the training set pushes each sample away at every step.

    emb (N, E), weight (C, E) (any norms: both are normalised here), labels (N,) rows of `weight`.
    """
    if not (scale > 0 and math.isfinite(scale)):
        raise ValueError(f"CosFace scale {scale=} must be a positive finite number")
    if not (0.0 <= margin < 2.0):
        raise ValueError(f"CosFace margin {margin=} must be in [0, 2) (a cosine difference)")
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= weight.shape[0]):
        raise ValueError(f"CosFace labels must be rows of the {weight.shape[0]} class vectors, "
                         f"got {int(labels.min())}..{int(labels.max())}")
    cos = F.normalize(emb, dim=1) @ F.normalize(weight, dim=1).T               # (N, C) cos theta_j
    cos = cos - margin * F.one_hot(labels, weight.shape[0]).to(cos.dtype)      # cos theta_y - m
    return F.cross_entropy(scale * cos, labels)


def posture_ce(logits: torch.Tensor, target: torch.Tensor, smoothing: float = 0.1) -> torch.Tensor:
    """Cross-entropy with label smoothing: target distribution (1 - s) one-hot + s / K uniform."""
    return F.cross_entropy(logits, target, label_smoothing=smoothing)


def charbonnier(pred: torch.Tensor, target: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    """mean sqrt((pred - target)^2 + eps^2)."""
    return torch.sqrt((pred - target) ** 2 + eps * eps).mean()


def gaussian_window(size: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA, dtype=torch.float32) -> torch.Tensor:
    """1-D normalised Gaussian g[k] ~ exp(-(k - (size-1)/2)^2 / (2 sigma^2))."""
    k = torch.arange(size, dtype=torch.float64) - (size - 1) / 2.0
    g = torch.exp(-(k * k) / (2.0 * sigma * sigma))
    return (g / g.sum()).to(dtype)


def ssim_map(x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Local SSIM (Wang 2004 eq. 13) with an 11x11 Gaussian (sigma 1.5) window, 'valid' borders.

    x, y (B, C, H, W); returns (B, C, H-10, W-10). C1 = (0.01 L)^2, C2 = (0.03 L)^2, L = data_range.
    """
    if x.shape != y.shape or x.dim() != 4:
        raise ValueError(f"ssim needs two (B, C, H, W) tensors of one shape, got {tuple(x.shape)}, {tuple(y.shape)}")
    if min(x.shape[-2:]) < SSIM_WINDOW:
        raise ValueError(f"ssim needs images of at least {SSIM_WINDOW}x{SSIM_WINDOW}, got {tuple(x.shape[-2:])}")
    c = x.shape[1]
    g = gaussian_window(dtype=x.dtype).to(x.device)
    wx = g.view(1, 1, 1, -1).repeat(c, 1, 1, 1)
    wy = g.view(1, 1, -1, 1).repeat(c, 1, 1, 1)

    def blur(t: torch.Tensor) -> torch.Tensor:  # separable Gaussian, valid region only
        return F.conv2d(F.conv2d(t, wx, groups=c), wy, groups=c)

    c1, c2 = (SSIM_K1 * data_range) ** 2, (SSIM_K2 * data_range) ** 2
    mu_x, mu_y = blur(x), blur(y)
    sxx = blur(x * x) - mu_x * mu_x
    syy = blur(y * y) - mu_y * mu_y
    sxy = blur(x * y) - mu_x * mu_y
    return ((2 * mu_x * mu_y + c1) * (2 * sxy + c2)) / ((mu_x ** 2 + mu_y ** 2 + c1) * (sxx + syy + c2))


def ssim(x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Per-image SSIM (B,): the mean of `ssim_map` over channels and pixels."""
    return ssim_map(x, y, data_range).mean(dim=(1, 2, 3))


def psnr(x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Per-image PSNR (B,) in dB: 10 log10(L^2 / MSE); an exact match is capped at 100 dB."""
    mse = ((x - y) ** 2).mean(dim=(1, 2, 3)).clamp_min(data_range ** 2 * 1e-10)
    return 10.0 * torch.log10(data_range ** 2 / mse)


def reconstruction_loss(pred: torch.Tensor, target: torch.Tensor, w_charb: float, w_ssim: float,
                        w_perc: float, perceptual=None, eps: float = 1e-3) -> tuple[torch.Tensor, dict[str, float]]:
    """L_rec = w_c Charbonnier + w_s (1 - SSIM) + w_p perceptual; returns the loss and its parts."""
    lc = charbonnier(pred, target, eps)
    ls = 1.0 - ssim(pred, target).mean()
    total = w_charb * lc + w_ssim * ls
    parts = {"charbonnier": float(lc.detach()), "ssim_loss": float(ls.detach())}
    if perceptual is not None and w_perc > 0:
        lp = perceptual(pred, target)
        total = total + w_perc * lp
        parts["perceptual"] = float(lp.detach())
    return total, parts

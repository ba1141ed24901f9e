"""Triplet batches as tensors, with augmentations that keep the reconstruction target aligned.

Geometric augmentation (translation, rotation, zoom) is ONE affine warp per anchor applied to the
anchor and to its reconstruction target alike, so the target stays pixel-aligned with the input
(the authors' code warped them independently). Positives and negatives get warps of their own.
Photometric jitter (gain, additive noise) touches the network inputs only, never the target.
Visible images are not augmented.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from training.config import AugmentConfig
from training.data import TripletIndex
from training.sampler import TripletBatch


@dataclass
class Batch:
    anchor: torch.Tensor        # (B,1,64,64) concealed THz
    target: torch.Tensor        # (B,1,64,64) paired unconcealed THz, warped like the anchor
    positive: torch.Tensor      # (B,1,64,64)
    negative: torch.Tensor      # (B,1,64,64)
    identity: torch.Tensor      # (3B,) identities of [anchor; positive; negative]
    posture: torch.Tensor       # (3B,) posture indices of [anchor; positive; negative]
    visible: torch.Tensor       # (3B,Cv,64,64) visible image per THz image (rows with has_visible False unused)
    has_visible: torch.Tensor   # (3B,) bool

    @property
    def thz(self) -> torch.Tensor:
        return torch.cat([self.anchor, self.positive, self.negative])  # (3B,1,64,64)

    @property
    def anchor_posture(self) -> torch.Tensor:
        return self.posture[: self.anchor.shape[0]]


def random_affine(n: int, cfg: AugmentConfig, rng: np.random.Generator) -> torch.Tensor:
    """(n,2,3) affine matrices in affine_grid's normalised coordinates (output -> input sampling)."""
    ang = np.deg2rad(rng.uniform(-cfg.max_rotation_deg, cfg.max_rotation_deg, n))
    scale = 1.0 / rng.uniform(1.0 - cfg.max_scale, 1.0 + cfg.max_scale, n)   # zoom z samples a 1/z box
    shift = rng.uniform(-cfg.max_shift_px, cfg.max_shift_px, (n, 2)) * 2.0 / 64.0  # px -> [-1, 1] units
    c, s = np.cos(ang) * scale, np.sin(ang) * scale
    theta = np.stack([np.stack([c, -s, shift[:, 0]], 1), np.stack([s, c, shift[:, 1]], 1)], 1)
    return torch.from_numpy(theta.astype(np.float32))


def warp(images: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """Bilinear affine warp, border padding; the identity matrix returns the images unchanged."""
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)


def photometric(images: torch.Tensor, cfg: AugmentConfig, rng: np.random.Generator) -> torch.Tensor:
    n = images.shape[0]
    gain = torch.from_numpy(rng.uniform(1 - cfg.gain, 1 + cfg.gain, (n, 1, 1, 1)).astype(np.float32))
    noise = torch.from_numpy((rng.standard_normal(images.shape) * cfg.noise_std).astype(np.float32))
    return (images * gain + noise).clamp(0.0, 1.0)


def make_batch(index: TripletIndex, tb: TripletBatch, aug: AugmentConfig | None,
               rng: np.random.Generator) -> Batch:
    """Gather the images of a triplet batch; augment when `aug` is given and enabled."""
    d = index.data
    a_idx = index.anchors[tb.anchor]
    t_idx = index.target[tb.anchor]
    img = lambda ii: torch.from_numpy(d.images[ii])  # noqa: E731
    anchor, target, positive, negative = img(a_idx), img(t_idx), img(tb.positive), img(tb.negative)
    if aug is not None and aug.enabled:
        n = len(a_idx)
        theta = random_affine(n, aug, rng)
        anchor, target = warp(anchor, theta), warp(target, theta)       # the same warp: aligned
        positive = warp(positive, random_affine(n, aug, rng))
        negative = warp(negative, random_affine(n, aug, rng))
        anchor, positive, negative = (photometric(x, aug, rng) for x in (anchor, positive, negative))
    all_idx = np.concatenate([a_idx, tb.positive, tb.negative])
    vis, has = d.visible_for(all_idx)
    return Batch(anchor, target, positive, negative,
                 torch.from_numpy(d.identity[all_idx]), torch.from_numpy(d.posture[all_idx]),
                 torch.from_numpy(vis), torch.from_numpy(has))


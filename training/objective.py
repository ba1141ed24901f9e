"""The training objectives: Model A's multi-task loss and Model B's (student + teacher + distillation).

Model A (paper eq. 7):  L_A = w_sc L_supcon(e; identity) + w_ce L_ce(logits; posture) + w_rec L_rec(x_hat, y)
    SupCon and CE run over all 3B images of a triplet batch (anchors, positives, negatives), labels per
    IDENTITY (not per triplet); the decoder runs on the B concealed anchors, each routed to the expert
    of its ground-truth posture, and y is the anchor's paired unconcealed capture.
Model B (eq. 14): L_B = L_A(student) + w_T L_teacher + w_f L_feat + w_kd L_KD on samples with a visible image;
    the teacher reads the student's THz map detached unless distill.teacher_trains_encoder is set.
Both may add w_id L_CosFace(e; identity) (`training.loss.identity` > 0, not in the paper): a large-margin
softmax over the class vectors of every training identity (`IdentityClassifier`, a training-only head
that is never exported), so each step's negatives are the whole training population, not the batch's.
"""
from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from training.batches import Batch
from training.config import TrainingConfig
from training.distill import ModelB, feature_distill, kl_distill
from training.losses import cosface_loss, posture_ce, reconstruction_loss, supcon_loss
from training.model import MultiTaskNet


class IdentityClassifier(nn.Module):
    """CosFace class vectors W (C, E), one row per training identity, and the id -> row map."""

    def __init__(self, identities: Iterable[int], embed_dim: int):
        super().__init__()
        ids = torch.as_tensor(sorted({int(i) for i in identities}), dtype=torch.long)
        if ids.numel() < 2 or int(ids[0]) < 0:
            raise ValueError(f"the identity classifier needs >= 2 non-negative identity ids, got {ids.tolist()}")
        row_of = torch.full((int(ids[-1]) + 1,), -1, dtype=torch.long)
        row_of[ids] = torch.arange(ids.numel())
        self.register_buffer("row_of", row_of)
        self.weight = nn.Parameter(torch.randn(ids.numel(), embed_dim) / embed_dim ** 0.5)

    def rows(self, identity: torch.Tensor) -> torch.Tensor:
        """Row of each identity; -1 for an identity the classifier has no vector for."""
        inside = (identity >= 0) & (identity < self.row_of.numel())
        return torch.where(inside, self.row_of[identity.clamp(0, self.row_of.numel() - 1)], -1)

    def loss(self, emb: torch.Tensor, identity: torch.Tensor, cfg: TrainingConfig) -> torch.Tensor:
        """CosFace over the samples whose identity has a class vector (val may hold others: skipped)."""
        rows = self.rows(identity)
        known = rows >= 0
        if not bool(known.any()):
            return emb.sum() * 0.0
        return cosface_loss(emb[known], self.weight, rows[known], cfg.cosface_scale, cfg.cosface_margin)


def model_a_loss(net: MultiTaskNet, batch: Batch, cfg: TrainingConfig, perceptual=None,
                 identity_head: IdentityClassifier | None = None) -> tuple[torch.Tensor, dict[str, float], dict]:
    w = cfg.loss
    out = net.encode(batch.thz)
    b = batch.anchor.shape[0]
    l_sup = supcon_loss(out["embedding"], batch.identity, cfg.supcon_tau, margin=cfg.supcon_margin)
    l_ce = posture_ce(out["posture_logits"], batch.posture, cfg.label_smoothing)
    rec = net.decode(out["fmap"][:b], [s[:b] for s in out["skips"]], out["posture_logits"][:b],
                     route="gt", posture=batch.anchor_posture)
    l_rec, parts = reconstruction_loss(rec, batch.target, w.charbonnier, w.ssim, w.perceptual, perceptual,
                                       cfg.charbonnier_eps)
    total = w.supcon * l_sup + w.posture * l_ce + w.reconstruction * l_rec
    parts.update(supcon=float(l_sup.detach()), posture_ce=float(l_ce.detach()),
                 reconstruction=float(l_rec.detach()))
    if identity_head is not None and w.identity > 0:
        l_id = identity_head.loss(out["embedding"], batch.identity, cfg)
        total = total + w.identity * l_id
        parts["identity_cosface"] = float(l_id.detach())
    return total, parts, out


def model_b_loss(model: ModelB, batch: Batch, cfg: TrainingConfig, perceptual=None,
                 identity_head: IdentityClassifier | None = None) -> tuple[torch.Tensor, dict[str, float], dict]:
    total, parts, out = model_a_loss(model.student, batch, cfg, perceptual, identity_head)
    m = batch.has_visible
    dc = cfg.distill
    if bool(m.any()):
        f_thz = out["fmap"][m] if dc.teacher_trains_encoder else out["fmap"][m].detach()
        t = model.teacher(f_thz, batch.visible[m])
        l_teacher = (supcon_loss(t["embedding"], batch.identity[m], cfg.supcon_tau, margin=cfg.supcon_margin)
                     + posture_ce(t["posture_logits"], batch.posture[m], cfg.label_smoothing))
        l_feat = feature_distill(model.proj(out["h"][m]), t["z"])
        l_kd = kl_distill(out["posture_logits"][m], t["posture_logits"], dc.tau)
        total = total + dc.teacher * l_teacher + dc.feature * l_feat + dc.logit * l_kd
        parts.update(teacher=float(l_teacher.detach()), feature_distill=float(l_feat.detach()),
                     logit_distill=float(l_kd.detach()))
    parts["visible_fraction"] = float(m.float().mean())
    return total, parts, out

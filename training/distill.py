"""Model B: the THz student plus the training-only teacher, and the distillation losses (paper eqs 12-14).

    L_feat = mean_i || n(P_s h_s,i) - sg(n(z_i)) ||^2   (in [0, 4])              feature distillation  (12)
             h_s the student's pooled encoder vector, P_s a linear projection into the teacher's
             d-wide space, z the teacher's fused feature, n(.) L2 normalisation, sg stop-gradient
    L_KD   = tau^2 KL( softmax(logits_T / tau) || softmax(logits_S / tau) )      logit distillation    (13)
    L_B    = L_student(A) + w_T (L_supcon(e_T) + L_ce(logits_T)) + w_f L_feat + w_kd L_KD              (14)
Every teacher term is computed on the samples that HAVE a visible image only (mask `has_visible`);
the others still train the student's own losses. The teacher is co-trained (one stage) and detached
in both distillation terms, so the student follows the teacher and not the other way round. By
default the teacher reads the student's THz feature map detached too (`distill.teacher_trains_encoder`
= false): the teacher's own losses then train only the teacher, and the student's encoder learns from
its own losses and the two distillation terms. (Letting the teacher's losses into the shared encoder
slowed the student's identity learning on our data: docs/results.md.)
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from training.model import ModelConfig, MultiTaskNet
from training.teacher import Teacher


class ModelB(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.student = MultiTaskNet(cfg)
        self.teacher = Teacher(cfg)
        self.proj = nn.Linear(cfg.widths[4], cfg.attn_dim)  # P_s: student h -> teacher feature space

    def forward(self, *args, **kwargs) -> dict[str, torch.Tensor]:
        return self.student(*args, **kwargs)


def feature_distill(h_student_proj: torch.Tensor, z_teacher: torch.Tensor) -> torch.Tensor:
    """Eq. 12: squared distance between L2-normalised projected student and (detached) teacher features.

    Per sample ||n(a) - n(b)||^2 = 2 - 2 cos(a, b) (the squared error summed over the feature dims, so
    its scale does not shrink with the width d), then the mean over samples.
    """
    if h_student_proj.shape[0] == 0:
        return h_student_proj.sum() * 0.0
    d = F.normalize(h_student_proj, dim=1) - F.normalize(z_teacher.detach(), dim=1)
    return (d * d).sum(1).mean()


def kl_distill(student_logits: torch.Tensor, teacher_logits: torch.Tensor, tau: float) -> torch.Tensor:
    """Eq. 13: tau^2 KL(softmax(t / tau) || softmax(s / tau)), batch mean; the teacher is detached."""
    if not tau > 0:
        raise ValueError(f"distillation temperature {tau=} must be > 0")
    if student_logits.shape[0] == 0:
        return student_logits.sum() * 0.0
    log_p_s = F.log_softmax(student_logits / tau, dim=1)
    log_p_t = F.log_softmax(teacher_logits.detach() / tau, dim=1)
    return (tau * tau) * (log_p_t.exp() * (log_p_t - log_p_s)).sum(1).mean()

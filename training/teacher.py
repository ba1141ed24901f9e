"""The training-only teacher of Model B: visible encoder, symmetric dual cross-attention, MLP fusion, heads.

Bergman et al., Sensors 2026, sec. 3.3 (equation numbers as this module reads them):
    T = P_t(flatten(F_thz)) + pos,  V = P_v(flatten(F_vis)) + pos       16 tokens each, d wide   (8)
    A_t = LN(T + MHA_t(Q=T, K=V, V=V)),  A_v = LN(V + MHA_v(Q=V, K=T, V=T))  (symmetric, 2 MHAs)  (9)
    z = MLP([mean_tokens(A_t) ; mean_tokens(A_v)])                       fused teacher feature (10)
    e_T = normalize(W_e z),  logits_T = W_p z                            teacher heads          (11)
F_thz is the student's own THz encoder map, detached by default (distill.teacher_trains_encoder);
F_vis comes from a visible-image encoder of the same design. Only samples that have a visible image
are ever passed here (the caller selects them with a mask); there are no zero placeholder images.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from training.model import N_POSTURES, Encoder, ModelConfig

N_TOKENS = 16  # 4 x 4 spatial positions of the c4 map


class DualCrossAttention(nn.Module):
    """THz tokens attend to visible tokens and visible to THz, each with its own MHA (d wide, h heads)."""

    def __init__(self, c_in: int, d: int, heads: int):
        super().__init__()
        if d % heads:
            raise ValueError(f"attention width {d=} must be divisible by {heads=}")
        self.proj_t = nn.Linear(c_in, d)
        self.proj_v = nn.Linear(c_in, d)
        self.pos = nn.Parameter(torch.zeros(1, N_TOKENS, d))
        nn.init.trunc_normal_(self.pos, std=0.02)
        self.attn_t = nn.MultiheadAttention(d, heads, batch_first=True)
        self.attn_v = nn.MultiheadAttention(d, heads, batch_first=True)
        self.norm_t = nn.LayerNorm(d)
        self.norm_v = nn.LayerNorm(d)

    @staticmethod
    def tokens(fmap: torch.Tensor) -> torch.Tensor:
        b, c, h, w = fmap.shape
        if h * w != N_TOKENS:
            raise ValueError(f"expected a 4x4 map ({N_TOKENS} tokens), got {h}x{w}")
        return fmap.flatten(2).transpose(1, 2)  # (B,16,C)

    def forward(self, f_thz: torch.Tensor, f_vis: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        t = self.proj_t(self.tokens(f_thz)) + self.pos                    # (B,16,d)
        v = self.proj_v(self.tokens(f_vis)) + self.pos                    # (B,16,d)
        a_t = self.norm_t(t + self.attn_t(t, v, v, need_weights=False)[0])
        a_v = self.norm_v(v + self.attn_v(v, t, t, need_weights=False)[0])
        return a_t, a_v


class Teacher(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        d, c4 = cfg.attn_dim, cfg.widths[4]
        self.visible_encoder = Encoder(cfg.widths, cfg.visible_channels)
        self.cross = DualCrossAttention(c4, d, cfg.attn_heads)
        self.fusion = nn.Sequential(nn.Linear(2 * d, d), nn.LeakyReLU(0.2, inplace=True), nn.Dropout(0.1),
                                    nn.Linear(d, d))
        self.verif = nn.Sequential(nn.Linear(d, d), nn.LeakyReLU(0.2, inplace=True), nn.Linear(d, cfg.embed_dim))
        self.posture = nn.Linear(d, N_POSTURES)

    def forward(self, f_thz: torch.Tensor, visible: torch.Tensor) -> dict[str, torch.Tensor]:
        """f_thz (B,c4,4,4) from the THz encoder, visible (B,Cv,64,64) in [0,1] -> z, embedding, logits."""
        f_vis, _ = self.visible_encoder(visible)                          # (B,c4,4,4)
        a_t, a_v = self.cross(f_thz, f_vis)
        z = self.fusion(torch.cat([a_t.mean(1), a_v.mean(1)], 1))          # (B,d)
        return {"z": z, "embedding": F.normalize(self.verif(z), dim=1), "posture_logits": self.posture(z)}

"""The THz multi-task network (Model A, and the student of Model B): config and whole network in one module.

Architecture after Bergman et al., Sensors 2026 (sec. 3), with facts from the authors' code:

    x (B,1,64,64) in [0,1]
      -> stem conv3x3 -> c0                                      (B,c0,64,64)   skip s0
      -> 4 residual stride-2 stages c1..c4 (BN, LeakyReLU 0.2)  (B,c1,32,32) s1, (B,c2,16,16) s2,
                                                                (B,c3,8,8) s3,  (B,c4,4,4) = F
      -> global average pool -> dropout 0.5 -> h (B,c4)
    verification head: MLP h -> 128, L2-normalised              e (B,128)
    posture head:      conv3x3 on F -> pool -> linear           logits (B,5)
    decoder (one expert per posture):
      1x1 conv F -> Residual Dense Block (5 convs, growth g, 1x1 fusion, residual)
      -> 4 x [conv -> PixelShuffle x2 -> concat skip -> conv]   -> conv -> sigmoid (B,1,64,64)

The authors route the decoder by the ground-truth posture even at test time; live there is no label,
so `route` selects the expert by the predicted posture (argmax), by the ground truth, or blends all
experts by the posture probabilities ("soft"). Every mode is reported by the evaluation. `predicted`
and `gt` run each expert only on the ROIs routed to it (one decoder per ROI); the exported graph
holds every expert behind a one-hot select (`decode_onehot`) and the engines run only the routed one.
Presets: `paper` (the paper's widths, 512-d tokens) and `compact` (trains on 2 CPU cores in minutes).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from thzcore.labels import POSTURES

N_POSTURES = len(POSTURES)
ROUTES = ("predicted", "gt", "soft")


@dataclass(frozen=True)
class ModelConfig:
    widths: tuple[int, int, int, int, int] = (64, 64, 128, 256, 512)  # stem c0, stages c1..c4
    embed_dim: int = 128          # verification embedding size
    rdb_growth: int = 32          # Residual Dense Block growth rate
    rdb_convs: int = 5            # convs in the Residual Dense Block
    decoder_width: int = 256      # channels after the decoder's 1x1 conv (the RDB width)
    posture_width: int = 256      # channels of the posture head's conv
    dropout: float = 0.5          # on the pooled 512-d (c4-d) vector
    attn_dim: int = 512           # teacher: token width of the dual cross-attention
    attn_heads: int = 8           # teacher: attention heads
    visible_channels: int = 3     # teacher: channels of the visible image
    preset: str = "paper"

    def to_dict(self) -> dict:
        d = asdict(self)
        d["widths"] = list(self.widths)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        d = dict(d)
        d["widths"] = tuple(d["widths"])
        return cls(**d)


PRESETS: dict[str, ModelConfig] = {
    "paper": ModelConfig(),
    "compact": ModelConfig(widths=(16, 16, 32, 64, 128), embed_dim=128, rdb_growth=16, decoder_width=64,
                           posture_width=64, attn_dim=128, attn_heads=4, preset="compact"),
}


def preset_config(name: str) -> ModelConfig:
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}") from None


def _act() -> nn.Module:
    return nn.LeakyReLU(0.2, inplace=True)


class ConvBNAct(nn.Sequential):
    def __init__(self, cin: int, cout: int, k: int = 3, stride: int = 1):
        super().__init__(nn.Conv2d(cin, cout, k, stride, k // 2, bias=False), nn.BatchNorm2d(cout), _act())


class ResidualDown(nn.Module):
    """Residual stage that halves H and W: conv3x3/2-BN-act-conv3x3-BN + (conv1x1/2-BN) shortcut, act."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, 2, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.short = nn.Sequential(nn.Conv2d(cin, cout, 1, 2, bias=False), nn.BatchNorm2d(cout))
        self.act = _act()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.act(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return self.act(y + self.short(x))


class Encoder(nn.Module):
    """U-Net-like encoder: returns the 4x4 map F and the skips [s0 (64x64), s1, s2, s3 (8x8)]."""

    def __init__(self, widths: tuple[int, ...], in_channels: int = 1):
        super().__init__()
        self.stem = ConvBNAct(in_channels, widths[0])
        self.stages = nn.ModuleList(ResidualDown(widths[i], widths[i + 1]) for i in range(4))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        y = self.stem(x)
        skips = [y]
        for stage in self.stages:
            y = stage(y)
            skips.append(y)
        return skips[-1], skips[:-1]  # (B,c4,4,4), [(B,c0,64,64), (B,c1,32,32), (B,c2,16,16), (B,c3,8,8)]


class ResidualDenseBlock(nn.Module):
    """RDB: n convs, each seeing the concat of the input and all earlier outputs (growth g), 1x1 fusion, residual."""

    def __init__(self, channels: int, growth: int, n_convs: int = 5):
        super().__init__()
        self.convs = nn.ModuleList(
            nn.Conv2d(channels + i * growth, growth, 3, 1, 1) for i in range(n_convs))
        self.fuse = nn.Conv2d(channels + n_convs * growth, channels, 1)
        self.act = _act()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = [x]
        for conv in self.convs:
            feats.append(self.act(conv(torch.cat(feats, 1))))
        return x + self.fuse(torch.cat(feats, 1))


class UpSkip(nn.Module):
    """x2 upsampling by PixelShuffle (conv to 4C, depth-to-space), concat the encoder skip, conv-BN-act."""

    def __init__(self, cin: int, cskip: int, cout: int):
        super().__init__()
        self.expand = nn.Conv2d(cin, 4 * cout, 3, 1, 1)
        self.shuffle = nn.PixelShuffle(2)
        self.merge = ConvBNAct(cout + cskip, cout)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.merge(torch.cat([self.shuffle(self.expand(x)), skip], 1))


class Decoder(nn.Module):
    """Reconstruction expert: 1x1 conv -> RDB -> 4 PixelShuffle x2 stages with skips -> sigmoid (B,1,64,64)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        w = cfg.widths
        self.reduce = nn.Conv2d(w[4], cfg.decoder_width, 1)
        self.rdb = ResidualDenseBlock(cfg.decoder_width, cfg.rdb_growth, cfg.rdb_convs)
        chans = [cfg.decoder_width, w[3], w[2], w[1], w[0]]
        self.ups = nn.ModuleList(UpSkip(chans[i], w[3 - i], chans[i + 1]) for i in range(4))
        self.out = nn.Conv2d(w[0], 1, 3, 1, 1)

    def forward(self, f: torch.Tensor, skips: list[torch.Tensor]) -> torch.Tensor:
        y = self.rdb(self.reduce(f))
        for up, skip in zip(self.ups, reversed(skips)):
            y = up(y, skip)
        return torch.sigmoid(self.out(y))


class MultiTaskNet(nn.Module):
    """Model A and the Model B student: THz encoder, verification and posture heads, per-posture decoders."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        c4 = cfg.widths[4]
        self.encoder = Encoder(cfg.widths, 1)
        self.drop = nn.Dropout(cfg.dropout)
        self.verif = nn.Sequential(nn.Linear(c4, c4), _act(), nn.Linear(c4, cfg.embed_dim))
        self.posture_conv = ConvBNAct(c4, cfg.posture_width)
        self.posture_fc = nn.Linear(cfg.posture_width, N_POSTURES)
        self.decoders = nn.ModuleList(Decoder(cfg) for _ in range(N_POSTURES))

    def encode(self, x: torch.Tensor) -> dict[str, torch.Tensor | list[torch.Tensor]]:
        """Encoder and heads (no decoder): feature map, pooled vector h, embedding, posture logits."""
        if x.dim() != 4 or x.shape[1:] != (1, 64, 64):
            raise ValueError(f"THz input must be (B, 1, 64, 64), got {tuple(x.shape)}")
        f, skips = self.encoder(x)                                   # (B,c4,4,4)
        h = self.drop(f.mean(dim=(2, 3)))                            # (B,c4)
        emb = F.normalize(self.verif(h), dim=1)                      # (B,E), |e| = 1
        logits = self.posture_fc(self.posture_conv(f).mean(dim=(2, 3)))  # (B,5)
        return {"fmap": f, "skips": skips, "h": h, "embedding": emb, "posture_logits": logits}

    def decode(self, f: torch.Tensor, skips: list[torch.Tensor], logits: torch.Tensor,
               route: str = "predicted", posture: torch.Tensor | None = None) -> torch.Tensor:
        """Reconstruction routed to the posture experts.

        `predicted` and `gt` run each expert on its own ROIs only (one decoder per ROI: the argmax of
        the posture logits, or the label); `soft` runs every expert and blends by the probabilities.
        """
        if route not in ROUTES:
            raise ValueError(f"route {route!r}: choose one of {ROUTES}")
        if route == "soft":
            w = logits.softmax(1)
            return (self.all_experts(f, skips) * w[:, :, None, None, None]).sum(1)
        if route == "gt":
            if posture is None:
                raise ValueError("route='gt' needs the ground-truth posture labels")
            return self.routed(f, skips, posture)
        return self.routed(f, skips, logits.argmax(1))

    def routed(self, f: torch.Tensor, skips: list[torch.Tensor], labels: torch.Tensor) -> torch.Tensor:
        """Expert `labels[i]` on ROI i, each expert run once on the ROIs routed to it (B,1,64,64)."""
        out = f.new_zeros(f.shape[0], 1, 64, 64)
        for k, dec in enumerate(self.decoders):
            idx = (labels == k).nonzero(as_tuple=True)[0]
            if idx.numel():
                out = out.index_copy(0, idx, dec(f[idx], [s[idx] for s in skips]))
        return out

    def all_experts(self, f: torch.Tensor, skips: list[torch.Tensor]) -> torch.Tensor:
        """Every expert on every ROI: (B, 5, 1, 64, 64)."""
        return torch.stack([dec(f, skips) for dec in self.decoders], 1)

    def decode_onehot(self, f: torch.Tensor, skips: list[torch.Tensor], logits: torch.Tensor) -> torch.Tensor:
        """The exported form of `predicted`: every expert runs, an argmax one-hot keeps one.

        No data-dependent control flow, so it exports to one static ONNX graph that holds every expert;
        the inference engines cut that graph into a trunk and one graph per expert and run only the
        routed one (inference.engines.routing). Equal to `decode(route="predicted")`.
        """
        w = F.one_hot(logits.argmax(1), N_POSTURES).to(f.dtype)
        return (self.all_experts(f, skips) * w[:, :, None, None, None]).sum(1)

    def forward(self, x: torch.Tensor, route: str = "predicted", posture: torch.Tensor | None = None,
                reconstruct: bool = True) -> dict[str, torch.Tensor]:
        out = self.encode(x)
        if reconstruct:
            out["reconstruction"] = self.decode(out["fmap"], out["skips"], out["posture_logits"], route, posture)
        return out


class ExportWrapper(nn.Module):
    """The exported graph: `thz` -> (embedding, posture_logits, reconstruction routed by argmax posture).

    The graph holds every expert (`decode_onehot`); the engines run only the routed one.
    """

    def __init__(self, net: MultiTaskNet):
        super().__init__()
        self.net = net

    def forward(self, thz: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        out = self.net.encode(thz)
        rec = self.net.decode_onehot(out["fmap"], out["skips"], out["posture_logits"])
        return out["embedding"], out["posture_logits"], rec


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())

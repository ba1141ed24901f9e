"""Perceptual term of the reconstruction loss: LPIPS-VGG when its weights are on disk, else a gradient fallback.

LPIPS (Zhang et al., CVPR 2018): VGG16 features at relu1_2, relu2_2, relu3_3, relu4_3, relu5_3, each
unit-normalised over channels, squared difference weighted by a learned 1x1 "lin" layer, spatial mean,
summed over the five taps. The ImageNet weights cannot be downloaded on this project's machines, so:

  * `training.lpips_weights` names a local file (torch.save of a plain state dict, loaded with
    weights_only=True) with torchvision's VGG16 keys `features.<i>.weight|bias` and LPIPS's
    `lin<k>.model.1.weight` (k = 0..4): merge torchvision's vgg16 state dict with lpips' `vgg.pth`.
    Input scaling is LPIPS's own: x in [0, 1] -> 2x - 1, grey replicated to 3 channels, then
    (x - shift) / scale with shift = (-.030, -.088, -.188), scale = (.458, .448, .450).
  * otherwise (the default) a warning is issued once and the fallback is used: the multi-scale edge
    loss  mean_s mean_px (|dGx| + |dGy|), Sobel gradients (kernel / 8) of prediction and target at
    scales 1, 1/2, 1/4 (2x2 average pooling, replicate padding). It rewards sharp, well-placed edges,
    which Charbonnier and SSIM alone tend to blur; it is NOT LPIPS and results say which one was used.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from thzcore.logs import get_logger

log = get_logger(__name__)

# VGG16 `features` indices: conv layers and the ReLU index after which each LPIPS tap is read
_VGG16_CFG = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512]
_TAPS = (3, 8, 15, 22, 29)                     # relu1_2, relu2_2, relu3_3, relu4_3, relu5_3
_TAP_CHANNELS = (64, 128, 256, 512, 512)
_SHIFT = (-0.030, -0.088, -0.188)
_SCALE = (0.458, 0.448, 0.450)
_warned = False


class _Lin(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.model = nn.Sequential(nn.Dropout(0.0), nn.Conv2d(c, 1, 1, bias=False))


class LPIPSVGG(nn.Module):
    """LPIPS with a VGG16 trunk; frozen, gradient flows to the input (unlike one of the authors' models)."""

    def __init__(self):
        super().__init__()
        layers: list[nn.Module] = []
        cin = 3
        for v in _VGG16_CFG:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(cin, v, 3, 1, 1), nn.ReLU(inplace=False)]
                cin = v
        self.features = nn.Sequential(*layers)
        for k, c in enumerate(_TAP_CHANNELS):
            self.add_module(f"lin{k}", _Lin(c))
        self.register_buffer("shift", torch.tensor(_SHIFT).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor(_SCALE).view(1, 3, 1, 1))
        self.requires_grad_(False)
        self.eval()

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        def prep(t: torch.Tensor) -> torch.Tensor:
            t = (2.0 * t - 1.0).expand(-1, 3, -1, -1)
            return (t - self.shift) / self.scale

        fx, fy = prep(x), prep(y)
        total = x.new_zeros(())
        k = 0
        for i, layer in enumerate(self.features):
            fx, fy = layer(fx), layer(fy)
            if i in _TAPS:
                nx = fx / (fx.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
                ny = fy / (fy.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
                lin = getattr(self, f"lin{k}").model[1]
                total = total + lin((nx - ny) ** 2).mean()
                k += 1
                if k == len(_TAPS):
                    break
        return total

    def train(self, mode: bool = True) -> "LPIPSVGG":
        return super().train(False)  # always frozen, whatever the parent's mode


class EdgeLoss(nn.Module):
    """Fallback perceptual term: multi-scale Sobel-gradient L1 (see the module docstring)."""

    def __init__(self, scales: tuple[int, ...] = (1, 2, 4)):
        super().__init__()
        self.scales = scales
        sx = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]]) / 8.0
        self.register_buffer("kernel", torch.stack([sx, sx.T]).unsqueeze(1))  # (2,1,3,3): d/dx, d/dy

    def gradients(self, t: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.pad(t, (1, 1, 1, 1), mode="replicate"), self.kernel)  # (B,2,H,W)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        total = x.new_zeros(())
        for s in self.scales:
            xs, ys = (x, y) if s == 1 else (F.avg_pool2d(x, s), F.avg_pool2d(y, s))
            total = total + (self.gradients(xs) - self.gradients(ys)).abs().sum(1).mean()
        return total / len(self.scales)


def build_perceptual(weights_path: str | Path | None) -> tuple[nn.Module, str]:
    """LPIPS-VGG from a local state dict when given and present, else the edge fallback (warned once)."""
    global _warned
    if weights_path:
        p = Path(weights_path)
        if p.is_file():
            net = LPIPSVGG()
            state = torch.load(p, map_location="cpu", weights_only=True)
            missing, unexpected = net.load_state_dict(state, strict=False)
            missing = [m for m in missing if m not in ("shift", "scale")]
            if missing or unexpected:
                raise ValueError(f"{p}: not an LPIPS-VGG state dict "
                                 f"(missing {missing[:4]}, unexpected {unexpected[:4]})")
            log.info("perceptual loss: LPIPS-VGG", extra={"weights": str(p)})
            return net, "lpips-vgg"
        msg = f"LPIPS weights {str(p)!r} not found"
    else:
        msg = "no LPIPS weights configured (training.lpips_weights)"
    if not _warned:
        warnings.warn(f"{msg}; using the multi-scale Sobel edge loss as the perceptual term instead",
                      RuntimeWarning, stacklevel=2)
        _warned = True
    return EdgeLoss(), "edge-fallback"

"""A tiny student-shaped network exported to the bundle contract (thzcore/bundle.py), for tests only."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn
import torch.nn.functional as F

from thzcore.bundle import ONNX_NAME, BundleManifest, Normalisation, file_model_id, write_manifest


class _Res(nn.Module):
    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, 2, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.skip = nn.Conv2d(c_in, c_out, 1, 2, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.leaky_relu(self.bn1(self.conv1(x)), 0.2)
        return F.leaky_relu(self.bn2(self.conv2(y)) + self.skip(x), 0.2)


class TinyStudent(nn.Module):
    """(B, 1, 64, 64) -> embedding (B, E) L2-normalised, posture_logits (B, 5), reconstruction (B, 1, 64, 64)."""

    def __init__(self, width: int = 8, embedding: int = 128) -> None:
        super().__init__()
        w = width
        self.stem = nn.Conv2d(1, w, 3, 1, 1)
        self.s1, self.s2 = _Res(w, 2 * w), _Res(2 * w, 4 * w)          # 32x32, 16x16
        self.emb = nn.Sequential(nn.Linear(4 * w, 64), nn.LeakyReLU(0.2), nn.Linear(64, embedding))
        self.posture = nn.Linear(4 * w, 5)
        self.dec_in = nn.Conv2d(4 * w, 8 * w, 1)
        self.up1 = nn.Sequential(nn.Conv2d(8 * w, 8 * w, 3, 1, 1), nn.PixelShuffle(2))  # 2w x 32x32
        self.up2 = nn.Sequential(nn.Conv2d(4 * w, 4, 3, 1, 1), nn.PixelShuffle(2))      # 1 x 64x64

    def forward(self, x: torch.Tensor):
        f0 = F.leaky_relu(self.stem(x), 0.2)      # (B, w, 64, 64)
        f1 = self.s1(f0)                          # (B, 2w, 32, 32)
        f2 = self.s2(f1)                          # (B, 4w, 16, 16)
        v = f2.mean(dim=(2, 3))                   # (B, 4w)
        embedding = F.normalize(self.emb(v), dim=1)
        logits = self.posture(v)
        d = self.up1(self.dec_in(f2))             # (B, 2w, 32, 32)
        recon = torch.sigmoid(self.up2(torch.cat([d, f1], dim=1)))
        return embedding, logits, recon


def make_model(seed: int = 0) -> TinyStudent:
    torch.manual_seed(seed)
    m = TinyStudent()
    with torch.no_grad():  # non-trivial BN statistics so folding is exercised
        for mod in m.modules():
            if isinstance(mod, nn.BatchNorm2d):
                mod.running_mean.uniform_(-0.1, 0.1)
                mod.running_var.uniform_(0.5, 1.5)
    return m.eval()


def export_bundle(out: Path, seed: int = 0, threshold: float = 0.4, mean: float = 0.0, std: float = 1.0) -> Path:
    """Export the tiny model to `out` as a bundle; returns the directory."""
    out.mkdir(parents=True, exist_ok=True)
    model = make_model(seed)
    x = torch.rand(2, 1, 64, 64, generator=torch.Generator().manual_seed(1))
    torch.onnx.export(model, (x,), str(out / ONNX_NAME), input_names=["thz"],
                      output_names=["embedding", "posture_logits", "reconstruction"],
                      dynamic_shapes={"x": {0: torch.export.Dim("batch", min=1, max=256)}},
                      opset_version=20, dynamo=True, external_data=False)
    write_manifest(out, BundleManifest(model_id=file_model_id(out / ONNX_NAME), preset="tiny-test",
                                       verification_threshold=threshold,
                                       normalisation=Normalisation(mean=mean, std=std),
                                       threshold_source="test fixture"))
    return out


def torch_reference(x: np.ndarray, seed: int = 0) -> dict[str, np.ndarray]:
    """Run the same weights in torch eager on the normalised input x (B, 1, 64, 64)."""
    with torch.no_grad():
        e, p, r = make_model(seed)(torch.from_numpy(x))
    return {"embedding": e.numpy(), "posture_logits": p.numpy(), "reconstruction": r.numpy()}

"""The project's own multi-task network (training.model), shrunk, exported by training.export: a bundle whose
graph holds one reconstruction expert per posture, as the shipped bundles do. For the routing tests."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from thzcore.bundle import ONNX_NAME, BundleManifest, file_model_id, write_manifest
from training.export import export_onnx
from training.model import ModelConfig, MultiTaskNet

MICRO = ModelConfig(widths=(4, 4, 8, 8, 16), embed_dim=16, rdb_growth=4, decoder_width=8, posture_width=8,
                    preset="micro")


def varied_rois(seed: int, n: int) -> np.ndarray:
    """Seeded ROIs (n, 64, 64) in [0, 1] whose statistics differ (uniform noise to a per-ROI power)."""
    rng = np.random.default_rng(seed)
    return rng.random((n, 64, 64), dtype=np.float32) ** rng.uniform(0.2, 3.0, (n, 1, 1)).astype(np.float32)


def make_net(seed: int = 0) -> MultiTaskNet:
    """Seeded weights; the posture head re-centred on seeded ROIs so that ROIs spread over the postures."""
    torch.manual_seed(seed)
    net = MultiTaskNet(MICRO).eval()
    with torch.no_grad():
        for mod in net.modules():
            if isinstance(mod, torch.nn.BatchNorm2d):  # non-trivial statistics so folding is exercised
                mod.running_mean.uniform_(-0.1, 0.1)
                mod.running_var.uniform_(0.5, 1.5)
        x = torch.from_numpy(varied_rois(seed + 99, 64)[:, None])
        p = net.posture_conv(net.encoder(x)[0]).mean(dim=(2, 3))          # what the posture fc reads
        w = 3.0 * net.posture_fc.weight / p.std(0)[None]
        net.posture_fc.weight.copy_(w)
        net.posture_fc.bias.copy_(-w @ p.mean(0))
    return net


def export_expert_bundle(out: Path, seed: int = 0) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    net = make_net(seed)
    export_onnx(net, out / ONNX_NAME)
    write_manifest(out, BundleManifest(model_id=file_model_id(out / ONNX_NAME), preset="micro", embedding_size=16,
                                       verification_threshold=0.4, threshold_source="test fixture"))
    return out


def torch_outputs(net: MultiTaskNet, x, route: str) -> dict:
    with torch.no_grad():
        o = net(torch.from_numpy(x), route=route)
    return {k: o[k].numpy() for k in ("embedding", "posture_logits", "reconstruction")}

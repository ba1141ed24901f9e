"""Predictors (a torch run or an ONNX bundle) and the assembly of every metric on a dataset split.

A run directory holds `best.pt` (state dicts only, loaded with weights_only=True) and `config.json`;
a bundle directory holds `model.onnx` + `manifest.json` and is run with ONNX Runtime. Both give the
same three outputs for a batch of THz ROIs: embedding, posture logits, reconstruction. A bundle routes
its decoder by the predicted posture inside the graph, so ground-truth routing exists for runs only.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from training.data import ThzData, TripletIndex
from training.distill import ModelB
from training.metrics import posture_metrics, protocol_metrics, reconstruction_metrics
from training.model import ModelConfig, MultiTaskNet

BEST = "best.pt"
LAST = "checkpoint_last.pt"
RUN_CONFIG = "config.json"


def build_model(kind: str, mcfg: ModelConfig) -> torch.nn.Module:
    if kind == "a":
        return MultiTaskNet(mcfg)
    if kind == "b":
        return ModelB(mcfg)
    raise ValueError(f"model kind {kind!r}: choose 'a' (multi-task) or 'b' (distilled student)")


def load_checkpoint(path: str | Path) -> dict:
    """torch.load with weights_only=True: tensors, numbers, strings, lists and dicts only (no pickle code)."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"checkpoint {p} does not exist")
    return torch.load(p, map_location="cpu", weights_only=True)


def load_run(run_dir: str | Path, which: str = BEST) -> tuple[MultiTaskNet, dict]:
    """The THz network (Model A, or Model B's student) of a run, in eval mode, and the checkpoint's facts."""
    ck = load_checkpoint(Path(run_dir) / which)
    model = build_model(ck["kind"], ModelConfig.from_dict(ck["model_config"]))
    model.load_state_dict(ck["model"])
    net = model.student if isinstance(model, ModelB) else model
    net.eval()
    info = {k: v for k, v in ck.items() if k not in ("model", "optimizer")}
    return net, info


def is_bundle(path: str | Path) -> bool:
    return (Path(path) / "model.onnx").is_file()


class TorchPredictor:
    def __init__(self, net: MultiTaskNet, batch_size: int = 128):
        self.net, self.batch_size = net, batch_size
        self.routes = ("predicted", "gt", "soft")

    @torch.no_grad()
    def __call__(self, images: np.ndarray, route: str = "predicted", posture: np.ndarray | None = None,
                 reconstruct: bool = True) -> dict[str, np.ndarray]:
        was = self.net.training
        self.net.eval()
        outs: dict[str, list[np.ndarray]] = {}
        for s in range(0, len(images), self.batch_size):
            x = torch.from_numpy(np.ascontiguousarray(images[s:s + self.batch_size]))
            p = None if posture is None else torch.from_numpy(posture[s:s + self.batch_size])
            o = self.net(x, route=route, posture=p, reconstruct=reconstruct)
            for k in ("embedding", "posture_logits", "reconstruction"):
                if k in o:
                    outs.setdefault(k, []).append(o[k].numpy())
        self.net.train(was)
        return {k: np.concatenate(v) for k, v in outs.items()}


class OnnxPredictor:
    """ONNX Runtime on a bundle (spinning off: the CPU is shared with Numba stages)."""

    def __init__(self, bundle_dir: str | Path, threads: int = 2, batch_size: int = 64):
        import onnxruntime as ort

        from thzcore.bundle import ONNX_NAME, read_manifest
        self.manifest = read_manifest(bundle_dir)
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(str(Path(bundle_dir) / ONNX_NAME), so, providers=["CPUExecutionProvider"])
        self.batch_size = batch_size
        self.routes = ("predicted",)

    def __call__(self, images: np.ndarray, route: str = "predicted", posture: np.ndarray | None = None,
                 reconstruct: bool = True) -> dict[str, np.ndarray]:
        if route != "predicted":
            raise ValueError(f"a bundle routes its decoder by the predicted posture; route {route!r} needs a run")
        n = self.manifest.normalisation
        outs: dict[str, list[np.ndarray]] = {"embedding": [], "posture_logits": [], "reconstruction": []}
        for s in range(0, len(images), self.batch_size):
            x = ((images[s:s + self.batch_size] - n.mean) / n.std).astype(np.float32)
            e, lg, r = self.session.run(["embedding", "posture_logits", "reconstruction"], {"thz": x})
            outs["embedding"].append(e)
            outs["posture_logits"].append(lg)
            outs["reconstruction"].append(r)
        return {k: np.concatenate(v) for k, v in outs.items()}


def predictor_for(path: str | Path, threads: int = 2):
    """TorchPredictor for a run directory, OnnxPredictor for a bundle directory; plus a description."""
    p = Path(path)
    if is_bundle(p):
        pr = OnnxPredictor(p, threads)
        tc = pr.manifest.training_config
        return pr, {"source": "bundle", "path": str(p), "kind": tc.get("kind", "b"), "model_id": pr.manifest.model_id,
                    "preset": pr.manifest.preset, "heldout_identities": tc.get("heldout_identities", [])}
    if (p / BEST).is_file():
        net, info = load_run(p)
        return TorchPredictor(net), {"source": "run", "path": str(p), "kind": info["kind"],
                                     "preset": info["model_config"]["preset"], "epoch": info.get("epoch"),
                                     "heldout_identities": list(info.get("heldout_identities", []))}
    raise FileNotFoundError(f"{p} is neither a run directory (with {BEST}) nor a model bundle (with model.onnx)")


def split_protocol(data: ThzData, splits: tuple[str, ...]) -> tuple[np.ndarray, TripletIndex, np.ndarray, np.ndarray]:
    """The images of `splits` and their triplets.

    Returns (THz indices idx, the TripletIndex, its anchors and targets as rows of idx).
    """
    idx = data.select(splits)
    if len(idx) == 0:
        raise ValueError(f"the dataset has no THz image in splits {splits}")
    tri = TripletIndex.build(data, splits)
    pos_of = {int(i): k for k, i in enumerate(idx)}          # THz index -> row of idx
    local = lambda a: np.array([pos_of[int(i)] for i in a], np.int64)  # noqa: E731
    return idx, tri, local(tri.anchors), local(tri.target)


def evaluate_split(predict, data: ThzData, splits: tuple[str, ...], routes: tuple[str, ...] | None = None,
                   keep_outputs: bool = False) -> dict:
    """Every metric of `training.metrics` on the THz images of `splits` (see that module for definitions).

    The main reconstruction numbers use the predicted-posture routing (what runs live); the other
    routings available to the predictor are reported as ssim_<route> / psnr_<route>.
    """
    idx, tri, anchors, targets = split_protocol(data, splits)
    out = predict(data.images[idx], reconstruct=False)
    ident, post, conc = data.identity[idx], data.posture[idx], data.concealed[idx]
    emb = out["embedding"]
    m: dict = {"split": "+".join(splits), "n_images": int(len(idx)), "n_anchors": int(len(anchors)),
               "distance": "cosine"}
    m.update(protocol_metrics(emb, ident, post, conc, anchors, targets,
                              predicted_posture=np.asarray(out["posture_logits"]).argmax(1)))
    m.update(posture_metrics(out["posture_logits"], post))
    x_a, y_a, p_a = data.images[tri.anchors], data.images[tri.target], data.posture[tri.anchors]
    recs = {}
    for route in routes or getattr(predict, "routes", ("predicted",)):
        r = predict(x_a, route=route, posture=p_a)["reconstruction"]
        recs[route] = r
        rm = reconstruction_metrics(r, y_a, p_a)
        if route == "predicted":
            m.update(rm)
        else:
            m[f"ssim_{route}_routing"], m[f"psnr_{route}_routing"] = rm["ssim"], rm["psnr"]
    if keep_outputs:
        m["_outputs"] = {"idx": idx, "embedding": emb, "posture_logits": out["posture_logits"],
                         "anchors": tri.anchors, "targets": tri.target, "reconstructions": recs}
    return m


def headline(m: dict) -> dict:
    """The flat numeric subset of `evaluate_split` (for CSV rows and JSON lines)."""
    return {k: v for k, v in m.items() if isinstance(v, (int, float)) and not k.startswith("_")}

"""The training loop: seeded epochs, validation, model selection, early stopping, checkpoints and resume.

Run directory:
    config.json          kind, preset, model config, training config, dataset provenance, perceptual term
    metrics.csv          one row per epoch: lr, train losses (epoch means), val loss and val metrics, seconds
    loss_curve.png       train / val loss and the watched validation metric
    checkpoint_last.pt   everything needed to resume (model, optimizer, epoch, early-stop state, history)
    best.pt              the model at the best value of `training.early_stop.metric`
Checkpoints are torch.save of plain dicts of state dicts and numbers; they load with weights_only=True.
Reproducibility: epoch e draws its batches from Generator((seed, e)), its augmentations from
Generator((seed, e, 1)) and reseeds torch (dropout) with (seed, e), so a resumed run repeats exactly
the epochs an uninterrupted one would have run.
"""
from __future__ import annotations

import csv
import json
import math
import time
from pathlib import Path

import numpy as np
import torch

from thzcore.logs import get_logger
from training.batches import make_batch
from training.config import TrainingConfig
from training.data import ThzData, TripletIndex
from training.distill import ModelB
from training.model import count_parameters, preset_config
from training.objective import IdentityClassifier, model_a_loss, model_b_loss
from training.perceptual import build_perceptual
from training.predict import BEST, LAST, RUN_CONFIG, TorchPredictor, build_model, evaluate_split, load_checkpoint
from training.sampler import BalancedTripletSampler

log = get_logger(__name__)
VAL_KEYS = ("triplet_accuracy", "posture_accuracy", "ssim", "psnr", "roc_auc", "eer", "avg_positive_distance",
            "avg_negative_distance")


def lr_at(step: int, total: int, warmup: int, cfg: TrainingConfig) -> float:
    """Linear warm-up over `warmup` steps, then cosine decay from lr to lr_min_factor * lr at `total`."""
    if warmup and step < warmup:
        return cfg.lr * (step + 1) / warmup
    frac = (step - warmup) / max(1, total - warmup)
    lo = cfg.lr * cfg.lr_min_factor
    return lo + 0.5 * (cfg.lr - lo) * (1.0 + math.cos(math.pi * min(1.0, frac)))


class Trainer:
    def __init__(self, data: ThzData, kind: str, cfg: TrainingConfig, out: str | Path, progress: bool = True):
        self.data, self.kind, self.cfg, self.out = data, kind, cfg, Path(out)
        self.progress = progress
        self.heldout = data.hold_out(cfg.holdout_identities)
        torch.set_num_threads(cfg.num_threads)
        torch.manual_seed(cfg.seed)
        self.mcfg = preset_config(cfg.preset)
        self.model = build_model(kind, self.mcfg)
        self.net = self.model.student if isinstance(self.model, ModelB) else self.model
        self.objective = model_b_loss if kind == "b" else model_a_loss
        self.perceptual, self.perceptual_name = build_perceptual(cfg.lpips_weights)
        self.train_index = TripletIndex.build(data, ("train",))
        self.val_index = TripletIndex.build(data, ("val",))
        self.sampler = BalancedTripletSampler(self.train_index, cfg.batch_identities, cfg.batch_per_identity,
                                              cfg.seed)
        # validation batches: fixed (no augmentation, one deterministic epoch of the val sampler)
        val_sampler = BalancedTripletSampler(self.val_index, cfg.batch_identities, cfg.batch_per_identity,
                                             cfg.seed)
        vrng = np.random.default_rng([cfg.seed, 0, 2])
        self.val_batches = [make_batch(self.val_index, tb, None, vrng) for tb in val_sampler.epoch(0)]
        # CosFace class vectors of the identities trained on (a training-only head, not in the bundle)
        self.identity_head = (IdentityClassifier(data.identity[data.select(("train",))], self.mcfg.embed_dim)
                              if cfg.loss.identity > 0 else None)
        params = list(self.model.parameters()) + (list(self.identity_head.parameters()) if self.identity_head else [])
        self.opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.epoch = 0
        self.step = 0
        self.best_value: float | None = None
        self.best_epoch = -1
        self.bad_epochs = 0
        self.history: list[dict] = []

    # ---- checkpoints -------------------------------------------------------------------------------
    def _facts(self) -> dict:
        return {"kind": self.kind, "model_config": self.mcfg.to_dict(),
                "training_config": self.cfg.model_dump(mode="json"), "perceptual": self.perceptual_name,
                "heldout_identities": self.heldout}

    def save(self, path: Path, full: bool) -> None:
        ck = {**self._facts(), "epoch": self.epoch, "model": self.model.state_dict()}
        if full:
            if self.identity_head is not None:
                ck["identity_head"] = self.identity_head.state_dict()
            ck.update(optimizer=self.opt.state_dict(), step=self.step, best_value=self.best_value,
                      best_epoch=self.best_epoch, bad_epochs=self.bad_epochs, history=self.history)
        else:
            ck["metrics"] = self.history[-1] if self.history else {}
        tmp = path.with_suffix(".tmp")
        torch.save(ck, tmp)
        tmp.replace(path)  # atomic: a kill mid-save leaves the previous checkpoint intact

    def resume(self) -> bool:
        p = self.out / LAST
        if not p.is_file():
            return False
        ck = load_checkpoint(p)
        if ck["kind"] != self.kind or ck["model_config"] != self.mcfg.to_dict():
            raise ValueError(f"{p} holds a model {ck['kind']!r}/{ck['model_config']['preset']!r}, "
                             f"not {self.kind!r}/{self.mcfg.preset!r}: use another --out or the same settings")
        self.model.load_state_dict(ck["model"])
        if (self.identity_head is None) != ("identity_head" not in ck):
            raise ValueError(f"{p} was trained {'with' if 'identity_head' in ck else 'without'} the identity loss "
                             f"(training.loss.identity): resume it with the same setting")
        if self.identity_head is not None:
            self.identity_head.load_state_dict(ck["identity_head"])
        self.opt.load_state_dict(ck["optimizer"])
        self.epoch, self.step = int(ck["epoch"]), int(ck["step"])
        self.best_value, self.best_epoch = ck["best_value"], int(ck["best_epoch"])
        self.bad_epochs, self.history = int(ck["bad_epochs"]), list(ck["history"])
        log.info("resumed", extra={"run": str(self.out), "epoch": self.epoch, "best_epoch": self.best_epoch})
        return True

    # ---- one epoch -----------------------------------------------------------------------------------
    def train_epoch(self, total_steps: int) -> dict[str, float]:
        from tqdm import tqdm
        cfg = self.cfg
        torch.manual_seed(int(np.random.default_rng([cfg.seed, self.epoch, 3]).integers(2**62)))
        rng = np.random.default_rng([cfg.seed, self.epoch, 1])
        self.model.train()
        sums: dict[str, float] = {}
        batches = self.sampler.epoch(self.epoch)
        warmup = cfg.warmup_epochs * len(self.sampler)
        bar = tqdm(batches, desc=f"epoch {self.epoch + 1}", leave=False, disable=not self.progress, unit="batch")
        for tb in bar:
            lr = lr_at(self.step, total_steps, warmup, cfg)
            for g in self.opt.param_groups:
                g["lr"] = lr
            batch = make_batch(self.train_index, tb, cfg.augment, rng)
            loss, parts, _ = self.objective(self.model, batch, cfg, self.perceptual, self.identity_head)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"loss became {float(loss)} at epoch {self.epoch + 1}, step {self.step}: "
                                         f"parts {parts}; lower training.lr")
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.opt.param_groups[0]["params"], cfg.grad_clip)
            self.opt.step()
            self.step += 1
            parts["loss"] = float(loss.detach())
            for k, v in parts.items():
                sums[k] = sums.get(k, 0.0) + v
            bar.set_postfix(loss=f"{float(loss.detach()):.3f}")
        return {f"train_{k}": v / len(batches) for k, v in sums.items()} | {"lr": lr}

    @torch.no_grad()
    def recalibrate_bn(self) -> None:
        """Precise BN: re-estimate BatchNorm running statistics with the epoch's final weights.

        The default exponential average (momentum 0.1) still remembers its initial values and the
        early weights after a few dozen steps, which makes eval-mode outputs drift from train-mode
        ones on small datasets. Here they become the plain average over `bn_batches` training batches.
        """
        n = min(self.cfg.bn_batches, len(self.sampler))
        if n == 0:
            return
        bns = [m for m in self.model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
        saved = [m.momentum for m in bns]
        for m in bns:
            m.reset_running_stats()
            m.momentum = None  # cumulative average
        rng = np.random.default_rng([self.cfg.seed, self.epoch, 4])
        self.model.train()
        for tb in self.sampler.epoch(10_000 + self.epoch)[:n]:
            self.objective(self.model, make_batch(self.train_index, tb, self.cfg.augment, rng), self.cfg,
                           self.perceptual)
        for m, mom in zip(bns, saved):
            m.momentum = mom

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        self.model.eval()
        tot = 0.0
        for b in self.val_batches:
            loss, _, _ = self.objective(self.model, b, self.cfg, self.perceptual, self.identity_head)
            tot += float(loss)
        m = evaluate_split(TorchPredictor(self.net), self.data, ("val",), routes=("predicted",))
        return {"val_loss": tot / len(self.val_batches)} | {f"val_{k}": float(m[k]) for k in VAL_KEYS}

    # ---- the loop ------------------------------------------------------------------------------------
    def fit(self, stop_after: int | None = None) -> dict:
        """Train until cfg.epochs, early stopping, or `stop_after` epochs in this call (an interruption)."""
        cfg = self.cfg
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / RUN_CONFIG).write_text(json.dumps(
            self._facts() | {"dataset": self.data.provenance(), "parameters": count_parameters(self.net),
                             "parameters_with_teacher": count_parameters(self.model),
                             "torch": torch.__version__, "threads": cfg.num_threads}, indent=2))
        total_steps = cfg.epochs * len(self.sampler)
        watch, mode = cfg.early_stop.metric, cfg.early_stop.mode
        log.info("training", extra={"kind": self.kind, "preset": cfg.preset, "epochs": cfg.epochs,
                                    "anchors": len(self.train_index), "batches_per_epoch": len(self.sampler),
                                    "parameters": count_parameters(self.model), "perceptual": self.perceptual_name})
        patience = cfg.early_stop.patience
        last = cfg.epochs if stop_after is None else min(cfg.epochs, self.epoch + stop_after)
        while self.epoch < last and self.bad_epochs < patience:
            t0, c0 = time.perf_counter(), time.process_time()
            row = {"epoch": self.epoch + 1} | self.train_epoch(total_steps)
            self.recalibrate_bn()
            t_train = time.perf_counter() - t0
            row |= self.validate()
            # wall time depends on what else runs on the machine; process CPU time (all threads) less so
            row |= {"train_seconds": t_train, "epoch_seconds": time.perf_counter() - t0,
                    "epoch_cpu_seconds": time.process_time() - c0}
            self.history.append(row)
            value = row[f"val_{watch}"]
            better = (self.best_value is None
                      or (value < self.best_value - cfg.early_stop.min_delta if mode == "min"
                          else value > self.best_value + cfg.early_stop.min_delta))
            self.epoch += 1
            if better:
                self.best_value, self.best_epoch, self.bad_epochs = value, self.epoch, 0
                self.save(self.out / BEST, full=False)
            else:
                self.bad_epochs += 1
            self.save(self.out / LAST, full=True)
            self.write_metrics()
            log.info("epoch", extra={k: round(v, 5) if isinstance(v, float) else v for k, v in row.items()
                                     if k in ("epoch", "train_loss", "val_loss", "val_triplet_accuracy",
                                              "val_posture_accuracy", "val_ssim", "epoch_seconds")})
            if self.bad_epochs >= patience:
                log.info("early stop", extra={"metric": watch, "best_epoch": self.best_epoch, "patience": patience})
        self.plot()
        return {"run": str(self.out), "kind": self.kind, "preset": cfg.preset, "epochs_run": self.epoch,
                "best_epoch": self.best_epoch, f"best_val_{watch}": self.best_value,
                "stopped_early": self.bad_epochs >= patience,
                "mean_epoch_seconds": float(np.mean([h["epoch_seconds"] for h in self.history]))
                if self.history else None,
                "mean_epoch_cpu_seconds": float(np.mean([h.get("epoch_cpu_seconds", np.nan) for h in self.history]))
                if self.history else None}

    def write_metrics(self) -> None:
        keys: list[str] = []
        for h in self.history:
            keys += [k for k in h if k not in keys]
        with (self.out / "metrics.csv").open("w", newline="") as fh:
            w = csv.DictWriter(fh, keys)
            w.writeheader()
            w.writerows(self.history)

    def plot(self) -> None:
        if not self.history:
            return
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        ep = [h["epoch"] for h in self.history]
        fig, ax = plt.subplots(1, 2, figsize=(10, 4))
        ax[0].plot(ep, [h["train_loss"] for h in self.history], label="train")
        ax[0].plot(ep, [h["val_loss"] for h in self.history], label="val")
        ax[0].set_xlabel("epoch")
        ax[0].set_ylabel("loss")
        ax[0].legend()
        for k in ("val_triplet_accuracy", "val_posture_accuracy", "val_ssim", "val_roc_auc"):
            ax[1].plot(ep, [h[k] for h in self.history], label=k[4:])
        ax[1].axvline(self.best_epoch, color="grey", ls=":", label=f"best ({self.cfg.early_stop.metric})")
        ax[1].set_xlabel("epoch")
        ax[1].legend(fontsize=8)
        ax[1].set_title("validation")
        fig.suptitle(f"Model {self.kind.upper()} ({self.cfg.preset})")
        fig.tight_layout()
        fig.savefig(self.out / "loss_curve.png", dpi=100)
        plt.close(fig)


def train(data_dir: str | Path, out: str | Path, kind: str, cfg: TrainingConfig, resume: bool = False,
          progress: bool = True) -> dict:
    """Train Model `kind` ('a' or 'b') on the dataset at data_dir into run directory `out`."""
    data = ThzData.load(data_dir, preset_config(cfg.preset).visible_channels)
    t = Trainer(data, kind, cfg, out, progress)
    if resume:
        if not t.resume():
            log.info("nothing to resume: starting from scratch", extra={"run": str(out)})
    elif (Path(out) / LAST).exists():
        raise FileExistsError(f"{out} already holds a run; pass --resume to continue it or choose another --out")
    return t.fit()

"""The `training` config section: preset, optimisation, sampling, loss weights, distillation, early stopping."""
from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from thzcore.config import Section


class LossWeights(Section):
    """Weights of the multi-task objective L = w_supcon L_supcon + w_posture L_ce + w_rec L_rec.

    L_rec = charbonnier * Charbonnier + ssim * (1 - SSIM) + perceptual * (LPIPS or its fallback).
    """

    supcon: float = Field(1.0, ge=0, description="weight of the supervised contrastive loss (verification)")
    posture: float = Field(1.0, ge=0, description="weight of the posture cross-entropy")
    reconstruction: float = Field(1.0, ge=0, description="weight of the whole reconstruction loss")
    charbonnier: float = Field(1.0, ge=0, description="weight of the Charbonnier term inside L_rec")
    ssim: float = Field(1.0, ge=0, description="weight of the (1 - SSIM) term inside L_rec")
    perceptual: float = Field(0.1, ge=0, description="weight of LPIPS (or its fallback) inside L_rec")
    identity: float = Field(0.0, ge=0, description="weight of the CosFace identity classification over every "
                            "training identity (0 = the paper's objective; not in the paper)")


class DistillConfig(Section):
    """Model B: teacher losses and teacher -> student distillation (paper eqs 8-14)."""

    feature: float = Field(1.0, ge=0, description="weight of the feature MSE between projected embeddings")
    logit: float = Field(1.0, ge=0, description="weight of the tau^2-scaled posture-logit KL")
    tau: float = Field(4.0, gt=0, description="distillation temperature (dimensionless)")
    teacher: float = Field(1.0, ge=0, description="weight of the teacher's own SupCon + CE losses")
    teacher_trains_encoder: bool = Field(
        False, description="let the teacher's own losses reach the shared THz encoder (false: the teacher "
        "reads the THz map detached; the student learns from the teacher through the distillation terms only)")


class AugmentConfig(Section):
    """Augmentations. Geometric ones hit input and reconstruction target identically (alignment kept)."""

    enabled: bool = Field(True, description="augment training images")
    max_shift_px: float = Field(3.0, ge=0, le=16, description="random translation, each axis (pixels)")
    max_rotation_deg: float = Field(5.0, ge=0, le=45, description="random in-plane rotation (deg)")
    max_scale: float = Field(0.05, ge=0, le=0.5, description="random zoom: factor in [1 - s, 1 + s]")
    gain: float = Field(0.1, ge=0, le=0.5, description="input-only intensity gain jitter: factor in [1 - g, 1 + g]")
    noise_std: float = Field(0.02, ge=0, le=0.5, description="input-only additive Gaussian noise (fraction of range)")


class EarlyStopConfig(Section):
    metric: Literal["loss", "triplet_accuracy", "posture_accuracy", "ssim", "roc_auc", "eer"] = Field(
        "loss", description="validation metric watched for model selection and early stopping")
    patience: int = Field(8, ge=1, description="epochs without improvement before stopping")
    min_delta: float = Field(1e-4, ge=0, description="smallest change that counts as an improvement")

    @property
    def mode(self) -> str:
        return "min" if self.metric in ("loss", "eer") else "max"


class TrainingConfig(Section):
    preset: Literal["compact", "paper"] = Field("compact", description="network widths preset")
    seed: int = Field(0, description="seed of initialisation, sampling and augmentation")
    epochs: int = Field(60, ge=1, description="maximum epochs")
    lr: float = Field(2e-3, gt=0, description="AdamW peak learning rate (cosine decay to lr_min_factor * lr)")
    lr_min_factor: float = Field(0.05, gt=0, le=1, description="final learning rate as a fraction of lr")
    weight_decay: float = Field(1e-4, ge=0, description="AdamW decoupled weight decay")
    warmup_epochs: int = Field(1, ge=0, description="linear learning-rate warm-up (epochs)")
    batch_identities: int = Field(8, ge=2, description="distinct identities per batch (P of a P x K batch)")
    batch_per_identity: int = Field(5, ge=1, description="anchors per identity per batch, spread over postures (K)")
    supcon_tau: float = Field(0.07, gt=0, description="SupCon temperature tau")
    supcon_margin: float = Field(0.0, ge=0, lt=2, description="additive cosine margin on SupCon positives "
                                 "(0 = the paper's SupCon; > 0 asks positives to beat negatives by it)")
    cosface_scale: float = Field(30.0, gt=0, description="CosFace scale s (loss.identity > 0)")
    cosface_margin: float = Field(0.35, ge=0, lt=2, description="CosFace additive cosine margin m (loss.identity > 0)")
    label_smoothing: float = Field(0.1, ge=0, lt=1, description="posture cross-entropy label smoothing")
    charbonnier_eps: float = Field(1e-3, gt=0, description="Charbonnier epsilon (image units, [0, 1])")
    holdout_identities: int = Field(
        0, ge=0, description="identity-disjoint protocol: the K highest identity ids are kept out of train and "
        "val entirely; `thz evaluate --split heldout` scores them (0 = the paper's capture-disjoint protocol only)")
    lpips_weights: str = Field("", description="local LPIPS-VGG state dict (torch.save); empty = use the fallback")
    loss: LossWeights = LossWeights()
    distill: DistillConfig = DistillConfig()
    augment: AugmentConfig = AugmentConfig()
    early_stop: EarlyStopConfig = EarlyStopConfig()
    threshold_rule: Literal["eer", "far"] = Field(
        "eer", description="verification threshold calibration on the val split: EER point or target FAR")
    target_far: float = Field(0.01, gt=0, lt=1, description="target false-accept rate when threshold_rule = 'far'")
    export_tolerance: float = Field(1e-4, gt=0, description="max |ONNX Runtime - torch| allowed at export")
    num_threads: int = Field(2, ge=1, le=64, description="torch intra-op threads")
    bn_batches: int = Field(8, ge=0, description="training batches that re-estimate BatchNorm statistics "
                            "after each epoch (precise BN; 0 = keep the running averages)")
    grad_clip: float = Field(5.0, gt=0, description="gradient-norm clip")

    @property
    def batch_size(self) -> int:
        """Triplets per batch = P identities x K anchors."""
        return self.batch_identities * self.batch_per_identity

    @model_validator(mode="after")
    def _warmup(self) -> "TrainingConfig":
        if self.warmup_epochs >= self.epochs and self.epochs > 1:
            raise ValueError(f"training.warmup_epochs={self.warmup_epochs} must be below epochs={self.epochs}")
        return self

"""Each loss against a value computed by hand (numbers derived in the comments)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from pytorch_msssim import ssim as reference_ssim

from training.distill import feature_distill, kl_distill
from training.losses import charbonnier, cosface_loss, posture_ce, psnr, reconstruction_loss, ssim, supcon_loss
from training.perceptual import LPIPSVGG, EdgeLoss, build_perceptual


def test_supcon_three_points_by_hand():
    # e0 = e1 = (1,0) (identity 7), e2 = (0,1) (identity 9); tau = 0.5.
    # anchor 0: sims to 1, 2 are 1/0.5 = 2 and 0 -> log p(1) = 2 - log(e^2 + 1); anchor 1 the same;
    # anchor 2 has no positive and is skipped. L = -(2 - log(e^2 + 1)).
    # 2 - log(e^2 + 1) = 0.127 cancels 2 digits: checked in float64, where the closed form holds to ~1e-15
    e = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    got = supcon_loss(e, torch.tensor([7, 7, 9]), tau=0.5)
    assert got.dtype == torch.float64
    assert float(got) == pytest.approx(-(2 - math.log(math.e ** 2 + 1)), rel=1e3 * torch.finfo(torch.float64).eps)


def test_supcon_positives_are_per_identity_and_mask_drops_samples():
    # two positives for anchor 0 (indices 1 and 2) -> average of their log-probabilities
    e = torch.nn.functional.normalize(torch.tensor([[1.0, 0.0], [0.6, 0.8], [1.0, 0.0], [0.0, 1.0]]), dim=1)
    lab = torch.tensor([1, 1, 1, 2])
    s = (e @ e.T / 0.07).numpy().astype(np.float64)
    expect = []
    for i in range(4):
        others = [a for a in range(4) if a != i]
        lse = np.log(np.exp(s[i, others]).sum())
        pos = [p for p in others if lab[p] == lab[i]]
        if pos:
            expect.append(-np.mean([s[i, p] - lse for p in pos]))
    assert float(supcon_loss(e, lab, 0.07)) == pytest.approx(np.mean(expect), rel=1e-5)
    mask = torch.tensor([True, False, True, True])  # sample 1 dropped: as if it were never in the batch
    assert float(supcon_loss(e, lab, 0.07, mask)) == pytest.approx(float(supcon_loss(e[mask], lab[mask], 0.07)))
    with pytest.raises(ValueError, match="tau"):
        supcon_loss(e, lab, tau=0.0)


def test_cross_entropy_with_label_smoothing_by_hand():
    # logits (0, 0, 0, 0, ln 4): p = (1/8, 1/8, 1/8, 1/8, 1/2); target 4, s = 0.1:
    # q = 0.9 one-hot + 0.02 each -> L = -(0.92 ln 1/2 + 4 * 0.02 ln 1/8) = 0.92 ln 2 + 0.24 ln 2 = 1.16 ln 2
    logits = torch.tensor([[0.0, 0.0, 0.0, 0.0, math.log(4.0)]])
    assert float(posture_ce(logits, torch.tensor([4]), 0.1)) == pytest.approx(1.16 * math.log(2), rel=1e-6)


def test_charbonnier_by_hand():
    # |d| = 0.3 everywhere -> sqrt(0.09 + 1e-6)
    p, t = torch.full((1, 1, 4, 4), 0.5), torch.full((1, 1, 4, 4), 0.2)
    assert float(charbonnier(p, t, 1e-3)) == pytest.approx(math.sqrt(0.09 + 1e-6), rel=1e-6)
    assert float(charbonnier(t, t, 1e-3)) == pytest.approx(1e-3, rel=1e-6)  # floor = eps


def test_ssim_of_constant_images_is_the_luminance_term():
    # sigma = 0 everywhere: SSIM = (2ab + C1) / (a^2 + b^2 + C1), C1 = 0.01^2
    a, b, c1 = 0.3, 0.6, 1e-4
    x = torch.full((2, 1, 20, 20), a, dtype=torch.float64)  # float64: E[x^2] - E[x]^2 cancels exactly enough
    y = torch.full((2, 1, 20, 20), b, dtype=torch.float64)
    expect = (2 * a * b + c1) / (a * a + b * b + c1)
    assert torch.allclose(ssim(x, y), torch.full((2,), expect, dtype=torch.float64), atol=1e-9)
    assert torch.allclose(ssim(x, x), torch.ones(2, dtype=torch.float64), atol=1e-9)


def test_ssim_matches_an_independent_implementation():
    g = torch.Generator().manual_seed(3)
    x = torch.rand(3, 1, 64, 64, generator=g)
    y = (x + 0.2 * torch.rand(3, 1, 64, 64, generator=g)).clamp(0, 1)
    ref = reference_ssim(x, y, data_range=1.0, size_average=False, win_size=11, win_sigma=1.5)
    assert torch.allclose(ssim(x, y), ref, atol=1e-5)
    with pytest.raises(ValueError, match="at least 11x11"):
        ssim(torch.rand(1, 1, 8, 8), torch.rand(1, 1, 8, 8))


def test_psnr_by_hand():
    # MSE = 0.1^2 = 0.01 -> 10 log10(1 / 0.01) = 20 dB
    x, y = torch.zeros(1, 1, 8, 8), torch.full((1, 1, 8, 8), 0.1)
    assert float(psnr(x, y)[0]) == pytest.approx(20.0, abs=1e-4)


def test_reconstruction_loss_is_the_weighted_sum():
    # float64: in float32 the Gaussian-window variance of a constant image is E[x^2] - mu^2, which cancels
    # to ~eps32 * mu^2 = 4e-8 against C2 = 9e-4 and moves the SSIM term by ~1e-5 depending on the CPU's
    # summation order (AVX2 vs AVX-512); the closed form is checked where it holds, the float32 path below
    x, y = torch.full((1, 1, 16, 16), 0.3, dtype=torch.float64), torch.full((1, 1, 16, 16), 0.6, dtype=torch.float64)
    total, parts = reconstruction_loss(x, y, 2.0, 0.5, 0.0)
    ch = math.sqrt(0.09 + 1e-6)
    s = (2 * 0.18 + 1e-4) / (0.09 + 0.36 + 1e-4)
    expect = 2.0 * ch + 0.5 * (1 - s)
    assert float(total) == pytest.approx(expect, rel=1e3 * torch.finfo(torch.float64).eps)
    # float32: the bound of that cancellation, 121 window taps x eps32 x (mu_x^2 + mu_y^2) / C2, times the
    # SSIM weight 0.5
    tol32 = 0.5 * 121 ** 0.5 * torch.finfo(torch.float32).eps * (0.09 + 0.36) / 9e-4
    total32, _ = reconstruction_loss(x.float(), y.float(), 2.0, 0.5, 0.0)
    assert float(total32) == pytest.approx(expect, abs=tol32)
    assert set(parts) == {"charbonnier", "ssim_loss"}


def test_edge_fallback_on_a_ramp_by_hand():
    # target = a * column index, prediction constant: Sobel/8 gives d/dx = a inside and a/2 at the two
    # border columns (replicate padding), d/dy = 0 -> single-scale loss = a (W - 1) / W
    a, w = 0.01, 16
    t = (a * torch.arange(w, dtype=torch.float32)).repeat(w, 1)[None, None]
    loss = EdgeLoss(scales=(1,))(torch.zeros_like(t), t)
    assert float(loss) == pytest.approx(a * (w - 1) / w, rel=1e-5)
    assert float(EdgeLoss()(t, t)) == 0.0


def test_perceptual_falls_back_with_one_warning_and_loads_lpips_weights(tmp_path):
    import training.perceptual as perceptual
    perceptual._warned = False
    with pytest.warns(RuntimeWarning, match="edge loss"):
        m, name = build_perceptual(tmp_path / "missing.pt")
    assert name == "edge-fallback" and isinstance(m, EdgeLoss)
    # a state dict with the LPIPS-VGG layout (random values here) loads, and gradient reaches the input
    torch.manual_seed(0)
    ref = LPIPSVGG()
    state = {k: v.abs() if k.startswith("lin") else v for k, v in ref.state_dict().items()
             if k not in ("shift", "scale")}  # LPIPS's lin weights are non-negative
    torch.save(state, tmp_path / "lpips.pt")
    m, name = build_perceptual(tmp_path / "lpips.pt")
    assert name == "lpips-vgg"
    x = torch.rand(1, 1, 32, 32, requires_grad=True)
    y = torch.rand(1, 1, 32, 32)
    loss = m(x, y)
    loss.backward()
    assert float(loss.detach()) > 0 and float(x.grad.abs().sum()) > 0
    assert float(m(y, y)) == 0.0
    torch.save({"features.0.weight": torch.zeros(1)}, tmp_path / "bad.pt")
    with pytest.raises((ValueError, RuntimeError)):
        build_perceptual(tmp_path / "bad.pt")


def test_logit_distillation_by_hand():
    # student uniform over 5, teacher logits (2 ln 2 * tau..): choose teacher p = softmax(t / tau) = (1/2, 1/8 x 4)
    tau = 2.0
    t = torch.tensor([[2 * math.log(4.0) , 0, 0, 0, 0]])  # t / tau = (ln 4, 0, ...) -> p = (1/2, 1/8, ...)
    s = torch.zeros(1, 5)
    kl = 0.5 * math.log(0.5 / 0.2) + 4 * 0.125 * math.log(0.125 / 0.2)
    assert float(kl_distill(s, t, tau)) == pytest.approx(tau ** 2 * kl, rel=1e-6)
    assert float(kl_distill(t, t, tau)) == pytest.approx(0.0, abs=1e-7)
    s.requires_grad_(True)
    t.requires_grad_(True)
    kl_distill(s, t, tau).backward()
    assert t.grad is None and s.grad is not None  # the teacher is detached
    assert float(kl_distill(torch.zeros(0, 5), torch.zeros(0, 5), tau)) == 0.0


def test_feature_distillation_by_hand():
    # n(s) = (1, 0), n(z) = (0, 1): ||n(s) - n(z)||^2 = 1 + 1 = 2; second sample identical (0) -> mean 1
    s = torch.tensor([[3.0, 0.0], [1.0, 1.0]], requires_grad=True)
    z = torch.tensor([[0.0, 5.0], [2.0, 2.0]], requires_grad=True)
    loss = feature_distill(s, z)
    assert float(loss.detach()) == pytest.approx(1.0)
    loss.backward()
    assert z.grad is None


def test_supcon_margin_by_hand_and_zero_margin_is_eq2():
    # the three points of the hand test, margin m: anchor 0's positive logit becomes (1 - m) / tau,
    # its negative stays 0 -> L = -((1 - m) / tau - log(e^((1 - m) / tau) + 1))
    e = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    lab = torch.tensor([7, 7, 9])
    m, tau = 0.3, 0.5
    x = (1 - m) / tau
    got = supcon_loss(e, lab, tau=tau, margin=m)
    assert float(got) == pytest.approx(-(x - math.log(math.e ** x + 1)), rel=1e3 * torch.finfo(torch.float64).eps)
    assert float(got) > float(supcon_loss(e, lab, tau=tau))          # a margin only makes positives harder
    assert float(supcon_loss(e, lab, tau=tau, margin=0.0)) == float(supcon_loss(e, lab, tau=tau))
    with pytest.raises(ValueError, match="margin"):
        supcon_loss(e, lab, tau=tau, margin=-0.1)


def test_cosface_against_the_equation_in_float64():
    # An independent reference: eq. 4 of CosFace written with NumPy's logs and exps, unnormalised inputs.
    rng = np.random.default_rng(3)
    x, w = rng.normal(size=(6, 4)), rng.normal(size=(5, 4)) * 3.0
    y = np.array([0, 4, 2, 2, 1, 3])
    s, m = 30.0, 0.35
    cos = (x / np.linalg.norm(x, axis=1, keepdims=True)) @ (w / np.linalg.norm(w, axis=1, keepdims=True)).T
    num = np.exp(s * (cos[np.arange(6), y] - m))
    den = num + (np.exp(s * cos).sum(1) - np.exp(s * cos[np.arange(6), y]))
    expected = float(np.mean(-np.log(num / den)))
    got = float(cosface_loss(torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(y), s, m))
    assert got == pytest.approx(expected, rel=64 * np.finfo(np.float64).eps * s)
    # the margin is what separates it from a plain normalised softmax: a larger one costs more
    assert float(cosface_loss(torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(y), s, 0.0)) < got


def test_cosface_refuses_bad_settings_and_labels_outside_the_classes():
    x, w = torch.randn(3, 4), torch.randn(2, 4)
    with pytest.raises(ValueError, match="scale"):
        cosface_loss(x, w, torch.tensor([0, 1, 0]), scale=0.0)
    with pytest.raises(ValueError, match="margin"):
        cosface_loss(x, w, torch.tensor([0, 1, 0]), margin=2.5)
    with pytest.raises(ValueError, match="rows of the 2 class vectors"):
        cosface_loss(x, w, torch.tensor([0, 2, 0]))

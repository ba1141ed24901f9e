"""Shapes and gradients of every head, routing, the teacher and Model B."""
from __future__ import annotations

import pytest
import torch

from training.distill import ModelB
from training.model import MultiTaskNet, count_parameters, preset_config
from training.teacher import Teacher


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    return MultiTaskNet(preset_config("compact"))


def test_output_shapes_and_ranges(net):
    x = torch.rand(3, 1, 64, 64)
    out = net(x, route="gt", posture=torch.tensor([0, 3, 4]))
    assert out["embedding"].shape == (3, 128)
    assert torch.allclose(out["embedding"].norm(dim=1), torch.ones(3), atol=1e-5)  # L2-normalised
    assert out["posture_logits"].shape == (3, 5)
    r = out["reconstruction"].detach()
    assert r.shape == (3, 1, 64, 64) and float(r.min()) > 0 and float(r.max()) < 1  # sigmoid
    assert out["fmap"].shape == (3, 128, 4, 4)  # compact c4 = 128 on the 4x4 grid
    assert [s.shape[-1] for s in out["skips"]] == [64, 32, 16, 8]


@pytest.mark.parametrize("head", ["embedding", "posture_logits", "reconstruction"])
def test_each_head_gradient_reaches_the_encoder_stem(net, head):
    net.zero_grad()
    x = torch.rand(4, 1, 64, 64)
    out = net(x, route="gt", posture=torch.tensor([0, 1, 2, 3]))
    (out[head] * torch.randn_like(out[head])).sum().backward()
    g = net.encoder.stem[0].weight.grad
    assert g is not None and float(g.abs().sum()) > 0


def test_gt_routing_trains_only_the_routed_experts(net):
    net.zero_grad()
    out = net(torch.rand(2, 1, 64, 64), route="gt", posture=torch.tensor([1, 1]))
    out["reconstruction"].sum().backward()
    used = [d.out.weight.grad is not None and float(d.out.weight.grad.abs().sum()) > 0 for d in net.decoders]
    assert used == [False, True, False, False, False]


def test_predicted_routing_equals_gt_routing_with_the_predicted_labels(net):
    net.eval()
    x = torch.rand(5, 1, 64, 64)
    with torch.no_grad():
        pred = net(x, route="predicted")
        gt = net(x, route="gt", posture=pred["posture_logits"].argmax(1))
        soft = net(x, route="soft")
        experts = torch.stack([d(pred["fmap"], pred["skips"]) for d in net.decoders], 1)
    net.train()
    # the routes run the decoders on different batch sizes, so the CPU's GEMM blocking (and the order of
    # float32 sums) differs: outputs in [0, 1] agree to a few hundred float32 roundings, not to the last bit
    atol = 256 * torch.finfo(torch.float32).eps
    assert torch.allclose(pred["reconstruction"], gt["reconstruction"], atol=atol)
    w = pred["posture_logits"].softmax(1)[:, :, None, None, None]
    assert torch.allclose(soft["reconstruction"], (experts * w).sum(1), atol=atol)


def test_predicted_routing_runs_one_decoder_per_roi_and_equals_the_onehot_graph(net):
    """The live route runs only the predicted expert on each ROI; the exported one-hot form (every expert,
    one kept) gives the same reconstruction."""
    net.eval()
    torch.manual_seed(1)
    x = torch.rand(6, 1, 64, 64)
    calls: list[int] = []
    hooks = [d.register_forward_hook(lambda m, inp, out, k=k: calls.extend([k] * out.shape[0]))
             for k, d in enumerate(net.decoders)]
    try:
        with torch.no_grad():
            out = net.encode(x)
            labels = out["posture_logits"].argmax(1)
            calls.clear()
            routed = net.decode(out["fmap"], out["skips"], out["posture_logits"], route="predicted")
            assert sorted(calls) == sorted(labels.tolist())  # each ROI decoded once, by its own expert
            calls.clear()
            onehot = net.decode_onehot(out["fmap"], out["skips"], out["posture_logits"])
            assert len(calls) == 5 * len(x)                   # the exported form runs every expert
    finally:
        for h in hooks:
            h.remove()
        net.train()
    atol = 256 * torch.finfo(torch.float32).eps  # same reasoning as above: batch-size-dependent GEMM blocking
    assert torch.allclose(routed, onehot, atol=atol), float((routed - onehot).abs().max())
    assert float((routed - onehot).abs().max()) < float((routed - routed.flip(0)).abs().max())  # not vacuous


def test_bad_input_and_route_are_rejected(net):
    with pytest.raises(ValueError, match=r"\(B, 1, 64, 64\)"):
        net(torch.rand(2, 3, 64, 64))
    with pytest.raises(ValueError, match="route"):
        net(torch.rand(1, 1, 64, 64), route="nearest")
    with pytest.raises(ValueError, match="ground-truth"):
        net(torch.rand(1, 1, 64, 64), route="gt")
    with pytest.raises(ValueError, match="unknown preset"):
        preset_config("huge")


def test_teacher_shapes_and_gradients_to_both_encoders():
    torch.manual_seed(1)
    cfg = preset_config("compact")
    student, teacher = MultiTaskNet(cfg), Teacher(cfg)
    f = student.encode(torch.rand(4, 1, 64, 64))["fmap"]
    t = teacher(f, torch.rand(4, 3, 64, 64))
    assert t["z"].shape == (4, cfg.attn_dim) and t["posture_logits"].shape == (4, 5)
    assert torch.allclose(t["embedding"].norm(dim=1), torch.ones(4), atol=1e-5)
    (t["embedding"].sum() + t["posture_logits"].sum()).backward()
    assert float(teacher.visible_encoder.stem[0].weight.grad.abs().sum()) > 0
    assert float(student.encoder.stem[0].weight.grad.abs().sum()) > 0  # the THz encoder is shared


def test_presets_and_model_b_contains_the_student():
    paper, compact = preset_config("paper"), preset_config("compact")
    assert paper.widths == (64, 64, 128, 256, 512) and paper.attn_dim == 512 and paper.attn_heads == 8
    assert paper.rdb_growth == 32 and paper.rdb_convs == 5
    small = count_parameters(MultiTaskNet(compact))
    assert 1e6 < small < 4e6  # < 20 MB as float32 ONNX
    mb = ModelB(compact)
    assert count_parameters(mb.student) == small
    assert count_parameters(mb) > small

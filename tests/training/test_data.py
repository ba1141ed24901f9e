"""Dataset loading, capture pairing, the balanced triplet sampler, aligned augmentation, visible masks."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.training.fixture_data import make_dataset
from training.batches import make_batch, random_affine, warp
from training.config import AugmentConfig
from training.data import ThzData, TripletIndex
from thzcore.manifest import ManifestError
from training.sampler import BalancedTripletSampler


@pytest.fixture(scope="module")
def data(dataset):
    return ThzData.load(dataset)


def test_load_counts_and_ranges(data):
    # 6 identities x 5 postures x 2 concealments x 4 captures; 6 x 5 x 2 visible images
    assert data.images.shape == (240, 1, 64, 64) and data.images.dtype == np.float32
    assert 0.0 <= data.images.min() and data.images.max() <= 1.0
    assert len(data.visible) == 60
    assert next(iter(data.visible.values())).shape == (3, 64, 64)
    assert (data.split == "train").sum() == 120


def test_pairing_same_capture_then_nearest(tmp_path, data):
    idx = TripletIndex.build(data, ("train",))
    for a, t in zip(idx.anchors, idx.target):
        assert data.concealed[a] and not data.concealed[t]
        assert (data.identity[a], data.posture[a], data.capture[a]) == (data.identity[t], data.posture[t],
                                                                        data.capture[t])
    # a concealed capture 2 whose unconcealed partners are captures 0 and 3 -> nearest is 3 (|3-2| < |0-2|)
    d = ThzData(data.root, np.zeros((3, 1, 64, 64), np.float32), np.array([0, 0, 0]), np.array([1, 1, 1]),
                np.array([True, False, False]), np.array([2, 0, 3]), np.array(["train"] * 3), ["a", "b", "c"])
    ti = TripletIndex.build(d, ("train",))
    assert ti.target.tolist() == [2]
    # tie (partners 1 and 3 for capture 2) -> the lower capture
    d.capture = np.array([2, 1, 3])
    assert TripletIndex.build(d, ("train",)).target.tolist() == [1]


def test_sampler_invariants(data):
    idx = TripletIndex.build(data, ("train",))
    s = BalancedTripletSampler(idx, n_identities=3, per_identity=5, seed=4)
    batches = s.epoch(0)
    assert len(batches) == -(-len(idx) // 15)
    for b in batches:
        a = idx.anchors[b.anchor]
        ids, counts = np.unique(data.identity[a], return_counts=True)
        assert len(ids) == 3 and (counts == 5).all()                 # P identities x K anchors
        for i in ids:                                                 # K = 5: each identity in every posture
            assert sorted(data.posture[a[data.identity[a] == i]]) == [0, 1, 2, 3, 4]
        assert data.concealed[a].all()
        p, n = b.positive, b.negative
        assert (~data.concealed[p]).all() and (~data.concealed[n]).all()
        assert (data.identity[p] == data.identity[a]).all() and (data.posture[p] == data.posture[a]).all()
        assert (data.identity[n] != data.identity[a]).all() and (data.posture[n] == data.posture[a]).all()
        assert (data.split[np.concatenate([a, p, n])] == "train").all()
    # every anchor is drawn in an epoch (cells cycle through their shuffled captures)
    used = np.concatenate([b.anchor for b in batches])
    assert set(used.tolist()) == set(range(len(idx)))
    # reproducible per (seed, epoch); another epoch differs
    again = s.epoch(0)
    assert all((x.anchor == y.anchor).all() and (x.negative == y.negative).all() for x, y in zip(batches, again))
    assert any((x.anchor != y.anchor).any() for x, y in zip(batches, s.epoch(1)))


def test_sampler_rejects_bad_sizes(data):
    idx = TripletIndex.build(data, ("train",))
    with pytest.raises(ValueError, match="n_identities"):
        BalancedTripletSampler(idx, 1, 5, 0)


def test_warp_identity_is_exact_and_the_same_warp_keeps_alignment():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(4, 1, 64, 64, generator=g)
    eye = torch.tensor([[1.0, 0, 0], [0, 1.0, 0]]).repeat(4, 1, 1)
    assert torch.allclose(warp(x, eye), x, atol=1e-5)  # exact up to float32 grid rounding
    # a shift of +4 px in x (theta_x = 2 * 4 / 64) moves content left by 4 px: out[..., j] = in[..., j + 4]
    shift = eye.clone()
    shift[:, 0, 2] = 8.0 / 64
    assert torch.allclose(warp(x, shift)[..., :, :60], x[..., :, 4:], atol=1e-5)
    theta = random_affine(4, AugmentConfig(), np.random.default_rng(1))
    assert torch.equal(warp(x, theta), warp(x.clone(), theta))


def test_batch_augmentation_keeps_target_aligned_and_photometric_off_target(data):
    idx = TripletIndex.build(data, ("train",))
    tb = BalancedTripletSampler(idx, 3, 5, 0).epoch(0)[0]
    plain = make_batch(idx, tb, None, np.random.default_rng(0))
    geo = AugmentConfig(gain=0.0, noise_std=0.0)
    # with anchor images substituted by their targets, the geometric warp must give identical tensors
    idx2 = TripletIndex(idx.data, idx.target.copy(), idx.target.copy(), idx.cells, idx.by_posture)
    b = make_batch(idx2, tb, geo, np.random.default_rng(5))
    assert torch.equal(b.anchor, b.target)
    assert not torch.equal(b.anchor, plain.target)           # it did warp
    aug = make_batch(idx, tb, AugmentConfig(max_shift_px=0, max_rotation_deg=0, max_scale=0),
                     np.random.default_rng(5))
    assert torch.allclose(aug.target, plain.target, atol=1e-6)  # photometric jitter never touches the target
    assert not torch.allclose(aug.anchor, plain.anchor, atol=1e-3)


def test_missing_visible_images_are_masked_not_zeroed(tmp_path):
    root = make_dataset(tmp_path / "d", n_identities=3, captures=3, drop_visible=4)
    d = ThzData.load(root)
    assert len(d.visible) == 3 * 5 * 2 - 4
    vis, has = d.visible_for(np.arange(len(d)))
    assert (~has).sum() == 4 * 3  # 4 (identity, posture, concealment) cells x 3 captures
    assert (vis[has].reshape(has.sum(), -1).max(1) > 0).all()


def test_manifest_errors_name_the_problem(tmp_path, dataset):
    with pytest.raises(ManifestError, match="no manifest.csv"):
        ThzData.load(tmp_path)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "manifest.csv").write_text("path,identity,posture,concealed,modality,capture,split\n"
                                      "x.png,0,sideways,0,thz,0,train\n")
    with pytest.raises(ManifestError, match="posture"):
        ThzData.load(bad)

"""`thz evaluate --fusion`: the windows of consecutive scans, fused metrics against independent references."""
from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score, roc_curve

from training.baselines import Ssim
from training.fusion import fused_metrics, scan_windows
from training.metrics import rank1_identification, verification_metrics


def _cells(n_id: int, n_post: int, per: int, rng) -> tuple[np.ndarray, ...]:
    """Every (identity, posture, concealed) cell holding `per` ROIs, captures shuffled."""
    ident, post, conc, cap = [], [], [], []
    for i in range(n_id):
        for p in range(n_post):
            for c in (False, True):
                for k in rng.permutation(per):
                    ident.append(i)
                    post.append(p)
                    conc.append(c)
                    cap.append(int(k))
    return np.array(ident), np.array(post), np.array(conc), np.array(cap)


def _noisy_embeddings(ident: np.ndarray, rng, noise: float, dim: int = 16) -> np.ndarray:
    centres = rng.normal(size=(ident.max() + 1, dim))
    e = centres[ident] + noise * rng.normal(size=(len(ident), dim))
    return e / np.linalg.norm(e, axis=1, keepdims=True)


def _eer_by_roc_curve(gen: np.ndarray, imp: np.ndarray) -> float:
    """EER from scikit-learn's ROC (scores = -distance), the point where FPR and FNR are nearest."""
    y = np.r_[np.ones(len(gen)), np.zeros(len(imp))]
    fpr, tpr, _ = roc_curve(y, -np.r_[gen, imp], drop_intermediate=False)
    k = np.argmin(np.abs(fpr - (1 - tpr)))
    return float((fpr[k] + 1 - tpr[k]) / 2)


def test_windows_by_hand():
    ident = np.array([0, 0, 0, 0, 1, 1, 0])
    post = np.zeros(7, np.int64)
    conc = np.array([0, 0, 0, 0, 0, 0, 1], bool)
    cap = np.array([3, 0, 2, 1, 5, 4, 0])
    # cell (0, 0, unconcealed): rows by capture 1 (c0), 3 (c1), 2 (c2), 0 (c3); cell (1, 0, unc): 5, 4
    w = scan_windows(ident, post, conc, cap, 2)
    assert [list(x) for x in w] == [[1, 3], [3, 2], [2, 0], [5, 4]]
    assert [list(x) for x in scan_windows(ident, post, conc, cap, 1, min_cell=3)] == [[1], [3], [2], [0]]
    assert scan_windows(ident, post, conc, cap, 5) == []
    with pytest.raises(ValueError, match="N must be >= 1"):
        scan_windows(ident, post, conc, cap, 0)


def test_n1_is_the_per_scan_protocol_and_matches_sklearn():
    rng = np.random.default_rng(0)
    ident, post, conc, cap = _cells(5, 2, 3, rng)
    e = _noisy_embeddings(ident, rng, 1.2)
    m = fused_metrics(e, ident, post, conc, cap, None, (1,))[1]
    probes, refs = np.flatnonzero(conc), np.flatnonzero(~conc)
    ref = verification_metrics(e, ident, probes, refs, post)
    for k in ("roc_auc", "eer", "tar_at_far1", "same_posture_eer"):
        assert m[k] == pytest.approx(ref[k]), k
    assert m["rank1_identification"] == pytest.approx(rank1_identification(e, ident, probes, refs))
    d = 1 - e[probes] @ e[refs].T
    same = ident[probes][:, None] == ident[refs][None, :]
    assert m["roc_auc"] == pytest.approx(roc_auc_score(same.ravel(), -d.ravel()))
    assert m["eer"] == pytest.approx(_eer_by_roc_curve(d[same], d[~same]), abs=1e-9)


def test_fused_windows_by_hand_against_sklearn():
    """N = 3 with quality weights: fused vectors computed here by numpy, scored by scikit-learn."""
    rng = np.random.default_rng(1)
    ident, post, conc, cap = _cells(4, 2, 4, rng)
    e = _noisy_embeddings(ident, rng, 1.5)
    q = rng.uniform(0.2, 1.0, len(ident))
    m = fused_metrics(e, ident, post, conc, cap, q, (3,))[3]
    fused, fi, fc = [], [], []
    for key in sorted({(int(i), int(p), bool(c)) for i, p, c in zip(ident, post, conc)}):
        rows = np.flatnonzero((ident == key[0]) & (post == key[1]) & (conc == key[2]))
        rows = rows[np.argsort(cap[rows])]
        for s in range(len(rows) - 2):
            w = rows[s:s + 3]
            v = (q[w][:, None] * e[w]).sum(0)
            fused.append(v / np.linalg.norm(v))
            fi.append(key[0])
            fc.append(key[2])
    fused, fi, fc = np.array(fused), np.array(fi), np.array(fc)
    assert m["n_probes"] == fc.sum() == 4 * 2 * 2 and m["n_references"] == (~fc).sum()
    d = 1 - fused[fc] @ fused[~fc].T
    same = fi[fc][:, None] == fi[~fc][None, :]
    assert m["roc_auc"] == pytest.approx(roc_auc_score(same.ravel(), -d.ravel()))
    assert m["eer"] == pytest.approx(_eer_by_roc_curve(d[same], d[~same]), abs=1e-9)


def test_fusion_lowers_the_eer_of_noisy_scans_and_quality_weights_drop_bad_ones():
    rng = np.random.default_rng(2)
    ident, post, conc, cap = _cells(8, 2, 6, rng)
    e = _noisy_embeddings(ident, rng, 2.5)
    r = fused_metrics(e, ident, post, conc, cap, None, (1, 3, 5))
    assert r[5]["eer"] < r[3]["eer"] < r[1]["eer"]
    assert r[1]["n_probes"] == 8 * 2 * 6 and r[5]["n_probes"] == 8 * 2 * 2   # same cells for every N
    # one scan in three is garbage (a random direction) and the locator says so (quality 0.05)
    bad = rng.random(len(ident)) < 1 / 3
    e2 = np.where(bad[:, None], _noisy_embeddings(rng.integers(0, 1000, len(ident)), rng, 0.0), e)
    q = np.where(bad, 0.05, 1.0)
    weighted = fused_metrics(e2, ident, post, conc, cap, q, (5,))[5]
    uniform = fused_metrics(e2, ident, post, conc, cap, q, (5,), weight="uniform")[5]
    assert weighted["eer"] < uniform["eer"]


def test_cells_without_enough_scans_are_refused():
    rng = np.random.default_rng(3)
    ident, post, conc, cap = _cells(3, 1, 2, rng)
    with pytest.raises(ValueError, match="has 3 ROIs"):
        fused_metrics(_noisy_embeddings(ident, rng, 0.5), ident, post, conc, cap, None, (3,))


def test_ssim_fuses_images_as_their_weighted_mean():
    x = np.stack([np.full((64, 64), 0.2), np.full((64, 64), 0.8)]).astype(np.float32)
    assert Ssim.fuse(x, np.array([3.0, 1.0])) == pytest.approx(np.full((64, 64), 0.35), abs=1e-6)

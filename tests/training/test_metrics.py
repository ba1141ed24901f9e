"""Evaluation metrics against hand-computed values."""
from __future__ import annotations

import numpy as np
import pytest

from training.metrics import (enrolled_metrics, cosine_distance, eer, posture_metrics, rank1_identification, roc_auc,
                              threshold_at_far, triplet_metrics, verification_metrics)


def test_cosine_distance():
    a = np.array([[1.0, 0.0]])
    b = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    assert cosine_distance(a, b)[0].tolist() == [0.0, 1.0, 2.0]


def test_roc_auc_by_hand():
    # genuine distances {0.1, 0.4}, impostor {0.3, 0.5}: pairs with g < i: (0.1,0.3) (0.1,0.5) (0.4,0.5) = 3 of 4
    assert roc_auc([0.1, 0.4], [0.3, 0.5]) == pytest.approx(0.75)
    assert roc_auc([0.2], [0.2]) == pytest.approx(0.5)  # a tie counts one half
    with pytest.raises(ValueError, match="genuine and impostor"):
        roc_auc([], [0.1])


def test_eer_and_threshold_at_far_by_hand():
    gen = np.array([0.1, 0.2, 0.3, 0.6])
    imp = np.array([0.4, 0.5, 0.7, 0.8])
    # at t = 0.3: FAR = 0/4, FRR = 1/4; at t = 0.4: FAR = 1/4, FRR = 1/4 -> |FAR - FRR| = 0 -> EER 0.25 at 0.4
    e, t = eer(gen, imp)
    assert (e, t) == (pytest.approx(0.25), pytest.approx(0.4))
    # FAR <= 0: largest such threshold is 0.3, which accepts 3 of 4 genuines
    tar, t_far = threshold_at_far(gen, imp, 0.0)
    assert (tar, t_far) == (pytest.approx(0.75), pytest.approx(0.3))
    # perfect separation: EER 0
    assert eer([0.1, 0.2], [0.5, 0.6])[0] == 0.0


def test_triplet_metrics_counts_every_same_posture_negative():
    # 2 identities, 1 posture (0) + an off-posture negative that must be ignored.
    emb = np.array([[1.0, 0.0],    # 0 anchor, id 0
                    [0.8, 0.6],    # 1 positive of 0 (d = 0.2)
                    [0.0, 1.0],    # 2 negative id 1 (d = 1.0) -> correct
                    [0.6, 0.8],    # 3 negative id 1 (d = 0.4) -> correct
                    [1.0, 0.0]])   # 4 negative id 1 but posture 1 -> ignored (would be wrong)
    ident = np.array([0, 0, 1, 1, 1])
    post = np.array([0, 0, 0, 0, 1])
    m = triplet_metrics(emb, ident, post, np.array([0]), np.array([1]), np.array([1, 2, 3, 4]))
    assert m["triplet_accuracy"] == 1.0 and m["n_triplets"] == 2
    assert m["avg_positive_distance"] == pytest.approx(0.2)
    assert m["avg_negative_distance"] == pytest.approx((1.0 + 0.4) / 2)


def test_posture_metrics_by_hand():
    # row 0: p = softmax(ln 3, 0, 0, 0, 0) = (3/7, 1/7 ...), correct (label 0); row 1 wrong
    logits = np.array([[np.log(3.0), 0, 0, 0, 0], [0, 0, 5.0, 0, 0]])
    m = posture_metrics(logits, np.array([0, 1]))
    assert m["posture_accuracy"] == 0.5
    assert m["avg_correct_confidence"] == pytest.approx(3 / 7)


def test_verification_and_rank1_on_separable_embeddings():
    emb = np.array([[1.0, 0.0], [0.96, 0.28], [0.0, 1.0], [0.28, 0.96]])
    ident = np.array([0, 0, 1, 1])
    probes, refs = np.array([0, 2]), np.array([1, 3])
    m = verification_metrics(emb, ident, probes, refs)
    assert m["roc_auc"] == 1.0 and m["eer"] == 0.0 and m["tar_at_far1"] == 1.0
    assert (m["n_genuine"], m["n_impostor"]) == (2, 2)
    assert rank1_identification(emb, ident, probes, refs) == 1.0
    # swap the references' identities: every probe is now nearest to the wrong template
    assert rank1_identification(emb, np.array([0, 1, 1, 0]), probes, refs) == 0.0


def _unit(v):
    v = np.asarray(v, float)
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def test_enrolled_claims_by_hand():
    # two people, two postures; each enrolled once per posture; one concealed probe each (posture 1)
    refs_emb = _unit([[1, 0, 0], [0, 1, 0],      # person 0: posture 0 along x, posture 1 along y
                      [0.8, 0.6, 0], [0, 0, 1]])  # person 1: posture 0 near person 0's posture 0; posture 1 along z
    probes_emb = _unit([[0.1, 1, 0],             # person 0 in posture 1: near its own posture-1 reference
                        [0.9, 0.1, 0.4]])        # person 1 in posture 1, but nearest to person 0's posture-0 one
    emb = np.vstack([refs_emb, probes_emb])
    identity = np.array([0, 0, 1, 1, 0, 1])
    posture = np.array([0, 1, 0, 1, 1, 1])
    refs, probes = np.arange(4), np.array([4, 5])
    m = enrolled_metrics(emb, identity, posture, probes, refs, predicted_posture=posture)
    d = 1 - probes_emb @ refs_emb.T
    # nearest of the claimed person's references: (probe, claim) -> min over that person's two references
    nearest = np.array([[d[0, :2].min(), d[0, 2:].min()], [d[1, :2].min(), d[1, 2:].min()]])
    assert m["enrolled_n_genuine"] == 2 and m["enrolled_n_impostor"] == 2
    assert m["enrolled_roc_auc"] == roc_auc(np.diag(nearest), nearest[[0, 1], [1, 0]])
    assert m["enrolled_rank1"] == 0.5                       # person 1's probe lands on person 0
    # the posture-1 templates separate them: person 1's probe is nearest to person 1's posture-1 template
    by_posture = np.array([[d[0, 1], d[0, 3]], [d[1, 1], d[1, 3]]])
    assert m["enrolled_posture_rank1"] == 1.0
    assert m["enrolled_posture_roc_auc"] == roc_auc(np.diag(by_posture), by_posture[[0, 1], [1, 0]]) == 1.0
    # a predicted posture with no template falls back to all of the person's references (their mean)
    m2 = enrolled_metrics(emb, identity, np.array([0, 0, 1, 1, 0, 1]), probes, refs,
                          predicted_posture=np.array([0, 0, 0, 0, 3, 3]))
    mean0, mean1 = _unit(refs_emb[:2].sum(0)), _unit(refs_emb[2:].sum(0))
    all_post = 1 - probes_emb @ np.stack([mean0, mean1]).T
    assert m2["enrolled_posture_roc_auc"] == roc_auc(np.diag(all_post), all_post[[0, 1], [1, 0]])


def test_enrolled_claims_s_normalised_against_a_cohort_by_hand():
    from thzcore.score_norm import cohort_stats
    from training.metrics import Cohort, unit_mean
    rng = np.random.default_rng(11)
    e = _unit(rng.normal(size=(24, 6)))
    identity = np.repeat([0, 1, 2], 8)
    posture = np.tile([0, 0, 0, 0, 1, 1, 1, 1], 3)
    concealed = np.tile([False, False, True, True], 6)
    probes, refs = np.flatnonzero(concealed), np.flatnonzero(~concealed)
    c_emb = _unit(rng.normal(size=(10, 6)))                      # 5 other people x 2 postures
    c_id, c_post = np.repeat(np.arange(5), 2) + 10, np.tile([0, 1], 5)
    cohort = Cohort(c_emb, c_post, c_id, overlap=False, top_k=3)
    m = enrolled_metrics(e, identity, posture, probes, refs, posture, cohort=cohort)
    # by hand: probe p claiming person i in p's posture k
    s = np.empty((len(probes), 3))
    for a, p in enumerate(probes):
        k = posture[p]
        for i in range(3):
            t = unit_mean(e[refs[(identity[refs] == i) & (posture[refs] == k)]])
            d = 1 - e[p] @ t
            (mp, sp), (mt, st) = (cohort_stats((1 - v @ c_emb[c_post == k].T)[None], 3) for v in (e[p], t))
            s[a, i] = 0.5 * ((d - mp[0]) / sp[0] + (d - mt[0]) / st[0])
    claim = identity[probes][:, None] == np.arange(3)[None, :]
    assert m["enrolled_snorm_roc_auc"] == pytest.approx(roc_auc(s[claim], s[~claim]))
    assert m["enrolled_snorm_rank1"] == float((s.argmin(1) == identity[probes]).mean())
    assert m["enrolled_snorm_eer"] == pytest.approx(eer(s[claim], s[~claim])[0])
    # a cohort holding the scored people themselves (one population): each row leaves its own person out,
    # so adding person 0's templates changes only what person 0's own rows may not see
    own = Cohort.of(e, identity, posture, concealed)
    assert own.templates.shape == (6, 6) and list(own.identity) == [0, 0, 1, 1, 2, 2]
    with_self = Cohort(np.vstack([c_emb, own.templates[:2]]), np.r_[c_post, [0, 1]], np.r_[c_id, [0, 0]],
                       overlap=True, top_k=3)
    mu_self, _ = with_self.stats(e[probes[:1]], int(posture[probes[0]]), identity[probes[:1]], cosine_distance)
    mu_other, _ = cohort.stats(e[probes[:1]], int(posture[probes[0]]), identity[probes[:1]], cosine_distance)
    assert identity[probes[0]] == 0 and mu_self[0] == pytest.approx(mu_other[0])

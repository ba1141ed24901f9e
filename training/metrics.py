"""The one definition of each evaluation metric (used by per-epoch validation, `thz evaluate` and tests).

Distance: cosine, d(a, b) = 1 - a.b on L2-normalised embeddings (0 = same direction, 2 = opposite).
Triplet accuracy (the paper's verification accuracy): fraction of triplets with d(a, p) < d(a, n), over
    EVERY negative: anchor = a concealed capture, p = its paired unconcealed capture, n = each
    unconcealed capture of another identity in the same posture (all of them, not one sampled: the
    expectation of the paper's sampled protocol, without its variance).
Posture accuracy; average correct confidence = mean softmax probability of the true class over the
    correctly classified images.
SSIM: `training.losses.ssim` (11x11 Gaussian, sigma 1.5, valid borders, data range 1), per image, then
    the mean; PSNR = 10 log10(1 / MSE) dB per image, then the mean. Per posture and the weakest one.
Biometric verification: genuine pairs = (concealed probe, unconcealed reference) of one identity,
    impostor pairs = of different identities; all-posture (every probe x reference pair) and
    same-posture (only pairs whose probe and reference share the posture: keys `same_posture_*`).
    ROC AUC = P(d_genuine < d_impostor), ties count 1/2 (Mann-Whitney). A claim is accepted when
    d <= t: FAR(t) = impostors accepted, FRR(t) = genuines rejected; EER where they cross (mean of the two at the threshold minimising
    |FAR - FRR|); TAR@FAR = genuines accepted at the largest t with FAR(t) <= target (1% and 0.1%).
Rank-1 identification: each concealed probe against per-identity templates (L2-normalised mean of the
    identity's unconcealed embeddings); correct when the nearest template is the probe's identity.
Claims against enrolled people (`enrolled_metrics`): by the nearest reference, by the template of the probe's
    predicted posture, and that distance S-normalised against a cohort of other people's templates
    (`thzcore.score_norm.Cohort`).

Every function that compares images takes `distance` (default `cosine_distance` on embeddings) and,
for templates, `template`, so the classical baselines (training/baselines.py: pixels, NCC, SSIM,
PCA, Fisherfaces) go through these same definitions with their own representation and distance.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from scipy.stats import rankdata

from thzcore.fusion import fuse
from thzcore.labels import POSTURES
from thzcore.score_norm import Cohort, s_norm
from thzcore.softmax import softmax
from training.losses import psnr, ssim


# (n, ...) x (m, ...) representations -> (n, m) distances (smaller = more alike)
Distance = Callable[[np.ndarray, np.ndarray], np.ndarray]
FAR_TARGETS = {"far1": 0.01, "far0p1": 0.001}   # key suffix -> target FAR of the TAR@FAR figures


def cosine_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(n,E) x (m,E) unit vectors -> (n,m) distances 1 - a.b."""
    return 1.0 - np.asarray(a, np.float64) @ np.asarray(b, np.float64).T


def unit_mean(x: np.ndarray) -> np.ndarray:
    """The template of a set of embeddings: their mean, L2-normalised (the gallery's `fuse`, unweighted)."""
    return fuse(x)


def triplet_metrics(emb: np.ndarray, identity: np.ndarray, posture: np.ndarray, anchors: np.ndarray,
                    positives: np.ndarray, negative_pool: np.ndarray, distance: Distance = cosine_distance
                    ) -> dict:
    """Triplet accuracy (overall and per posture of the anchor) and mean d(a,p), d(a,n); negatives = pool
    members of the anchor's posture, other id."""
    correct = total = 0
    d_pos, d_neg = [], []
    per: dict[int, list[int]] = {}   # posture -> [correct, total]
    for a, p in zip(anchors, positives):
        neg = negative_pool[(posture[negative_pool] == posture[a]) & (identity[negative_pool] != identity[a])]
        if len(neg) == 0:
            continue
        d = np.asarray(distance(emb[a][None], emb[np.concatenate([[p], neg])])[0], np.float64)
        dp, dn = float(d[0]), d[1:]
        ok = int((dp < dn).sum())
        correct += ok
        total += len(dn)
        cell = per.setdefault(int(posture[a]), [0, 0])
        cell[0] += ok
        cell[1] += len(dn)
        d_pos.append(dp)
        d_neg.extend(dn.tolist())
    if total == 0:
        raise ValueError("no triplet could be formed: every posture needs unconcealed captures of 2 identities")
    return {"triplet_accuracy": correct / total, "avg_positive_distance": float(np.mean(d_pos)),
            "avg_negative_distance": float(np.mean(d_neg)), "n_triplets": int(total),
            "triplet_accuracy_per_posture": {POSTURES[k]: c / t for k, (c, t) in sorted(per.items())}}


def posture_metrics(logits: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    prob = softmax(logits)
    pred = prob.argmax(1)
    ok = pred == labels
    conf = float(prob[ok, labels[ok]].mean()) if ok.any() else 0.0
    per = {POSTURES[k]: float(ok[labels == k].mean()) for k in range(len(POSTURES)) if (labels == k).any()}
    return {"posture_accuracy": float(ok.mean()), "avg_correct_confidence": conf, "posture_accuracy_per_posture": per}


def reconstruction_metrics(pred: np.ndarray, target: np.ndarray, posture: np.ndarray) -> dict:
    """SSIM / PSNR per image (the project's one definition), overall and per posture, and the weakest posture."""
    p, t = torch.from_numpy(np.asarray(pred, np.float32)), torch.from_numpy(np.asarray(target, np.float32))
    s = ssim(p, t).numpy().astype(np.float64)
    q = psnr(p, t).numpy().astype(np.float64)
    per = {POSTURES[k]: {"ssim": float(s[posture == k].mean()), "psnr": float(q[posture == k].mean()),
                         "n": int((posture == k).sum())}
           for k in range(len(POSTURES)) if (posture == k).any()}
    weakest = min(per, key=lambda k: per[k]["ssim"])
    return {"ssim": float(s.mean()), "psnr": float(q.mean()), "per_posture": per,
            "weakest_posture": weakest, "weakest_posture_ssim": per[weakest]["ssim"]}


def roc_auc(genuine: np.ndarray, impostor: np.ndarray) -> float:
    """P(d_genuine < d_impostor) + P(equal) / 2 via the Mann-Whitney U statistic on distances."""
    g, i = np.asarray(genuine, np.float64), np.asarray(impostor, np.float64)
    if len(g) == 0 or len(i) == 0:
        raise ValueError(f"ROC AUC needs genuine and impostor pairs, got {len(g)} and {len(i)}")
    r = rankdata(np.concatenate([-g, -i]))  # rank by similarity: genuine should rank high
    u = r[: len(g)].sum() - len(g) * (len(g) + 1) / 2.0
    return float(u / (len(g) * len(i)))


def _rates(genuine: np.ndarray, impostor: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Thresholds (every observed distance) with FAR(t) = P(d_imp <= t), FRR(t) = P(d_gen > t)."""
    t = np.unique(np.concatenate([genuine, impostor]))
    g, i = np.sort(genuine), np.sort(impostor)
    far = np.searchsorted(i, t, side="right") / len(i)
    frr = 1.0 - np.searchsorted(g, t, side="right") / len(g)
    return t, far, frr


def eer(genuine: np.ndarray, impostor: np.ndarray) -> tuple[float, float]:
    """(EER, threshold at the EER point)."""
    t, far, frr = _rates(np.asarray(genuine, np.float64), np.asarray(impostor, np.float64))
    k = int(np.argmin(np.abs(far - frr)))
    return float((far[k] + frr[k]) / 2.0), float(t[k])


def threshold_at_far(genuine: np.ndarray, impostor: np.ndarray, target_far: float) -> tuple[float, float]:
    """(TAR, threshold): the largest observed threshold with FAR <= target and the genuines it accepts."""
    t, far, frr = _rates(np.asarray(genuine, np.float64), np.asarray(impostor, np.float64))
    ok = np.flatnonzero(far <= target_far)
    if len(ok) == 0:  # even the smallest distance lets too many impostors in: accept nothing
        return 0.0, float(t[0]) - 1e-6
    k = ok[-1]
    return float(1.0 - frr[k]), float(t[k])


def pair_distances(emb: np.ndarray, identity: np.ndarray, probes: np.ndarray, refs: np.ndarray,
                   posture: np.ndarray | None = None, distance: Distance = cosine_distance
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Genuine and impostor distances of every (probe, reference) pair (same-posture pairs only if `posture`)."""
    return _split_pairs(np.asarray(distance(emb[probes], emb[refs]), np.float64), identity, probes, refs, posture)


def _split_pairs(d: np.ndarray, identity: np.ndarray, probes: np.ndarray, refs: np.ndarray,
                 posture: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    same = identity[probes][:, None] == identity[refs][None, :]
    keep = np.ones_like(same) if posture is None else posture[probes][:, None] == posture[refs][None, :]
    return d[same & keep], d[~same & keep]


def biometrics(gen: np.ndarray, imp: np.ndarray) -> dict[str, float]:
    e, t_eer = eer(gen, imp)
    m = {"roc_auc": roc_auc(gen, imp), "eer": e, "eer_threshold": t_eer}
    for key, far in FAR_TARGETS.items():
        m[f"tar_at_{key}"], m[f"{key}_threshold"] = threshold_at_far(gen, imp, far)
    return m | {"n_genuine": int(len(gen)), "n_impostor": int(len(imp))}


def verification_metrics(emb: np.ndarray, identity: np.ndarray, probes: np.ndarray, refs: np.ndarray,
                         posture: np.ndarray | None = None, distance: Distance = cosine_distance
                         ) -> dict[str, float]:
    """ROC AUC, EER (and its threshold), TAR at FAR = 1% and 0.1% (and thresholds) over all probe x reference pairs.

    With `posture`, the same figures over the same-posture pairs only, as `same_posture_<key>`
    (one distance matrix serves both protocols).
    """
    return _verification(np.asarray(distance(emb[probes], emb[refs]), np.float64), identity, probes, refs, posture)


def _verification(d: np.ndarray, identity: np.ndarray, probes: np.ndarray, refs: np.ndarray,
                  posture: np.ndarray | None) -> dict[str, float]:
    m = biometrics(*_split_pairs(d, identity, probes, refs, None))
    if posture is not None:
        m |= {f"same_posture_{k}": v for k, v in biometrics(*_split_pairs(d, identity, probes, refs, posture)).items()}
    return m


def rank1_identification(emb: np.ndarray, identity: np.ndarray, probes: np.ndarray, refs: np.ndarray,
                         distance: Distance = cosine_distance,
                         template: Callable[[np.ndarray], np.ndarray] = unit_mean) -> float:
    ids = np.unique(identity[refs])
    tmpl = np.stack([template(emb[refs[identity[refs] == i]]) for i in ids])
    nearest = ids[np.asarray(distance(emb[probes], tmpl)).argmin(1)]
    return float((nearest == identity[probes]).mean())


def enrolled_metrics(emb: np.ndarray, identity: np.ndarray, posture: np.ndarray, probes: np.ndarray,
                     refs: np.ndarray, predicted_posture: np.ndarray, distance: Distance = cosine_distance,
                     template: Callable[[np.ndarray], np.ndarray] = unit_mean,
                     d: np.ndarray | None = None, cohort: Cohort | None = None) -> dict[str, float]:
    """Claims against enrolled people, decided as a gallery decides them.

    Every identity of `refs` is enrolled from its references (unconcealed scans); every probe claims every
    enrolled identity once (genuine: its own). A claim's distance, by two rules:

        enrolled_*          the nearest of the claimed person's references (inference.matching.verify)
        enrolled_posture_*  the claimed person's template (`template` of the references) in the probe's
                            posture as `predicted_posture` says (the network's posture head; a baseline's
                            nearest-neighbour posture), of all references when none is in that posture

        enrolled_snorm_*    with a `cohort`: the posture-template distance S-normalised (`Cohort`,
                            thzcore.score_norm), as a gallery whose bundle carries a cohort decides

    Each: ROC AUC, EER, TAR@FAR (`biometrics`) and rank-1 (the nearest enrolled identity by that rule).
    Unlike `verification_metrics`, whose pairs are single images, a claim is scored against everything
    the person enrolled: what an operator of the gallery sees. `d`: the probes x references distances when
    already computed.
    """
    ids, claim, nearest, by_posture = claim_distances(emb, identity, posture, probes, refs, predicted_posture,
                                                      distance, template, d)
    rules = [("enrolled", nearest), ("enrolled_posture", by_posture)]
    if cohort is not None:
        rules.append(("enrolled_snorm", normalised_claims(emb, identity, posture, probes, refs, predicted_posture,
                                                          by_posture, cohort, distance, template)))
    m: dict[str, float] = {}
    for key, s in rules:
        m |= {f"{key}_{k}": v for k, v in biometrics(s[claim], s[~claim]).items()}
        m[f"{key}_rank1"] = float((ids[s.argmin(1)] == identity[probes]).mean())
    return m


def claim_distances(emb: np.ndarray, identity: np.ndarray, posture: np.ndarray, probes: np.ndarray, refs: np.ndarray,
                    predicted_posture: np.ndarray, distance: Distance = cosine_distance,
                    template: Callable[[np.ndarray], np.ndarray] = unit_mean, d: np.ndarray | None = None
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(enrolled identities (I,), genuine claims (P, I), nearest-reference distances (P, I), posture-template
    distances (P, I)) of `enrolled_metrics`' two rules."""
    ids = np.unique(identity[refs])
    claim = identity[probes][:, None] == ids[None, :]
    if d is None:
        d = np.asarray(distance(emb[probes], emb[refs]), np.float64)
    nearest = np.stack([d[:, identity[refs] == i].min(1) for i in ids], axis=1)
    post_p = np.asarray(predicted_posture)[probes]
    by_posture = np.empty_like(nearest)
    for k in np.unique(post_p):
        rows = post_p == k
        tmpl = posture_templates(emb, identity, posture, refs, ids, int(k), template)
        by_posture[rows] = np.asarray(distance(emb[probes[rows]], tmpl), np.float64)
    return ids, claim, nearest, by_posture


def posture_templates(emb: np.ndarray, identity: np.ndarray, posture: np.ndarray, refs: np.ndarray, ids: np.ndarray,
                      k: int, template: Callable[[np.ndarray], np.ndarray] = unit_mean) -> np.ndarray:
    """Each of `ids`' template in posture `k` from its references (all of its references when none is in k)."""
    post_r = posture[refs]
    out = []
    for i in ids:
        own = refs[(identity[refs] == i) & (post_r == k)]
        out.append(template(emb[own if len(own) else refs[identity[refs] == i]]))
    return np.stack(out)


def normalised_claims(emb: np.ndarray, identity: np.ndarray, posture: np.ndarray, probes: np.ndarray,
                      refs: np.ndarray, predicted_posture: np.ndarray, by_posture: np.ndarray, cohort: Cohort,
                      distance: Distance = cosine_distance,
                      template: Callable[[np.ndarray], np.ndarray] = unit_mean) -> np.ndarray:
    """The posture-template distances (P, I) of `claim_distances`, S-normalised against `cohort` in each
    probe's predicted posture (thzcore.score_norm.s_norm)."""
    ids = np.unique(identity[refs])
    post_p = np.asarray(predicted_posture)[probes]
    out = np.empty_like(by_posture)
    for k in np.unique(post_p):
        rows = np.flatnonzero(post_p == k)
        tmpl = posture_templates(emb, identity, posture, refs, ids, int(k), template)
        probe = cohort.stats(emb[probes[rows]], int(k), identity[probes[rows]], distance)
        own = cohort.stats(tmpl, int(k), ids, distance)
        out[rows] = s_norm(by_posture[rows], probe, own)
    return out


def protocol_metrics(emb: np.ndarray, identity: np.ndarray, posture: np.ndarray, concealed: np.ndarray,
                     anchors: np.ndarray, targets: np.ndarray, distance: Distance = cosine_distance,
                     template: Callable[[np.ndarray], np.ndarray] = unit_mean,
                     predicted_posture: np.ndarray | None = None, cohort: Cohort | None = None) -> dict[str, float]:
    """The verification protocols of one split, on rows of `emb` (the network's and every baseline's).

    Triplets of (anchors, targets) with every same-posture unconcealed negative; all-posture and
    same-posture biometrics of concealed probes against unconcealed references; rank-1 against
    per-identity templates of the references; with `predicted_posture`, the claims against enrolled
    people (`enrolled_metrics`; with `cohort`, also S-normalised).
    """
    refs, probes = np.flatnonzero(~concealed), np.flatnonzero(concealed)
    m = triplet_metrics(emb, identity, posture, anchors, targets, refs, distance)
    d = np.asarray(distance(emb[probes], emb[refs]), np.float64)
    m |= _verification(d, identity, probes, refs, posture)
    m["rank1_identification"] = rank1_identification(emb, identity, probes, refs, distance, template)
    if predicted_posture is not None:
        m |= enrolled_metrics(emb, identity, posture, probes, refs, predicted_posture, distance, template, d, cohort)
    return m

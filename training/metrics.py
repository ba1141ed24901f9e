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
    impostor pairs = of different identities (all postures). ROC AUC = P(d_genuine < d_impostor),
    ties count 1/2 (Mann-Whitney). A claim is accepted when d <= t: FAR(t) = impostors accepted,
    FRR(t) = genuines rejected; EER where they cross (mean of the two at the threshold minimising
    |FAR - FRR|); TAR@FAR = genuines accepted at the largest t with FAR(t) <= target.
Rank-1 identification: each concealed probe against per-identity templates (L2-normalised mean of the
    identity's unconcealed embeddings); correct when the nearest template is the probe's identity.
"""
from __future__ import annotations

import numpy as np
import torch
from scipy.stats import rankdata

from thzcore.labels import POSTURES
from training.losses import psnr, ssim


def cosine_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(n,E) x (m,E) unit vectors -> (n,m) distances 1 - a.b."""
    return 1.0 - np.asarray(a, np.float64) @ np.asarray(b, np.float64).T


def triplet_metrics(emb: np.ndarray, identity: np.ndarray, posture: np.ndarray, anchors: np.ndarray,
                    positives: np.ndarray, negative_pool: np.ndarray) -> dict[str, float]:
    """Triplet accuracy and mean d(a,p), d(a,n); negatives = pool members of the anchor's posture, other id."""
    correct = total = 0
    d_pos, d_neg = [], []
    for a, p in zip(anchors, positives):
        neg = negative_pool[(posture[negative_pool] == posture[a]) & (identity[negative_pool] != identity[a])]
        if len(neg) == 0:
            continue
        dp = float(cosine_distance(emb[a][None], emb[p][None])[0, 0])
        dn = cosine_distance(emb[a][None], emb[neg])[0]
        correct += int((dp < dn).sum())
        total += len(dn)
        d_pos.append(dp)
        d_neg.extend(dn.tolist())
    if total == 0:
        raise ValueError("no triplet could be formed: every posture needs unconcealed captures of 2 identities")
    return {"triplet_accuracy": correct / total, "avg_positive_distance": float(np.mean(d_pos)),
            "avg_negative_distance": float(np.mean(d_neg)), "n_triplets": int(total)}


def posture_metrics(logits: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    z = np.asarray(logits, np.float64)
    prob = np.exp(z - z.max(1, keepdims=True))
    prob /= prob.sum(1, keepdims=True)
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


def pair_distances(emb: np.ndarray, identity: np.ndarray, probes: np.ndarray, refs: np.ndarray
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Genuine and impostor distances of every (probe, reference) pair."""
    d = cosine_distance(emb[probes], emb[refs])
    same = identity[probes][:, None] == identity[refs][None, :]
    return d[same], d[~same]


def verification_metrics(emb: np.ndarray, identity: np.ndarray, probes: np.ndarray, refs: np.ndarray
                         ) -> dict[str, float]:
    """ROC AUC, EER (and its threshold), TAR at FAR = 1% (and its threshold) over all probe x reference pairs."""
    gen, imp = pair_distances(emb, identity, probes, refs)
    e, t_eer = eer(gen, imp)
    tar, t_far = threshold_at_far(gen, imp, 0.01)
    return {"roc_auc": roc_auc(gen, imp), "eer": e, "eer_threshold": t_eer, "tar_at_far1": tar,
            "far1_threshold": t_far, "n_genuine": int(len(gen)), "n_impostor": int(len(imp))}


def rank1_identification(emb: np.ndarray, identity: np.ndarray, probes: np.ndarray, refs: np.ndarray) -> float:
    ids = np.unique(identity[refs])
    tmpl = np.stack([emb[refs[identity[refs] == i]].mean(0) for i in ids])
    tmpl /= np.linalg.norm(tmpl, axis=1, keepdims=True)
    nearest = ids[cosine_distance(emb[probes], tmpl).argmin(1)]
    return float((nearest == identity[probes]).mean())

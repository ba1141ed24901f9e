"""Claims of several students alone and averaged (an embedding ensemble), on the same images.

    python examples/ensemble_claims.py --data data/v5 --identities 180-199 \
        inference/bundles/compact runs/bundles/v5_b_cf_e60_s1 runs/bundles/v5_b_cf_e60_p16

Each bundle's embeddings of every image of the identities (all splits) are unit-normalised; an ensemble's
embedding is the unit mean of its members', its posture the argmax of the summed logits. Claims are scored
as `thz evaluate` scores them (training.metrics.enrolled_metrics: enrolled from the unconcealed scans,
probed with the concealed ones; the posture template, raw and S-normalised against each model's templates
of the train split minus the evaluated images), one line per single bundle, pair and, for three or more,
all of them. A study of whether seed-to-seed variance limits the claims (docs/results.md); not a shipped path.
"""
import argparse
from itertools import combinations

import numpy as np

from training.baselines import fit_set
from training.data import ThzData
from training.metrics import enrolled_metrics
from training.predict import predictor_for, split_protocol
from thzcore.labels import parse_identity_list

KEYS = (("enrolled_posture", ("eer", "tar_at_far1", "tar_at_far0p1", "rank1")),
        ("enrolled_snorm", ("eer", "tar_at_far1", "tar_at_far0p1", "rank1")))


def unit(e: np.ndarray) -> np.ndarray:
    e = np.asarray(e, np.float64)
    return e / np.linalg.norm(e, axis=1, keepdims=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("bundles", nargs="+")
    ap.add_argument("--data", required=True)
    ap.add_argument("--identities", required=True, help="e.g. 180-199")
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    data = ThzData.load(a.data)
    train_mask = data.split == "train"     # before the restriction, as thz evaluate takes it
    data.keep_identities(parse_identity_list(a.identities))
    splits = ("train", "val", "test")
    idx, *_ = split_protocol(data, splits)
    preds = [predictor_for(b, a.threads)[0] for b in a.bundles]
    outs = [p(data.images[idx], reconstruct=False) for p in preds]
    # the cohort's images, as thz evaluate draws them (training.evaluate._network_cohort), embedded once a model
    fit = fit_set(data, train_mask, np.isin(data.split, splits))
    fit_emb = [unit(p(fit.images, reconstruct=False)["embedding"]) for p in preds]
    conc = data.concealed[idx]
    print("| models | posture | posture template: EER | TAR@FAR1% | TAR@FAR0.1% | rank-1 "
          "| S-normalised: EER | TAR@FAR1% | TAR@FAR0.1% | rank-1 |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    sets = [(i,) for i in range(len(preds))] + list(combinations(range(len(preds)), 2))
    if len(preds) > 2:
        sets.append(tuple(range(len(preds))))
    for members in sets:
        emb = unit(sum(unit(outs[i]["embedding"]) for i in members))
        predicted = sum(np.asarray(outs[i]["posture_logits"], np.float64) for i in members).argmax(1)
        cohort = fit.cohort(unit(sum(fit_emb[i] for i in members)))
        r = enrolled_metrics(emb, data.identity[idx], data.posture[idx], np.flatnonzero(conc),
                             np.flatnonzero(~conc), predicted, cohort=cohort)
        cells = [f"{100 * r[f'{rule}_{k}']:.1f} %" for rule, ks in KEYS for k in ks]
        name = " + ".join(a.bundles[i] for i in members)
        print(f"| {name} | {100 * np.mean(predicted == data.posture[idx]):.1f} % | " + " | ".join(cells) + " |",
              flush=True)


if __name__ == "__main__":
    main()

"""Which scans the posture head gets wrong, and whether a mirrored second look would mend them.

    python examples/posture_errors.py inference/bundles/compact --data data/v5 --splits val,test

Per split: the wrong images (identity, true -> predicted posture, concealed or not, capture, ROI quality,
softmax of the true and of the predicted class) and the confusion matrix (rows true, columns predicted).
Then the mirror check: the scanner is left-right symmetric (the mean unconcealed image of each posture
against the mirrored mean of its partner, front-left <-> front-right, full-left <-> full-right, is printed),
so a mirrored image is a scan of the mirrored posture, and test-time augmentation (the logits of the image
plus the permuted logits of its mirror) is a fair second look. A study (docs/results.md), not a shipped path.
"""
import argparse

import numpy as np

from thzcore.softmax import softmax
from thzcore.labels import POSTURES
from training.data import ThzData
from training.predict import predictor_for, split_protocol

MIRROR = [2, 1, 0, 4, 3]   # the posture class of the mirrored scan, in POSTURES order


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("bundle")
    ap.add_argument("--data", required=True)
    ap.add_argument("--splits", default="test", help="comma-separated, e.g. val,test")
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    pred, _ = predictor_for(a.bundle, a.threads)
    data = ThzData.load(a.data)
    unc = ~data.concealed
    for k, name in enumerate(POSTURES):
        own = data.images[unc & (data.posture == k)].mean(0).ravel()
        partner = data.images[unc & (data.posture == MIRROR[k])].mean(0)
        r = np.corrcoef(own, partner[..., ::-1].ravel())[0, 1]
        print(f"symmetry: mean {name} vs mirrored mean {POSTURES[MIRROR[k]]}: r = {r:.3f}")
    for split in a.splits.split(","):
        idx, *_ = split_protocol(data, (split,))
        x, true = data.images[idx], data.posture[idx]
        logits = np.asarray(pred(x, reconstruct=False)["posture_logits"], np.float64)
        mirrored = np.asarray(pred(np.ascontiguousarray(x[..., ::-1]), reconstruct=False)["posture_logits"],
                              np.float64)[:, MIRROR]
        p, guess = softmax(logits), logits.argmax(1)
        wrong = np.flatnonzero(guess != true)
        print(f"\n{split}: {len(wrong)} wrong of {len(idx)} (accuracy {100 * (1 - len(wrong) / len(idx)):.2f} %)")
        for w in wrong:
            i = idx[w]
            q = "-" if data.quality is None else f"{data.quality[i]:.2f}"
            print(f"  id {data.identity[i]:3d} {POSTURES[true[w]]:>12} -> {POSTURES[guess[w]]:<12} "
                  f"{'concealed' if data.concealed[i] else 'unconcealed'} capture {data.capture[i]} quality {q} "
                  f"p(true) {p[w, true[w]]:.2f} p(predicted) {p[w, guess[w]]:.2f}")
        confusion = np.zeros((len(POSTURES), len(POSTURES)), int)
        np.add.at(confusion, (true, guess), 1)
        print("  confusion (rows true, columns predicted, in POSTURES order):")
        print("\n".join("  " + " ".join(f"{c:4d}" for c in row) for row in confusion))
        print(f"  mirrored alone {100 * (mirrored.argmax(1) == true).mean():.2f} %, image + mirror "
              f"{100 * ((logits + mirrored).argmax(1) == true).mean():.2f} %")


if __name__ == "__main__":
    main()

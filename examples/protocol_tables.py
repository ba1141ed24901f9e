"""Markdown tables for docs/results.md from the metrics.json of the protocol evaluations.

    python examples/protocol_tables.py runs/protocols [--net="Model B, 400 ids"] paper:paper heldout:heldout "open set, 20 new people (5150)":open5150

Each argument after the folder is LABEL:NAME, NAME a `thz evaluate --out` folder under it (runs/cfg style);
a NAME_uniform folder beside it adds the uniform-weight fusion rows. The paper protocol must be named `paper`.
"""
import json
import sys
from pathlib import Path

E = Path(sys.argv[1] if len(sys.argv) > 1 else "runs/protocols")
NAMES = {"pixel": "raw-pixel cosine", "ncc": "normalised cross-correlation", "ssim": "SSIM template matching",
         "pca": "PCA-50 whitened cosine", "fisher": "Fisherfaces (PCA-50 + LDA-19)"}
NET = "**Model B student** (shipped bundle)"
if len(sys.argv) > 2 and sys.argv[2].startswith("--net="):   # another model than the shipped one
    NET = f"**{sys.argv.pop(2)[len('--net='):]}**"
def load(n):
    return json.loads((E / n / "metrics.json").read_text())



def pct(v):
    return "-" if v is None else f"{100 * v:.1f} %"


def num(v):
    return "-" if v is None else f"{v:.3f}"



PAIRS = [a.rsplit(":", 1) for a in sys.argv[2:]] or [("paper", "paper"), ("heldout", "heldout")]
protos = [(p, n) for p, n in PAIRS if (E / n / "metrics.json").exists()]
print("| protocol | method | triplet | ROC AUC | EER | TAR@FAR1% | TAR@FAR0.1% | same-posture EER | rank-1 | posture |")
print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
for label, n in protos:
    m = load(n)
    rows = [(NET, m)] + [(v.get("label") or NAMES[k], v) for k, v in m["baselines"]["verification"].items()]
    for i, (name, r) in enumerate(rows):
        lab = f"{label} ({m['n_images']} images)" if i == 0 else ""
        print(f"| {lab} | {name} | {pct(r['triplet_accuracy'])} | {num(r['roc_auc'])} | {pct(r['eer'])} | "
              f"{pct(r['tar_at_far1'])} | {pct(r['tar_at_far0p1'])} | {pct(r['same_posture_eer'])} | "
              f"{pct(r['rank1_identification'])} | {pct(r.get('posture_accuracy'))}{' (NN)' if i else ''} |")
print()
# pairs
for label, n in protos:
    m = load(n)
    print(f"- {label}: {m['n_genuine']} genuine / {m['n_impostor']} impostor pairs (same posture {m['same_posture_n_genuine']} / {m['same_posture_n_impostor']}), {m['n_triplets']} triplets, rank-1 among {len(m['identities']) if m.get('identities') else m['protocol']['evaluated']['n_identities']} identities")
print()
# per posture (paper)
m = load("paper")
P = list(m["per_posture"])
print("| method | " + " | ".join(P) + " |")
print("|---|" + "---:|" * len(P))
rows = [(NET, m)] + [(v.get("label") or NAMES[k], v) for k, v in m["baselines"]["verification"].items()]
for name, r in rows:
    print(f"| {name} triplet | " + " | ".join(pct(r["triplet_accuracy_per_posture"].get(p)) for p in P) + " |")
print(f"| {NET} posture | " + " | ".join(pct(m["posture_accuracy_per_posture"].get(p)) for p in P) + " |")
print(f"| {NET} SSIM / PSNR dB | " + " | ".join(f"{m['per_posture'][p]['ssim']:.3f} / {m['per_posture'][p]['psnr']:.1f}" for p in P) + " |")
print("| anchors | " + " | ".join(str(m['per_posture'][p]['n']) for p in P) + " |")
print()
# fusion
print("| protocol | method | weights | N | probes / refs | ROC AUC | EER | TAR@FAR1% | TAR@FAR0.1% | same-posture EER | rank-1 |")
print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
for label, n in protos:
    m = load(n)
    if n == "paper" or "fusion" not in m:
        continue
    rows = [(NET, "ROI quality", m["fusion"])]
    u = E / f"{n}_uniform" / "metrics.json"
    if u.exists():
        rows.append((NET, "uniform", json.loads(u.read_text())["fusion"]))
    rows += [(v.get("label") or NAMES[k], "ROI quality", v["fusion"]) for k, v in m["baselines"]["verification"].items()]
    first = True
    for name, w, f in rows:
        for N in sorted(f, key=int):
            r = f[N]
            lab = label if first else ""
            first = False
            print(f"| {lab} | {name} | {w} | {N} | {r['n_probes']} / {r['n_references']} | {num(r['roc_auc'])} | {pct(r['eer'])} | "
                  f"{pct(r['tar_at_far1'])} | {pct(r['tar_at_far0p1'])} | {pct(r['same_posture_eer'])} | {pct(r['rank1_identification'])} |")
print()
REC = {"oracle": "oracle: mean of the person's other unconcealed captures", "posture_mean": "identity-blind posture mean",
       "second_capture": "a second real unconcealed capture", "concealed": "the concealed input itself"}
print("| protocol | predictor | SSIM | PSNR (dB) | identity accuracy | identity AUC | identity EER |")
print("|---|---|---:|---:|---:|---:|---:|")
for label, n in protos:
    m = load(n)
    ri = m["reconstruction_identity"]
    print(f"| {label} ({m['n_anchors']} anchors) | {NET} | {m['ssim']:.3f} | {m['psnr']:.2f} | {pct(ri['identity_accuracy'])} | {num(ri['identity_roc_auc'])} | {pct(ri['identity_eer'])} |")
    for k, r in m["baselines"]["reconstruction"].items():
        print(f"| | {REC[k]} | {r['ssim']:.3f} | {r['psnr']:.2f} | {pct(r['identity_accuracy'])} | {num(r['identity_roc_auc'])} | {pct(r['identity_eer'])} |")

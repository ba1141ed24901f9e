"""Markdown tables of the claims protocol (docs/results.md) from `thz evaluate --out` folders.

    python examples/claims_tables.py "ids 180-199":runs/enr/choose_cf "population 5150":runs/cf/open5150

Per scan: pairwise EER, claims by the nearest reference (EER), by the posture template and by that distance
S-normalised against the cohort (thzcore.score_norm), for the network and the five baselines of the same
evaluation. Then, for folders evaluated with `--fusion ... 5 ...`, the same claims with five scans fused.
"""
import json
import sys
from pathlib import Path

NET = "**Model B student**"


def pct(v):
    return "-" if v is None else f"{100 * v:.1f} %"


def rows(m):
    """The network, then each baseline under the name its evaluation gave it (e.g. its LDA dimension)."""
    return [(NET, m)] + [(v["label"], v) for v in m["baselines"]["verification"].values()]


sets = [(lab, json.loads((Path(d) / "metrics.json").read_text())) for lab, d in (a.rsplit(":", 1) for a in sys.argv[1:])]
RULES = (("enrolled_posture", "posture template"), ("enrolled_snorm", "S-normalised"))


def claims(r, keys=("eer", "tar_at_far1", "tar_at_far0p1", "rank1")):
    return " | ".join(pct(r.get(f"{rule}_{k}")) for rule, _ in RULES for k in keys)


print("| set | method | pairs EER | nearest ref.: EER | posture template: EER | TAR@FAR1% | TAR@FAR0.1% | rank-1 "
      "| S-normalised: EER | TAR@FAR1% | TAR@FAR0.1% | rank-1 |")
print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for lab, m in sets:
    for i, (name, r) in enumerate(rows(m)):
        head = f"{lab} ({m['n_anchors']} probes)" if i == 0 else ""
        print(f"| {head} | {name} | {pct(r['eer'])} | {pct(r['enrolled_eer'])} | {claims(r)} |")
fused = [(lab, m) for lab, m in sets if "5" in (m.get("fusion") or {})]
if fused:
    print()
    print("| set | method | posture template: EER | TAR@FAR1% | TAR@FAR0.1% | rank-1 | S-normalised: EER | TAR@FAR1% "
          "| TAR@FAR0.1% | rank-1 |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for lab, m in fused:
        for i, (name, r) in enumerate(rows(m)):
            f = r["fusion"]["5"]
            head = f"{lab} ({f['enrolled_posture_n_genuine']} probe windows)" if i == 0 else ""
            print(f"| {head} | {name} | {claims(f)} |")

"""Markdown tables of the claims protocol (docs/results.md) from `thz evaluate --out` folders.

    python examples/claims_tables.py "ids 180-199":runs/enr/choose_cf "population 5150":runs/cf/open5150

Per scan: pairwise EER, claims by the nearest reference and by the posture template, for the network
and the five baselines of the same evaluation. Then, for folders evaluated with `--fusion ... 5 ...`,
the same claims with five scans fused (posture template).
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
print("| set | method | pairs EER | claims, nearest ref.: EER | TAR@FAR1% | rank-1 | claims, posture template: EER "
      "| TAR@FAR1% | TAR@FAR0.1% | rank-1 |")
print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
for lab, m in sets:
    for i, (name, r) in enumerate(rows(m)):
        head = f"{lab} ({m['n_anchors']} probes)" if i == 0 else ""
        print(f"| {head} | {name} | {pct(r['eer'])} | {pct(r['enrolled_eer'])} | {pct(r['enrolled_tar_at_far1'])} | "
              f"{pct(r['enrolled_rank1'])} | {pct(r['enrolled_posture_eer'])} | {pct(r['enrolled_posture_tar_at_far1'])} | "
              f"{pct(r['enrolled_posture_tar_at_far0p1'])} | {pct(r['enrolled_posture_rank1'])} |")
fused = [(lab, m) for lab, m in sets if "5" in (m.get("fusion") or {})]
if fused:
    print()
    print("| set | method | EER | TAR@FAR1% | TAR@FAR0.1% | rank-1 |")
    print("|---|---|---:|---:|---:|---:|")
    for lab, m in fused:
        for i, (name, r) in enumerate(rows(m)):
            f = r["fusion"]["5"]
            head = f"{lab} ({f['enrolled_posture_n_genuine']} probe windows)" if i == 0 else ""
            print(f"| {head} | {name} | {pct(f['enrolled_posture_eer'])} | {pct(f['enrolled_posture_tar_at_far1'])} | "
                  f"{pct(f['enrolled_posture_tar_at_far0p1'])} | {pct(f['enrolled_posture_rank1'])} |")

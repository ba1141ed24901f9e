"""How the physics sets the difficulty: template matching on noise-free field power vs one effect at a time.

    python examples/difficulty_curve.py [--identities 10] [--captures 4] [--out docs/figures/sim_v2]

For each setting of one physical parameter (skin roughness: the diffuse level; the per-capture pose
jitter; the posture), it builds the scene maps of N identities x K captures (front-center, open),
forms the noise-free field power around the head in dB over the receiver floor
(sim.validation.head_image) and scores raw-pixel cosine rank-1 across captures
(sim.validation.template_rank1; chance = 1/N). No receiver noise, no processing: the physics only.
Writes difficulty_curve.png and difficulty_curve.json.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path



def rank1(settings_update: dict, n_ids: int, n_caps: int, posture: str = "front-center") -> float:
    from sim.capture import draw_capture
    from sim.config import SimConfig
    from sim.maps import subject_maps
    from sim.scanner import RasterDrive, VirtualScanner
    from sim.scene import Subject
    from sim.validation import head_image, template_rank1
    from thzcore.scanner import ScannerConfig

    cfg = SimConfig.model_validate(settings_update)
    vs = VirtualScanner(ScannerConfig(), cfg, seed=0)
    grid = vs._grid_for(RasterDrive.from_config(vs.cfg))
    images = {}
    for i in range(n_ids):
        for k in range(n_caps):
            sub = Subject(identity=i, posture=posture, concealed=False, capture_seed=7919 * k + 13)
            cap = draw_capture(sub, cfg, vs.optics.standoff_m)
            maps = subject_maps(vs.population.identity(i), cap, False, grid, vs.optics, cfg)
            images[(i, k)] = head_image(maps)
    return template_rank1(images)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--identities", type=int, default=10)
    ap.add_argument("--captures", type=int, default=4)
    ap.add_argument("--out", default="docs/figures/sim_v2")
    a = ap.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    curves = {
        "skin rms roughness (um)": [(h, {"reflection": {"skin_rms_height_m": h * 1e-6}}) for h in (10, 30, 60, 100, 150)],
        "pose jitter, yaw = pitch (deg)": [(j, {"capture": {"yaw_jitter_deg": j, "pitch_jitter_deg": j,
                                                             "roll_jitter_deg": 0.8 * j}}) for j in (0.0, 0.5, 1.0, 2.5, 4.0)],
    }
    res: dict[str, list[tuple[float, float]]] = {}
    for name, pts in curves.items():
        res[name] = []
        for x, upd in pts:
            r = rank1({"n_identities": max(20, a.identities), **upd}, a.identities, a.captures)
            res[name].append((x, r))
            print(f"{name} = {x}: rank-1 {r:.3f}", flush=True)
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, len(res), figsize=(4.2 * len(res), 3.2), squeeze=False)
    for ax, (name, pts) in zip(axes[0], res.items()):
        x, y = zip(*pts)
        ax.plot(x, y, "o-")
        ax.axhline(1.0 / a.identities, color="k", ls=":", lw=0.8)
        ax.set_xlabel(name)
        ax.set_ylabel("pixel-cosine rank-1 (noise-free)")
        ax.set_ylim(0, 1.02)
    fig.suptitle(f"template matching on the physics alone: {a.identities} identities x {a.captures} captures, "
                 "front-center", fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "difficulty_curve.png", dpi=110)
    (out / "difficulty_curve.json").write_text(json.dumps({"identities": a.identities, "captures": a.captures,
                                                           "curves": res, "seconds": time.perf_counter() - t0}, indent=1))


if __name__ == "__main__":
    main()

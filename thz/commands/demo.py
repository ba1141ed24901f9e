"""`thz sim demo`: a labelled contact sheet of the virtual scanner's THz and visible images, plus a physics summary."""
from __future__ import annotations

import json
import math
import time
import warnings
from pathlib import Path

import click

from thz.commands.options import n_identities_option
import numpy as np

from thzcore.logs import get_logger

log = get_logger(__name__)


def _demo_images(settings, n_identities: int, frames: int, seed: int, bar=None):
    """THz previews (averaged power), scene maps and visible images for identities x postures x concealment;
    `bar` (a tqdm bar) advances by one per image."""
    from sim.preview import mask_on_image, preview_image
    from sim.scanner import VirtualScanner
    from sim.scene import Subject
    from sim.validation import face_statistics, glints
    from thzcore.labels import POSTURES

    sc = settings.scanner
    p = settings.processing
    vs = VirtualScanner(sc, settings.sim, seed=seed)
    out, stats, t_frames, scenes = [], [], [], {}
    for ident in range(n_identities):
        for concealed in (False, True):
            row = []
            for posture in POSTURES:
                vs.set_scene(Subject(identity=ident, posture=posture, concealed=concealed, capture_seed=1000 * ident + 7))
                imgs = []
                for f in range(frames):
                    t, c = time.perf_counter(), time.process_time()
                    raw = vs.acquire_frame(f)
                    t_frames.append((time.perf_counter() - t, time.process_time() - c))
                    imgs.append(preview_image(raw, sc, p.gate_min_m, p.gate_max_m, lag_s=vs.true_line_lag_s))
                with warnings.catch_warnings():   # columns no chirp reached stay NaN
                    warnings.simplefilter("ignore", RuntimeWarning)
                    power = np.nanmean(imgs, axis=0)
                maps = vs.scene_maps()
                scenes[(ident, posture, concealed)] = maps
                face = mask_on_image(maps.head_mask, maps.grid.u0, maps.grid.v0, maps.grid.pitch, sc, power.shape)
                st = face_statistics(power, face)
                # consecutive frames of one capture: the sway changes the glints' interference
                fr = [np.nan_to_num(im[face]) for im in imgs]
                st["frame_to_frame_corr"] = (float(np.mean([np.corrcoef(fr[k], fr[k + 1])[0, 1]
                                                            for k in range(len(fr) - 1)])) if len(fr) > 1 else None)
                st["glints"] = [(r, c, round(d, 1)) for r, c, d in glints(power, face)]
                stats.append({"identity": ident, "posture": posture, "concealed": concealed, **st})
                vis = vs.render_visible(ident, posture, concealed, size=64, capture_seed=1000 * ident + 7)
                row.append((posture, power, vis, st["dr_spread_db"]))
                if bar is not None:
                    bar.update(1)
            out.append((ident, concealed, row))
    return out, stats, t_frames, scenes


def _validation_figures(scenes: dict, stats: list[dict], out: Path, aspect: float) -> dict:
    """Decorrelation vs yaw (curve), concealed vs unconcealed correlation, glint positions per posture."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from sim.validation import map_correlation, yaw_decorrelation
    from thzcore.labels import POSTURES

    dyaw = np.round(np.arange(0.0, 3.01, 0.1), 2)
    curves = {}
    for (ident, posture, concealed), maps in scenes.items():
        if posture in ("front-center", "full-left"):
            curves[(ident, posture, concealed)] = yaw_decorrelation(maps, dyaw)
    fig, ax = plt.subplots(figsize=(5, 3.4))
    for (ident, posture, concealed), c in curves.items():
        ax.plot(dyaw, c, ("-" if posture == "front-center" else "--"), color=f"C{ident}", alpha=0.5 if concealed else 1,
                label=f"id{ident} {posture}{' conc.' if concealed else ''}")
    ax.axvline(0.3, color="k", lw=0.6, ls=":")
    ax.text(0.32, 0.05, "rms sway", fontsize=7)
    ax.set_xlabel("head yaw change (deg)")
    ax.set_ylabel("correlation of |E|^2 over the face")
    ax.set_ylim(-0.2, 1.02)
    ax.legend(fontsize=5, ncol=2)
    fig.tight_layout()
    fig.savefig(out / "yaw_decorrelation.png", dpi=110)
    plt.close(fig)

    conc = [map_correlation(scenes[(i, p, False)], scenes[(i, p, True)])
            for (i, p, c) in scenes if not c and (i, p, True) in scenes]
    fig, axes = plt.subplots(1, len(POSTURES), figsize=(2.2 * len(POSTURES), 2.6), squeeze=False)
    for k, posture in enumerate(POSTURES):
        a = axes[0, k]
        for s in stats:
            if s["posture"] == posture:
                g = np.array([(r, c) for r, c, _ in s["glints"]]).reshape(-1, 2)
                a.scatter(g[:, 1], g[:, 0], s=8, marker="x" if s["concealed"] else "o", color=f"C{s['identity']}")
        a.set_xlim(60, 196)
        a.set_ylim(63, 0)
        a.set_aspect(aspect)
        a.set_title(posture, fontsize=7)
        a.set_xticks([])
        a.set_yticks([])
    fig.suptitle("glints within 10 dB of the peak (o open, x concealed; colour = identity)", fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "glints.png", dpi=110)
    plt.close(fig)
    at = {float(d): float(np.mean([c[i] for c in curves.values()])) for i, d in enumerate(dyaw) if d in (0.1, 0.3, 0.5, 1.0, 2.0)}
    return {"yaw_decorrelation_mean": at, "concealed_vs_unconcealed_corr_mean": float(np.mean(conc)),
            "concealed_vs_unconcealed_corr": [float(x) for x in conc],
            "figures": ["yaw_decorrelation.png", "glints.png"]}


def _contact_sheet(rows, path: Path, aspect: float) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n_rows, n_cols = len(rows), 2 * len(rows[0][2])
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(1.9 * n_cols, 2.2 * n_rows), squeeze=False)
    for r, (ident, concealed, row) in enumerate(rows):
        for c, (posture, power, vis, dr) in enumerate(row):
            db = 10 * np.log10(power)
            lo, hi = np.nanpercentile(db, 2), np.nanpercentile(db, 99.9)
            ax = axes[r, 2 * c]
            ax.imshow(db, cmap="inferno", vmin=lo, vmax=hi, aspect=aspect, interpolation="nearest")
            ax.set_title(f"THz id{ident} {posture}\n{'concealed' if concealed else 'open'} P90/P10 {dr:.1f} dB", fontsize=6)
            ax = axes[r, 2 * c + 1]
            ax.imshow(vis, cmap="gray", vmin=0, vmax=1)
            ax.set_title(f"visible id{ident} {posture}", fontsize=6)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle("thz-face virtual scanner (THz = PREVIEW peak-in-gate power, dB, 3-frame mean; visible = teacher input)",
                 fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def physics_summary(settings) -> dict:
    """The configured physics numbers (beam, range, raster timing)."""
    from sim.galvo import servo_gain
    sc = settings.scanner
    o, r, f = sc.optics, sc.raster, sc.fmcw
    return {
        "carrier_ghz": o.carrier_hz / 1e9, "wavelength_mm": o.wavelength_m * 1e3,
        "beam_waist_diameter_mm": o.beam_diameter_m * 1e3, "rayleigh_range_m": o.rayleigh_range_m,
        "depth_of_focus_m": o.depth_of_focus_m, "divergence_deg": math.degrees(o.divergence_rad),
        "beam_diameter_at_edges_of_dof_mm": 2e3 * o.beam_radius_m(o.waist_range_m + o.rayleigh_range_m),
        "range_resolution_mm": f.range_resolution_m * 1e3, "chirp_slope_hz_per_s": f.slope_hz_per_s,
        "range_window_m": [f.reference_range_m, f.max_range_m], "beat_at_standoff_hz": f.beat_hz(o.standoff_m),
        "lines_per_frame": r.lines_per_frame, "line_duration_ms": r.line_duration_s * 1e3,
        "servo_lag_ms": r.servo_lag_s * 1e3, "servo_gain_at_fast_hz": servo_gain(r.fast_axis_hz, r.servo_natural_hz,
                                                                                 r.servo_damping),
        "raw_frame_shape": list(sc.raw_frame_shape), "raw_frame_mb": sc.raw_frame_bytes / 1e6,
        "skin_power_reflectivity": settings.sim.reflection.skin_power_reflectivity,
    }


@click.command("demo")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="directory for the PNG and summary")
@n_identities_option("identities to show (population members 0..N-1)", default=3, type=click.IntRange(1, 20))
@click.option("--frames", default=3, show_default=True, type=click.IntRange(1, 16), help="frames averaged per image")
@click.option("--seed", default=None, type=int, help="capture seed (default: sim.seed of the config)")
@click.option("--no-progress", is_flag=True, help="no progress bar on stderr")
@click.pass_obj
def demo(obj, out_dir: str, n_identities: int, frames: int, seed: int | None, no_progress: bool) -> None:
    """Render identities in all postures, open and concealed, THz and visible, into a contact sheet + summary."""
    settings = obj.settings
    identities = min(n_identities, settings.sim.n_identities)
    seed = settings.sim.seed if seed is None else seed
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    from thzcore.labels import POSTURES
    from tqdm import tqdm

    n_images = identities * 2 * len(POSTURES)
    with tqdm(total=n_images + 2, desc="demo", unit="step", disable=no_progress, dynamic_ncols=True,
              bar_format="{desc}: {n}/{total} {postfix} [{elapsed}<{remaining}]") as bar:
        bar.set_postfix_str(f"scanning {n_images} images ({frames} frames each)")
        rows, stats, t_frames, scenes = _demo_images(settings, identities, frames, seed, bar)
        sheet = out / "contact_sheet.png"
        r = settings.scanner.raster
        aspect = r.pixel_pitch_y_m / (r.fov_x_m / 256)
        bar.set_postfix_str("contact sheet")
        _contact_sheet(rows, sheet, aspect=aspect)
        bar.update(1)
        bar.set_postfix_str("validation figures")
        valid = _validation_figures(scenes, stats, out, aspect)
        bar.update(1)

    def mean(key, concealed=None):
        v = [s[key] for s in stats if concealed is None or s["concealed"] == concealed]
        return float(np.mean(v))

    glint_counts = {p: float(np.mean([len(s["glints"]) for s in stats if s["posture"] == p]))
                    for p in dict.fromkeys(s["posture"] for s in stats)}
    summary = {
        "physics": physics_summary(settings),
        "measured": {
            "dr_spread_db": mean("dr_spread_db"), "dr_spread_db_unconcealed": mean("dr_spread_db", False),
            "dr_peak_db": mean("dr_peak_db"), "dr_peak_db_unconcealed": mean("dr_peak_db", False),
            "definitions": {"dr_spread_db": "10 log10(P90 / P10) of peak-in-gate POWER over the true head pixels",
                            "dr_peak_db": "10 log10(P_max / P50) of POWER over the true head pixels",
                            "image": f"{frames}-frame mean, preview image former (sim.preview)"},
            "face_to_background_db": mean("face_to_background_db"),
            "within_3db_of_peak": mean("within_3db"), "within_6db_of_peak": mean("within_6db"),
            "glints_per_image": glint_counts,
            "frame_to_frame_corr": mean("frame_to_frame_corr") if frames > 1 else None,
            **valid,
            "frame_time_s_median": float(np.median([w for w, _ in t_frames])),
            "frame_cpu_s_median": float(np.median([c for _, c in t_frames])), "frames": len(t_frames),
        },
        "images": stats, "seed": seed, "contact_sheet": sheet.name,
        "wall_s": time.perf_counter() - t0,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    ph, me = summary["physics"], summary["measured"]
    md = [
        "# Virtual scanner demo", "",
        f"Contact sheet: `{sheet.name}` ({identities} identities x 5 postures x open/concealed; THz preview + visible).", "",
        "| quantity | value |", "|---|---|",
        f"| beam waist diameter (1/e^2) | {ph['beam_waist_diameter_mm']:.1f} mm |",
        f"| Rayleigh range / depth of focus | {ph['rayleigh_range_m']:.3f} m / {ph['depth_of_focus_m']:.3f} m |",
        f"| divergence theta0 | {ph['divergence_deg']:.2f} deg |",
        f"| range resolution c/2B | {ph['range_resolution_mm']:.2f} mm |",
        f"| beat at standoff | {ph['beat_at_standoff_hz'] / 1e3:.0f} kHz |",
        f"| lines per frame / line time | {ph['lines_per_frame']} / {ph['line_duration_ms']:.3f} ms |",
        f"| servo lag at the fast axis | {ph['servo_lag_ms']:.3f} ms |",
        f"| raw frame | {ph['raw_frame_shape']} int16, {ph['raw_frame_mb']:.1f} MB |",
        f"| face dynamic range, spread: P90/P10 of power, all / unconcealed | {me['dr_spread_db']:.2f} / "
        f"{me['dr_spread_db_unconcealed']:.2f} dB |",
        f"| face dynamic range, peak: P_max/P50 of power, all / unconcealed | {me['dr_peak_db']:.2f} / "
        f"{me['dr_peak_db_unconcealed']:.2f} dB |",
        f"| face pixels within 3 dB / 6 dB of the peak | {100 * me['within_3db_of_peak']:.1f}% / "
        f"{100 * me['within_6db_of_peak']:.1f}% |",
        f"| glints within 10 dB of the peak, per image | "
        + ", ".join(f"{p} {n:.1f}" for p, n in me["glints_per_image"].items()) + " |",
        f"| face-to-background (median power) | {me['face_to_background_db']:.1f} dB |",
        f"| consecutive frames, correlation of face power | {me['frame_to_frame_corr']} |",
        f"| field power correlation vs head yaw change (mean) | "
        + ", ".join(f"{d} deg: {c:.2f}" for d, c in me["yaw_decorrelation_mean"].items()) + " |",
        f"| concealed vs unconcealed field power, same pose (mean corr.) | "
        f"{me['concealed_vs_unconcealed_corr_mean']:.2f} |",
        f"| simulation time per frame (median wall / CPU) | {me['frame_time_s_median'] * 1e3:.0f} ms / "
        f"{me['frame_cpu_s_median'] * 1e3:.0f} ms |", "",
        "The THz images come from sim.preview, a small peak-in-gate preview, not from processing/.", "",
    ]
    (out / "summary.md").write_text("\n".join(md))
    log.info("demo written", extra={"out": str(out), "wall_s": round(summary["wall_s"], 1)})
    click.echo(json.dumps({"out": str(out), "contact_sheet": str(sheet),
                           "dr_spread_db": me["dr_spread_db"], "dr_peak_db": me["dr_peak_db"],
                           "frame_time_s": me["frame_time_s_median"], "frame_cpu_s": me["frame_cpu_s_median"]}))

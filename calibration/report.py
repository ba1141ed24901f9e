"""Calibration reports: a Markdown page per run with PNG plots and pass/fail per item.

Plots are drawn with matplotlib's Agg backend (no display); each function writes one PNG and
returns its path. `write_report` lays out the record's values, checks, tables and the plots.
"""
from __future__ import annotations

import math
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from calibration.fits.caustic import CausticFit
    from calibration.fits.edge import EdgeFit
    from calibration.store import CalibrationRecord


def _plt():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    _plt().close(fig)
    return path


def plot_knife_edge(path: Path, distance_m: np.ndarray, values: np.ndarray, fit: "EdgeFit", title: str,
                    power: bool = False) -> Path:
    """Edge-spread samples against distance from the fitted edge, with the erf fit and the 10/90 % levels.

    power=True: `values` are detected power fitted with edge_profile_power; the plot shows the
    amplitude sqrt(P - noise power) against the fitted erf.
    """
    from calibration.fits.edge import K_10_90, edge_profile
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 3.6))
    s = np.asarray(distance_m) * 1e3
    w = fit.radius_1e2.value
    a, b = fit.offset.value, fit.step.value
    if power:
        values = np.sqrt(np.clip(np.asarray(values) - a, 0.0, None)) * np.sign(b)
        a = 0.0
    ax.plot(s, values, ".", ms=2, alpha=0.5, label="pixels")
    xx = np.linspace(s.min(), s.max(), 400)
    ax.plot(xx, edge_profile(xx * 1e-3, a, b, 0.0, w), "r-", lw=1.5,
            label=f"erf fit: 2w = {2 * w * 1e3:.2f} mm, 10-90 % = {K_10_90 * w * 1e3:.2f} mm")
    for lvl in (0.1, 0.9):
        ax.axhline(a + lvl * b, color="gray", ls=":", lw=0.8)
    ax.set_xlabel("distance from edge (mm)")
    ax.set_ylabel("signal (amplitude, a.u.)")
    ax.set_title(title)
    ax.legend(fontsize=7)
    ax.set_xlim(-4 * w * 1e3, 4 * w * 1e3)
    return _save(fig, path)


def plot_spot(path: Path, image: np.ndarray, extent_m: tuple[float, float, float, float], title: str) -> Path:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(4.5, 4))
    e = [v * 1e3 for v in extent_m]
    im = ax.imshow(image, extent=e, origin="upper", aspect="auto", cmap="viridis")
    fig.colorbar(im, ax=ax, label="power (dB)")
    ax.set_xlabel("x (mm)")
    ax.set_ylabel("y (mm)")
    ax.set_title(title)
    return _save(fig, path)


def plot_caustic(path: Path, z_m: np.ndarray, w_m: np.ndarray, sigma_m: np.ndarray, fit: "CausticFit",
                 spec_dof_m: float) -> Path:
    """Measured radii with error bars, the w(z) fit and the +-z_R band."""
    from calibration.fits.caustic import beam_radius
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 3.6))
    ax.errorbar(z_m, np.asarray(w_m) * 1e3, yerr=np.asarray(sigma_m) * 1e3, fmt="o", ms=4, label="measured w")
    zz = np.linspace(min(z_m) - 0.05, max(z_m) + 0.05, 300)
    w0, z0, zr = fit.waist_radius.value, fit.waist_position.value, fit.rayleigh_range.value
    ax.plot(zz, beam_radius(zz, w0, z0, zr) * 1e3, "r-",
            label=f"fit: w0 = {w0 * 1e3:.2f} mm, z0 = {z0:.3f} m, zR = {zr:.3f} m")
    ax.axvspan(z0 - zr, z0 + zr, color="r", alpha=0.08, label=f"DoF 2zR = {2 * zr * 100:.1f} cm "
                                                              f"(spec {spec_dof_m * 100:.0f} cm)")
    ax.axhline(w0 * math.sqrt(2) * 1e3, color="gray", ls=":", lw=0.8)
    ax.set_xlabel("target range z (m)")
    ax.set_ylabel("1/e$^2$ radius w (mm)")
    ax.legend(fontsize=7)
    ax.set_title("depth of focus: w(z) with the Rayleigh fit")
    return _save(fig, path)


def plot_line_phase(path: Path, trial_lags_s: np.ndarray, rho: np.ndarray, lag_s: float,
                    table: list[dict[str, float]] | None = None) -> Path:
    plt = _plt()
    ncols = 2 if table else 1
    fig, axes = plt.subplots(1, ncols, figsize=(5.5 * ncols, 3.6), squeeze=False)
    ax = axes[0, 0]
    ax.plot(np.asarray(trial_lags_s) * 1e6, rho, "-o", ms=3)
    ax.axvline(lag_s * 1e6, color="r", ls="--", label=f"estimated lag {lag_s * 1e6:.1f} us")
    ax.set_xlabel("assumed line lag (us)")
    ax.set_ylabel("forward/backward correlation")
    ax.set_title("line-phase correlation")
    ax.legend(fontsize=7)
    if table:
        ax2 = axes[0, 1]
        amp = [r["amplitude_m"] * 1e3 for r in table]
        ax2.errorbar(amp, [r["lag_s"] * 1e6 for r in table], yerr=[r.get("lag_sigma_s", 0.0) * 1e6 for r in table],
                     fmt="s-")
        ax2.set_xlabel("fast-axis half amplitude (mm)")
        ax2.set_ylabel("line lag (us)")
        ax2.set_title("lag vs amplitude")
    return _save(fig, path)


def plot_snr_histogram(path: Path, plate_db: np.ndarray, empty_db: np.ndarray, face_db: np.ndarray | None,
                       snr_db: float) -> Path:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 3.6))
    allv = np.concatenate([np.ravel(plate_db), np.ravel(empty_db)] + ([np.ravel(face_db)] if face_db is not None else []))
    allv = allv[np.isfinite(allv)]
    bins = np.linspace(np.percentile(allv, 0.1), np.percentile(allv, 99.9), 80)
    ax.hist(np.ravel(empty_db), bins=bins, alpha=0.6, label="empty scene")
    ax.hist(np.ravel(plate_db), bins=bins, alpha=0.6, label="reference plate")
    if face_db is not None:
        ax.hist(np.ravel(face_db), bins=bins, alpha=0.5, label="face phantom")
    ax.set_xlabel("pixel power (dB, 10 log10 of power)")
    ax.set_ylabel("pixels")
    ax.set_title(f"SNR histogram: plate over floor {snr_db:.1f} dB")
    ax.legend(fontsize=7)
    return _save(fig, path)


def plot_linearity(path: Path, drive_m: np.ndarray, residual_m: np.ndarray, axis: str) -> Path:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 3.2))
    ax.plot(np.asarray(drive_m) * 1e3, np.asarray(residual_m) * 1e3, "o-")
    ax.axhline(0, color="gray", lw=0.8)
    ax.set_xlabel(f"nominal {axis} (mm)")
    ax.set_ylabel("residual after linear fit (mm)")
    ax.set_title(f"scan linearity, {axis} axis")
    return _save(fig, path)


def _fmt(v: float | None) -> str:
    if v is None:
        return "not measured"
    return f"{v:.4g}" if math.isfinite(v) else str(v)


# Lengths people read in mm (beam and spot sizes, edge widths, their sigmas, linearity offsets and residuals): the
# record keeps SI metres, the report shows these in mm, as the plots do; ranges, fields of view and scan amplitudes
# stay in m.
_MM_NAME = re.compile(r"(diameter|radius|width|spot|waist_d|(^|_)w_[xy]|sigma|offset|residual)")


def shown_in_mm(name: str, unit: str) -> bool:
    """Whether the report shows quantity `name` (unit `unit`) in mm."""
    return unit == "m" and bool(_MM_NAME.search(name))


def _spec_mm(spec: str) -> str:
    """A specification in m ('0.015 m +- 15 %', '<= 0.02 m') in mm; a percentage is left as it is."""
    pct = re.search(r"\+- *[\d.]+ *%", spec)
    head, tail = (spec[:pct.start()], spec[pct.start():]) if pct else (spec, "")
    head = re.sub(r"(?<![\w.])(-?\d+(?:\.\d+)?(?:e[+-]?\d+)?)(?![\w.])",
                  lambda m: f"{float(m.group(1)) * 1e3:.4g}", head)
    return re.sub(r"(?<=\d) m\b", " mm", head) + tail


def _scaled(v: float | None, mm: bool) -> float | None:
    return None if v is None else (v * 1e3 if mm else v)


def _column(name: str) -> tuple[str, float]:
    """A table column's header and scale: `w_x_m` -> ('w_x (mm)', 1e3), `range_m` -> ('range (m)', 1)."""
    if name.endswith("_m"):
        stem = name[:-2]
        return (f"{stem} (mm)", 1e3) if shown_in_mm(stem, "m") else (f"{stem} (m)", 1.0)
    return name, 1.0


def write_report(out_dir: str | Path, record: "CalibrationRecord", plots: dict[str, Path],
                 notes: list[str] | None = None, extra: dict[str, Any] | None = None) -> Path:
    """`<out_dir>/<record_id>.md`: values, pass/fail table, tables, plots (relative links), notes."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    verdict = "PASS" if record.passed else "FAIL"
    lines = [f"# Calibration report: {record.kind} ({verdict})", "",
             f"- record: `{record.record_id}` (sha256 `{record.content_hash[:16]}`)",
             f"- scanner: `{record.scanner_id}`, source: {record.source}, software {record.software_version}",
             f"- measured: {record.created}"]
    if record.supersedes:
        lines.append(f"- supersedes: `{record.supersedes}`")
    if record.processing is not None:
        lines.append(f"- applied by the processor as calibration id `{record.record_id}`")
    lines += ["", "## Pass / fail", "", "| item | value | unit | specification | result |", "|---|---|---|---|---|"]
    for c in record.checks:
        mm = shown_in_mm(c.name, c.unit)
        lines.append(f"| {c.name} | {_fmt(_scaled(c.value, mm))} | {'mm' if mm else c.unit} | "
                     f"{_spec_mm(c.spec) if mm else c.spec} | {'pass' if c.passed else '**FAIL**'} |")
    lines += ["", "## Fitted values (1 sigma)", "", "| value | estimate | uncertainty | unit |", "|---|---|---|---|"]
    for k, m in record.values.items():
        mm = shown_in_mm(k, m.unit)
        lines.append(f"| {k} | {_fmt(_scaled(m.value, mm))} | {_fmt(_scaled(m.uncertainty, mm))} | "
                     f"{'mm' if mm else m.unit} |")
    for name, rows in record.tables.items():
        if not rows:
            continue
        cols = list(rows[0])
        heads = [_column(c) for c in cols]
        lines += ["", f"## Table: {name}", "", "| " + " | ".join(h for h, _ in heads) + " |", "|" + "---|" * len(cols)]
        lines += ["| " + " | ".join(_fmt(float(r.get(c, float("nan"))) * k) for c, (_, k) in zip(cols, heads)) + " |"
                  for r in rows]
    if plots:
        lines += ["", "## Plots", ""]
        for title, p in plots.items():
            rel = Path(p).resolve().relative_to(out.resolve()) if Path(p).resolve().is_relative_to(out.resolve()) else p
            lines += [f"### {title}", "", f"![{title}]({rel})", ""]
    if notes:
        lines += ["", "## Notes", ""] + [f"- {n}" for n in notes]
    if extra:
        lines += ["", "## Run facts", ""] + [f"- {k}: {v}" for k, v in extra.items()]
    path = out / f"{record.record_id}.md"
    path.write_text("\n".join(lines) + "\n")
    return path

"""HTML report of a `thz run` session: summary table, then per scan the ROI, reconstruction and decisions.

Images are embedded as PNG data URIs, so the report is one self-contained file, created
owner-readable only (it holds face images).
"""
from __future__ import annotations

import base64
import html
import io
import math
import os
from pathlib import Path

import numpy as np

from pipeline.summary import ScanRecord
from thzcore.labels import POSTURES


def png_data_uri(image: np.ndarray | None, scale: int = 2) -> str:
    if image is None:
        return ""
    from PIL import Image

    a = (np.clip(np.asarray(image, np.float32).reshape(image.shape[-2:]), 0, 1) * 255 + 0.5).astype(np.uint8)
    im = Image.fromarray(a, mode="L")
    if scale > 1:
        im = im.resize((a.shape[1] * scale, a.shape[0] * scale), Image.NEAREST)
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.3f}" if abs(v) < 10 else f"{v:.1f}"
    return html.escape(str(v))


def _pct(v: float | None, num: int | None = None, den: int | None = None) -> str:
    if v is None:
        return "-"
    tail = f" ({num} of {den})" if num is not None and den else ""
    return f"{100 * v:.1f} %{tail}"


def _ms(v: float | None) -> str:
    return "-" if v is None or not math.isfinite(v) else f"{v:.1f} ms"


def _dist(v: float | None) -> str:
    return "-" if v is None else f"{v:.3f}"


def _decision(accepted: bool | None, distance: float | None, want_accept: bool) -> str:
    if accepted is None:
        return "<td>-</td>"
    ok = accepted == want_accept
    cls = "ok" if ok else "bad"
    return f'<td class="{cls}">{"accept" if accepted else "reject"} ({distance:.3f}){"" if ok else " &#10007;"}</td>'


def _identified(r: ScanRecord) -> str:
    """The open-set answer: right (green), another subject (red, marked wrong), or rejected as unknown (red)."""
    if r.identified == r.subject:
        return f'<td class="ok">{html.escape(r.identified)}</td>'
    if r.identified is None:
        return '<td class="bad">none: rejected as unknown &#10007;</td>'
    return f'<td class="bad">{html.escape(r.identified)}: wrong &#10007;</td>'


def scan_row(r: ScanRecord) -> str:
    """The report's table row of one scan, its images inline (written as each scan comes in)."""
    roi = f'<img src="{png_data_uri(r.roi)}" alt="roi">' if r.roi is not None else "-"
    rec = (f'<img src="{png_data_uri(r.reconstruction)}" alt="reconstruction">'
           if r.reconstruction is not None else "-")
    posture_ok = r.posture_pred == r.posture_true
    return (f"<tr><td>{r.frame_id}</td><td>{html.escape(r.subject)}</td><td>{html.escape(r.posture_true)}</td>"
            f"<td>{roi}</td><td>{rec}</td>"
            f'<td class="{"ok" if posture_ok else "bad"}">{html.escape(r.posture_pred)} ({100 * r.posture_prob:.0f} %)'
            f'{"" if posture_ok else " &#10007;"}</td>'
            + _decision(r.genuine_accepted, r.genuine_distance, True)
            + f"<td>{_fmt(r.impostor_claim)}</td>"
            + _decision(r.impostor_accepted, r.impostor_distance, False)
            + _identified(r) + f"<td>{_ms(r.latency_ms)}</td>"
            + f"<td>{html.escape('; '.join(r.errors))}</td></tr>\n")


# ---------------------------------------------------------------- summary, histogram, latency, postures
def _summary_rows(summary: dict, records: list[ScanRecord]) -> str:
    gen = [r.genuine_accepted for r in records if r.genuine_accepted is not None]
    imp = [r.impostor_accepted for r in records if r.impostor_accepted is not None]
    n = len(records)
    rows = [
        ("Concealed scans scored", _fmt(summary.get("frames"))),
        ("Failures to acquire (no face after the re-poses)", _fmt(summary.get("failures_to_acquire"))),
        ("Posture accuracy", _pct(summary.get("posture_accuracy"),
                                  sum(r.posture_pred == r.posture_true for r in records), n)),
        ("Verification accuracy (genuine accepted + impostors rejected)",
         _pct(summary.get("verification_accuracy"), sum(gen) + sum(not a for a in imp), len(gen) + len(imp))),
        ("Genuine claims accepted", _pct(summary.get("genuine_accept_rate"), sum(gen), len(gen))),
        ("Impostor claims rejected", _pct(summary.get("impostor_reject_rate"), sum(not a for a in imp), len(imp))),
        ("Identified correctly (rank 1, open set)",
         _pct(summary.get("identification_rank1"), sum(r.identified == r.subject for r in records), n)),
        ("Mean distance, genuine claims", _dist(summary.get("mean_genuine_distance"))),
        ("Mean distance, impostor claims", _dist(summary.get("mean_impostor_distance"))),
        ("Verification threshold (accept at or below)", _dist(summary.get("threshold"))),
        ("Latency p50, scan complete to result", _ms(summary.get("p50_latency_ms"))),
        ("Latency p99, scan complete to result", _ms(summary.get("p99_latency_ms"))),
        ("Inference p50", _ms(summary.get("inference_ms_p50"))),
    ]
    return "".join(f"<tr><th>{html.escape(k)}</th><td>{v}</td></tr>" for k, v in rows)


def distance_histogram(genuine: list[float], impostor: list[float], threshold: float | None, width: int = 560,
                       height: int = 200, bin_width: float = 0.05) -> str:
    """Inline SVG: histograms of the genuine and the impostor claims' cosine distances, the threshold a dashed
    line. Each bar carries its count (data-count) and a tooltip."""
    values = [*genuine, *impostor, *([threshold] if threshold is not None else [])]
    if not values:
        return "<p>no claims scored: no distance histogram</p>"
    top = min(2.0, max(bin_width, math.ceil(max(values) * 1.1 / bin_width) * bin_width))
    nb = max(1, int(round(top / bin_width)))
    edges = np.linspace(0.0, nb * bin_width, nb + 1)
    hg = np.histogram(np.clip(genuine, 0, edges[-1]), edges)[0] if genuine else np.zeros(nb, int)
    hi = np.histogram(np.clip(impostor, 0, edges[-1]), edges)[0] if impostor else np.zeros(nb, int)
    peak = max(1, int(max(hg.max(initial=0), hi.max(initial=0))))
    left, bottom, plot_w, plot_h = 40, 30, width - 50, height - 50
    bw = plot_w / nb

    def x(d: float) -> float:
        return left + plot_w * d / edges[-1]
    parts = [f'<svg id="distances" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'role="img" aria-label="distance histogram">',
             f'<line x1="{left}" y1="{height - bottom}" x2="{left + plot_w}" y2="{height - bottom}" stroke="#444"/>']
    for k in range(nb):
        for cls, h, off, colour in (("genuine", hg, 0.0, "#3a3"), ("impostor", hi, 0.5, "#c33")):
            c = int(h[k])
            if not c:
                continue
            bh = plot_h * c / peak
            parts.append(f'<rect class="{cls}" data-count="{c}" x="{x(edges[k]) + off * bw:.1f}" '
                         f'y="{height - bottom - bh:.1f}" width="{bw / 2:.1f}" height="{bh:.1f}" fill="{colour}">'
                         f'<title>{cls}: {c} claim(s) at distance {edges[k]:.2f}-{edges[k + 1]:.2f}</title></rect>')
    for d in np.linspace(0, edges[-1], 5):
        parts.append(f'<text x="{x(d):.1f}" y="{height - bottom + 14}" font-size="11" text-anchor="middle">'
                     f'{d:.2f}</text>')
    parts.append(f'<text x="{left}" y="12" font-size="11">claims (max {peak} per bin of {bin_width:g})</text>')
    if threshold is not None:
        tx = x(min(threshold, edges[-1]))
        parts.append(f'<line id="threshold" x1="{tx:.1f}" y1="16" x2="{tx:.1f}" y2="{height - bottom}" '
                     f'stroke="#000" stroke-dasharray="4 3"/><text x="{tx + 4:.1f}" y="26" font-size="11">'
                     f'threshold {threshold:.3f}</text>')
    parts.append(f'<text x="{left + plot_w}" y="12" font-size="11" text-anchor="end">'
                 f'<tspan fill="#3a3">&#9632; genuine ({len(genuine)})</tspan> '
                 f'<tspan fill="#c33">&#9632; impostor ({len(impostor)})</tspan> &#183; cosine distance</text>')
    parts.append("</svg>")
    return "".join(parts)


def _latency_section(summary: dict) -> str:
    """The latency split by stage (p50) against the target, and p50 / p99 against it."""
    target = summary.get("latency_target_ms")
    stages = {k: v for k, v in (summary.get("stage_p50_ms") or {}).items() if v is not None}
    p50, p99 = summary.get("p50_latency_ms"), summary.get("p99_latency_ms")
    out = []
    if target:
        verdict = ("-" if p99 is None else "within the target" if p99 <= target
                   else f"over the target by {p99 - target:.1f} ms")
        out.append(f'<p id="latency-target">Target: p99 of scan complete to result at most {target:.0f} ms. '
                   f'Measured p50 {_ms(p50)}, p99 {_ms(p99)}: <b class="{"ok" if p99 is not None and p99 <= target else "bad"}">'
                   f"{verdict}</b>.</p>")
    if stages:
        total = sum(stages.values())
        out.append("<table><tr><th>stage</th><th>p50</th><th>share of the p50 split</th>"
                   + ("<th>of the target</th>" if target else "") + "</tr>")
        for k, v in stages.items():
            out.append(f"<tr><th>{html.escape(k.replace('_', ' '))}</th><td>{_ms(v)}</td>"
                       f"<td>{100 * v / total:.0f} %</td>"
                       + (f"<td>{100 * v / target:.0f} %</td>" if target else "") + "</tr>")
        out.append(f"<tr><th>sum of the stages</th><td>{_ms(total)}</td><td>100 %</td>"
                   + (f"<td>{100 * total / target:.0f} %</td>" if target else "") + "</tr></table>")
        if target:  # a stacked bar of the split, the target a line
            scale = 520 / max(target, total) if max(target, total) > 0 else 1.0
            colours = ["#4a7", "#48c", "#c84", "#a5c", "#c55", "#777"]
            xs, bars = 0.0, []
            for i, (k, v) in enumerate(stages.items()):
                bars.append(f'<rect x="{xs:.1f}" y="4" width="{v * scale:.1f}" height="18" '
                            f'fill="{colours[i % len(colours)]}"><title>{html.escape(k)}: {v:.1f} ms</title></rect>')
                xs += v * scale
            bars.append(f'<line x1="{target * scale:.1f}" y1="0" x2="{target * scale:.1f}" y2="26" stroke="#000" '
                        f'stroke-dasharray="4 3"/><text x="{target * scale - 4:.1f}" y="38" font-size="11" '
                        f'text-anchor="end">target {target:.0f} ms</text>')
            out.append(f'<p>p50 by stage, against the target (hover a segment for its stage):</p>'
                       f'<svg id="latency-bar" xmlns="http://www.w3.org/2000/svg" width="540" height="42">'
                       f'{"".join(bars)}</svg>')
    return "".join(out) or "<p>no latency measured</p>"


def _posture_rows(records: list[ScanRecord]) -> str:
    by: dict[str, list[ScanRecord]] = {}
    for r in records:
        by.setdefault(r.posture_true, []).append(r)
    out = []
    for p in sorted(by, key=lambda q: (POSTURES.index(q) if q in POSTURES else 99, q)):
        rs = by[p]
        gen = [r.genuine_accepted for r in rs if r.genuine_accepted is not None]
        imp = [r.impostor_accepted for r in rs if r.impostor_accepted is not None]
        gd = [r.genuine_distance for r in rs if r.genuine_distance is not None]
        idd = [r.impostor_distance for r in rs if r.impostor_distance is not None]
        pa = sum(r.posture_pred == r.posture_true for r in rs)
        ident = sum(r.identified == r.subject for r in rs)
        out.append(f"<tr><th>{html.escape(p)}</th><td>{len(rs)}</td><td>{_pct(pa / len(rs), pa, len(rs))}</td>"
                   f"<td>{_pct(sum(gen) / len(gen) if gen else None, sum(gen), len(gen))}</td>"
                   f"<td>{_pct(sum(not a for a in imp) / len(imp) if imp else None, sum(not a for a in imp), len(imp))}"
                   f"</td><td>{_pct(ident / len(rs), ident, len(rs))}</td>"
                   f"<td>{_dist(float(np.mean(gd)) if gd else None)}</td><td>{_dist(float(np.mean(idd)) if idd else None)}"
                   "</td></tr>")
    return "".join(out)


INFO_LABELS = {"engine": "inference engine", "model_id": "model id", "preset": "model preset",
               "threshold": "verification threshold", "verification_rule": "claims verified against",
               "subjects": "subjects", "postures": "postures scanned",
               "gallery": "gallery", "seed": "seed", "scanner_id": "scanner", "raw_source": "raw frames from",
               "enrolment_s": "enrolment took (s)", "latency_target_ms": "latency target (ms, p99)"}


class RowSpool:
    """Scan rows streamed to a private file as they come, so a long session holds no images in memory;
    `write_report(..., rows=spool.path)` copies them into the report."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)  # face images: owner only
        self._fh = os.fdopen(fd, "w", encoding="utf-8")

    def add(self, r: ScanRecord) -> None:
        self._fh.write(scan_row(r))
        self._fh.flush()

    def close(self) -> None:
        self._fh.close()


def write_report(path: str | Path, summary: dict, records: list[ScanRecord], info: dict,
                 rows: str | Path | None = None) -> Path:
    """The HTML report; the scan rows from `rows` (a RowSpool's file) when given, else built from records."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    if rows is not None:
        rows = [Path(rows).read_text(encoding="utf-8")]
    else:
        rows = [scan_row(r) for r in records]
    summary_rows = _summary_rows(summary, records)
    info_rows = "".join(f"<tr><th>{html.escape(INFO_LABELS.get(str(k), str(k).replace('_', ' ')))}</th>"
                        f"<td>{_fmt(v)}</td></tr>" for k, v in info.items())
    genuine = [r.genuine_distance for r in records if r.genuine_distance is not None]
    impostor = [r.impostor_distance for r in records if r.impostor_distance is not None]
    hist = distance_histogram(genuine, impostor, summary.get("threshold"))
    doc = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>thz-face run report</title>
<style>
body {{ font-family: sans-serif; margin: 1.5em; }}
table {{ border-collapse: collapse; margin-bottom: 1.5em; }}
td, th {{ border: 1px solid #ccc; padding: 3px 6px; text-align: left; font-size: 13px; }}
td.ok, b.ok {{ background: #e3f6e3; }} td.bad, b.bad {{ background: #f9dddd; }}
img {{ image-rendering: pixelated; display: block; }}
</style></head><body>
<h1>thz-face run report</h1>
<h2>Summary</h2><table>{summary_rows}</table>
<h2>Distances of the claims</h2>{hist}
<h2>Latency</h2>{_latency_section(summary)}
<h2>By posture</h2>
<table><tr><th>posture</th><th>scans</th><th>posture right</th><th>genuine accepted</th><th>impostors rejected</th>
<th>identified</th><th>mean genuine distance</th><th>mean impostor distance</th></tr>{_posture_rows(records)}</table>
<h2>Session</h2><table>{info_rows}</table>
<h2>Concealed scans</h2>
<p>Red cells with &#10007; are wrong: a posture mistaken, a genuine claim rejected, an impostor accepted, a face
identified as someone else or rejected as unknown.</p>
<table><tr><th>frame</th><th>subject</th><th>true posture</th><th>ROI</th><th>reconstruction</th>
<th>posture (probability)</th><th>genuine claim</th><th>impostor claim</th><th>impostor decision</th><th>identified</th>
<th>scan complete to result</th><th>errors</th></tr>
{''.join(rows)}
</table></body></html>
"""
    fd = os.open(p, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(doc)
    return p

"""HTML report of a `thz run` session: summary table, then per scan the ROI, reconstruction and decisions.

Images are embedded as PNG data URIs, so the report is one self-contained file, created
owner-readable only (it holds face images).
"""
from __future__ import annotations

import base64
import html
import io
import os
from pathlib import Path

import numpy as np

from pipeline.summary import ScanRecord


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
        return f"{v:.4f}"
    return html.escape(str(v))


def _decision(accepted: bool | None, distance: float | None, want_accept: bool) -> str:
    if accepted is None:
        return "<td>-</td>"
    ok = accepted == want_accept
    cls = "ok" if ok else "bad"
    return f'<td class="{cls}">{"accept" if accepted else "reject"} ({distance:.3f})</td>'


def write_report(path: str | Path, summary: dict, records: list[ScanRecord], info: dict) -> Path:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    rows = []
    for r in records:
        roi = f'<img src="{png_data_uri(r.roi)}" alt="roi">' if r.roi is not None else "-"
        rec = (f'<img src="{png_data_uri(r.reconstruction)}" alt="reconstruction">'
               if r.reconstruction is not None else "-")
        posture_cls = "ok" if r.posture_pred == r.posture_true else "bad"
        rows.append(
            f"<tr><td>{r.frame_id}</td><td>{html.escape(r.subject)}</td><td>{html.escape(r.posture_true)}</td>"
            f"<td>{roi}</td><td>{rec}</td>"
            f'<td class="{posture_cls}">{html.escape(r.posture_pred)} ({r.posture_prob:.2f})</td>'
            + _decision(r.genuine_accepted, r.genuine_distance, True)
            + f"<td>{_fmt(r.impostor_claim)}</td>"
            + _decision(r.impostor_accepted, r.impostor_distance, False)
            + f"<td>{_fmt(r.identified)}</td><td>{r.latency_ms:.1f}</td>"
            + f"<td>{html.escape('; '.join(r.errors))}</td></tr>")
    keys = ["frames", "posture_accuracy", "verification_accuracy", "genuine_accept_rate", "impostor_reject_rate",
            "identification_rank1", "mean_genuine_distance", "mean_impostor_distance", "threshold",
            "p50_latency_ms", "p99_latency_ms", "inference_ms_p50"]
    summary_rows = "".join(f"<tr><th>{k}</th><td>{_fmt(summary.get(k))}</td></tr>" for k in keys)
    summary_rows += "".join(f"<tr><th>p50 ms: {html.escape(k.replace('_', ' '))}</th><td>{_fmt(v)}</td></tr>"
                            for k, v in (summary.get("stage_p50_ms") or {}).items())
    info_rows = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{_fmt(v)}</td></tr>" for k, v in info.items())
    doc = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>thz-face run report</title>
<style>
body {{ font-family: sans-serif; margin: 1.5em; }}
table {{ border-collapse: collapse; margin-bottom: 1.5em; }}
td, th {{ border: 1px solid #ccc; padding: 3px 6px; text-align: left; font-size: 13px; }}
td.ok {{ background: #e3f6e3; }} td.bad {{ background: #f9dddd; }}
img {{ image-rendering: pixelated; display: block; }}
</style></head><body>
<h1>thz-face run report</h1>
<h2>Summary</h2><table>{summary_rows}</table>
<h2>Session</h2><table>{info_rows}</table>
<h2>Concealed scans</h2>
<table><tr><th>frame</th><th>subject</th><th>true posture</th><th>ROI</th><th>reconstruction</th>
<th>posture (p)</th><th>genuine decision</th><th>impostor claim</th><th>impostor decision</th><th>identified</th>
<th>scan complete to result ms</th><th>errors</th></tr>
{''.join(rows)}
</table></body></html>
"""
    fd = os.open(p, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(doc)
    return p

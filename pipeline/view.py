"""Live view for operators: a loopback web page updated by server-sent events from the result stream.

GET /         the page (no external assets): averaged frame with the ROI box, ROI, reconstruction,
              posture, decisions, scanner and link state
GET /events   text/event-stream: one `data: {json}` per change, a heartbeat comment every second
GET /state    the current state as JSON
GET /?hold=MS keeps the page loading MS ms (a slow image) so a headless browser snapshot shows SSE updates
The scanner is shown in fault when no frame arrived for `fault_after_s` or the acquisition
status says so (link lost, reconnecting, failed); then the frame, ROI, reconstruction and decisions
still on the page are greyed out under "stale since HH:MM:SS": they show the last scan before the
fault, not the present. The mode (enrolling / verifying / identifying, with who and which claims)
is shown as the job sets it (`on_mode`). Only loopback binds are allowed: the page shows faces and
has no authentication.
"""
from __future__ import annotations

import base64
import io
import json
import math
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

import numpy as np

from thzcore.logs import get_logger
from thzcore.netsec import is_loopback_host

log = get_logger(__name__)
_FAULT_STATES = {"failed", "reconnecting", "degraded", "disconnected"}  # acquisition.state.State values
MODES = ("waiting", "enrolling", "verifying", "identifying")  # what the job is doing with the scans


def _png(image: np.ndarray | None, lo_pct: float = 1.0, hi_pct: float = 99.5, scale: int = 3,
         size: tuple[int, int] | None = None) -> str | None:
    """An image as a PNG data URI, stretched between two percentiles (frames are in dB); size = (w, h) px."""
    if image is None:
        return None
    from PIL import Image

    a = np.asarray(image, np.float32)
    a = a.reshape(a.shape[-2:])
    lo, hi = np.percentile(a, [lo_pct, hi_pct]) if a.size else (0.0, 1.0)
    u = np.clip((a - lo) / max(hi - lo, 1e-9), 0, 1)
    im = Image.fromarray((u * 255 + 0.5).astype(np.uint8), mode="L")
    im = im.resize(size or (a.shape[1] * scale, a.shape[0] * scale), Image.NEAREST)
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


_GIF1 = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")


class ViewState:
    """The latest of everything the page shows; `version` grows on every change."""

    def __init__(self, fault_after_s: float, clock: Callable[[], float]) -> None:
        self.fault_after_s = fault_after_s
        self.clock = clock
        self.cond = threading.Condition()
        self.version = 0
        self.data: dict[str, Any] = {"frame_id": None, "frame": None, "frame_shape": None, "roi_box": None,
                                     "roi": None, "reconstruction": None, "posture": None, "verification": [],
                                     "identification": None, "latency_ms": None, "stages_ms": {},
                                     "subject_range": None,
                                     "result_frame_id": None,
                                     "link": {"state": "waiting", "detail": ""},
                                     "mode": {"mode": "waiting", "detail": ""}}
        self.t_last_frame: float | None = None
        self._scanner = "waiting"

    def update(self, **kw: Any) -> None:
        with self.cond:
            self.data.update(kw)
            self.version += 1
            self.cond.notify_all()

    def scanner_state(self) -> tuple[str, str]:
        """('ok' | 'waiting' | 'fault', detail) from the frame clock and the link state."""
        link = self.data["link"]
        state = str(link.get("state", "")).lower()
        # connecting after frames have flowed is a reconnection (the daemon reopens the links)
        if state in _FAULT_STATES or (state == "connecting" and self.t_last_frame is not None):
            return "fault", f"acquisition {link.get('state')}: {link.get('detail', '')}".strip(": ")
        if self.t_last_frame is None:
            return "waiting", "no frame yet"
        age = self.clock() - self.t_last_frame
        if age > self.fault_after_s:
            return "fault", f"no frame for {age:.1f} s"
        return "ok", f"last frame {age:.1f} s ago"

    def snapshot(self) -> dict[str, Any]:
        with self.cond:
            d = dict(self.data)
        d["scanner"], d["scanner_detail"] = self.scanner_state()
        # in a fault what is on the page is the last scan before it: say since when (the last frame's time)
        stale = d["scanner"] == "fault" and self.t_last_frame is not None
        d["stale_since"] = time.strftime("%H:%M:%S", time.localtime(self.t_last_frame)) if stale else None
        d["stale_for_s"] = round(self.clock() - self.t_last_frame, 1) if stale else None
        return d

    def tick(self) -> None:
        """Re-evaluate the scanner state; a change of state is a change of version."""
        state = self.scanner_state()[0]
        if state != self._scanner:
            self._scanner = state
            self.update()


class _CappedServer(ThreadingHTTPServer):
    """One thread per connection, at most `max_connections` of them: the next is answered 503 and closed
    (300 idle connections used to hold 300 threads)."""

    daemon_threads = True
    request_queue_size = 128  # a burst of connections is accepted (and refused) instead of stalling in SYN retries

    def __init__(self, address, handler, max_connections: int) -> None:
        super().__init__(address, handler)
        self._slots = threading.BoundedSemaphore(max_connections)
        self._count_lock = threading.Lock()
        self.refused = 0
        self.active = 0  # connections being served now
        self.peak = 0    # the most served at once

    def process_request(self, request, client_address) -> None:
        if not self._slots.acquire(blocking=False):
            self.refused += 1
            try:
                request.sendall(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            except OSError:
                pass
            self.shutdown_request(request)
            return
        with self._count_lock:
            self.active += 1
            self.peak = max(self.peak, self.active)
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._release()
            raise

    def process_request_thread(self, request, client_address) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._release()

    def _release(self) -> None:
        with self._count_lock:
            self.active -= 1
        self._slots.release()


class LiveView:
    """Serve the page on loopback; feed it with on_frame / on_result / on_status from any thread."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, fault_after_s: float = 3.0,
                 clock: Callable[[], float] = time.time, max_connections: int = 16,
                 idle_timeout_s: float = 10.0) -> None:
        if not is_loopback_host(host):
            raise ValueError(f"live view host {host!r} is not loopback: the page shows faces and has no "
                             "authentication; bind 127.0.0.1 and reach it through an SSH tunnel")
        self.state = ViewState(fault_after_s, clock)
        self._stop = threading.Event()
        view = self

        class Handler(BaseHTTPRequestHandler):
            timeout = idle_timeout_s  # a connection that sends no request (or reads no event) is closed

            def log_message(self, fmt: str, *args: Any) -> None:  # requests are not logged (no faces in logs)
                pass

            def do_GET(self) -> None:
                path, _, query = self.path.partition("?")
                if path == "/":  # the current state inline: the first paint needs no round trip
                    state = json.dumps(view.state.snapshot()).replace("</", "<\\/")
                    self._send(200, "text/html; charset=utf-8", PAGE.replace("__INITIAL_STATE__", state).encode())
                elif path == "/state":
                    self._send(200, "application/json", json.dumps(view.state.snapshot()).encode())
                elif path == "/events":
                    self._events()
                elif path == "/hold" and query.startswith("ms="):  # a slow image: headless snapshots wait for it
                    try:
                        ms = min(max(int(query[3:]), 0), 10_000)
                    except ValueError:
                        ms = 0
                    view._stop.wait(ms / 1000.0)
                    self._send(200, "image/gif", _GIF1)
                else:
                    self._send(404, "text/plain", b"not found")

            def _send(self, code: int, ctype: str, body: bytes) -> None:
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(body)

            def _events(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                seen = -1
                try:
                    while not view._stop.is_set():
                        view.state.tick()
                        with view.state.cond:
                            if view.state.version == seen:
                                view.state.cond.wait(1.0)
                            changed = view.state.version != seen
                            seen = view.state.version
                        if changed:
                            self.wfile.write(b"data: " + json.dumps(view.state.snapshot()).encode() + b"\n\n")
                        else:
                            self.wfile.write(b": heartbeat\n\n")
                        self.wfile.flush()
                except OSError:  # gone, or not reading its events for idle_timeout_s
                    return

        self._server = _CappedServer((host, port), Handler, max_connections)
        self._server.daemon_threads = True
        self.url = f"http://{host}:{self._server.server_address[1]}/"
        self._thread = threading.Thread(target=self._server.serve_forever, name="live-view", daemon=True)

    def start(self) -> "LiveView":
        self._thread.start()
        log.info("live view", extra={"url": self.url})
        return self

    def stop(self) -> None:
        self._stop.set()
        with self.state.cond:
            self.state.cond.notify_all()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    # --- feeds ---
    def on_frame(self, frame_id: int, image: np.ndarray, meta: dict) -> None:
        box = (meta.get("roi") or {}).get("box_px") if isinstance(meta.get("roi"), dict) else None
        self.state.t_last_frame = self.state.clock()
        # a frame is 64 lines x 256 samples over a square field of view: shown square, 512 x 512 px
        roi = meta.get("roi") if isinstance(meta.get("roi"), dict) else {}
        rng = {k: roi[k] for k in ("range_m", "focus", "range_gate_edge") if k in roi} if roi.get("range_m") else None
        self.state.update(frame_id=int(frame_id), frame=_png(image, size=(512, 512)), frame_shape=list(np.shape(image)),
                          roi_box=box, subject_range=rng)

    def on_result(self, frame_id: int, meta, roi: np.ndarray | None, reconstruction: np.ndarray | None) -> None:
        self.state.update(
            result_frame_id=int(frame_id), roi=_png(roi, 0, 100), reconstruction=_png(reconstruction, 0, 100),
            posture={"name": meta.posture.name, "p": max(meta.posture.probabilities.values())},
            verification=[v.model_dump() for v in meta.verification],
            identification=meta.identification.model_dump() if meta.identification else None,
            latency_ms=_finite_or_none(meta.scan_to_result_ms()),
            stages_ms=meta.stages_ms())

    def on_status(self, state: str, detail: str = "") -> None:
        self.state.update(link={"state": state, "detail": detail})

    def on_mode(self, mode: str, detail: str = "") -> None:
        """What the job does with the scans now: one of MODES, and who / which claims (`detail`)."""
        if mode not in MODES:
            raise ValueError(f"mode {mode!r} is not one of {MODES}")
        self.state.update(mode={"mode": mode, "detail": detail})


PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>thz-face live</title>
<style>
body { font-family: sans-serif; margin: 1em; background: #111; color: #eee; }
.row { display: flex; gap: 1.5em; align-items: flex-start; }
.box { position: relative; } img { image-rendering: pixelated; display: block; }
img:not([src]) { visibility: hidden; width: 192px; height: 192px; }
#roibox { position: absolute; border: 2px solid #0f0; display: none; }
#scanner.ok { color: #4c4; } #scanner.fault { color: #f44; font-weight: bold; } #scanner.waiting { color: #cc4; }
.acc { color: #4c4; } .rej { color: #f66; } td, th { padding: 2px 8px; text-align: left; }
.row.stale { opacity: 0.45; } .row.stale img { filter: grayscale(1); }
#stale { display: none; background: #522; color: #fcc; padding: 4px 8px; font-weight: bold; }
#stale.on { display: block; }
#mode { text-transform: uppercase; } #mode.enrolling { color: #6cf; } #mode.verifying { color: #fc6; }
#mode.identifying { color: #c9f; }
</style></head><body>
<h2>thz-face live view</h2>
<p>mode: <b id="mode" class="waiting">waiting</b> <span id="mode_detail"></span></p>
<p>scanner: <span id="scanner" class="waiting">waiting</span> <span id="scanner_detail"></span>
 &middot; link: <span id="link">-</span> &middot; frame <span id="frame_id">-</span>
 &middot; result frame <span id="result_frame_id">-</span> &middot; scan complete to result
 <span id="latency">-</span> ms <span id="stages"></span></p>
<div id="stale"></div>
<div class="row" id="panels">
 <div><div>averaged frame <span id="subject_range"></span></div><div class="box"><img id="frame" alt="frame"><div id="roibox"></div></div></div>
 <div><div>ROI</div><img id="roi" alt="roi"></div>
 <div><div>reconstruction</div><img id="reconstruction" alt="reconstruction"></div>
 <div><div>posture: <b id="posture">-</b></div><table id="decisions"></table><div id="identity"></div></div>
</div>
<script>
const $ = (id) => document.getElementById(id);
function show(s) {
  const m = s.mode || {mode: "waiting", detail: ""};
  $("mode").textContent = m.mode; $("mode").className = m.mode; $("mode_detail").textContent = m.detail || "";
  const stale = s.scanner === "fault" && s.stale_since;
  $("panels").className = stale ? "row stale" : "row";
  $("stale").className = stale ? "on" : "";
  $("stale").textContent = stale ? "stale since " + s.stale_since + " (" + s.stale_for_s.toFixed(1) +
    " s): the frame and the decisions below are the last scan before the fault" : "";
  $("scanner").textContent = s.scanner; $("scanner").className = s.scanner;
  $("scanner_detail").textContent = s.scanner_detail || "";
  $("link").textContent = s.link ? s.link.state : "-";
  $("frame_id").textContent = s.frame_id === null ? "-" : s.frame_id;
  $("result_frame_id").textContent = s.result_frame_id === null ? "-" : s.result_frame_id;
  $("latency").textContent = s.latency_ms === null ? "-" : s.latency_ms.toFixed(1);
  const r = s.subject_range;
  $("subject_range").textContent = r ? "- subject " + ({near: "at or nearer than ", far: "at or beyond "}[r.range_gate_edge]
    || "at ") + r.range_m.toFixed(2) + " m, focus " + r.focus.toFixed(2) : "";
  const st = Object.entries(s.stages_ms || {});
  $("stages").textContent = st.length ? "(" + st.map(([k, v]) => k.replace(/_/g, " ") + " " + v.toFixed(1))
    .join(", ") + ")" : "";
  for (const k of ["frame", "roi", "reconstruction"]) { if (s[k]) $(k).src = s[k]; }
  const b = $("roibox");
  if (s.roi_box && s.frame_shape) {
    const img = $("frame"), sy = img.clientHeight / s.frame_shape[0], sx = img.clientWidth / s.frame_shape[1];
    b.style.top = (s.roi_box[0] * sy) + "px"; b.style.left = (s.roi_box[1] * sx) + "px";
    b.style.height = (s.roi_box[2] * sy) + "px"; b.style.width = (s.roi_box[3] * sx) + "px"; b.style.display = "block";
  } else { b.style.display = "none"; }
  $("posture").textContent = s.posture ? s.posture.name + " (" + s.posture.p.toFixed(2) + ")" : "-";
  $("decisions").innerHTML = (s.verification || []).map(v =>
    "<tr><td>claim " + v.claim + "</td><td class=" + (v.accepted ? "acc>accepted" : "rej>rejected") +
    "</td><td>" + v.distance.toFixed(3) + " / " + v.threshold.toFixed(3) + "</td></tr>").join("");
  const idn = s.identification;
  $("identity").textContent = idn ? "identified: " + (idn.identity || "unknown (rejected)") : "";
}
show(__INITIAL_STATE__);
const hold = new URLSearchParams(location.search).get("hold");  // ?hold=MS keeps the page loading (snapshots)
if (hold) { const i = new Image(); i.src = "/hold?ms=" + encodeURIComponent(hold); document.body.appendChild(i); }
const es = new EventSource("/events");
es.onmessage = (e) => show(JSON.parse(e.data));
es.onerror = () => { $("scanner").textContent = "view disconnected"; $("scanner").className = "fault"; };
</script></body></html>
"""


def _finite_or_none(v: float) -> float | None:
    return v if math.isfinite(v) else None  # NaN is not JSON: the page shows "-"

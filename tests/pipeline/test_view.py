"""Live view: the page, server-sent events with new frame ids, and the fault state when the scanner drops."""
from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
import urllib.request

import numpy as np
import pytest

from inference.results import PostureResult, ResultMeta, VerificationResult
from pipeline.view import LiveView
from tests.inference.conftest import bundle_dir  # noqa: F401 - the tiny bundle, exported once per session

pytestmark = pytest.mark.integration  # serves the live view on a loopback HTTP port


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def _meta(fid):
    return ResultMeta(model_id="m", engine="onnxruntime",
                      posture=PostureResult(name="full-left", index=3,
                                            probabilities={"front-left": 0.05, "front-center": 0.05,
                                                           "front-right": 0.05, "full-left": 0.8, "full-right": 0.05}),
                      verification=[VerificationResult(claim="sim-001", distance=0.12, threshold=0.4, accepted=True)],
                      latency_ms={"acquired_to_published": 1042.0, "scan_complete_to_published": 42.0,
                                  "processing": 7.5, "inference": 8.25}, frame_ids=[fid])


def _events_until(url, done, timeout=10):
    """Read `data:` events of the SSE stream until done(event)."""
    out = []
    with urllib.request.urlopen(url + "events", timeout=timeout) as r:
        assert r.headers["Content-Type"] == "text/event-stream"
        for line in r:
            if line.startswith(b"data: "):
                out.append(json.loads(line[6:]))
                if done(out[-1]):
                    return out
    return out


@pytest.fixture
def view():
    clock = FakeClock()
    v = LiveView(port=0, fault_after_s=3.0, clock=clock).start()
    v.clock = clock
    yield v
    v.stop()


def test_page_state_and_events(view):
    page = urllib.request.urlopen(view.url, timeout=5).read().decode()
    assert "EventSource" in page and "thz-face live view" in page
    st = json.loads(urllib.request.urlopen(view.url + "state", timeout=5).read())
    assert st["scanner"] == "waiting" and st["frame_id"] is None
    got = []
    t = threading.Thread(target=lambda: got.extend(_events_until(view.url, lambda e: e["result_frame_id"] == 7)))
    t.start()
    frame = np.random.default_rng(0).random((64, 256)).astype(np.float32)
    view.on_frame(7, frame, {"roi": {"box_px": [5.0, 90.0, 40.0, 60.0], "range_m": 5.77, "focus": 0.66,
                                     "range_gate_edge": "near"}})
    view.on_result(7, _meta(7), np.zeros((64, 64), np.float32), np.ones((64, 64), np.float32))
    t.join(10)
    assert got[-1]["frame_id"] == 7 and got[-1]["result_frame_id"] == 7
    last = got[-1]
    assert last["scanner"] == "ok" and last["roi_box"] == [5.0, 90.0, 40.0, 60.0]
    assert last["posture"]["name"] == "full-left" and last["verification"][0]["accepted"]
    assert last["frame"].startswith("data:image/png;base64,") and last["reconstruction"].startswith("data:image")
    assert last["latency_ms"] == 42.0 and last["stages_ms"] == {"processing": 7.5, "inference": 8.25}
    assert last["subject_range"] == {"range_m": 5.77, "focus": 0.66, "range_gate_edge": "near"}


def test_fault_when_frames_stop_or_link_drops(view):
    view.on_frame(1, np.zeros((64, 256), np.float32), {})
    assert json.loads(urllib.request.urlopen(view.url + "state").read())["scanner"] == "ok"
    view.clock.t += 5.0  # no frame for 5 s > 3 s
    st = json.loads(urllib.request.urlopen(view.url + "state").read())
    assert st["scanner"] == "fault" and "no frame for 5.0 s" in st["scanner_detail"]
    view.on_frame(2, np.zeros((64, 256), np.float32), {})
    view.on_status("reconnecting", "receiver timed out")
    st = json.loads(urllib.request.urlopen(view.url + "state").read())
    assert st["scanner"] == "fault" and "reconnecting" in st["scanner_detail"]
    view.on_status("connecting", "attempt 1")  # reopening the links after frames flowed
    assert json.loads(urllib.request.urlopen(view.url + "state").read())["scanner"] == "fault"
    view.on_status("scanning", "frames flowing")
    assert json.loads(urllib.request.urlopen(view.url + "state").read())["scanner"] == "ok"


def test_mode_and_the_stale_state(view):
    """The mode the job set is shown; in a fault the page says since when its frame and decisions are stale."""
    st = json.loads(urllib.request.urlopen(view.url + "state").read())
    assert st["mode"] == {"mode": "waiting", "detail": ""} and st["stale_since"] is None
    view.on_mode("enrolling", "sim-000, front-left, unconcealed")
    view.on_frame(3, np.zeros((64, 256), np.float32), {})
    view.on_result(3, _meta(3), None, None)
    st = json.loads(urllib.request.urlopen(view.url + "state").read())
    assert st["mode"] == {"mode": "enrolling", "detail": "sim-000, front-left, unconcealed"}
    assert st["scanner"] == "ok" and st["stale_since"] is None
    view.clock.t += 7.5
    st = json.loads(urllib.request.urlopen(view.url + "state").read())
    assert st["scanner"] == "fault" and st["stale_for_s"] == 7.5
    assert st["stale_since"] == time.strftime("%H:%M:%S", time.localtime(1000.0))  # the last frame's time
    with pytest.raises(ValueError, match="not one of"):
        view.on_mode("dancing")


def test_view_port_option(bundle_dir, tmp_path):  # noqa: F811
    """`thz run --view-port N` (alias --port) serves the view there; a port in use is a usage error naming it."""
    import socket

    from click.testing import CliRunner

    from thz.cli import cli
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        for opt in ("--view-port", "--port"):
            r = CliRunner().invoke(cli, ["run", "--sim", opt, str(port), "--bundle", str(bundle_dir), "--no-progress",
                                         "--report", str(tmp_path / "rep")])
            assert r.exit_code == 2, r.output
            assert f"cannot listen on 127.0.0.1:{port}" in r.stderr and "--view-port" in r.stderr


def test_view_refuses_non_loopback():
    with pytest.raises(ValueError, match="not loopback"):
        LiveView(host="0.0.0.0")


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium (Debian package 'chromium') not installed")
def test_page_in_headless_chromium(view, tmp_path):
    """The page renders the pushed state: frame id, posture, decision; then the fault state."""
    def dom(hold_ms=0):
        r = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--timeout=8000",
                            f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom",
                            view.url + (f"?hold={hold_ms}" if hold_ms else "")],
                           capture_output=True, text=True, timeout=60)
        return r.stdout

    view.on_frame(41, np.random.default_rng(1).random((64, 256)).astype(np.float32),
                  {"roi": {"box_px": [1, 2, 3, 4], "range_m": 5.9136, "focus": 0.9183, "range_gate_edge": None}})
    view.on_result(41, _meta(41), np.zeros((64, 64), np.float32), None)
    html = dom()
    assert '<span id="frame_id">41</span>' in html
    assert "full-left (0.80)" in html and "accepted" in html
    assert '<span id="latency">42.0</span>' in html and "(processing 7.5, inference 8.3)" in html
    assert "subject at 5.91 m, focus 0.92" in html
    assert 'class="ok"' in html
    # a frame pushed while the page is open arrives through the event stream
    timer = threading.Timer(1.0, lambda: view.on_frame(42, np.zeros((64, 256), np.float32), {}))
    timer.start()
    html = dom(hold_ms=4000)
    timer.join()
    assert '<span id="frame_id">42</span>' in html
    view.on_mode("verifying", "sim-001, full-left, concealed: claims sim-001 (genuine) and sim-002 (impostor)")
    view.clock.t += 10.0
    html = dom()
    assert 'id="scanner" class="fault"' in html and "no frame for" in html
    # the stale frame and decisions are greyed out and say since when; the mode is shown
    assert '<div class="row stale" id="panels">' in html and 'id="stale" class="on">stale since ' in html
    assert '<b id="mode" class="verifying">verifying</b>' in html and "claims sim-001 (genuine)" in html

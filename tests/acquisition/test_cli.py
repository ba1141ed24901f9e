"""`thz acquire --sim`, `thz recover` and `thz sim scanner` as processes: default-size frames, SIGKILL, SIGTERM."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from acquisition.runlog import read_runlog
from acquisition.grab import grab_frames
from sim.emulators.client import SimScanner

from .conftest import small_settings

pytestmark = pytest.mark.integration

THZ = [sys.executable, "-m", "thz.cli"]
SMALL_TOML = """
[scanner.raster]
slow_axis_hz = 8.0
[scanner.fmcw]
chirps_per_line = 64
[acquisition]
raw_endpoint = "tcp://127.0.0.1:*"
status_endpoint = "tcp://127.0.0.1:*"
timeout_s = 0.5
"""


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "THZ_CONFIG"}
    env["THZ_LOG_LEVEL"] = "WARNING"
    return env


def _wait_frames(out: Path, n: int, proc: subprocess.Popen, timeout_s: float = 60.0) -> list[dict]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        logs = list(out.glob("*.jsonl"))
        if logs:
            ev = read_runlog(logs[0])
            if sum(e["event"] == "frame" for e in ev) >= n:
                return ev
        if proc.poll() is not None:
            pytest.fail(f"acquire exited early: {proc.stderr.read().decode()[-2000:]}")
        time.sleep(0.05)
    pytest.fail(f"no {n} frames within {timeout_s} s")


def test_acquire_sim_default_size(tmp_path):
    """The default scanner: 64 x 512 x 128 int16 = 8.4 MB frames, at the 1 Hz frame rate, through real transports."""
    cfg = tmp_path / "c.toml"
    cfg.write_text('[acquisition]\nraw_endpoint = "tcp://127.0.0.1:*"\nstatus_endpoint = "tcp://127.0.0.1:*"\n')
    p = subprocess.run([*THZ, "--config", str(cfg), "acquire", "--sim", "--frames", "2", "--out", str(tmp_path)],
                       capture_output=True, env=_env(), timeout=120)
    assert p.returncode == 0, p.stderr.decode()[-3000:]
    res = json.loads(p.stdout.decode().strip().splitlines()[-1])
    assert res["frames"] == 2 and res["status"] == "closed"
    with h5py.File(res["recording"], "r") as f:
        assert f["entry/data/if_samples"].shape == (2, 64, 512, 128)
        assert f["entry"].attrs["sim_seed"] == 0
        assert np.ptp(f["entry/data/feedback_x"][0]) > 0.4  # the mirror swept +-0.24 m
        # each frame keeps its meta: the simulator's truth (the default scene) and the scan-complete stamp
        meta = [json.loads(m) for m in f["entry/data/meta"][:]]
        assert all("scene" in m["truth"] and m["session_id"] for m in meta)
        t_acq, t_done = f["entry/data/t_acquired"][:], f["entry/data/t_complete"][:]
        assert np.all(t_done > t_acq)
    ev = read_runlog(res["runlog"])
    frames = [e for e in ev if e["event"] == "frame"]
    # on a loaded machine the emulator can miss a frame slot: the daemon's ids then skip it and say so
    ids = [e["frame_id"] for e in frames]
    assert ids[0] == 0 and ids[1] > ids[0] and frames[1]["skipped"] == ids[1] - ids[0] - 1
    assert frames[1]["t_acquired"] - frames[0]["t_acquired"] == pytest.approx(ids[1] - ids[0], abs=1e-3)  # 1 Hz


def test_sigkill_mid_session_then_thz_recover(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text(SMALL_TOML)
    out = tmp_path / "out"
    proc = subprocess.Popen([*THZ, "--config", str(cfg), "acquire", "--sim", "--out", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env())
    try:
        _wait_frames(out, 4, proc)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stdout.close()
        proc.stderr.close()
    h5 = next(out.glob("*.h5"))
    logged = [e for e in read_runlog(next(out.glob("*.jsonl"))) if e["event"] == "frame"]
    p = subprocess.run([*THZ, "recover", str(h5)], capture_output=True, env=_env(), timeout=60)
    assert p.returncode == 0, p.stderr.decode()
    res = json.loads(p.stdout.decode().strip().splitlines()[-1])
    assert res["status_before"] == "running"
    with h5py.File(h5, "r") as f:  # plain reader: the file is closed and consistent
        n = f["entry/data/if_samples"].shape[0]
        assert n == res["frames"] >= len(logged) >= 4  # every frame logged (and maybe one more) is there
        assert np.all(f["entry/data/complete"][:] == 1)
        assert np.all(np.diff(f["entry/data/frame_id"][:]) >= 1)
        assert f["entry"].attrs["status"] == "recovered"
    # the emulator child noticed its parent died and left (polled with a deadline, not a fixed sleep)
    def emulator_alive() -> bool:
        for pid in os.listdir("/proc"):
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes() if pid.isdigit() else b""
            except OSError:  # exited while we looked
                continue
            if b"sim\0scanner" in cmd and str(tmp_path).encode() in cmd:
                return True
        return False
    deadline = time.monotonic() + 10.0
    while emulator_alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not emulator_alive()


def test_sigterm_stops_cleanly_and_parks(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text(SMALL_TOML)
    out = tmp_path / "out"
    proc = subprocess.Popen([*THZ, "--config", str(cfg), "acquire", "--sim", "--out", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env())
    _wait_frames(out, 2, proc)
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 130, stderr.decode()[-2000:]  # stopped by a signal: interrupted (README "Exit codes")
    res = json.loads(stdout.decode().strip().splitlines()[-1])
    assert res["status"] == "interrupted"
    stop = read_runlog(res["runlog"])[-1]
    assert stop["event"] == "stop" and stop["galvo_parked"] is True and stop["exit_code"] == 130
    with h5py.File(res["recording"], "r") as f:
        assert f["entry"].attrs["status"] == "interrupted"


@pytest.mark.parametrize("toml, code, needle", [
    ('[acquisition]\nraw_endpoint = "tcp://0.0.0.0:5599"\n', 2, "CURVE"),
    ('[acquisition]\ngalvo_baud = 9600\n', 2, "galvo_baud: unknown key"),  # exit 2: configuration (README)
    ('[acquisition]\nreconnect_initial_s = 5.0\nreconnect_max_s = 1.0\n', 2, "reconnect_max_s"),
])
def test_bad_config_rejected(tmp_path, toml, code, needle):
    cfg = tmp_path / "c.toml"
    cfg.write_text(toml)
    p = subprocess.run([*THZ, "--config", str(cfg), "acquire", "--sim", "--frames", "1", "--out", str(tmp_path)],
                       capture_output=True, env=_env(), timeout=120)
    assert p.returncode == code and needle in p.stderr.decode(), p.stderr.decode()[-2000:]


def test_acquire_sim_records_a_placed_subject_with_its_truth(tmp_path):
    """--identity/--posture/--concealed place a subject; its truth is kept per frame for offline scoring."""
    cfg = tmp_path / "c.toml"
    cfg.write_text(SMALL_TOML)
    p = subprocess.run([*THZ, "--config", str(cfg), "acquire", "--sim", "--fast", "--frames", "2", "--identity", "2",
                        "--posture", "front-right", "--concealed", "--out", str(tmp_path)],
                       capture_output=True, env=_env(), timeout=120)
    assert p.returncode == 0, p.stderr.decode()[-3000:]
    res = json.loads(p.stdout.decode().strip().splitlines()[-1])
    with h5py.File(res["recording"], "r") as f:
        truths = [json.loads(m)["truth"] for m in f["entry/data/meta"][:]]
    assert len(truths) == 2
    for t in truths:
        assert t["scene"]["kind"] == "subject"
        assert (t["scene"]["identity"], t["scene"]["posture"], t["scene"]["concealed"]) == (2, "front-right", True)


@pytest.mark.parametrize("args, needle", [
    (["--identity", "1"], "needs --sim"),
    (["--sim", "--identity", "1", "--posture", "upside-down"], "upside-down"),
    (["--sim", "--identity", "500"], "outside the simulated population"),
])
def test_acquire_scene_options_refused_before_anything_starts(tmp_path, args, needle):
    p = subprocess.run([*THZ, "acquire", "--frames", "1", "--out", str(tmp_path), *args],
                       capture_output=True, env=_env(), timeout=60)
    assert p.returncode == 2 and needle in p.stderr.decode(), p.stderr.decode()[-2000:]
    assert not list(tmp_path.iterdir())  # no recording, no run log


def test_sim_scanner_prints_endpoints_first_and_grab_frames(tmp_path):
    """SimScanner runs `thz sim scanner`; place a target by the backdoor and get RawFrames back in Python."""
    s = small_settings()
    with SimScanner.start(s, seed=4, realtime=False) as sim:
        assert set(sim.endpoints) >= {"galvo_port", "receiver_resource", "backdoor"}
        assert sim.endpoints["receiver_resource"].startswith("TCPIP::127.0.0.1::")
        placed = sim.backdoor.set_scene({"kind": "plate", "range_m": 6.0})
        assert placed["kind"] == "plate"
        frames = grab_frames(sim.settings_for(s), 3, truth=sim.backdoor.truth)
        assert [f.frame_id for f in frames] == [0, 1, 2] and frames[0].shape == (8, 64, 128)
        assert frames[0].meta["truth"]["scene"]["kind"] == "plate"
        with pytest.raises(Exception, match="unknown backdoor command"):
            sim.backdoor.call("explode")

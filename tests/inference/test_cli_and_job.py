"""Gallery commands from image files, and `thz run --sim` end to end (virtual scanner -> ... -> results)."""
from __future__ import annotations

import json
import os
import shutil
import stat
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from inference.sources import load_png_roi, save_png_roi
from thz.cli import cli
from thzcore.bundle import MANIFEST_NAME, ONNX_NAME, file_model_id

pytestmark = pytest.mark.integration  # thz run / enroll start the pipeline: ZMQ ports, emulator processes

REPO = Path(__file__).resolve().parents[2]


def _invoke(*args):
    r = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    return r, (json.loads(r.stdout.strip().splitlines()[-1]) if r.stdout.strip() else None)


@pytest.fixture
def pngs(tmp_path):
    rng = np.random.default_rng(7)
    return [str(save_png_roi(tmp_path / f"roi{i}.png", rng.random((64, 64)))) for i in range(2)]


def test_png_round_trip(tmp_path):
    img = np.linspace(0, 1, 64 * 64).reshape(64, 64)
    back = load_png_roi(save_png_roi(tmp_path / "a.png", img))
    assert back.dtype == np.float32 and back.shape == (64, 64)
    assert np.abs(back - img).max() <= 0.5 / 255 + 1e-6  # 8-bit quantisation
    from PIL import Image
    Image.fromarray((np.random.default_rng(0).random((128, 128)) * 255).astype(np.uint8)).save(tmp_path / "big.png")
    assert load_png_roi(tmp_path / "big.png", resize=True).shape == (64, 64)
    from inference.sources import ImageError
    with pytest.raises(ImageError, match="--resize"):
        load_png_roi(tmp_path / "big.png")  # another size is refused unless asked for


def test_enroll_verify_identify_from_images(bundle_dir, pngs, tmp_path):
    g = str(tmp_path / "g.sqlite")
    r, out = _invoke("enroll", "--subject", "alice", "--image", pngs[0], "--posture", "front-center",
                     "--bundle", str(bundle_dir), "--gallery", g)
    assert r.exit_code == 0 and out["templates_added"] == 1 and out["postures"] == {"front-center": 1}
    assert stat.S_IMODE(os.stat(g).st_mode) == 0o600
    r, out = _invoke("verify", "--claim", "alice", "--image", pngs[0], "--bundle", str(bundle_dir), "--gallery", g)
    assert r.exit_code == 0 and out["accepted"] and out["scans"][0]["distance"] < 1e-5
    r, out = _invoke("verify", "--claim", "alice", "--threshold", "1e-9", "--image", pngs[1],
                     "--bundle", str(bundle_dir), "--gallery", g)
    assert r.exit_code == 1 and not out["accepted"]  # a threshold nothing passes: rejected, exit 1
    r, out = _invoke("identify", "--image", pngs[0], "--bundle", str(bundle_dir), "--gallery", g)
    assert r.exit_code == 0 and out["scans"][0]["identity"] == "alice"
    r, _ = _invoke("verify", "--claim", "bob", "--image", pngs[0], "--bundle", str(bundle_dir), "--gallery", g)
    assert r.exit_code != 0 and "not enrolled" in r.output


def test_new_model_refuses_old_gallery(bundle_dir, pngs, tmp_path):
    g = str(tmp_path / "g.sqlite")
    _invoke("enroll", "--subject", "alice", "--image", pngs[0], "--bundle", str(bundle_dir), "--gallery", g)
    other = tmp_path / "other"
    shutil.copytree(bundle_dir, other)
    import onnx
    m = onnx.load(str(other / ONNX_NAME))
    m.doc_string = "retrained"  # another model id, as a retrained model would have
    onnx.save(m, str(other / ONNX_NAME))
    from thzcore.bundle import BundleManifest, write_manifest
    man = json.loads((other / MANIFEST_NAME).read_text())
    man["model_id"] = file_model_id(other / ONNX_NAME)
    write_manifest(other, BundleManifest.model_validate(man))  # re-exported: a new model id, a new manifest hash
    r, _ = _invoke("verify", "--claim", "alice", "--image", pngs[0], "--bundle", str(other), "--gallery", g)
    assert r.exit_code != 0 and "re-enrol" in r.output


def test_source_errors(bundle_dir, pngs, tmp_path):
    r = CliRunner().invoke(cli, ["identify", "--bundle", str(bundle_dir)])
    assert r.exit_code == 2 and "exactly one source" in r.output
    r = CliRunner().invoke(cli, ["identify", "--image", pngs[0], "--bundle", str(tmp_path / "none")])
    assert r.exit_code == 4 and "thz export" in r.output  # exit 4: an unusable input file (README)


def _run_sim_direct(bundle_dir, tmp_path, *args) -> dict:
    """`thz run --sim ARGS` from the virtual scanner directly, report in tmp_path/rep; its JSON summary."""
    r = CliRunner().invoke(cli, ["run", "--sim", *args, "--raw-source", "direct", "--result-endpoint",
                                 "tcp://127.0.0.1:*", "--bundle", str(bundle_dir), "--report", str(tmp_path / "rep")],
                           catch_exceptions=False)
    assert r.exit_code == 0, r.output
    # start-up progress on stderr: the engine, then each stage (direct source: 4), ending "pipeline up"
    assert "starting: 5/5 pipeline up" in r.stderr and "processing (Numba kernels)" in r.stderr
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_run_sim_end_to_end_small(bundle_dir, tmp_path):
    """Two subjects, one posture: the whole chain, the JSON last line, the report and the gallery."""
    summary = _run_sim_direct(bundle_dir, tmp_path, "--subjects", "2", "--postures", "front-center")
    for key in ("frames", "posture_accuracy", "verification_accuracy", "p99_latency_ms"):
        assert key in summary
    assert summary["frames"] == 2 and summary["claims"] == 4
    assert summary["raw_frames"] >= 2 * 2 * 3  # each of 4 scenes needs a full averaging window
    assert summary["inference_counters"]["dropped_malformed"] == 0
    assert 0 < summary["p99_latency_ms"] < 10_000
    stages = summary["stage_p50_ms"]  # every stage stamped the results: the split is complete
    assert set(stages) == {"transfer_to_processing", "processing", "processing_to_inference", "queue", "inference"}
    assert all(v >= 0 for v in stages.values()) and sum(stages.values()) <= summary["max_latency_ms"] * 1.5
    report = Path(summary["report"])
    assert report.is_file() and stat.S_IMODE(os.stat(report).st_mode) == 0o600
    text = report.read_text()
    assert text.count("data:image/png;base64,") >= 4  # ROI + reconstruction of both scans
    assert "<th>transfer to processing</th>" in text and 'id="latency-target"' in text
    assert 'id="distances"' in text and 'id="threshold"' in text  # the distance histogram with its threshold
    from inference.gallery import Gallery
    with Gallery(tmp_path / "rep" / "gallery.sqlite", summary["model_id"]) as g:
        assert g.subjects() == ["sim-000", "sim-001"]
        kinds = [a["kind"] for a in g.audit_log(1000)]
        assert kinds.count("enroll") == 2 and kinds.count("verify") >= 4


def test_run_sim_chosen_identities(bundle_dir, tmp_path):
    """--identities picks the population members to enrol and scan (e.g. people a model never saw)."""
    summary = _run_sim_direct(bundle_dir, tmp_path, "--identities", "7,12", "--postures", "full-left")
    assert summary["frames"] == 2 and summary["claims"] == 4 and summary["subjects"] == 2
    from inference.gallery import Gallery
    with Gallery(tmp_path / "rep" / "gallery.sqlite", summary["model_id"]) as g:
        assert g.subjects() == ["sim-007", "sim-012"]
    assert "sim-007, sim-012" in Path(summary["report"]).read_text()


@pytest.mark.parametrize("args, code, message", [
    (["--identities", "3,25"], 2, "identities [25] are outside the simulated population of sim.n_identities=20"),
    (["--identities", "4"], 2, "need at least 2"),  # the job cannot run as asked: usage (README "Exit codes")
    (["--identities", "2-x"], 2, "neither an identity id nor a range"),
    (["--identities", "1-2", "--subjects", "2"], 2, "not both"),
])
def test_run_sim_identity_errors(bundle_dir, tmp_path, args, code, message):
    r = CliRunner().invoke(cli, ["run", "--sim", *args, "--raw-source", "direct", "--bundle", str(bundle_dir),
                                 "--report", str(tmp_path / "rep")])
    assert r.exit_code == code and message in r.output, r.output


def test_run_sim_through_emulated_devices_and_daemon(bundle_dir, tmp_path):
    """The real transports: galvo on a pty, receiver over SCPI/TCP, acquisition daemon publishing `raw`."""
    from inference.bundle import load_bundle
    from pipeline.run import run_sim
    from inference.engines.onnxrt import OnnxRuntimeEngine
    from pipeline.settings import Settings
    eng = OnnxRuntimeEngine(load_bundle(bundle_dir), reconstruction=False)
    lines = []
    s = run_sim(Settings(), eng, n_subjects=2, postures=["full-right"], report_dir=str(tmp_path), echo=lines.append,
                raw_source="emulator", result_endpoint="tcp://127.0.0.1:*")
    assert any("emulator+acquisition" in line for line in lines)
    assert s["frames"] == 2 and s["claims"] == 4 and s["raw_frames"] >= 8
    assert s["inference_counters"]["dropped_malformed"] == 0


TRAINED = Path(os.environ.get("THZ_TEST_BUNDLE", REPO / "inference" / "bundles" / "compact"))  # a trained bundle


@pytest.mark.skipif(not (TRAINED / ONNX_NAME).is_file(), reason=f"no trained bundle in {TRAINED}")
def test_run_sim_trained_bundle_gets_postures_right(tmp_path):
    from inference.bundle import load_bundle
    from pipeline.run import run_sim
    from inference.engines.onnxrt import OnnxRuntimeEngine
    from pipeline.settings import Settings
    eng = OnnxRuntimeEngine(load_bundle(TRAINED), reconstruction=False)
    s = run_sim(Settings(), eng, n_subjects=2, report_dir=str(tmp_path), echo=lambda m: None, raw_source="emulator",
                result_endpoint="tcp://127.0.0.1:*")
    assert s["frames"] == 10  # 2 subjects x 5 postures, concealed
    assert s["posture_accuracy"] >= 0.8, s  # "correct postures for most frames"
    assert s["genuine_accept_rate"] >= 0.6, s


def test_run_without_sim_uses_the_configured_devices(bundle_dir, tmp_path):
    """`thz run` on 'hardware': the configured galvo port and receiver resource (here an emulator)."""
    from inference.bundle import load_bundle
    from pipeline.run import run_hardware
    from inference.engines.onnxrt import OnnxRuntimeEngine
    from sim.emulators.server import ScannerEmulator
    from sim.scene import Subject
    from pipeline.settings import Settings
    base = Settings()
    with ScannerEmulator(base.scanner, base.sim, seed=3, realtime=False) as emu:
        ends = emu.endpoints()
        emu.handle({"cmd": "set_scene", "scene": Subject(identity=1, posture="front-right").model_dump(mode="json")})
        acq = base.acquisition.model_copy(update={
            "galvo_port": ends["galvo_port"], "receiver_resource": ends["receiver_resource"], "record": False,
            "raw_endpoint": "tcp://127.0.0.1:*", "status_endpoint": "tcp://127.0.0.1:*",
            "record_dir": str(tmp_path)})
        inf = base.inference.model_copy(update={"gallery": str(tmp_path / "g.sqlite")})
        s = base.model_copy(update={"acquisition": acq, "inference": inf})
        eng = OnnxRuntimeEngine(load_bundle(bundle_dir))
        out = run_hardware(s, eng, max_results=2, result_endpoint="tcp://127.0.0.1:*", echo=lambda m: None)
    assert out["frames"] == 2 and out["p99_latency_ms"] > 0 and not out["interrupted"]
    # the configured devices stamp scan complete too: the latency is split by stage
    assert {"transfer_to_processing", "processing", "inference"} <= set(out["stage_p50_ms"])
    assert out["stage_p50_ms"]["transfer_to_processing"] < out["p99_latency_ms"]


def test_enroll_and_identify_from_a_recording(bundle_dir, tmp_path):
    """An HDF5 raw recording (processing's layout) -> averaged frames -> face ROIs -> gallery."""
    from thzcore.recording import write_recording
    from sim.scanner import VirtualScanner
    from sim.scene import Subject
    from pipeline.settings import Settings
    s = Settings()
    vs = VirtualScanner(s.scanner, s.sim, seed=5)
    vs.set_scene(Subject(identity=4, posture="front-center"))
    frames = [vs.acquire_frame(i) for i in range(4)]
    for i, fr in enumerate(frames):
        fr.frame_id, fr.scanner_id = i, s.scanner.scanner_id
    rec = write_recording(tmp_path / "scan.h5", frames)  # the recorder's own format
    gal = str(tmp_path / "g.sqlite")
    r, out = _invoke("enroll", "--subject", "sim-004", "--recording", str(rec), "--scans", "2",
                     "--bundle", str(bundle_dir), "--gallery", gal)
    assert r.exit_code == 0 and out["templates_added"] == 2  # sliding average: frames 0-2 and 1-3
    r, out = _invoke("identify", "--recording", str(rec), "--scans", "2", "--bundle", str(bundle_dir),
                     "--gallery", gal)
    assert r.exit_code == 0 and [x["frame_id"] for x in out["scans"]] == [2, 3]
    assert all(x["identity"] == "sim-004" for x in out["scans"])


def test_one_ctrl_c_stops_every_stage_of_thz_run(bundle_dir, tmp_path):
    """SIGINT mid-run (emulated devices + daemon): every stage stops, the mirrors are parked, the summary of
    the scans so far and the report are written, exit code 130."""
    import signal
    import subprocess
    import sys
    import threading
    import time

    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    p = subprocess.Popen([sys.executable, "-m", "thz.cli", "run", "--sim", "--subjects", "3", "--raw-source",
                          "emulator", "--result-endpoint", "tcp://127.0.0.1:*", "--bundle", str(bundle_dir),
                          "--no-reconstruction", "--report", str(tmp_path / "rep")],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=REPO, text=True)
    out: list[str] = []
    reader = threading.Thread(target=lambda: out.extend(p.stdout), daemon=True)
    reader.start()
    err: list[str] = []  # progress and logs go to stderr, the JSON summary to stdout
    deadline = time.monotonic() + 120
    try:
        for line in p.stderr:  # wait until concealed scans are being verified
            err.append(line)
            if line.startswith("[1/") or time.monotonic() > deadline:
                break
        assert err and err[-1].startswith("[1/"), "".join(err)[-3000:]
        p.send_signal(signal.SIGINT)
        drain = threading.Thread(target=lambda: err.extend(p.stderr), daemon=True)
        drain.start()
        p.wait(timeout=30)  # a run that does not stop is killed below and fails here
        drain.join(10)
        reader.join(10)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 130, "".join(out)[-2000:] + "".join(err)[-3000:]
    assert any(line.startswith("interrupted: all stages stopped") for line in err)
    summary = json.loads(out[-1])
    assert summary["interrupted"] is True and 1 <= summary["frames"] < 15
    assert Path(summary["report"]).is_file()
    logs = "".join(err)
    assert 'new="disconnected"' in logs and "Traceback" not in logs  # the daemon shut down (galvo parked)
    assert "inference stage stopped" in logs and "processing stage stopped" in logs


def test_gallery_list_remove_audit(bundle_dir, pngs, tmp_path):
    g = str(tmp_path / "g.sqlite")
    common = ("--bundle", str(bundle_dir), "--gallery", g)
    r, _ = _invoke("gallery", "list", *common)
    assert r.exit_code != 0 and "no gallery at" in r.output and not Path(g).exists()  # listing creates nothing
    for subject, png in (("alice", pngs[0]), ("bob", pngs[1])):
        _invoke("enroll", "--subject", subject, "--image", png, "--posture", "front-center", *common)
    r, out = _invoke("gallery", "list", *common)
    assert r.exit_code == 0 and [s["subject"] for s in out["subjects"]] == ["alice", "bob"]
    assert out["subjects"][0]["postures"] == {"front-center": 1} and out["subjects"][0]["other_models"] == 0
    r = CliRunner().invoke(cli, ["gallery", "remove", "alice", *common], input="n\n")
    assert r.exit_code == 1 and "Aborted" in r.output  # asked, declined: nothing erased
    r, out = _invoke("gallery", "remove", "alice", "--yes", *common)
    assert r.exit_code == 0 and out == {"erased": {"alice": 1}}
    r, _ = _invoke("gallery", "remove", "alice", "--yes", *common)
    assert r.exit_code != 0 and "'alice' is not enrolled" in r.output
    r, _ = _invoke("gallery", "remove", "--yes", *common)
    assert r.exit_code == 2 and "--stale" in r.output
    r, out = _invoke("gallery", "audit", "--limit", "3", *common)
    assert r.exit_code == 0 and [d["kind"] for d in out["decisions"]] == ["remove", "enroll", "enroll"]
    assert out["decisions"][0]["subject"] == "alice" and "remove" in r.stderr
    r, out = _invoke("identify", "--image", pngs[0], *common)  # alice is gone: bob is the nearest, or rejected
    assert out["scans"][0]["identity"] in (None, "bob")

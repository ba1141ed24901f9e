"""Live multi-scan fusion: the runs of ScanFusion, the ROI quality it weights by, and the stage deciding on it."""
from __future__ import annotations

import time

import numpy as np
import pytest

from inference.config import InferenceConfig
from inference.fusion import ScanFusion, roi_quality
from inference.gallery import Gallery


def _unit(v) -> np.ndarray:
    v = np.asarray(v, np.float64)
    return v / np.linalg.norm(v)


def test_runs_fuse_the_last_n_with_quality_weights():
    f = ScanFusion(3)
    e = np.eye(4)
    key = ("front-center", ("alice",), None)
    out, frames = f.add("s1", key, 1, 10.0, e[0], 0.8)
    assert frames == [1] and out == pytest.approx(e[0])
    f.add("s1", key, 2, 11.0, e[1], 0.4)
    out, frames = f.add("s1", key, 3, 12.0, e[2], 0.2)
    assert frames == [1, 2, 3] and out == pytest.approx(_unit([0.8, 0.4, 0.2, 0]))
    out, frames = f.add("s1", key, 4, 13.0, e[3], float("nan"))   # no quality: weight 1; the oldest falls out
    assert frames == [2, 3, 4] and out == pytest.approx(_unit([0, 0.4, 0.2, 1.0]))
    assert out.dtype == np.float32


@pytest.mark.parametrize("change", ["key", "gap", "frame", "scanner"])
def test_a_new_run_starts_on_a_new_subject_posture_gap_or_frame_numbering(change):
    f = ScanFusion(3, max_gap_s=5.0)
    key = ("front-center", ("alice",), None)
    f.add("s1", key, 1, 10.0, np.eye(2)[0], 1.0)
    f.add("s1", key, 2, 11.0, np.eye(2)[0], 1.0)
    args = {"key": ("s1", ("front-left", ("alice",), None), 3, 12.0),
            "gap": ("s1", key, 3, 16.5),
            "frame": ("s1", key, 1, 12.0),
            "scanner": ("s2", key, 3, 12.0)}[change]
    out, frames = f.add(*args, np.eye(2)[1], 1.0)
    assert frames == [args[2]] and out == pytest.approx([0.0, 1.0])
    if change != "scanner":
        return
    _, frames = f.add("s1", key, 3, 12.0, np.eye(2)[1], 1.0)   # each scanner keeps its own run
    assert frames == [1, 2, 3]


def test_uniform_weights_and_the_roi_quality_of_a_message():
    f = ScanFusion(2, weight="uniform")
    f.add("s1", (), 1, 0.0, np.eye(2)[0], 0.9)
    out, _ = f.add("s1", (), 2, 1.0, np.eye(2)[1], 0.1)
    assert out == pytest.approx(_unit([1, 1]))
    assert roi_quality({"roi": {"quality": 0.42, "found": True}}) == 0.42
    for meta in ({}, {"roi": None}, {"roi": {"quality": "high"}}, {"roi": {"quality": True}}):
        assert np.isnan(roi_quality(meta))
    with pytest.raises(ValueError, match="choose from"):
        ScanFusion(2, weight="posture")


def test_config_bounds():
    assert InferenceConfig().fusion_scans == 1
    with pytest.raises(ValueError, match="fusion_scans"):
        InferenceConfig(fusion_scans=0)


@pytest.mark.integration
def test_stage_verifies_the_fused_embedding(ort_engine, tmp_path):
    """fusion_scans = 3: the third ROI's verification distance is that of the three ROIs' fused embedding."""
    import zmq

    from inference.stage import InferenceStage
    from tests.inference.test_stage import RoiSource, _recv, _subscriber
    from thzcore.fusion import fuse
    yy, xx = np.mgrid[0:64, 0:64] / 63.0   # the tiny model's embeddings differ most between such patterns
    pool = np.stack([np.zeros((64, 64)), xx * yy, np.ones((64, 64)), 1.0 * ((xx * 8).astype(int) % 2)]
                    ).astype(np.float32)
    out = ort_engine.infer(pool)
    assert len(set(out["posture_logits"].argmax(1))) == 1   # one predicted posture: one fusion run
    ref, scans = 0, np.array([1, 2, 3])
    quality = [0.9, 0.3, 0.6]
    with Gallery(tmp_path / "g.sqlite", ort_engine.model_id) as g:
        g.enroll("alice", out["embedding"][ref], "front-center")
    ctx = zmq.Context()
    src = RoiSource(ctx)
    cfg = InferenceConfig(result_endpoint="tcp://127.0.0.1:*", gallery=str(tmp_path / "g.sqlite"), max_batch=1,
                          fusion_scans=3)
    stage = InferenceStage(ort_engine, cfg, roi_endpoint=src.endpoint, context=ctx, min_subscribers=1).start()
    try:
        src.wait_subscribed()
        sub = _subscriber(ctx, stage.bound_endpoint)
        assert stage.subscribed.wait(10)
        stage.set_claims(["alice"])
        metas = []
        for k, (j, q) in enumerate(zip(scans, quality)):
            src.send(10 + k, pool[j], t_acquired=time.time(), meta={"roi": {"found": True, "quality": q}})
            metas.append(_recv(sub)[1])
        e = out["embedding"][scans].astype(np.float64)
        for n, meta in enumerate(metas, 1):
            assert meta.fused_frames == list(range(10, 10 + n))
            expect = 1.0 - fuse(e[:n], np.array(quality[:n])) @ out["embedding"][ref].astype(np.float64)
            assert meta.verification[0].distance == pytest.approx(expect, abs=2e-6)   # 6 decimals sent
        # the fused distance differs from the last ROI's own: the decision really used the fusion
        alone = 1.0 - float(e[2] @ out["embedding"][ref])
        assert abs(metas[2].verification[0].distance - alone) > 5e-4
    finally:
        stage.stop()
        ctx.destroy(linger=0)


def test_fuse_sequence_runs_by_posture():
    from inference.fusion import fuse_sequence
    e = np.eye(3)
    fused, used = fuse_sequence(e, ["front-left", "front-left", "full-left"], [0.5, 1.0, 0.7], 3)
    assert used == [[0], [0, 1], [2]]                          # a new posture: a new run
    assert fused[1] == pytest.approx(_unit([0.5, 1.0, 0]).astype(np.float32))
    assert fused[2] == pytest.approx([0, 0, 1])


@pytest.mark.integration
def test_cli_verify_decides_on_the_fused_scans(bundle_dir, tmp_path):
    """`thz verify` with inference.fusion_scans = 2: the second image's distance is that of the two fused."""
    import json

    from click.testing import CliRunner

    from inference.bundle import load_bundle
    from inference.engines.onnxrt import OnnxRuntimeEngine
    from inference.sources import load_png_roi, save_png_roi
    from thz.cli import cli
    from thzcore.fusion import fuse
    yy, xx = np.mgrid[0:64, 0:64] / 63.0
    dark, bright = np.zeros((64, 64)), np.ones((64, 64))
    dark[10, 10], bright[5, 5] = 1.0, 0.0   # one glint each: a flat image is not taken as a THz ROI
    paths = [str(save_png_roi(tmp_path / f"{k}.png", img)) for k, img in enumerate([dark, xx * yy, bright])]
    eng = OnnxRuntimeEngine(load_bundle(bundle_dir), intra_op_threads=1)
    out = eng.infer(np.stack([load_png_roi(p) for p in paths]))
    assert len(set(out["posture_logits"].argmax(1))) == 1
    g = str(tmp_path / "g.sqlite")
    with Gallery(g, eng.model_id) as gal:
        gal.enroll("alice", out["embedding"][0], "front-center")
    cfg = tmp_path / "fusion.toml"
    cfg.write_text("[inference]\nfusion_scans = 2\n")
    r = CliRunner().invoke(cli, ["--config", str(cfg), "verify", "--claim", "alice", "--image", paths[1], "--image",
                                 paths[2], "--bundle", str(bundle_dir), "--gallery", g, "--threshold", "1.9"],
                           catch_exceptions=False)
    scans = json.loads(r.stdout.strip().splitlines()[-1])["scans"]
    e = out["embedding"].astype(np.float64)
    assert scans[0]["distance"] == pytest.approx(1 - e[1] @ e[0], abs=2e-6)                   # alone
    assert scans[1]["distance"] == pytest.approx(1 - fuse(e[1:3]) @ e[0], abs=2e-6)          # fused, weights 1
    assert abs(scans[1]["distance"] - (1 - e[2] @ e[0])) > 5e-4
    assert "fused with 1 before" in scans[1]["source"]

"""Engine contract: every engine buildable here meets the same golden outputs; the engine choice."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from inference.bundle import BundleError, load_bundle
from inference.engines.choice import EngineUnavailable, choose_engine, make_engine, nvidia_gpu_present, tensorrt_installed
from thzcore.bundle import MANIFEST_NAME

# torch eager vs ONNX Runtime: the export contract's own tolerance (training.export_tolerance); the two
# order float32 sums differently, and by how much depends on the CPU's vector width
EXPORT_ATOL = 1e-4


def _engines():
    kinds = [pytest.param(("onnxruntime", None), id="onnxruntime")]
    for prec in ("fp32", "fp16"):
        kinds.append(pytest.param(("tensorrt", prec), id=f"tensorrt-{prec}", marks=pytest.mark.skipif(
            not (nvidia_gpu_present() and tensorrt_installed()), reason="needs an NVIDIA GPU and tensorrt")))
    return kinds


@pytest.fixture(scope="module", params=_engines())
def engine(request, bundle, tmp_path_factory):
    kind, precision = request.param
    if kind == "onnxruntime":
        from inference.engines.onnxrt import OnnxRuntimeEngine
        e = OnnxRuntimeEngine(bundle, reconstruction=True)
    else:
        from inference.config import InferenceConfig
        from inference.engines.tensorrt import TensorRTEngine
        cfg = InferenceConfig(trt_cache_dir=str(tmp_path_factory.mktemp("trt")), trt_precision=precision)
        e = TensorRTEngine(bundle, cfg, reconstruction=True)
    e.precision_under_test = precision or "fp32"
    yield e
    e.close()


def test_contract_golden_outputs(engine, golden):
    rois, ref = golden
    out = engine.infer(rois)
    assert out["embedding"].shape == (4, 128) and out["posture_logits"].shape == (4, 5)
    assert out["reconstruction"].shape == (4, 1, 64, 64)
    assert all(v.dtype == np.float32 for v in out.values())
    if engine.precision_under_test == "fp32":
        tol = 1e-5 if engine.name == "onnxruntime" else 2e-3  # TensorRT FP32 may use TF32-like tactics
        np.testing.assert_allclose(out["embedding"], ref["embedding"], atol=tol)
        np.testing.assert_allclose(out["posture_logits"], ref["posture_logits"], atol=tol)
        np.testing.assert_allclose(out["reconstruction"], ref["reconstruction"], atol=tol)
    else:
        cos = np.sum(out["embedding"] * ref["embedding"], axis=1)
        assert np.all(cos >= 0.999), cos
        np.testing.assert_array_equal(out["posture_logits"].argmax(1), ref["posture_logits"].argmax(1))
    np.testing.assert_allclose(np.linalg.norm(out["embedding"], axis=1), 1.0, atol=1e-3)


def test_contract_batch_sizes_agree(engine, golden):
    rois, _ = golden
    whole = engine.infer(rois, reconstruction=False)
    assert set(whole) == {"embedding", "posture_logits"}  # the decoder is skipped when not asked for
    for i in range(len(rois)):
        one = engine.infer(rois[i], reconstruction=False)
        np.testing.assert_allclose(one["embedding"][0], whole["embedding"][i], atol=1e-4)


def test_onnxruntime_parity_with_torch_normalised_input(bundle_dir, tmp_path):
    """A bundle with mean/std normalisation: the engine applies it before the network."""
    from inference.engines.onnxrt import OnnxRuntimeEngine
    from tests.inference.tinymodel import torch_reference
    import shutil
    d = tmp_path / "norm"
    shutil.copytree(bundle_dir, d)
    import json
    m = json.loads((d / MANIFEST_NAME).read_text())
    m["normalisation"] = {"mean": 0.5, "std": 0.25}
    from thzcore.bundle import BundleManifest, write_manifest
    write_manifest(d, BundleManifest.model_validate(m))
    b = load_bundle(d)
    rois = np.random.default_rng(3).random((2, 64, 64), dtype=np.float32)
    out = OnnxRuntimeEngine(b, reconstruction=True).infer(rois)
    ref = torch_reference(((rois - 0.5) / 0.25)[:, None].astype(np.float32))
    np.testing.assert_allclose(out["embedding"], ref["embedding"], atol=EXPORT_ATOL)


@pytest.mark.parametrize("threads, spin", [(1, False), (2, True)])
def test_onnxruntime_settings_do_not_change_results(bundle, golden, threads, spin):
    from inference.engines.onnxrt import OnnxRuntimeEngine
    rois, ref = golden
    e = OnnxRuntimeEngine(bundle, intra_op_threads=threads, allow_spinning=spin, graph_optimization="basic")
    np.testing.assert_allclose(e.infer(rois)["embedding"], ref["embedding"], atol=EXPORT_ATOL)
    assert e.describe()["intra_op_threads"] == threads


def test_prepare_validates_input(bundle):
    with pytest.raises(ValueError, match="shape"):
        bundle.prepare(np.zeros((2, 32, 32), np.float32))
    with pytest.raises(ValueError, match="NaN"):
        bundle.prepare(np.full((64, 64), np.nan, np.float32))
    x = bundle.prepare(np.full((64, 64), 3.0, np.float32))  # clipped into [0, 1]
    assert x.shape == (1, 1, 64, 64) and x.max() == 1.0


@pytest.mark.parametrize("requested, gpu, trt, expect", [
    ("auto", True, True, "tensorrt"),
    ("auto", True, False, "onnxruntime"),
    ("auto", False, True, "onnxruntime"),
    ("auto", False, False, "onnxruntime"),
    ("onnxruntime", True, True, "onnxruntime"),
    ("tensorrt", True, True, "tensorrt"),
])
def test_engine_choice(requested, gpu, trt, expect):
    assert choose_engine(requested, gpu, trt) == expect


@pytest.mark.parametrize("gpu, trt, match", [(False, True, "no NVIDIA GPU"), (True, False, "not installed")])
def test_explicit_tensorrt_without_it_is_an_error(gpu, trt, match):
    with pytest.raises(EngineUnavailable, match=match):
        choose_engine("tensorrt", gpu, trt)
    with pytest.raises(ValueError, match="choose"):
        choose_engine("cuda", gpu, trt)


def test_auto_falls_back_when_tensorrt_build_fails(bundle):
    """Pretend a GPU and tensorrt are there: the TensorRT import/build fails here, auto falls back with a warning."""
    if tensorrt_installed():
        pytest.skip("tensorrt is installed; the fallback is exercised only where it is not")
    with pytest.warns(RuntimeWarning, match="falling back to ONNX Runtime"):
        e = make_engine(bundle, "auto", gpu=True, tensorrt=True)
    assert e.name == "onnxruntime"
    with pytest.raises(ImportError):  # an explicit request lets the failure through: no tensorrt here
        make_engine(bundle, "tensorrt", gpu=True, tensorrt=True)


def test_bundle_errors(tmp_path, bundle_dir):
    with pytest.raises(BundleError, match="--bundle DIR") as err:
        load_bundle(tmp_path / "nope")
    assert "thz export" in str(err.value)

    import shutil
    d = tmp_path / "tampered"
    shutil.copytree(bundle_dir, d)
    with open(d / "model.onnx", "ab") as fh:
        fh.write(b"\0")
    with pytest.raises(BundleError, match="altered"):
        load_bundle(d)


@pytest.mark.integration
def test_no_torch_at_run_time(bundle_dir):
    """Every inference module, and an engine running, without torch being imported."""
    import subprocess
    import sys
    code = ("import sys, numpy as np\n"
            "import inference.bundle, inference.engines.base, inference.engines.choice, inference.engines.onnxrt, inference.engines.tensorrt, inference.engines.fp16, "
            "inference.gallery, inference.stage, pipeline.compose, pipeline.run, pipeline.view, thz.commands.run, thz.commands.bench_inference, "
            "pipeline.report\n"
            f"e = inference.engines.choice.make_engine(inference.bundle.load_bundle({str(bundle_dir)!r}), 'onnxruntime')\n"
            "e.infer(np.zeros((1, 64, 64), np.float32))\n"
            "print('torch' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def test_the_shipped_bundle_is_found_from_any_working_directory(tmp_path, monkeypatch):
    from importlib import resources
    shipped = Path(str(resources.files("inference") / "bundles" / "compact")).resolve()
    monkeypatch.chdir(tmp_path)                      # outside the checkout: models/compact is not here
    for name in ("models/compact", "compact"):
        assert load_bundle(name).path.resolve() == shipped
    with pytest.raises(BundleError, match="looked in"):
        load_bundle("models/no-such-bundle")
    with pytest.raises(BundleError, match="looked in"):
        load_bundle("elsewhere/compact")              # only a bare name or models/NAME means the shipped one
    local = tmp_path / "models" / "compact"           # a folder of that name here wins over the shipped one
    shutil.copytree(shipped, local)
    assert load_bundle("models/compact").path.resolve() == local.resolve()

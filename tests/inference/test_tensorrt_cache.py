"""TensorRT engine cache and FP16 graph pass: everything that needs no GPU."""
from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import onnx
import pytest

from inference.engines.fp16 import convert_to_fp16, normalise_tail
from inference.engines.tensorrt import EngineKey, engine_paths, needs_rebuild, timing_cache_path

KEY = EngineKey(gpu_name="NVIDIA H100 80GB HBM3", compute_capability="9.0", tensorrt_version="11.0.0",
                cuda_runtime_version=13000, cuda_driver_version=13000, model_id="0123456789abcdef",
                precision="fp16", outputs=("embedding", "posture_logits"), max_batch=8)


def _write(tmp_path, key):
    e, s = engine_paths(tmp_path, key)
    e.write_bytes(b"engine")
    s.write_text(json.dumps(key.to_json()))
    return e, s


def test_key_round_trip_and_digest_stable():
    assert EngineKey.from_json(json.loads(json.dumps(KEY.to_json()))) == KEY
    assert KEY.digest() == EngineKey.from_json(KEY.to_json()).digest()
    assert len(KEY.digest()) == 16


@pytest.mark.parametrize("field, value", [
    ("gpu_name", "NVIDIA H200"), ("compute_capability", "8.9"), ("tensorrt_version", "11.1.0"),
    ("cuda_runtime_version", 13010), ("cuda_driver_version", 13020), ("model_id", "fedcba9876543210"),
    ("precision", "fp32"), ("outputs", ("embedding", "posture_logits", "reconstruction")), ("max_batch", 16),
])
def test_any_change_gives_a_new_key_and_a_rebuild(tmp_path, field, value):
    e, s = _write(tmp_path, KEY)
    assert needs_rebuild(e, s, KEY) is None
    other = replace(KEY, **{field: value})
    assert other.digest() != KEY.digest()
    assert engine_paths(tmp_path, other)[0] != e  # never the same file
    # a sidecar that claims the old key under the new name is stale too (e.g. copied caches)
    reason = needs_rebuild(e, s, other)
    assert reason is not None and "stale" in reason and field in reason


def test_missing_or_broken_cache_files_rebuild(tmp_path):
    e, s = engine_paths(tmp_path, KEY)
    assert needs_rebuild(e, s, KEY) == "no cached engine"
    e.write_bytes(b"")
    assert needs_rebuild(e, s, KEY) == "no cached engine"
    e.write_bytes(b"x")
    assert "no key file" in needs_rebuild(e, s, KEY)
    s.write_text("{not json")
    assert "unreadable" in needs_rebuild(e, s, KEY)
    s.write_text(json.dumps({"gpu_name": "x"}))
    assert "unreadable" in needs_rebuild(e, s, KEY)


def test_engine_file_names_are_readable():
    e, s = engine_paths(__import__("pathlib").Path("/c"), KEY)
    assert e.name.startswith("0123456789abcdef-fp16-core-b8-") and e.suffix == ".engine" and s.suffix == ".json"
    t = timing_cache_path(__import__("pathlib").Path("/c"), KEY)
    assert "sm9.0" in t.name and "trt11.0.0" in t.name and "H100" in t.name


def test_fp16_graph_keeps_interface_and_norm_tail_fp32(bundle):
    model = onnx.load(str(bundle.onnx_path))
    tail = normalise_tail(model)
    ops = {n.name: n.op_type for n in model.graph.node}
    assert {ops[n] for n in tail} >= {"ReduceL2", "Div"}  # v / max(||v||, eps)
    half = convert_to_fp16(model)
    assert all(i.type.tensor_type.elem_type == onnx.TensorProto.FLOAT for i in half.graph.input)
    assert all(o.type.tensor_type.elem_type == onnx.TensorProto.FLOAT for o in half.graph.output)
    float_inits = [t.name for t in half.graph.initializer if t.data_type == onnx.TensorProto.FLOAT]
    half_inits = [t.name for t in half.graph.initializer if t.data_type == onnx.TensorProto.FLOAT16]
    assert half_inits and all(any(n.name in tail for n in half.graph.node if name in n.input)
                              for name in float_inits)
    typed = onnx.shape_inference.infer_shapes(half, strict_mode=True)
    elem = {v.name: v.type.tensor_type.elem_type for v in [*typed.graph.value_info, *typed.graph.output]}
    for n in half.graph.node:
        if n.name in tail and n.op_type in ("ReduceL2", "Div"):
            assert elem[n.output[0]] == onnx.TensorProto.FLOAT, n.name
        if n.op_type == "Conv":
            assert elem[n.output[0]] == onnx.TensorProto.FLOAT16, n.name


def test_fp16_graph_runs_and_matches_fp32(bundle, golden):
    """ONNX Runtime's CPU runs the FP16 graph: the FP16 contract (cosine >= 0.999, same posture)."""
    import onnxruntime as ort
    rois, ref = golden
    half = convert_to_fp16(onnx.load(str(bundle.onnx_path)))
    sess = ort.InferenceSession(half.SerializeToString(), providers=["CPUExecutionProvider"])
    emb, logits, recon = sess.run(["embedding", "posture_logits", "reconstruction"], {"thz": bundle.prepare(rois)})
    assert emb.dtype == np.float32
    assert np.all(np.sum(emb * ref["embedding"], axis=1) >= 0.999)
    np.testing.assert_array_equal(logits.argmax(1), ref["posture_logits"].argmax(1))
    assert np.abs(recon - ref["reconstruction"]).max() < 1e-2


def test_fp16_tail_survives_large_activations():
    """||v||^2 of 300-valued features overflows FP16 (65504); the FP32 tail still normalises."""
    from onnx import helper, TensorProto, numpy_helper
    import onnxruntime as ort
    w = numpy_helper.from_array(np.full((4, 4), 150.0, np.float32), "w")
    eps = numpy_helper.from_array(np.array(1e-12, np.float32), "eps")
    g = helper.make_graph([
        helper.make_node("MatMul", ["x", "w"], ["v"], name="mm"),
        helper.make_node("ReduceL2", ["v", "axes"], ["n"], name="l2", keepdims=1),
        helper.make_node("Max", ["n", "eps"], ["nc"], name="clamp"),
        helper.make_node("Div", ["v", "nc"], ["embedding"], name="div")],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, [1, 4])],
        [w, eps, numpy_helper.from_array(np.array([1], np.int64), "axes")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 20)])
    half = convert_to_fp16(m)
    out = ort.InferenceSession(half.SerializeToString(), providers=["CPUExecutionProvider"]).run(
        None, {"x": np.ones((1, 4), np.float32)})[0]
    np.testing.assert_allclose(out, 0.5, atol=1e-3)  # v = 600 each: ||v|| = 1200 in FP32, inf in FP16


def test_load_or_build_caches_and_rebuilds_on_a_new_key(bundle, tmp_path, monkeypatch):
    """The cache around the TensorRT build (the build itself needs a GPU and is replaced by a recorder):
    built once and written atomically with its key; the same key loads from disk; any other key or a
    damaged key file builds again; the graph handed to the builder is the one the key asks for."""
    import inference.engines.tensorrt as trt_mod

    builds: list[tuple[EngineKey, onnx.ModelProto]] = []

    def fake_build(onnx_bytes, key, input_size, timing_cache):
        builds.append((key, onnx.load_from_string(onnx_bytes)))
        return b"ENGINE:" + key.digest().encode()

    monkeypatch.setattr(trt_mod, "build_engine", fake_build)
    key = replace(KEY, model_id=bundle.model_id, precision="fp32", outputs=("embedding", "posture_logits"))
    data = trt_mod.load_or_build(bundle, key, tmp_path)
    assert data == b"ENGINE:" + key.digest().encode() and len(builds) == 1
    e, s = engine_paths(tmp_path, key)
    assert e.read_bytes() == data and EngineKey.from_json(json.loads(s.read_text())) == key
    assert not list(tmp_path.glob("*.tmp*"))  # atomic writes leave no partial files
    # core outputs only: the decoder is cut out of the graph given to the builder
    assert [o.name for o in builds[0][1].graph.output] == ["embedding", "posture_logits"]
    assert trt_mod.load_or_build(bundle, key, tmp_path) == data and len(builds) == 1  # from the cache
    # FP16 with the reconstruction: a new key, a new file, an FP16 graph with an FP32 interface
    k16 = replace(key, precision="fp16", outputs=("embedding", "posture_logits", "reconstruction"))
    trt_mod.load_or_build(bundle, k16, tmp_path)
    assert len(builds) == 2 and engine_paths(tmp_path, k16)[0].is_file() and e.is_file()
    g16 = builds[1][1].graph
    assert [o.name for o in g16.output] == ["embedding", "posture_logits", "reconstruction"]
    assert any(t.data_type == onnx.TensorProto.FLOAT16 for t in g16.initializer)
    # a key file damaged on disk: rebuilt, never trusted
    s.write_text("{broken")
    trt_mod.load_or_build(bundle, key, tmp_path)
    assert len(builds) == 3 and EngineKey.from_json(json.loads(s.read_text())) == key

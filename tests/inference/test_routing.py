"""Reconstruction by the routed posture expert only: the bundle's graph cut into a trunk and one graph per
expert (inference.engines.routing), against the whole graph and against torch."""
from __future__ import annotations

import numpy as np
import onnx
import pytest

from inference.bundle import CORE_OUTPUTS, INPUT_NAME, load_bundle
from inference.engines.cost import graph_macs
from inference.engines.graphs import expert_graphs, network_graph
from inference.engines.onnxrt import OnnxRuntimeEngine
from inference.engines.routing import GraphSplitError, blend, route_groups, split_experts

# the routed and the whole graph run the same float32 ops on the same values except that an expert sees a
# smaller batch (the CPU kernels may block the sums differently): outputs in [0, 1] to a few hundred roundings
ROUTE_ATOL = 256 * float(np.finfo(np.float32).eps)
EXPORT_ATOL = 1e-4  # ONNX Runtime vs torch eager: the export contract (training.export_tolerance)


@pytest.fixture(scope="module")
def expert_bundle(tmp_path_factory):
    from tests.inference.expertmodel import export_expert_bundle
    return load_bundle(export_expert_bundle(tmp_path_factory.mktemp("experts") / "micro"))


@pytest.fixture(scope="module")
def rois():
    from tests.inference.expertmodel import varied_rois
    return varied_rois(7, 12)


@pytest.fixture(scope="module")
def engines(expert_bundle):
    return {r: OnnxRuntimeEngine(expert_bundle, reconstruction=True, reconstruction_route=r)
            for r in ("predicted", "soft", "graph")}


def test_the_graph_is_cut_into_a_trunk_and_five_experts_that_add_up(expert_bundle):
    model = onnx.load(str(expert_bundle.onnx_path))
    split = split_experts(model, INPUT_NAME, CORE_OUTPUTS, 5)
    assert split is not None and len(split.experts) == 5 and len(set(split.expert_outputs)) == 5
    assert len(split.features) == 5  # the 4x4 map and four skips
    full, core = graph_macs(model), graph_macs(network_graph(expert_bundle, CORE_OUTPUTS))
    trunk, experts = graph_macs(split.trunk), [graph_macs(e) for e in split.experts]
    assert trunk == core                     # the trunk holds no decoder work
    assert len(set(experts)) == 1 and experts[0] > 0
    assert full == trunk + sum(experts)      # nothing lost, nothing counted twice
    assert graph_macs(model, batch=4) == 4 * full


def test_routed_reconstruction_equals_the_whole_graph(engines, rois):
    ref = engines["graph"].infer(rois)
    out = engines["predicted"].infer(rois)
    labels = ref["posture_logits"].argmax(1)
    assert len(np.unique(labels)) >= 3, labels  # the batch exercises the per-expert gather, not one expert
    for k in ref:
        np.testing.assert_allclose(out[k], ref[k], rtol=0, atol=ROUTE_ATOL, err_msg=k)
    for i in (0, 5, 11):                         # batch 1 takes the no-gather path
        one = engines["predicted"].infer(rois[i])
        np.testing.assert_allclose(one["reconstruction"][0], ref["reconstruction"][i], rtol=0, atol=ROUTE_ATOL)
    assert engines["predicted"].describe()["experts_split"] is True


def test_routes_agree_with_torch(engines, rois, expert_bundle):
    from tests.inference.expertmodel import make_net, torch_outputs
    net = make_net(0)
    x = expert_bundle.prepare(rois)
    for route in ("predicted", "soft"):
        ref = torch_outputs(net, x, route)
        out = engines[route].infer(rois)
        for k in ref:  # float32 rounding scales with the values (the re-centred logits reach ~10)
            tol = EXPORT_ATOL * max(1.0, float(np.abs(ref[k]).max()))
            np.testing.assert_allclose(out[k], ref[k], rtol=0, atol=tol, err_msg=f"{route} {k}")
    soft, hard = engines["soft"].infer(rois)["reconstruction"], engines["predicted"].infer(rois)["reconstruction"]
    assert np.abs(soft - hard).max() > 100 * EXPORT_ATOL  # the blend is a different output, not the same path


def test_a_bundle_with_one_decoder_runs_its_whole_graph(bundle, golden):
    rois, ref = golden
    assert expert_graphs(bundle) is None
    e = OnnxRuntimeEngine(bundle, reconstruction=True, reconstruction_route="predicted")
    assert e.routed is False and e.describe()["experts_split"] is False
    np.testing.assert_allclose(e.infer(rois)["reconstruction"], ref["reconstruction"], atol=1e-5)


def test_fp16_routed_graphs_keep_the_posture_and_the_image(expert_bundle, engines, rois):
    ref = engines["graph"].infer(rois)
    e = OnnxRuntimeEngine(expert_bundle, reconstruction=True, precision="fp16", graph_optimization="disable")
    out = e.infer(rois)
    np.testing.assert_array_equal(out["posture_logits"].argmax(1), ref["posture_logits"].argmax(1))
    eps16 = float(np.finfo(np.float16).eps)
    assert np.abs(out["reconstruction"] - ref["reconstruction"]).max() < 64 * eps16


def test_route_groups_and_blend():
    groups = route_groups(np.array([3, 0, 3, 1, 0]))
    assert [(k, rows.tolist()) for k, rows in groups] == [(0, [1, 4]), (1, [3]), (3, [0, 2])]
    outs = np.stack([np.full((2, 1, 2, 2), v, np.float32) for v in (0.0, 1.0)])  # expert 0 -> 0, expert 1 -> 1
    logits = np.array([[0.0, 0.0], [0.0, np.log(3.0)]], np.float32)              # p1 = 1/2 and 3/4
    np.testing.assert_allclose(blend(outs, logits)[:, 0, 0, 0], [0.5, 0.75], rtol=1e-6)


def test_a_graph_whose_expert_ends_twice_is_refused(expert_bundle):
    """The select reads a second tensor of expert 0: not the exported form, a clear error instead of a wrong cut."""
    model = onnx.load(str(expert_bundle.onnx_path))
    out0 = split_experts(model, INPUT_NAME, CORE_OUTPUTS, 5).expert_outputs[0]
    end0 = next(n for n in model.graph.node if out0 in n.output)      # expert 0's last node
    select = next(n for n in model.graph.node if out0 in n.input)     # the node stacking the experts
    select.input.append(end0.input[0])
    with pytest.raises(GraphSplitError, match=r"experts \[0\] end in several tensors"):
        split_experts(model, INPUT_NAME, CORE_OUTPUTS, 5)


def test_bad_route_is_refused(expert_bundle):
    with pytest.raises(ValueError, match="reconstruction_route"):
        OnnxRuntimeEngine(expert_bundle, reconstruction_route="nearest")


def test_the_shipped_bundle_routes_with_the_same_output(rois):
    try:
        b = load_bundle("models/compact")
    except Exception as exc:  # noqa: BLE001 - a checkout without the bundle
        pytest.skip(f"no shipped bundle: {exc}")
    ref = OnnxRuntimeEngine(b, reconstruction=True, reconstruction_route="graph").infer(rois)
    out = OnnxRuntimeEngine(b, reconstruction=True).infer(rois)
    for k in ref:
        np.testing.assert_allclose(out[k], ref[k], rtol=0, atol=ROUTE_ATOL, err_msg=k)


def test_bench_inference_prints_the_routes_with_macs_and_the_limit(expert_bundle):
    """Structure only (no timing asserted): the route table, its MACs and the limit measured beside it."""
    import json

    from click.testing import CliRunner

    from thz.cli import cli
    r = CliRunner().invoke(cli, ["bench", "inference", "--bundle", str(expert_bundle.path), "--repeats", "3",
                                 "--batches", "1", "--threads", "1"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    lines = r.stdout.strip().splitlines()
    rows = {row["path"]: row for row in json.loads(lines[-2])["routing"]}
    assert set(rows) == {"core", "graph", "predicted", "soft"}
    assert rows["graph"]["macs"] == rows["soft"]["macs"] > rows["predicted"]["macs"] > rows["core"]["macs"]
    assert all(row["limit_median_ms"] > 0 and row["vs_limit"] > 0 for row in rows.values())
    assert any(line.startswith("routed reconstruction: ") and "fewer MACs" in line for line in lines)

"""The ONNX graphs the engines run: the bundle's network pruned to the outputs asked for, in FP32 or FP16.

Every engine keeps a graph without the reconstruction decoder (CORE_OUTPUTS) for verification +
posture, and for the reconstruction either the whole graph (every posture expert behind a one-hot
select, as exported) or, by default, that graph cut into a trunk and one graph per expert
(`expert_graphs`, inference.engines.routing) so that only the routed expert runs. FP16 is a rewrite of the graph
(`inference.engines.fp16`) with an FP32 interface and an FP32 L2-normalise tail: what a strongly typed
TensorRT build compiles, and what `thz bench parity` runs on ONNX Runtime's CPU to measure the
precision loss of the rewrite on any machine.
"""
from __future__ import annotations

from dataclasses import replace

from inference.bundle import CORE_OUTPUTS, INPUT_NAME, OUTPUTS, ModelBundle
from inference.engines.routing import ExpertSplit, split_experts

PRECISIONS = ("fp32", "fp16")


def network_graph(bundle: ModelBundle, outputs: tuple[str, ...] = OUTPUTS, precision: str = "fp32") -> bytes:
    """The serialised ONNX graph computing `outputs` from the input, at `precision`."""
    import onnx
    from onnx import utils

    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r}: choose one of {PRECISIONS}")
    unknown = set(outputs) - set(OUTPUTS)
    if unknown or not outputs:
        raise ValueError(f"outputs {tuple(outputs)}: choose from {OUTPUTS}")
    model = onnx.load(str(bundle.onnx_path))
    if tuple(outputs) != OUTPUTS:
        model = utils.Extractor(model).extract_model([INPUT_NAME], list(outputs))
    if precision == "fp16":
        from inference.engines.fp16 import convert_to_fp16
        model = convert_to_fp16(model, keep_fp32=("embedding",))
    return model.SerializeToString()


def expert_graphs(bundle: ModelBundle, precision: str = "fp32") -> ExpertSplit | None:
    """The bundle's graph as a trunk and one graph per posture expert, at `precision`; None when it has no experts."""
    import onnx

    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r}: choose one of {PRECISIONS}")
    split = split_experts(onnx.load(str(bundle.onnx_path)), INPUT_NAME, CORE_OUTPUTS, len(bundle.manifest.postures))
    if split is None or precision == "fp32":
        return split
    from inference.engines.fp16 import convert_to_fp16

    def half(blob: bytes, keep: tuple[str, ...]) -> bytes:
        return convert_to_fp16(onnx.load_from_string(blob), keep_fp32=keep).SerializeToString()
    return replace(split, trunk=half(split.trunk, ("embedding",)), experts=tuple(half(e, ()) for e in split.experts))

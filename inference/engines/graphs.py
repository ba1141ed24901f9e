"""The ONNX graphs the engines run: the bundle's network pruned to the outputs asked for, in FP32 or FP16.

Every engine keeps a graph without the reconstruction decoder (CORE_OUTPUTS) for verification +
posture, and the whole graph for when the reconstruction is wanted. FP16 is a rewrite of the graph
(`inference.engines.fp16`) with an FP32 interface and an FP32 L2-normalise tail: what a strongly typed
TensorRT build compiles, and what `thz bench parity` runs on ONNX Runtime's CPU to measure the
precision loss of the rewrite on any machine.
"""
from __future__ import annotations

from inference.bundle import INPUT_NAME, OUTPUTS, ModelBundle

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

"""Multiply-accumulates of an ONNX graph per input, counted from its shapes (no run needed).

Conv: N x Cout x Hout x Wout x (Cin / groups) x kh x kw; Gemm and MatMul: M x K x N. Element-wise
ops, pooling, reductions and DepthToSpace are not counted (for these networks they are well under
1 % of the total). Every symbolic dimension of the graph inputs (the batch) is set to `batch`
before ONNX shape inference.
"""
from __future__ import annotations

import numpy as np


def _shape(vi) -> tuple[int, ...] | None:
    dims = vi.type.tensor_type.shape.dim
    if not dims and not vi.type.tensor_type.HasField("shape"):
        return None
    out = []
    for d in dims:
        if not d.HasField("dim_value"):
            return None
        out.append(int(d.dim_value))
    return tuple(out)


def graph_macs(model, batch: int = 1) -> int:
    """MACs of one run of `model` (onnx.ModelProto or its serialised bytes) at `batch` rows."""
    import onnx

    if isinstance(model, (bytes, bytearray)):
        model = onnx.load_from_string(bytes(model))
    else:
        model = onnx.ModelProto.FromString(model.SerializeToString())  # a copy: the caller's graph is not touched
    inits = {t.name for t in model.graph.initializer}
    for vi in model.graph.input:
        if vi.name in inits:
            continue
        for d in vi.type.tensor_type.shape.dim:
            if not d.HasField("dim_value"):
                d.ClearField("dim_param")
                d.dim_value = batch
    for vi in list(model.graph.value_info):  # stale symbolic shapes from the export: inferred afresh
        model.graph.value_info.remove(vi)
    for vi in model.graph.output:
        vi.type.tensor_type.ClearField("shape")
    inferred = onnx.shape_inference.infer_shapes(model, data_prop=True)
    shapes: dict[str, tuple[int, ...] | None] = {}
    for vi in [*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output]:
        shapes[vi.name] = _shape(vi)
    for t in inferred.graph.initializer:
        shapes[t.name] = tuple(int(d) for d in t.dims)
    total = 0
    for n in inferred.graph.node:
        if n.op_type == "Conv":
            w, y = shapes.get(n.input[1]), shapes.get(n.output[0])
            if w is None or y is None:
                raise ValueError(f"Conv {n.name}: shapes unknown after inference; cannot count its MACs")
            total += int(np.prod(y)) * int(np.prod(w[1:]))
        elif n.op_type in ("Gemm", "MatMul"):
            a, y = shapes.get(n.input[0]), shapes.get(n.output[0])
            if a is None or y is None:
                raise ValueError(f"{n.op_type} {n.name}: shapes unknown after inference; cannot count its MACs")
            trans_a = any(at.name == "transA" and at.i for at in n.attribute)
            k = a[-2] if trans_a else a[-1]
            total += int(np.prod(y)) * int(k)
    return total

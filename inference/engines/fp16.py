"""Convert an ONNX graph to FP16 for a strongly typed TensorRT build, keeping the L2-normalise tail in FP32.

TensorRT 10+/11 networks are strongly typed: precision comes from the graph's tensor types, not
from builder flags. This pass rewrites float32 tensors, initializers, `Constant` values and
`Cast(to=FLOAT)` targets to float16 and inserts casts at region borders. The graph's interface
stays FP32 (input `thz`, every output), and the embedding's normalisation
e = v / max(||v||_2, eps) stays FP32: ||v||^2 overflows FP16 (max 65504) for |v_i| of a few hundred.
"""
from __future__ import annotations

from collections import defaultdict

import numpy as np

_FLOAT, _HALF = 1, 10  # onnx.TensorProto.FLOAT, FLOAT16
_NORM_OPS = ("ReduceL2", "LpNormalization", "ReduceSumSquare")
# (op_type, input index) that the ONNX spec types as float32 whatever the data type
_FP32_ONLY_INPUTS = {("Resize", 2), ("Upsample", 1)}


def normalise_tail(model, output: str = "embedding") -> set[str]:
    """Names of the nodes of the L2-normalise tail feeding `output`.

    The tail is every node that is an ancestor of `output` and reachable from the input v of the
    norm op (ReduceL2 & co.) closest to the output: ReduceL2, Clip/Max(eps), Expand, Div.
    An output with no norm op above it has no tail (an empty set).
    """
    g = model.graph
    producer = {o: n for n in g.node for o in n.output}
    consumers = defaultdict(list)
    for n in g.node:
        for i in n.input:
            consumers[i].append(n)
    ancestors: list = []  # breadth-first from the output, nearest first
    seen: set[str] = set()
    frontier = [output]
    while frontier:
        t = frontier.pop(0)
        n = producer.get(t)
        if n is None or n.name in seen:
            continue
        seen.add(n.name)
        ancestors.append(n)
        frontier.extend(n.input)
    norm = next((n for n in ancestors if n.op_type in _NORM_OPS), None)
    if norm is None:
        return set()
    v = norm.input[0]
    reach: set[str] = set()
    stack = [v]
    while stack:
        t = stack.pop()
        for c in consumers[t]:
            if c.name not in reach:
                reach.add(c.name)
                stack.extend(c.output)
    return reach & seen


def convert_to_fp16(model, keep_fp32: tuple[str, ...] = ("embedding",)):
    """Return a new ModelProto computing in FP16, with FP32 interface and FP32 norm tails of `keep_fp32`."""
    import onnx
    from onnx import helper, numpy_helper, shape_inference

    m = onnx.ModelProto()
    m.CopyFrom(model)
    g = m.graph
    for i, n in enumerate(g.node):  # the pass works on node names
        if not n.name:
            n.name = f"_node{i}"
    inferred = shape_inference.infer_shapes(m)
    elem = {vi.name: vi.type.tensor_type.elem_type
            for vi in list(inferred.graph.value_info) + list(g.input) + list(g.output)}
    for init in g.initializer:
        elem[init.name] = init.data_type
    tail: set[str] = set()
    for out in keep_fp32:
        tail |= normalise_tail(m, out)

    # 1) which tensors live in FP32: graph inputs, tail outputs, initializers only the tail reads
    fp32_tensors = {i.name for i in g.input}
    users = defaultdict(list)
    for n in g.node:
        for k, i in enumerate(n.input):
            users[i].append((n, k))
    for n in g.node:
        if n.name in tail:
            fp32_tensors.update(n.output)
    init_names = {t.name for t in g.initializer}
    for t in g.initializer:
        if t.data_type == _FLOAT and (all(n.name in tail or (n.op_type, k) in _FP32_ONLY_INPUTS
                                          for n, k in users[t.name])):
            fp32_tensors.add(t.name)

    # 2) initializers and constants of the FP16 region become float16
    for t in g.initializer:
        if t.data_type == _FLOAT and t.name not in fp32_tensors:
            t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(t).astype(np.float16), t.name))
    for n in g.node:
        if n.name in tail:
            continue
        if n.op_type == "Cast":
            for a in n.attribute:
                if a.name == "to" and a.i == _FLOAT:
                    a.i = _HALF
        for a in n.attribute:
            if a.type == onnx.AttributeProto.TENSOR and a.t.data_type == _FLOAT and n.op_type in (
                    "Constant", "ConstantOfShape"):
                a.t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(a.t).astype(np.float16), a.t.name))

    def is_float(name: str) -> bool:
        return elem.get(name) in (_FLOAT, _HALF)

    # 3) casts where a node reads a float tensor from the other region
    new_nodes = []
    cast_cache: dict[tuple[str, int], str] = {}

    def cast(name: str, to: int) -> str:
        key = (name, to)
        if key not in cast_cache:
            out = f"{name}__as_{'fp32' if to == _FLOAT else 'fp16'}"
            new_nodes.append(helper.make_node("Cast", [name], [out], name=f"cast_{out}", to=to))
            cast_cache[key] = out
        return cast_cache[key]

    for n in list(g.node):
        in_fp32_region = n.name in tail
        for k, i in enumerate(n.input):
            if not i or not is_float(i):
                continue
            if (n.op_type, k) in _FP32_ONLY_INPUTS:
                if i not in fp32_tensors and i not in init_names:
                    n.input[k] = cast(i, _FLOAT)
                continue
            src_fp32 = i in fp32_tensors
            if in_fp32_region and not src_fp32:
                n.input[k] = cast(i, _FLOAT)
            elif not in_fp32_region and src_fp32:
                n.input[k] = cast(i, _HALF)
        new_nodes.append(n)

    # 4) every float output is FP32 at the interface
    for o in g.output:
        if is_float(o.name) and o.name not in fp32_tensors:
            inner = f"{o.name}__fp16"
            for n in new_nodes:
                for k, out in enumerate(n.output):
                    if out == o.name:
                        n.output[k] = inner
                for k, i in enumerate(n.input):
                    if i == o.name:
                        n.input[k] = inner
            new_nodes.append(helper.make_node("Cast", [inner], [o.name], name=f"cast_{o.name}_out", to=_FLOAT))
    del g.node[:]
    g.node.extend(_toposort(new_nodes, {i.name for i in g.input} | init_names))
    del g.value_info[:]  # types changed; TensorRT and ORT infer them again
    onnx.checker.check_model(m)
    return m


def _toposort(nodes: list, available: set[str]) -> list:
    have = set(available) | {""}
    out, pending = [], list(nodes)
    while pending:
        rest = []
        for n in pending:
            if all(i in have for i in n.input):
                out.append(n)
                have.update(n.output)
            else:
                rest.append(n)
        if len(rest) == len(pending):
            raise ValueError(f"graph has a cycle or missing inputs at nodes {[n.name for n in rest][:5]}")
        pending = rest
    return out

"""The bundle's graph cut into a trunk and one graph per posture expert, so only the routed decoder runs.

A bundle's ONNX holds every reconstruction expert behind a one-hot select (training.model
`decode_onehot`: every expert runs on every ROI, the argmax posture's output is kept), which is
~80 % of the graph's arithmetic thrown away. `split_experts` cuts that graph, with no torch and no
re-export (the bundle and its model id stay as they are), into

  trunk     `thz` -> embedding, posture_logits and the feature tensors the experts read
            (the encoder's 4x4 map and its skips);
  expert k  those feature tensors -> the reconstruction of expert k (B, 1, H, W).

An engine runs the trunk, takes the argmax posture of each ROI and runs expert k only on the ROIs
routed to k (`route_groups`); `blend` weights every expert by the posture probabilities (the
`soft` route of the evaluation). A graph without per-posture experts (one decoder) is not cut:
`split_experts` returns None and the whole graph is the reconstruction path.

How a node is assigned: the exporter keeps the module path in the names of the weights
(`net.decoders.<k>.rdb.fuse.weight`); a node outside the trunk (the ancestors of embedding and
posture_logits) belongs to expert k when it reads a weight of expert k or a tensor of expert k, and
to no expert when it mixes several (the one-hot select). Each expert must end in exactly one tensor
that the select reads, else the graph is not one this module understands and a clear error says so.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

EXPERT_WEIGHT = re.compile(r"(?:^|[./_])decoders[._](\d+)[._]")


class GraphSplitError(ValueError):
    """The graph holds per-posture experts but cannot be cut into a trunk and experts; says why."""


@dataclass(frozen=True)
class ExpertSplit:
    """Serialised graphs: `trunk` (input -> core outputs + `features`), `experts[k]` (features -> `expert_outputs[k]`)."""

    trunk: bytes
    features: tuple[str, ...]               # trunk outputs the experts read, in trunk output order
    experts: tuple[bytes, ...]              # one per posture, in posture (weight index) order
    expert_inputs: tuple[tuple[str, ...], ...]
    expert_outputs: tuple[str, ...]


def _ancestors(nodes, producer: dict[str, int], outputs) -> set[int]:
    seen: set[int] = set()
    stack = [producer[o] for o in outputs if o in producer]
    while stack:
        i = stack.pop()
        if i in seen:
            continue
        seen.add(i)
        stack.extend(producer[t] for t in nodes[i].input if t in producer)
    return seen


def expert_assignment(model, core_outputs: tuple[str, ...]) -> tuple[set[int], dict[int, int], dict[int, str]]:
    """(trunk node indices, node index -> expert, expert -> its output tensor) of a topologically sorted graph."""
    g = model.graph
    nodes = list(g.node)
    producer = {t: i for i, n in enumerate(nodes) for t in n.output if t}
    trunk = _ancestors(nodes, producer, core_outputs)
    inits = {t.name for t in g.initializer}
    owner: dict[int, int] = {}
    mixing: set[int] = set()
    for i, n in enumerate(nodes):
        if i in trunk:
            continue
        ks = {int(m.group(1)) for t in n.input if t in inits and (m := EXPERT_WEIGHT.search(t))}
        ks |= {owner[producer[t]] for t in n.input if t in producer and producer[t] in owner}
        if len(ks) == 1:
            owner[i] = ks.pop()
        elif len(ks) > 1:
            mixing.add(i)
    outs: dict[int, set[str]] = {}
    graph_outputs = {o.name for o in g.output}
    for i, k in owner.items():
        for t in nodes[i].output:
            read_by_mix = any(t in nodes[j].input for j in mixing)
            if read_by_mix or t in graph_outputs:
                outs.setdefault(k, set()).add(t)
    bad = {k: sorted(v) for k, v in outs.items() if len(v) != 1}
    if bad:
        raise GraphSplitError(f"experts {sorted(bad)} end in several tensors {bad}; expected one reconstruction each")
    return trunk, owner, {k: next(iter(v)) for k, v in outs.items()}


def split_experts(model, input_name: str, core_outputs: tuple[str, ...], n_experts: int) -> ExpertSplit | None:
    """Cut `model` (an onnx.ModelProto) into a trunk and `n_experts` expert graphs; None without experts."""
    from onnx import utils

    trunk, owner, outputs = expert_assignment(model, core_outputs)
    if not owner:
        return None
    if sorted(outputs) != list(range(n_experts)):
        raise GraphSplitError(f"the graph's experts end in {sorted(outputs)}; expected one per posture, "
                              f"0..{n_experts - 1}: re-export the bundle with this release's `thz export`")
    nodes = list(model.graph.node)
    producer = {t: i for i, n in enumerate(nodes) for t in n.output if t}
    features: dict[str, None] = {}
    per_expert: list[tuple[str, ...]] = []
    for k in range(n_experts):
        feats: dict[str, None] = {}
        for i in sorted(_ancestors(nodes, producer, [outputs[k]]) - trunk):
            for t in nodes[i].input:
                if (t in producer and producer[t] in trunk) or t == input_name:
                    feats[t] = None
        per_expert.append(tuple(feats))
        features.update(feats)
    if input_name in features:
        raise GraphSplitError("an expert reads the network input directly; the trunk cannot feed it")
    extractor = utils.Extractor(model)
    trunk_graph = extractor.extract_model([input_name], [*core_outputs, *features])
    experts = tuple(extractor.extract_model(list(per_expert[k]), [outputs[k]]).SerializeToString()
                    for k in range(n_experts))
    return ExpertSplit(trunk=trunk_graph.SerializeToString(), features=tuple(features), experts=experts,
                       expert_inputs=tuple(per_expert), expert_outputs=tuple(outputs[k] for k in range(n_experts)))


def route_groups(labels: np.ndarray) -> list[tuple[int, np.ndarray]]:
    """[(expert k, the row indices routed to k)] for the experts that have any, in ascending k."""
    labels = np.asarray(labels)
    return [(int(k), np.flatnonzero(labels == k)) for k in np.unique(labels)]


def blend(expert_outputs: np.ndarray, logits: np.ndarray) -> np.ndarray:
    """Reconstructions (K, B, 1, H, W) weighted by softmax(logits) (B, K): the `soft` route, (B, 1, H, W)."""
    z = logits - logits.max(axis=1, keepdims=True)
    w = np.exp(z)
    w /= w.sum(axis=1, keepdims=True)
    return np.einsum("kbchw,bk->bchw", expert_outputs, w.astype(expert_outputs.dtype))

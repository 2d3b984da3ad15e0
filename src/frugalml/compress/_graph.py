"""Which channels depend on which: a channel graph of a model, traced with ``torch.fx``.

Every tensor in the traced graph carries an index *space* (its dimension 1). A Conv2d or
Linear layer reads one space (its input channels or features) and writes a new one (its
filters or units); BatchNorm, activations that keep zero at zero, pooling and dropout pass a
space through; ``flatten`` passes it on with a multiplier (channel ``c`` becomes features
``c*m .. c*m+m-1``); adding two tensors (a residual connection) joins their spaces into one.
A joined space is *frozen* (never shrunk) when it touches the model's input or output, a
grouped convolution, or any operation this analysis does not know (those could turn a zero
channel into something else): unknown means keep, never guess.
"""

from __future__ import annotations

import operator
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from frugalml.errors import ModelError

if TYPE_CHECKING:
    import torch

__all__ = ["ChannelGraph", "SpaceGroup", "trace_channels"]


@dataclass
class SpaceGroup:
    """One joined index space: who writes it, who reads it, which norms act on it."""

    size: int
    producers: list[str] = field(default_factory=list)
    consumers: list[tuple[str, int]] = field(default_factory=list)  # (layer, multiplier)
    norms: list[str] = field(default_factory=list)
    frozen: bool = False
    reasons: list[str] = field(default_factory=list)


@dataclass
class ChannelGraph:
    groups: list[SpaceGroup]
    #: producer layer -> the BatchNorm applied directly to its output
    follow_norm: dict[str, str]


class _UnionFind:
    def __init__(self) -> None:
        self.parent: list[int] = []
        self.size: list[int] = []
        self.frozen: list[list[str]] = []

    def new(self, size: int) -> int:
        self.parent.append(len(self.parent))
        self.size.append(size)
        self.frozen.append([])
        return len(self.parent) - 1

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[rb] = ra
            self.frozen[ra].extend(self.frozen[rb])

    def freeze(self, i: int, reason: str) -> None:
        self.frozen[self.find(i)].append(reason)


_PASS_MODULES = (
    "ReLU",
    "ReLU6",
    "LeakyReLU",
    "GELU",
    "SiLU",
    "Hardswish",
    "Tanh",
    "Identity",
    "Dropout",
    "Dropout2d",
    "MaxPool2d",
    "AvgPool2d",
    "AdaptiveAvgPool2d",
    "AdaptiveMaxPool2d",
)


def _pass_functions() -> set[Any]:
    import torch
    import torch.nn.functional as F

    return {
        F.relu,
        torch.relu,
        F.relu6,
        F.gelu,
        F.silu,
        F.hardswish,
        F.leaky_relu,
        torch.tanh,
        F.dropout,
        F.max_pool2d,
        F.avg_pool2d,
        F.adaptive_avg_pool2d,
        F.adaptive_max_pool2d,
    }


_PASS_METHODS = {"relu", "relu_", "contiguous", "clone", "tanh"}
_ADD = {operator.add, operator.iadd}


def _shape(node: Any) -> tuple[int, ...] | None:
    meta = node.meta.get("tensor_meta")
    shape = getattr(meta, "shape", None)
    return tuple(int(s) for s in shape) if shape is not None else None


def trace_channels(model: torch.nn.Module, example: torch.Tensor) -> ChannelGraph:
    """Trace ``model`` on ``example`` (one batch) and group its channel spaces."""
    import torch
    from torch import fx, nn
    from torch.fx.passes.shape_prop import ShapeProp

    try:
        traced = fx.symbolic_trace(model)
        was_training = model.training
        traced.eval()
        with torch.no_grad():
            ShapeProp(traced).propagate(example)
        traced.train(was_training)
    except Exception as exc:
        raise ModelError(
            f"cannot trace {type(model).__name__} to find its channels: "
            f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}",
            fix="shrink works on models torch.fx can trace (the built-ins, timm CNNs such as "
            "resnet10t); use method 'channels' (Torch-Pruning) for others",
        ) from exc
    uf = _UnionFind()
    space: dict[Any, tuple[int, int]] = {}  # node -> (space id, multiplier)
    producers: list[tuple[str, int]] = []
    consumers: list[tuple[str, int, int]] = []
    norms: list[tuple[str, int]] = []
    follow_norm: dict[str, str] = {}
    layer_of_node: dict[Any, str] = {}
    uses: Counter[str] = Counter()
    pass_functions = _pass_functions()

    def inputs(node: Any) -> list[Any]:
        return [a for a in node.all_input_nodes if a in space]

    def freeze_all(node: Any, reason: str) -> None:
        for a in inputs(node):
            uf.freeze(space[a][0], reason)
        shape = _shape(node)
        if shape is not None and len(shape) >= 2:
            sid = uf.new(shape[1])
            uf.freeze(sid, reason)
            space[node] = (sid, 1)

    for node in traced.graph.nodes:
        shape = _shape(node)
        if node.op == "placeholder":
            if shape is not None and len(shape) >= 2:
                sid = uf.new(shape[1])
                uf.freeze(sid, "model input")
                space[node] = (sid, 1)
            continue
        if node.op == "output":
            for a in node.all_input_nodes:
                if a in space:
                    uf.freeze(space[a][0], "model output")
            continue
        if node.op == "get_attr":
            continue
        first = node.args[0] if node.args else None
        source = space.get(first) if isinstance(first, fx.Node) else None
        if node.op == "call_module":
            module = traced.get_submodule(node.target)
            name = str(node.target)
            kind = type(module).__name__
            if isinstance(module, (nn.Conv2d, nn.Linear)) and source is not None:
                uses[name] += 1
                grouped = isinstance(module, nn.Conv2d) and module.groups != 1
                flat_ok = isinstance(module, nn.Linear) or source[1] == 1
                if grouped or not flat_ok or shape is None or len(shape) not in (2, 4):
                    freeze_all(node, f"{name}: grouped or unusual layer")
                    continue
                consumers.append((name, source[0], source[1]))
                sid = uf.new(shape[1])
                space[node] = (sid, 1)
                producers.append((name, sid))
                layer_of_node[node] = name
                continue
            if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)) and source is not None:
                uses[name] += 1
                if source[1] != 1:
                    freeze_all(node, f"{name}: norm over flattened features")
                    continue
                norms.append((name, source[0]))
                space[node] = source
                if first in layer_of_node:
                    follow_norm[layer_of_node[first]] = name
                continue
            if kind in _PASS_MODULES and source is not None and len(node.all_input_nodes) == 1:
                space[node] = source
                continue
            if isinstance(module, nn.Flatten) and source is not None:
                in_shape = _shape(first)
                if module.start_dim == 1 and module.end_dim == -1 and in_shape is not None:
                    mult = 1
                    for s in in_shape[2:]:
                        mult *= s
                    space[node] = (source[0], source[1] * mult)
                    continue
            freeze_all(node, f"{name}: {kind} is not understood")
            continue
        target = node.target
        if node.op == "call_function" and target in pass_functions and source is not None:
            space[node] = source
            continue
        if node.op == "call_method" and target in _PASS_METHODS and source is not None:
            space[node] = source
            continue
        is_flatten = (node.op == "call_function" and target is torch.flatten) or (
            node.op == "call_method" and target == "flatten"
        )
        if is_flatten and source is not None:
            start = node.args[1] if len(node.args) > 1 else node.kwargs.get("start_dim", 0)
            end = node.args[2] if len(node.args) > 2 else node.kwargs.get("end_dim", -1)
            in_shape = _shape(first)
            if start == 1 and end == -1 and in_shape is not None:
                mult = 1
                for s in in_shape[2:]:
                    mult *= s
                space[node] = (source[0], source[1] * mult)
                continue
        is_mean = node.op == "call_method" and target == "mean"
        if is_mean and source is not None and shape is not None:
            in_shape = _shape(first)
            dims = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim")
            if isinstance(dims, int):
                dims = (dims,)
            spatial = dims is not None and {d % 4 for d in dims} == {2, 3}
            if in_shape is not None and len(in_shape) == 4 and spatial and source[1] == 1:
                space[node] = source
                continue
        is_add = (node.op == "call_function" and target in (*_ADD, torch.add)) or (
            node.op == "call_method" and target in ("add", "add_")
        )
        if is_add and len(node.args) == 2 and not node.kwargs:
            a, b = node.args
            both = isinstance(a, fx.Node) and isinstance(b, fx.Node) and a in space and b in space
            if both and space[a][1] == space[b][1] and _shape(a) == _shape(b) == shape:
                uf.union(space[a][0], space[b][0])
                space[node] = space[a]
                continue
        freeze_all(node, f"{node.op} {getattr(target, '__name__', target)} is not understood")

    groups: dict[int, SpaceGroup] = {}

    def group(sid: int) -> SpaceGroup:
        root = uf.find(sid)
        if root not in groups:
            groups[root] = SpaceGroup(size=uf.size[root])
        return groups[root]

    for name, sid in producers:
        group(sid).producers.append(name)
    for name, sid, mult in consumers:
        group(sid).consumers.append((name, mult))
    for name, sid in norms:
        group(sid).norms.append(name)
    shared = {name for name, count in uses.items() if count > 1}
    for root, g in groups.items():
        g.reasons = list(uf.frozen[root])
        names = set(g.producers) | set(g.norms) | {n for n, _ in g.consumers}
        if names & shared:
            g.reasons.append(f"layer(s) used twice: {', '.join(sorted(names & shared))}")
        g.frozen = bool(g.reasons)
    return ChannelGraph(groups=list(groups.values()), follow_norm=follow_norm)

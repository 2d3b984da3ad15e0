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


def _traced(model: torch.nn.Module, example: torch.Tensor) -> Any:
    """``model`` traced by ``torch.fx`` with every node's shape on ``example``."""
    import torch
    from torch import fx
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
    return traced


def _flattened_features(in_shape: tuple[int, ...]) -> int:
    """How many features one channel becomes when dimensions 2.. are flattened into 1."""
    mult = 1
    for s in in_shape[2:]:
        mult *= s
    return mult


class _ChannelTracer:
    """Walks a traced graph node by node, giving each tensor its channel space."""

    def __init__(self, traced: Any) -> None:
        self.traced = traced
        self.uf = _UnionFind()
        self.space: dict[Any, tuple[int, int]] = {}  # node -> (space id, multiplier)
        self.producers: list[tuple[str, int]] = []
        self.consumers: list[tuple[str, int, int]] = []
        self.norms: list[tuple[str, int]] = []
        self.follow_norm: dict[str, str] = {}
        self.layer_of_node: dict[Any, str] = {}
        self.uses: Counter[str] = Counter()
        self.pass_functions = _pass_functions()

    def freeze_all(self, node: Any, reason: str) -> None:
        for a in node.all_input_nodes:
            if a in self.space:
                self.uf.freeze(self.space[a][0], reason)
        shape = _shape(node)
        if shape is not None and len(shape) >= 2:
            sid = self.uf.new(shape[1])
            self.uf.freeze(sid, reason)
            self.space[node] = (sid, 1)

    def visit(self, node: Any) -> None:
        from torch import fx

        shape = _shape(node)
        if node.op == "placeholder":
            if shape is not None and len(shape) >= 2:
                sid = self.uf.new(shape[1])
                self.uf.freeze(sid, "model input")
                self.space[node] = (sid, 1)
            return
        if node.op == "output":
            for a in node.all_input_nodes:
                if a in self.space:
                    self.uf.freeze(self.space[a][0], "model output")
            return
        if node.op == "get_attr":
            return
        first = node.args[0] if node.args else None
        source = self.space.get(first) if isinstance(first, fx.Node) else None
        if node.op == "call_module":
            self._module(node, first, source, shape)
        elif not self._call(node, first, source, shape):
            target = node.target
            reason = f"{node.op} {getattr(target, '__name__', target)} is not understood"
            self.freeze_all(node, reason)

    def _module(
        self, node: Any, first: Any, source: tuple[int, int] | None, shape: tuple[int, ...] | None
    ) -> None:
        from torch import nn

        module = self.traced.get_submodule(node.target)
        name = str(node.target)
        kind = type(module).__name__
        if isinstance(module, (nn.Conv2d, nn.Linear)) and source is not None:
            self._layer(node, module, name, source, shape)
            return
        if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)) and source is not None:
            self._norm(node, first, name, source)
            return
        if kind in _PASS_MODULES and source is not None and len(node.all_input_nodes) == 1:
            self.space[node] = source
            return
        if isinstance(module, nn.Flatten) and source is not None:
            in_shape = _shape(first)
            if module.start_dim == 1 and module.end_dim == -1 and in_shape is not None:
                self.space[node] = (source[0], source[1] * _flattened_features(in_shape))
                return
        self.freeze_all(node, f"{name}: {kind} is not understood")

    def _layer(
        self,
        node: Any,
        module: Any,
        name: str,
        source: tuple[int, int],
        shape: tuple[int, ...] | None,
    ) -> None:
        """A Conv2d or Linear: reads ``source``, writes a new space of its outputs."""
        from torch import nn

        self.uses[name] += 1
        grouped = isinstance(module, nn.Conv2d) and module.groups != 1
        flat_ok = isinstance(module, nn.Linear) or source[1] == 1
        if grouped or not flat_ok or shape is None or len(shape) not in (2, 4):
            self.freeze_all(node, f"{name}: grouped or unusual layer")
            return
        self.consumers.append((name, source[0], source[1]))
        sid = self.uf.new(shape[1])
        self.space[node] = (sid, 1)
        self.producers.append((name, sid))
        self.layer_of_node[node] = name

    def _norm(self, node: Any, first: Any, name: str, source: tuple[int, int]) -> None:
        """A BatchNorm: acts on its input's space and passes it through."""
        self.uses[name] += 1
        if source[1] != 1:
            self.freeze_all(node, f"{name}: norm over flattened features")
            return
        self.norms.append((name, source[0]))
        self.space[node] = source
        if first in self.layer_of_node:
            self.follow_norm[self.layer_of_node[first]] = name

    def _call(
        self, node: Any, first: Any, source: tuple[int, int] | None, shape: tuple[int, ...] | None
    ) -> bool:
        """A function or method call; False when this analysis does not understand it."""
        if source is not None:
            passes = (node.op == "call_function" and node.target in self.pass_functions) or (
                node.op == "call_method" and node.target in _PASS_METHODS
            )
            if passes:
                self.space[node] = source
                return True
            if self._flatten_call(node, first, source) or self._mean_call(
                node, first, source, shape
            ):
                return True
        return self._add_call(node, shape)

    def _flatten_call(self, node: Any, first: Any, source: tuple[int, int]) -> bool:
        import torch

        target = node.target
        is_flatten = (node.op == "call_function" and target is torch.flatten) or (
            node.op == "call_method" and target == "flatten"
        )
        if not is_flatten:
            return False
        start = node.args[1] if len(node.args) > 1 else node.kwargs.get("start_dim", 0)
        end = node.args[2] if len(node.args) > 2 else node.kwargs.get("end_dim", -1)
        in_shape = _shape(first)
        if start == 1 and end == -1 and in_shape is not None:
            self.space[node] = (source[0], source[1] * _flattened_features(in_shape))
            return True
        return False

    def _mean_call(
        self, node: Any, first: Any, source: tuple[int, int], shape: tuple[int, ...] | None
    ) -> bool:
        """A mean over the two spatial dimensions keeps the channel space."""
        if not (node.op == "call_method" and node.target == "mean") or shape is None:
            return False
        in_shape = _shape(first)
        dims = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim")
        if isinstance(dims, int):
            dims = (dims,)
        spatial = dims is not None and {d % 4 for d in dims} == {2, 3}
        if in_shape is not None and len(in_shape) == 4 and spatial and source[1] == 1:
            self.space[node] = source
            return True
        return False

    def _add_call(self, node: Any, shape: tuple[int, ...] | None) -> bool:
        """Adding two tensors of one shape (a residual connection) joins their spaces."""
        import torch
        from torch import fx

        target = node.target
        is_add = (node.op == "call_function" and target in (*_ADD, torch.add)) or (
            node.op == "call_method" and target in ("add", "add_")
        )
        if not (is_add and len(node.args) == 2 and not node.kwargs):
            return False
        a, b = node.args
        space = self.space
        both = isinstance(a, fx.Node) and isinstance(b, fx.Node) and a in space and b in space
        if both and space[a][1] == space[b][1] and _shape(a) == _shape(b) == shape:
            self.uf.union(space[a][0], space[b][0])
            space[node] = space[a]
            return True
        return False

    def graph(self) -> ChannelGraph:
        """The joined spaces, each with its producers, consumers, norms and freeze reasons."""
        groups: dict[int, SpaceGroup] = {}

        def group(sid: int) -> SpaceGroup:
            root = self.uf.find(sid)
            if root not in groups:
                groups[root] = SpaceGroup(size=self.uf.size[root])
            return groups[root]

        for name, sid in self.producers:
            group(sid).producers.append(name)
        for name, sid, mult in self.consumers:
            group(sid).consumers.append((name, mult))
        for name, sid in self.norms:
            group(sid).norms.append(name)
        shared = {name for name, count in self.uses.items() if count > 1}
        for root, g in groups.items():
            g.reasons = list(self.uf.frozen[root])
            names = set(g.producers) | set(g.norms) | {n for n, _ in g.consumers}
            if names & shared:
                g.reasons.append(f"layer(s) used twice: {', '.join(sorted(names & shared))}")
            g.frozen = bool(g.reasons)
        return ChannelGraph(groups=list(groups.values()), follow_norm=self.follow_norm)


def trace_channels(model: torch.nn.Module, example: torch.Tensor) -> ChannelGraph:
    """Trace ``model`` on ``example`` (one batch) and group its channel spaces."""
    tracer = _ChannelTracer(_traced(model, example))
    for node in tracer.traced.graph.nodes:
        tracer.visit(node)
    return tracer.graph()

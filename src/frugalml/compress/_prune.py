"""Thresholds (zeroing small weights or groups) and masks that keep zeros at zero.

A threshold is ``absolute`` (one value), ``std`` (a ratio of each layer's standard
deviation, per layer, as DeepHoyer and SSL prune) or ``sparsity`` (a target fraction of the
chosen weights or groups, by one global magnitude cut). Unstructured thresholds act on single
weights; structured ones on the L2 norms of output filters (zeroing the filter, its bias and
the BatchNorm entries right after it) and of input channels.

:class:`Masks` records which entries are zero after thresholding; ``masks(model)`` after each
optimizer step (``train(..., on_step=masks)``) puts them back to zero, so masked fine-tuning
never revives a pruned weight.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from frugalml.compress._graph import ChannelGraph
from frugalml.compress._regularisers import prunable_weights
from frugalml.errors import ConfigError

if TYPE_CHECKING:
    import torch

__all__ = [
    "Masks",
    "Threshold",
    "ThresholdMode",
    "parse_threshold",
    "threshold_groups",
    "threshold_weights",
]

ThresholdMode = Literal["absolute", "std", "sparsity"]
_MODES = ("absolute", "std", "sparsity")


@dataclass(frozen=True)
class Threshold:
    mode: ThresholdMode
    value: float

    def __post_init__(self) -> None:
        if self.mode not in _MODES:
            raise ConfigError(
                f"threshold mode {self.mode!r} is unknown", fix=f"use one of {', '.join(_MODES)}"
            )
        if isinstance(self.value, bool) or not isinstance(self.value, (int, float)):
            raise ConfigError(f"threshold {self.mode} must be a number", fix="e.g. 0.01")
        if self.value < 0 or (self.mode == "sparsity" and not 0 <= self.value < 1):
            raise ConfigError(
                f"threshold {self.mode}={self.value} is out of range",
                fix="sparsity is a fraction in [0, 1); absolute and std are >= 0",
            )

    def to_dict(self) -> dict[str, Any]:
        return {self.mode: self.value}


def parse_threshold(value: Any, where: str) -> Threshold:
    """A number (absolute) or a one-key mapping ``{absolute|std|sparsity: number}``."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return Threshold("absolute", float(value))
    if isinstance(value, Mapping) and len(value) == 1:
        ((mode, number),) = value.items()
        if mode in _MODES and isinstance(number, (int, float)) and not isinstance(number, bool):
            return Threshold(mode, float(number))
    raise ConfigError(
        f"{where}: threshold {value!r} is not a number or one of {{absolute|std|sparsity: x}}",
        fix="e.g. threshold: {sparsity: 0.9}, threshold: {std: 0.5} or threshold: 0.01",
    )


def _cut(magnitudes: list[torch.Tensor], scales: list[float], t: Threshold) -> list[float]:
    """One threshold per tensor of magnitudes."""
    import torch

    if t.mode == "absolute":
        return [t.value] * len(magnitudes)
    if t.mode == "std":
        return [t.value * s for s in scales]
    flat = torch.cat([m.flatten() for m in magnitudes])
    k = int(t.value * flat.numel())
    if k == 0:
        return [-1.0] * len(magnitudes)
    cut = float(torch.kthvalue(flat.cpu(), k).values)
    return [cut] * len(magnitudes)


def threshold_weights(model: torch.nn.Module, t: Threshold) -> int:
    """Zero every Conv2d/Linear weight at or below the threshold; returns how many."""
    import torch

    weights = [w for _, w in prunable_weights(model)]
    cuts = _cut([w.detach().abs() for w in weights], [float(w.detach().std()) for w in weights], t)
    zeroed = 0
    with torch.no_grad():
        for w, cut in zip(weights, cuts, strict=True):
            small = w.abs() <= cut
            zeroed += int(small.sum())
            w[small] = 0
    return zeroed


def threshold_groups(model: torch.nn.Module, graph: ChannelGraph, t: Threshold) -> int:
    """Zero output filters (with bias and following norm) and input channels whose L2 norm
    is at or below the threshold, in layers whose spaces can shrink; returns groups zeroed.

    The std mode compares a group's norm with ``value x`` the standard deviation of that
    layer's group norms.
    """
    import torch

    free_out = {p for g in graph.groups if not g.frozen for p in g.producers}
    free_in = {c for g in graph.groups if not g.frozen for c, _ in g.consumers}
    items: list[tuple[str, str, torch.Tensor]] = []
    for name, w in prunable_weights(model):
        layer = name.removesuffix(".weight") if name != "weight" else ""
        squares = w.detach() * w.detach()
        if layer in free_out:
            items.append((layer, "out", squares.flatten(1).sum(1).sqrt()))
        if layer in free_in:
            items.append((layer, "in", squares.transpose(0, 1).flatten(1).sum(1).sqrt()))
    if not items:
        return 0
    norms = [n for _, _, n in items]
    cuts = _cut(norms, [float(n.std()) if n.numel() > 1 else 0.0 for n in norms], t)
    zeroed = 0
    with torch.no_grad():
        for (layer, side, n), cut in zip(items, cuts, strict=True):
            small = n <= cut
            if not bool(small.any()):
                continue
            zeroed += int(small.sum())
            module: Any = model.get_submodule(layer)
            if side == "in":
                module.weight[:, small] = 0
                continue
            module.weight[small] = 0
            if module.bias is not None:
                module.bias[small] = 0
            norm_name = graph.follow_norm.get(layer)
            if norm_name is not None:
                norm: Any = model.get_submodule(norm_name)
                if norm.weight is not None:
                    norm.weight[small] = 0
                    norm.bias[small] = 0
    return zeroed


class Masks:
    """Zero entries of the prunable weights (and of the biases and norms of zero filters).

    ``Masks.from_zeros(model, graph)`` snapshots them; calling the object with the model
    multiplies each parameter by its mask.
    """

    def __init__(self, masks: dict[str, torch.Tensor]) -> None:
        self.masks = masks

    @classmethod
    def from_zeros(cls, model: torch.nn.Module, graph: ChannelGraph | None = None) -> Masks:
        masks: dict[str, torch.Tensor] = {}
        params = dict(model.named_parameters())
        for name, w in prunable_weights(model):
            keep = w.detach() != 0
            masks[name] = keep
            layer = name.removesuffix("weight").removesuffix(".")
            alive = keep.flatten(1).any(dim=1)
            bias_name = f"{layer}.bias" if layer else "bias"
            if bias_name in params:
                masks[bias_name] = alive
            norm_name = graph.follow_norm.get(layer) if graph is not None else None
            if norm_name is not None:
                for attr in ("weight", "bias"):
                    if f"{norm_name}.{attr}" in params:
                        masks[f"{norm_name}.{attr}"] = alive
        return cls(masks)

    def __call__(self, model: torch.nn.Module) -> None:
        import torch

        params = dict(model.named_parameters())
        with torch.no_grad():
            for name, mask in self.masks.items():
                params[name].mul_(mask.to(params[name].dtype))

    def zeros(self) -> int:
        return sum(int((~m).sum()) for m in self.masks.values())

"""Physical shrinking: remove all-zero filters, channels and units, giving a dense model.

A channel of a joined space (see :mod:`._graph`) can go when it cannot change the output:

- every layer that writes it has an all-zero filter there (weights and bias), and every
  BatchNorm on the space has zero scale and shift there, so the channel is exactly zero; or
- every layer that reads it has all-zero input weights for it, so nothing reads it.

Removing it deletes that filter (and the norm's entries) from the writers and that input
channel (or its ``m`` flattened features) from the readers, across residual connections. At
least one channel of each space is kept. The result is an ordinary network of the same
classes with smaller layers; :func:`shape_record` / :func:`apply_record` describe and rebuild
its layer shapes (for :func:`frugalml.compress.load_compressed`).
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from frugalml.compress._graph import ChannelGraph, SpaceGroup, trace_channels
from frugalml.errors import ModelError

if TYPE_CHECKING:
    import torch

__all__ = ["ShrinkResult", "apply_record", "shape_record", "shrink"]

logger = logging.getLogger(__name__)


@dataclass
class ShrinkResult:
    """The shrunk model, its layers' new shapes, and what was removed from which space."""

    model: torch.nn.Module
    record: dict[str, dict[str, int]]
    removed: list[dict[str, Any]] = field(default_factory=list)

    @property
    def removed_channels(self) -> int:
        return sum(int(r["removed"]) for r in self.removed)


def _rows_zero(t: torch.Tensor) -> torch.Tensor:
    return (t.reshape(t.shape[0], -1) == 0).all(dim=1)


def _zero_channels(model: torch.nn.Module, g: SpaceGroup) -> torch.Tensor:
    """Per channel of ``g``: True where removing it cannot change the output."""
    import torch

    written_zero = torch.ones(g.size, dtype=torch.bool)
    for name in g.producers:
        layer: Any = model.get_submodule(name)
        zero = _rows_zero(layer.weight.detach().cpu())
        if layer.bias is not None:
            zero &= layer.bias.detach().cpu() == 0
        written_zero &= zero
    for name in g.norms:
        norm: Any = model.get_submodule(name)
        if norm.weight is None:
            written_zero &= False
            continue
        written_zero &= (norm.weight.detach().cpu() == 0) & (norm.bias.detach().cpu() == 0)
    if not g.producers:
        written_zero &= False
    read_zero = torch.ones(g.size, dtype=torch.bool)
    for name, mult in g.consumers:
        reader: Any = model.get_submodule(name)
        w = reader.weight.detach().cpu()
        cols = w.transpose(0, 1).reshape(g.size, mult, -1)
        read_zero &= (cols == 0).flatten(1).all(dim=1)
    if not g.consumers:
        read_zero &= False
    return written_zero | read_zero


def _select(module: torch.nn.Module, attr: str, dim: int, index: torch.Tensor) -> None:
    import torch
    from torch import nn

    value = getattr(module, attr, None)
    if value is None:
        return
    new = value.detach().index_select(dim, index.to(value.device)).clone()
    if isinstance(value, nn.Parameter):
        setattr(module, attr, nn.Parameter(new, requires_grad=value.requires_grad))
    elif isinstance(value, torch.Tensor):
        module._buffers[attr] = new


def resize_layer(
    module: torch.nn.Module,
    *,
    out_index: torch.Tensor | None = None,
    in_index: torch.Tensor | None = None,
) -> None:
    """Keep only ``out_index`` outputs and ``in_index`` inputs of a Conv2d, Linear or norm."""
    from torch import nn

    if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
        if out_index is not None:
            for attr in ("weight", "bias", "running_mean", "running_var"):
                _select(module, attr, 0, out_index)
            module.num_features = len(out_index)
        return
    if isinstance(module, nn.Conv2d):
        if out_index is not None:
            _select(module, "weight", 0, out_index)
            _select(module, "bias", 0, out_index)
            module.out_channels = len(out_index)
        if in_index is not None:
            _select(module, "weight", 1, in_index)
            module.in_channels = len(in_index)
        return
    if isinstance(module, nn.Linear):
        if out_index is not None:
            _select(module, "weight", 0, out_index)
            _select(module, "bias", 0, out_index)
            module.out_features = len(out_index)
        if in_index is not None:
            _select(module, "weight", 1, in_index)
            module.in_features = len(in_index)
        return
    raise ModelError(f"cannot resize a {type(module).__name__}", fix="resize Conv2d/Linear/BN")


def shrink(
    model: torch.nn.Module, example: torch.Tensor, *, graph: ChannelGraph | None = None
) -> ShrinkResult:
    """A copy of ``model`` without its removable channels (see the module docstring).

    ``example`` is one input batch (for tracing and shapes); ``model`` is not changed.
    """
    import torch

    graph = graph or trace_channels(model, example)
    out = copy.deepcopy(model)
    removed: list[dict[str, Any]] = []
    for g in graph.groups:
        if g.frozen:
            continue
        drop = _zero_channels(out, g)
        if bool(drop.all()):
            drop[0] = False  # a layer keeps at least one channel
        if not bool(drop.any()):
            continue
        keep = torch.nonzero(~drop).flatten()
        for name in g.producers:
            resize_layer(out.get_submodule(name), out_index=keep)
        for name in g.norms:
            resize_layer(out.get_submodule(name), out_index=keep)
        for name, mult in g.consumers:
            cols = (keep[:, None] * mult + torch.arange(mult)[None, :]).flatten()
            resize_layer(out.get_submodule(name), in_index=cols)
        removed.append(
            {
                "producers": list(g.producers),
                "size": g.size,
                "removed": int(drop.sum()),
            }
        )
    logger.debug("shrink removed %d channel(s)", sum(r["removed"] for r in removed))
    return ShrinkResult(model=out, record=shape_record(out), removed=removed)


def shape_record(model: torch.nn.Module) -> dict[str, dict[str, int]]:
    """The shape of every Conv2d, Linear and BatchNorm layer, by name (plain ints)."""
    from torch import nn

    record: dict[str, dict[str, int]] = {}
    for name, m in model.named_modules():
        if isinstance(m, nn.Conv2d):
            record[name] = {"in": m.in_channels, "out": m.out_channels, "groups": m.groups}
        elif isinstance(m, nn.Linear):
            record[name] = {"in": m.in_features, "out": m.out_features}
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            record[name] = {"out": m.num_features}
    return record


def apply_record(model: torch.nn.Module, record: dict[str, dict[str, int]]) -> None:
    """Give ``model``'s layers the shapes in ``record`` (weights to be loaded after)."""
    import torch
    from torch import nn

    current = shape_record(model)
    for name, shape in record.items():
        if name not in current:
            raise ModelError(
                f"the pruning record names a layer {name!r} this architecture lacks",
                fix="load it with the same model name and model_args it was saved with",
            )
        if current[name] == shape:
            continue
        module: Any = model.get_submodule(name)
        out_n, in_n = shape.get("out"), shape.get("in")
        out_index = torch.arange(out_n) if out_n is not None else None
        if isinstance(module, nn.Conv2d) and shape.get("groups", 1) != module.groups:
            groups = int(shape["groups"])
            resize_layer(module, out_index=out_index)
            module.groups = groups
            module.in_channels = int(shape["in"])
            continue
        in_index = None
        if in_n is not None:
            per_group = in_n // getattr(module, "groups", 1)
            in_index = torch.arange(per_group)
        resize_layer(module, out_index=out_index, in_index=in_index)
        if isinstance(module, nn.Conv2d) and in_n is not None:
            module.in_channels = in_n

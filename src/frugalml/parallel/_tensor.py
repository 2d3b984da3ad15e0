"""Experimental: partition types II and III executed for linear and conv layers.

Each rank holds a slice of a layer's channels, cut by uneven shares
(:func:`frugalml.parallel.split_counts`), and the collectives are padded to the largest
slice, since gloo and NCCL gather equal-sized tensors:

- type III (split the output channels): every rank holds the whole input and computes its
  output channels; the outputs are joined by a padded ``all_gather``; in backward the
  input's gradient is a partial sum per rank, added by ``all_reduce``.
- type II (split the input channels): every rank computes, from its input channels, a
  partial sum of the whole output; ``all_reduce`` adds them (or a padded reduce-scatter
  leaves each rank its output slice, for a following layer of type III... split by
  channels); in backward each rank has its input channels' gradient, joined by a padded
  ``all_gather`` when the input was whole.

Outside the layer the tensors are replicated (every rank computes the same thing), so the
gradient reaching a gathered output is the same on every rank and each takes its slice.
The layers are built from an ordinary ``nn.Linear`` / ``nn.Conv2d`` (same weights), so
they can be checked against it. This is experimental: no overlap of communication and
compute, one process group, and only these two layer kinds.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

from frugalml.errors import ConfigError
from frugalml.parallel._shares import normalise_shares, split_counts

if TYPE_CHECKING:
    import torch

__all__ = ["ChannelType", "split_layer"]

#: 1: type II (input channels), 2: type III (output channels), as the planner numbers them.
ChannelType = Literal[1, 2]


def _bounds(counts: Sequence[int], rank: int) -> tuple[int, int]:
    start = sum(counts[:rank])
    return start, start + counts[rank]


def padded_all_gather(local: torch.Tensor, counts: Sequence[int], dim: int) -> torch.Tensor:
    """Concatenate every rank's ``local`` along ``dim`` (rank r holds ``counts[r]`` there),
    padding each to the largest count for the collective."""
    import torch
    import torch.distributed as dist

    width = max(counts)
    pad = list(local.shape)
    pad[dim] = width - local.shape[dim]
    padded = torch.cat([local, local.new_zeros(pad)], dim=dim) if pad[dim] else local
    parts = [torch.empty_like(padded) for _ in counts]
    dist.all_gather(parts, padded.contiguous())
    return torch.cat([p.narrow(dim, 0, c) for p, c in zip(parts, counts, strict=True)], dim=dim)


def padded_reduce_scatter(
    full: torch.Tensor, counts: Sequence[int], dim: int, rank: int
) -> torch.Tensor:
    """Sum ``full`` over ranks and keep this rank's slice along ``dim``: NCCL's
    ``reduce_scatter_tensor`` on padded slices, an all-reduce and a slice on gloo."""
    import torch
    import torch.distributed as dist

    start, stop = _bounds(counts, rank)
    if dist.get_backend() != "nccl":
        summed = full.clone()
        dist.all_reduce(summed)
        return summed.narrow(dim, start, stop - start).contiguous()
    width = max(counts)
    slices = []
    for r, c in enumerate(counts):
        s0, _ = _bounds(counts, r)
        part = full.narrow(dim, s0, c)
        pad = list(part.shape)
        pad[dim] = width - c
        slices.append(torch.cat([part, part.new_zeros(pad)], dim=dim) if pad[dim] else part)
    stacked = torch.cat(slices, dim=dim).contiguous()
    out_shape = list(full.shape)
    out_shape[dim] = width
    out = full.new_empty(out_shape)
    dist.reduce_scatter_tensor(out, stacked)
    return out.narrow(dim, 0, counts[rank]).contiguous()


def _functions() -> dict[str, Any]:
    """The autograd functions, built on first use (torch is imported lazily)."""
    import torch
    import torch.distributed as dist

    class Gather(torch.autograd.Function):
        """Forward: padded all_gather along ``dim``. Backward: this rank's slice."""

        @staticmethod
        def forward(ctx: Any, local: torch.Tensor, counts: list[int], dim: int, rank: int) -> Any:
            ctx.bounds, ctx.dim = _bounds(counts, rank), dim
            return padded_all_gather(local, counts, dim)

        @staticmethod
        def backward(ctx: Any, grad: torch.Tensor) -> Any:
            start, stop = ctx.bounds
            return grad.narrow(ctx.dim, start, stop - start).contiguous(), None, None, None

    class Scatter(torch.autograd.Function):
        """Forward: this rank's slice of a whole tensor. Backward: padded all_gather."""

        @staticmethod
        def forward(ctx: Any, whole: torch.Tensor, counts: list[int], dim: int, rank: int) -> Any:
            ctx.counts, ctx.dim = counts, dim
            start, stop = _bounds(counts, rank)
            return whole.narrow(dim, start, stop - start).contiguous()

        @staticmethod
        def backward(ctx: Any, grad: torch.Tensor) -> Any:
            return padded_all_gather(grad.contiguous(), ctx.counts, ctx.dim), None, None, None

    class SumPartials(torch.autograd.Function):
        """Forward: all_reduce of partial sums. Backward: the (replicated) gradient."""

        @staticmethod
        def forward(ctx: Any, partial: torch.Tensor) -> Any:
            out = partial.clone()
            dist.all_reduce(out)
            return out

        @staticmethod
        def backward(ctx: Any, grad: torch.Tensor) -> Any:
            return grad

    class ReduceScatter(torch.autograd.Function):
        """Forward: padded reduce-scatter of partial sums. Backward: padded all_gather."""

        @staticmethod
        def forward(ctx: Any, partial: torch.Tensor, counts: list[int], dim: int, rank: int) -> Any:
            ctx.counts, ctx.dim = counts, dim
            return padded_reduce_scatter(partial, counts, dim, rank)

        @staticmethod
        def backward(ctx: Any, grad: torch.Tensor) -> Any:
            return padded_all_gather(grad.contiguous(), ctx.counts, ctx.dim), None, None, None

    class Replicated(torch.autograd.Function):
        """Forward: identity for a whole input. Backward: all_reduce of partial gradients."""

        @staticmethod
        def forward(ctx: Any, whole: torch.Tensor) -> Any:
            return whole.view_as(whole)

        @staticmethod
        def backward(ctx: Any, grad: torch.Tensor) -> Any:
            out = grad.clone()
            dist.all_reduce(out)
            return out

    return {
        "gather": Gather,
        "scatter": Scatter,
        "sum": SumPartials,
        "reduce_scatter": ReduceScatter,
        "replicated": Replicated,
    }


_FUNCTIONS: dict[str, Any] = {}


def _fn(name: str) -> Any:
    if not _FUNCTIONS:
        _FUNCTIONS.update(_functions())
    return _FUNCTIONS[name]


_CLASSES: dict[str, Any] = {}


def _rank_parameters(
    layer: torch.nn.Linear | torch.nn.Conv2d, kind: ChannelType, counts: Sequence[int], rank: int
) -> tuple[torch.nn.Parameter, torch.nn.Parameter | None]:
    """This rank's weight slice of ``layer`` and its bias (type III: its output channels'
    slice; type II: the whole bias, added once after the partial sums)."""
    import torch

    weight = layer.weight.detach()
    start, stop = _bounds(counts, rank)
    dim = 0 if kind == 2 else 1
    part = torch.nn.Parameter(weight.narrow(dim, start, stop - start).clone())
    bias = layer.bias
    if bias is None:
        return part, None
    if kind == 2:
        return part, torch.nn.Parameter(bias.detach()[start:stop].clone())
    return part, torch.nn.Parameter(bias.detach().clone())


def _split_layer_class() -> Any:
    """The module class, defined on first use so importing frugalml.parallel loads no torch."""
    if "layer" in _CLASSES:
        return _CLASSES["layer"]
    import torch

    class SplitLayer(torch.nn.Module):
        """One rank's part of a Linear or Conv2d split by channels (see :func:`split_layer`)."""

        def __init__(
            self,
            layer: torch.nn.Module,
            kind: ChannelType,
            shares: Sequence[float],
            rank: int,
            *,
            output: Literal["whole", "split"] = "whole",
        ) -> None:
            import torch

            super().__init__()
            layer = _check_splittable(layer)
            self.kind, self.rank, self.output = kind, rank, output
            self.is_conv = isinstance(layer, torch.nn.Conv2d)
            weight = layer.weight.detach()
            channels = weight.shape[0] if kind == 2 else weight.shape[1]
            self.counts = split_counts(int(channels), normalise_shares(shares))
            if min(self.counts) < 1:
                raise ConfigError(
                    f"{channels} channels split by {list(shares)} gives {self.counts}",
                    fix="give every rank at least one channel (a larger share or a wider layer)",
                )
            self.weight, self.bias = _rank_parameters(layer, kind, self.counts, rank)
            self.conv_args: dict[str, Any] = (
                {"stride": layer.stride, "padding": layer.padding, "dilation": layer.dilation}
                if isinstance(layer, torch.nn.Conv2d)
                else {}
            )
            self.full_out = int(weight.shape[0])

        def _apply_weight(self, x: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
            import torch.nn.functional as F

            if self.is_conv:
                out: torch.Tensor = F.conv2d(x, self.weight, bias, **self.conv_args)
                return out
            return F.linear(x, self.weight, bias)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            channel_dim = 1
            if self.kind == 2:
                y_local = self._apply_weight(_fn("replicated").apply(x), self.bias)
                if self.output == "split":
                    return y_local
                out: torch.Tensor = _fn("gather").apply(
                    y_local, self.counts, channel_dim, self.rank
                )
                return out
            return _partial_sums_forward(self, x)

    _CLASSES["layer"] = SplitLayer
    return SplitLayer


def _check_splittable(layer: torch.nn.Module) -> torch.nn.Linear | torch.nn.Conv2d:
    """``layer``, if it can be split by channels (a Linear or an ungrouped Conv2d)."""
    import torch

    if not isinstance(layer, (torch.nn.Linear, torch.nn.Conv2d)):
        raise ConfigError(
            f"only Linear and Conv2d layers can be split by channels, not {type(layer).__name__}"
        )
    if isinstance(layer, torch.nn.Conv2d) and layer.groups != 1:
        raise ConfigError("grouped convolutions cannot be split by channels yet")
    return layer


def _partial_sums_forward(layer: Any, x: torch.Tensor) -> torch.Tensor:
    """Type II forward of a SplitLayer: this rank's input channels give a partial sum of
    the whole output, summed over ranks (all-reduce) or reduce-scattered by channels."""
    channel_dim = 1
    local = x
    if x.shape[channel_dim] != layer.counts[layer.rank]:  # a whole input: take our channels
        local = _fn("scatter").apply(x, layer.counts, channel_dim, layer.rank)
    partial = layer._apply_weight(local, None)
    shape = (1, -1) + (1, 1) * layer.is_conv
    if layer.output == "split":
        out_counts = split_counts(layer.full_out, [c / sum(layer.counts) for c in layer.counts])
        y = _fn("reduce_scatter").apply(partial, out_counts, channel_dim, layer.rank)
        if layer.bias is not None:
            start, stop = _bounds(out_counts, layer.rank)
            y = y + layer.bias[start:stop].view(shape)
        return y  # type: ignore[no-any-return]
    y = _fn("sum").apply(partial)
    if layer.bias is not None:
        y = y + layer.bias.view(shape)
    return y  # type: ignore[no-any-return]


def split_layer(
    layer: torch.nn.Module,
    kind: ChannelType,
    shares: Sequence[float],
    rank: int,
    *,
    output: Literal["whole", "split"] = "whole",
) -> torch.nn.Module:
    """This rank's part of ``layer`` (``nn.Linear`` or ``nn.Conv2d``) under partition type
    ``kind`` (1 = II, 2 = III) with channel ``shares`` (uneven allowed). Call inside an
    initialised process group; every rank passes the same layer. ``output="split"`` leaves
    each rank its output channels (type III: no gather; type II: a padded reduce-scatter)."""
    if kind not in (1, 2):
        raise ConfigError(f"channel partitions are types 1 (II) and 2 (III), not {kind!r}")
    module: torch.nn.Module = _split_layer_class()(layer, kind, shares, rank, output=output)
    return module


def _batch_split_class() -> Any:
    """A layer under type I inside a partitioned model: each rank runs its share of the
    batch; the outputs are gathered, the weight gradients summed by all-reduce."""
    if "batch" in _CLASSES:
        return _CLASSES["batch"]
    import torch
    import torch.distributed as dist

    class BatchSplit(torch.nn.Module):
        def __init__(self, layer: torch.nn.Module, shares: Sequence[float], rank: int) -> None:
            super().__init__()
            self.layer, self.shares, self.rank = layer, normalise_shares(shares), rank
            for param in layer.parameters():
                param.register_hook(self._sum)  # type: ignore[no-untyped-call]

        @staticmethod
        def _sum(grad: torch.Tensor) -> torch.Tensor:
            out = grad.clone()
            dist.all_reduce(out)
            return out

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            counts = split_counts(int(x.shape[0]), self.shares)
            if min(counts) < 1:
                raise ConfigError(
                    f"a batch of {x.shape[0]} split by {list(self.shares)} gives {counts}",
                    fix="use a larger batch for layers of type I",
                )
            local = _fn("scatter").apply(x, counts, 0, self.rank)
            out: torch.Tensor = _fn("gather").apply(self.layer(local), counts, 0, self.rank)
            return out

    _CLASSES["batch"] = BatchSplit
    return BatchSplit


def apply_plan(
    model: torch.nn.Module,
    types: Sequence[int],
    shares: Sequence[float],
    rank: int,
) -> torch.nn.Module:
    """Replace ``model``'s Conv2d and Linear layers (in the order
    :func:`frugalml.parallel.network_from_model` lists them, i.e. modules in registration
    order) by this rank's part under ``types`` (one level of a plan: 0 = I, 1 = II, 2 =
    III). Everything between them stays replicated. Returns ``model``, changed in place."""
    import torch

    targets = [
        (name, m)
        for name, m in model.named_modules()
        if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))
    ]
    if len(targets) != len(types):
        raise ConfigError(
            f"the plan has {len(types)} layer types for {len(targets)} conv/linear layers",
            fix="plan this model (frugalml.parallel.network_from_model) and use one level",
        )
    for (name, layer), kind in zip(targets, types, strict=True):
        if kind == 0:
            part: torch.nn.Module = _batch_split_class()(layer, shares, rank)
        elif kind in (1, 2):
            part = split_layer(layer, kind, shares, rank)  # type: ignore[arg-type]
        else:
            raise ConfigError(f"layer {name}: partition type must be 0, 1 or 2, not {kind!r}")
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, part)
    return model

"""The partition planner: AccPar's three partition types per layer, level by level.

Per layer and level the planner picks a type (Song et al., AccPar, HPCA 2020):

- ``0`` type I: split the batch (data parallel); the weight gradient is exchanged.
- ``1`` type II: split the input channels; the outputs are partial sums to be added.
- ``2`` type III: split the output channels; the input error is a partial sum.

Between consecutive layers of different types the feature maps (forward) and errors
(backward) are re-laid out; a dynamic program over the chain of layers minimises the total.
Levels are hierarchical: level 0 splits the devices in two, level 1 splits each half again,
and so on, each on the tensors the previous levels left to one group.

Two modes over the same dynamic program:

- comm-only (:func:`plan_comm_only`): AccPar's published cost model exactly (volumes in
  elements, every split 1:1, shortcut joins only in AccPar's own search, its tie-breaking),
  so its tables are reproduced.
- costed (:func:`plan`): devices with a throughput (FLOP/s) and optionally a power, a link
  bandwidth per level, and a split ratio per level chosen so both sides finish their share
  of the FLOPs together; the predicted step time (compute + communication) and energy of
  data parallel (even and uneven split), OWT, HyPar and AccPar side by side.

The volumes at ratio ``a`` generalise AccPar's factors: where it moves half of a tensor
(``0.5``) the larger side moves ``max(a, 1 - a)`` of it; where a quarter (``0.5 * 0.5``),
``a * (1 - a)``. At ``a = 0.5`` both are AccPar's numbers bit for bit.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from frugalml.errors import ConfigError
from frugalml.parallel._network import LayerSpec, Network

__all__ = [
    "COMM_ONLY_STRATEGIES",
    "STRATEGIES",
    "DeviceSpec",
    "LevelPlan",
    "PartitionType",
    "Plan",
    "Strategy",
    "plan",
    "plan_comm_only",
    "search_level",
]

PartitionType = Literal[0, 1, 2]
Strategy = Literal["dp", "dp-uneven", "owt", "hypar", "accpar"]
#: The four tables AccPar prints, in its order.
COMM_ONLY_STRATEGIES: tuple[Strategy, ...] = ("dp", "owt", "hypar", "accpar")
STRATEGIES: tuple[Strategy, ...] = ("dp", "dp-uneven", "owt", "hypar", "accpar")
_TYPES: tuple[PartitionType, ...] = (0, 1, 2)


@dataclass
class _Dims:
    """The tensors one group holds for a layer at the current level (rows x columns)."""

    in_r: float
    in_c: float
    w_r: float
    w_c: float
    out_r: float
    out_c: float

    @classmethod
    def of(cls, layer: LayerSpec, batch: float) -> _Dims:
        c_in, c_out = float(layer.in_channels), float(layer.out_channels)
        return cls(batch, c_in, c_in, c_out, batch, c_out)

    def split(self, t: int, share: float) -> None:
        if t == 0:
            self.in_r *= share
            self.out_r *= share
        elif t == 1:
            self.in_c *= share
            self.w_r *= share
        else:
            self.w_c *= share
            self.out_c *= share


def _intra(layer: LayerSpec, d: _Dims, t: int) -> float:
    if t == 0:  # weight gradients exchanged
        return d.w_r * d.w_c * layer.kernel_size
    if t == 1:  # output partial sums
        return d.out_r * d.out_c * layer.ofmap_size
    return d.in_r * d.in_c * layer.ifmap_size  # input-error partial sums


def _inter(layer: LayerSpec, d: _Dims, prev: int, this: int, half: float, quarter: float) -> float:
    """Re-layout of this layer's input (and its error) from ``prev``'s type to ``this``."""
    size = d.in_r * d.in_c
    both = quarter * (size + size) * layer.ifmap_size
    moved = half * size * layer.ifmap_size
    table = ((0.0, both, moved), (moved, moved, 0.0), (both, 0.0, moved))
    return table[prev][this]


def _block(layer: LayerSpec, d: _Dims, start: int, join: int, half: float, quarter: float) -> float:
    """A residual shortcut from a layer of type ``start`` joining this layer of ``join``."""
    size = d.in_r * d.in_c
    both = quarter * (size + size) * layer.ifmap_size
    moved = half * size * layer.ifmap_size
    table = ((0.0, moved, both), (both, moved, 0.0), (moved, 0.0, moved))
    return table[start][join]


def _factors(ratio: float) -> tuple[float, float]:
    if ratio == 0.5:
        return 0.5, 0.5 * 0.5
    return max(ratio, 1.0 - ratio), ratio * (1.0 - ratio)


def search_level(
    network: Network,
    dims: Sequence[_Dims],
    types: Sequence[PartitionType],
    *,
    ratio: float = 0.5,
    shortcuts: bool = False,
) -> tuple[tuple[PartitionType, ...], float]:
    """AccPar's dynamic program for one level: the types (one per layer) of least total
    communication over ``types``, and that total as the program counts it.

    As in AccPar, a shortcut join is priced with the type its start layer has on the best
    path to the previous layer (a greedy trace-back), and the first candidate of each cell
    is compared without it."""
    layers = network.layers
    half, quarter = _factors(ratio)
    cost = [[_intra(layer, d, t) for t in types] for layer, d in zip(layers, dims, strict=True)]
    track: list[list[int]] = [list(range(len(types))) for _ in layers]
    for i in range(1, len(layers)):
        layer, d = layers[i], dims[i]
        for j, t_this in enumerate(types):
            best = cost[i - 1][0] + _inter(layer, d, types[0], t_this, half, quarter)
            best_prev = 0
            for k, t_prev in enumerate(types):
                candidate = cost[i - 1][k] + _inter(layer, d, t_prev, t_this, half, quarter)
                start = layer.shortcut_from
                if shortcuts and start is not None:
                    idx = k
                    for back in range(i - 1, start, -1):
                        idx = track[back][idx]
                    candidate += _block(layer, d, types[idx], t_this, half, quarter)
                if best > candidate:
                    best, best_prev = candidate, k
            cost[i][j] += best
            track[i][j] = best_prev
    last = cost[-1]
    pick = 0
    for j in range(1, len(types)):
        if last[pick] > last[j]:
            pick = j
    total = last[pick]
    chosen = [pick] * len(layers)
    for i in range(len(layers) - 2, -1, -1):
        pick = track[i + 1][pick]
        chosen[i] = pick
    return tuple(types[j] for j in chosen), total


def _evaluate(
    network: Network, dims: Sequence[_Dims], assignment: Sequence[int], ratio: float
) -> float:
    """The communication of one level under ``assignment``, every term (joins included)."""
    half, quarter = _factors(ratio)
    total = 0.0
    for i, (layer, d) in enumerate(zip(network.layers, dims, strict=True)):
        total += _intra(layer, d, assignment[i])
        if i > 0:
            total += _inter(layer, d, assignment[i - 1], assignment[i], half, quarter)
        if layer.shortcut_from is not None:
            total += _block(layer, d, assignment[layer.shortcut_from], assignment[i], half, quarter)
    return total


@dataclass(frozen=True)
class LevelPlan:
    """One level: a type per layer, the split ratio (share of the first half), and the
    communication one group does at this level (elements, and seconds when costed)."""

    level: int
    types: tuple[PartitionType, ...]
    ratio: float
    comm_elements: float
    search_comm_elements: float | None = None
    comm_s: float | None = None


@dataclass(frozen=True)
class Plan:
    """A strategy's partition of ``network`` at every level, and (costed) its step time."""

    strategy: Strategy
    network: str
    layers: tuple[str, ...]
    batch: int
    levels: tuple[LevelPlan, ...]
    compute_s: float | None = None
    comm_s: float | None = None
    step_time_s: float | None = None
    energy_j: float | None = None
    notes: tuple[str, ...] = field(default=())

    @property
    def comm_elements(self) -> float:
        return sum(level.comm_elements for level in self.levels)

    def rows(self) -> list[tuple[str, int, str, int]]:
        """``(strategy, level, layer, type)`` rows, as the CSV writes them."""
        return [
            (self.strategy, lv.level, name, int(t))
            for lv in self.levels
            for name, t in zip(self.layers, lv.types, strict=True)
        ]


def _check_batch_levels(batch: int, levels: int) -> None:
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise ConfigError(f"batch must be an integer >= 1, not {batch!r}", fix="e.g. batch=512")
    if isinstance(levels, bool) or not isinstance(levels, int) or not 1 <= levels <= 16:
        raise ConfigError(
            f"levels must be an integer from 1 to 16, not {levels!r}",
            fix="e.g. levels=7 (128 devices) or 1 (two devices)",
        )


def _fixed(network: Network, strategy: Strategy) -> tuple[PartitionType, ...]:
    if strategy == "owt":  # Krizhevsky's trick: batch split for convs, model split for FC
        return tuple(0 if layer.kind == "conv" else 1 for layer in network.layers)
    return tuple(0 for _ in network.layers)


def _plan_levels(
    network: Network, strategy: Strategy, batch: int, ratios: Sequence[float]
) -> list[LevelPlan]:
    dims = [_Dims.of(layer, float(batch)) for layer in network.layers]
    out: list[LevelPlan] = []
    for level, ratio in enumerate(ratios):
        searched: float | None = None
        if strategy in ("hypar", "accpar"):
            types: tuple[PartitionType, ...] = (0, 1) if strategy == "hypar" else _TYPES
            assignment, searched = search_level(
                network, dims, types, ratio=ratio, shortcuts=strategy == "accpar"
            )
        else:
            assignment = _fixed(network, strategy)
        comm = _evaluate(network, dims, assignment, ratio)
        out.append(LevelPlan(level, assignment, ratio, comm, searched))
        share = max(ratio, 1.0 - ratio)  # the next level plans the larger side's tensors
        for d, t in zip(dims, assignment, strict=True):
            d.split(t, share)
    return out


def plan_comm_only(
    network: Network,
    *,
    batch: int = 512,
    levels: int = 7,
    strategies: Sequence[Strategy] = COMM_ONLY_STRATEGIES,
) -> list[Plan]:
    """AccPar's own model: communication volume only, every split 1:1 (its tables)."""
    _check_batch_levels(batch, levels)
    return [
        Plan(
            s,
            network.name,
            network.names,
            batch,
            tuple(_plan_levels(network, s, batch, [0.5] * levels)),
        )
        for s in strategies
    ]


@dataclass(frozen=True)
class DeviceSpec:
    """An accelerator as the planner sees it: sustained training throughput (FLOP/s) and,
    optionally, its power while working (W) for the energy estimate."""

    name: str
    flops_per_s: float
    power_w: float | None = None

    def __post_init__(self) -> None:
        if not (math.isfinite(self.flops_per_s) and self.flops_per_s > 0):
            raise ConfigError(
                f"device {self.name!r}: flops_per_s must be > 0, not {self.flops_per_s!r}",
                fix="give the sustained FLOP/s, e.g. 45e12 for a TPU-v2 chip",
            )
        if self.power_w is not None and not (math.isfinite(self.power_w) and self.power_w >= 0):
            raise ConfigError(f"device {self.name!r}: power_w must be >= 0, not {self.power_w!r}")


def _compute_s(devices: Sequence[DeviceSpec], flops: float, ratios: Sequence[float]) -> float:
    """Time for ``devices`` (split in halves recursively) to do ``flops``: the slower half."""
    if len(devices) == 1:
        return flops / devices[0].flops_per_s
    half = len(devices) // 2
    a = ratios[0]
    return max(
        _compute_s(devices[:half], flops * a, ratios[1:]),
        _compute_s(devices[half:], flops * (1.0 - a), ratios[1:]),
    )


def _balanced_ratios(devices: Sequence[DeviceSpec]) -> list[float]:
    """Per level, the share of the first half so both halves of group 0 finish together."""
    ratios: list[float] = []
    group = list(devices)
    while len(group) > 1:
        half = len(group) // 2
        left = sum(d.flops_per_s for d in group[:half])
        ratios.append(left / (left + sum(d.flops_per_s for d in group[half:])))
        group = group[:half] if ratios[-1] >= 0.5 else group[half:]
    return ratios


def _check_devices(
    devices: Sequence[DeviceSpec], batch: int, bandwidth_bytes_per_s: float | Sequence[float]
) -> tuple[int, list[float]]:
    """The levels ``devices`` split into (halves) and one link bandwidth per level."""
    count = len(devices)
    if count < 2 or count & (count - 1):
        raise ConfigError(
            f"the planner splits devices in halves: give 2, 4, 8, ... devices, not {count}",
            fix="list two devices, e.g. DeviceSpec('fast', 100e12), DeviceSpec('slow', 25e12)",
        )
    levels = int(math.log2(count))
    _check_batch_levels(batch, levels)
    bandwidths = (
        [float(bandwidth_bytes_per_s)] * levels
        if isinstance(bandwidth_bytes_per_s, (int, float))
        else [float(b) for b in bandwidth_bytes_per_s]
    )
    if len(bandwidths) != levels or not all(math.isfinite(b) and b > 0 for b in bandwidths):
        raise ConfigError(
            f"give one link bandwidth > 0 (bytes/s) per level ({levels}), "
            f"not {bandwidth_bytes_per_s!r}",
            fix="e.g. bandwidth_bytes_per_s=16e9 for PCIe 4.0 x16",
        )
    return levels, bandwidths


def plan(
    network: Network,
    devices: Sequence[DeviceSpec],
    *,
    batch: int,
    bandwidth_bytes_per_s: float | Sequence[float],
    bytes_per_element: float = 4.0,
    strategies: Sequence[Strategy] = STRATEGIES,
) -> list[Plan]:
    """Plans with a compute term: each strategy's predicted training step time.

    ``devices`` (a power of two, split in halves level by level) give the throughput; the
    training FLOPs of a layer are 3x its forward FLOPs (forward, input and weight gradients)
    times the batch. ``dp``, ``owt`` and ``hypar`` split 1:1 as published; ``dp-uneven``
    and ``accpar`` split each level so both halves finish together. Communication time is a
    level's volume x ``bytes_per_element`` / that level's bandwidth (levels run one after
    another; the groups of one level in parallel, on their own links). Below the first
    level, the groups of a level are taken to be alike: the ratio comes from the group
    holding the larger share, and the plan is one per level, as in AccPar."""
    levels, bandwidths = _check_devices(devices, batch, bandwidth_bytes_per_s)
    balanced = _balanced_ratios(devices)
    flops = 3.0 * batch * sum(layer.forward_flops() for layer in network.layers)
    power = [d.power_w for d in devices]
    plans: list[Plan] = []
    for strategy in strategies:
        ratios = balanced if strategy in ("dp-uneven", "accpar") else [0.5] * levels
        base = "dp" if strategy == "dp-uneven" else strategy
        raw = _plan_levels(network, base, batch, ratios)
        lv_plans = tuple(
            LevelPlan(
                lv.level,
                lv.types,
                lv.ratio,
                lv.comm_elements,
                lv.search_comm_elements,
                lv.comm_elements * bytes_per_element / bandwidths[lv.level],
            )
            for lv in raw
        )
        compute_s = _compute_s(devices, flops, ratios)
        comm_s = sum(lv.comm_s or 0.0 for lv in lv_plans)
        step_s = compute_s + comm_s
        energy = (
            sum(p for p in power if p is not None) * step_s
            if all(p is not None for p in power)
            else None
        )
        plans.append(
            Plan(
                strategy,
                network.name,
                network.names,
                batch,
                lv_plans,
                compute_s=compute_s,
                comm_s=comm_s,
                step_time_s=step_s,
                energy_j=energy,
                notes=(
                    "predicted: compute = 3 x forward FLOPs x batch over stated throughput, "
                    "no overlap of compute and communication",
                    "energy estimated: stated power of every device x predicted step time",
                ),
            )
        )
    return plans

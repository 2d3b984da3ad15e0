"""Where the joules of a training step go inside a network: :func:`profile_network`.

Three measurements of the same model on the same data, each stated for what it is:

1. **Counted**: parameters per module, and forward FLOPs per module from
   ``torch.utils.flop_counter`` (one batch, eval mode; see :mod:`._flops`).
2. **Measured energy**: a :class:`frugalml.meter.Meter` window around ``steps`` real training
   steps (Adam, cross-entropy, the batch size of the config) *without* any hook, after
   ``warmup_steps`` unmetered ones. Its provenance (measured or estimated) is the meter's.
3. **Measured time shares**: ``profile_steps`` further training steps *with* timing hooks
   (:mod:`._timing`), each after a plain step without hooks: the clocked forward + backward
   time of each module, of the loss and of the optimizer. Each part's share is its time
   over the time of a plain step (both the median over steps by default; interleaving
   means both saw the same load on a shared machine); what a plain step spends outside
   every clocked operator (Python between calls, the autograd engine) is a part of its own,
   ``untimed``. Where the clocked parts add up to more than a plain step (hooks slow the
   operators a little, or the load changed), there is no untimed part and the shares are of
   the clocked total.

The window's energy is then **attributed** to the parts in proportion to their time share.
The attribution assumes power is the same whichever layer runs; where the meter's energy is
itself an estimate proportional to CPU time (TDP x utilisation), the energy shares are time
shares by construction.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from frugalml.errors import ConfigError
from frugalml.profile._classify import LAYER_TYPES, OUTSIDE_MODEL, LayerType, classify_module
from frugalml.profile._flops import ModuleFlops, module_flops
from frugalml.profile._timing import LOSS_KEY, OPTIMIZER_KEY, time_training_steps
from frugalml.train._step import BatchOrder, Normaliser, TrainStep, channel_stats, make_optimizer

if TYPE_CHECKING:
    import torch

    from frugalml.data import ImageDataset
    from frugalml.meter import Measurement, Meter

__all__ = [
    "ROOT_NAME",
    "LayerProfile",
    "NetworkProfile",
    "ProfileConfig",
    "TypeProfile",
    "profile_network",
]

logger = logging.getLogger(__name__)

#: The display name of the root module's own operators (e.g. a ``torch.flatten`` in
#: ``forward``).
ROOT_NAME = "(model)"
#: The key of the part of an unhooked step outside every clocked operator.
UNTIMED_KEY = "<untimed>"
_OUTSIDE_NAMES = {
    LOSS_KEY: "loss (cross-entropy)",
    OPTIMIZER_KEY: "optimizer (Adam)",
    UNTIMED_KEY: "untimed (Python, autograd engine)",
}
_MAX_DISTINCT_BATCHES = 8


@dataclass(frozen=True)
class ProfileConfig:
    """How :func:`profile_network` trains while it measures.

    ``steps`` training steps are metered without hooks, ``profile_steps`` (default: the
    same number) are timed with hooks, after ``warmup_steps`` that are neither. The steps
    use Adam with ``lr`` on batches of ``batch_size`` drawn from the training split with
    ``seed``. ``statistic`` summarises each part's time over the hooked steps: ``median``
    (default; robust to a step preempted by another process) or ``mean``. ``threads``:
    torch's intra-op threads while profiling (default :data:`frugalml.train.DEFAULT_THREADS`,
    one, as for every training frugalml runs; restored afterwards).
    """

    batch_size: int = 32
    steps: int = 20
    profile_steps: int | None = None
    warmup_steps: int = 3
    lr: float = 5e-4
    device: str = "auto"
    seed: int = 0
    statistic: str = "median"
    threads: int | None = None

    def __post_init__(self) -> None:
        from frugalml.train import check_threads

        check_threads(self.threads, option="profile threads")
        for name, low in (("batch_size", 1), ("steps", 1), ("warmup_steps", 0), ("seed", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ConfigError(
                    f"profile {name} must be an integer >= {low}, got {value!r}",
                    fix=f"set {name} to {low} or more",
                )
        if self.profile_steps is not None and (
            isinstance(self.profile_steps, bool)
            or not isinstance(self.profile_steps, int)
            or self.profile_steps < 1
        ):
            raise ConfigError(
                f"profile profile_steps must be a positive integer, got {self.profile_steps!r}",
                fix="leave it unset (same as steps) or give 1 or more",
            )
        if self.statistic not in ("median", "mean"):
            raise ConfigError(
                f"profile statistic must be 'median' or 'mean', got {self.statistic!r}",
                fix="leave it at median",
            )
        if not isinstance(self.lr, (int, float)) or not 0 < float(self.lr) < 10:
            raise ConfigError(
                f"profile lr must be a number in (0, 10), got {self.lr!r}", fix="e.g. 5e-4"
            )

    @property
    def hooked_steps(self) -> int:
        return self.steps if self.profile_steps is None else self.profile_steps


@dataclass(frozen=True)
class LayerProfile:
    """One part of a training step: a layer (a leaf module, or the operators a container
    module runs itself, ``own_ops=True``) or a part outside the model (loss, optimizer).

    ``forward_flops`` are per batch (counted); ``forward_s`` and ``backward_s`` are clocked
    seconds per hooked step (measured; the median over steps by default); ``time_share`` is
    this part's share of all clocked time; ``energy_j`` is the window's energy times
    ``time_share`` (attributed).
    """

    name: str
    module: str
    module_type: str
    layer_type: LayerType
    own_ops: bool
    params: int
    forward_flops: int
    forward_s: float
    backward_s: float
    time_share: float
    energy_j: float

    @property
    def time_s(self) -> float:
        return self.forward_s + self.backward_s

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class TypeProfile:
    """The layers of one :data:`LayerType` together."""

    layer_type: LayerType
    layers: int
    params: int
    forward_flops: int
    forward_s: float
    backward_s: float
    time_share: float
    energy_j: float

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class NetworkProfile:
    """The result of :func:`profile_network`.

    ``layers`` are in module order, then the loss, the optimizer and the untimed rest.
    ``measurement`` is the meter window of the ``steps`` unhooked training steps; its energy
    is split over ``layers`` by time share. ``step_s`` is the wall time of an unhooked step
    interleaved with the hooked ones (the reference of the shares), ``window_step_s`` of a
    step in the metered window, ``hooked_step_s`` of a hooked step (each by the config's
    statistic); ``timed_step_s`` is the sum of the clocked parts of a hooked step;
    ``untimed_fraction`` is the share of an unhooked step outside every clocked part.
    """

    model: str
    dataset: str
    input_shape: tuple[int, int, int]
    num_classes: int
    batch_size: int
    steps: int
    profile_steps: int
    warmup_steps: int
    device: str
    params: int
    forward_flops: int
    layers: tuple[LayerProfile, ...]
    measurement: Measurement
    step_s: float
    window_step_s: float
    hooked_step_s: float
    timed_step_s: float
    untimed_fraction: float
    notes: tuple[str, ...] = field(default=())
    #: torch's intra-op threads while profiling.
    threads: int | None = None

    @property
    def energy_j(self) -> float:
        """Energy of the metered window (all ``steps`` steps)."""
        return self.measurement.energy_j

    @property
    def energy_kind(self) -> str:
        """``measured``, ``estimated`` or ``mixed``: the meter's provenance."""
        return self.measurement.provenance

    @property
    def energy_source(self) -> str:
        return self.measurement.energy_source

    @property
    def energy_per_step_j(self) -> float:
        return self.measurement.energy_j / self.steps

    def by_type(self) -> list[TypeProfile]:
        """Layers summed per type, in :data:`LAYER_TYPES` order, then ``outside model``."""
        out = []
        for layer_type in (*LAYER_TYPES, OUTSIDE_MODEL):
            members = [layer for layer in self.layers if layer.layer_type == layer_type]
            if not members:
                continue
            out.append(
                TypeProfile(
                    layer_type=layer_type,
                    layers=len(members),
                    params=sum(m.params for m in members),
                    forward_flops=sum(m.forward_flops for m in members),
                    forward_s=sum(m.forward_s for m in members),
                    backward_s=sum(m.backward_s for m in members),
                    time_share=sum(m.time_share for m in members),
                    energy_j=sum(m.energy_j for m in members),
                )
            )
        return out

    def top_layers(self, k: int = 10, *, include_outside: bool = False) -> list[LayerProfile]:
        """The ``k`` parts with the most attributed energy."""
        pool = [
            layer for layer in self.layers if include_outside or layer.layer_type != OUTSIDE_MODEL
        ]
        return sorted(pool, key=lambda layer: -layer.energy_j)[:k]

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": "frugalml.layer_profile/1",
            "model": self.model,
            "dataset": self.dataset,
            "input_shape": list(self.input_shape),
            "num_classes": self.num_classes,
            "batch_size": self.batch_size,
            "steps": self.steps,
            "profile_steps": self.profile_steps,
            "warmup_steps": self.warmup_steps,
            "device": self.device,
            "params": self.params,
            "forward_flops_per_batch": self.forward_flops,
            "energy_j": self.energy_j,
            "energy_kind": self.energy_kind,
            "energy_source": self.energy_source,
            "energy_attribution": "attributed to layers by share of clocked time",
            "step_s": self.step_s,
            "window_step_s": self.window_step_s,
            "hooked_step_s": self.hooked_step_s,
            "timed_step_s": self.timed_step_s,
            "untimed_fraction": self.untimed_fraction,
            "threads": self.threads,
            "by_type": [t.to_dict() for t in self.by_type()],
            "layers": [layer.to_dict() for layer in self.layers],
            "measurement": self.measurement.to_dict(),
            "notes": list(self.notes),
        }


def _batches(
    dataset: ImageDataset, batch_size: int, count: int, seed: int, device: torch.device
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``count`` distinct normalised batches from the training split, on ``device``."""
    import torch

    split = dataset.train
    n = len(split)
    if n < 2:
        raise ConfigError(
            f"the training split of {dataset.name} has {n} sample(s); a training step needs 2",
            fix="use a larger dataset or fraction",
        )
    mean, std = channel_stats(dataset, "dataset")
    normalise = Normaliser(mean, std, device)
    size = min(batch_size, n)
    images = torch.from_numpy(np.ascontiguousarray(split.images))
    labels = torch.from_numpy(np.ascontiguousarray(split.labels.astype(np.int64)))
    order = BatchOrder(n, size, seed).order(1)
    available = max(1, n // size)  # full batches only
    return [
        (normalise(images[idx].to(device)), labels[idx].to(device))
        for idx in order[: min(count, available)]
    ]


def _cycle(
    batches: list[tuple[torch.Tensor, torch.Tensor]], steps: int
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    for step in range(steps):
        yield batches[step % len(batches)]


def _layer_rows(
    model: torch.nn.Module,
    own_flops: dict[str, int],
    per_step: dict[str, tuple[float, float]],
    energy_j: float,
    step_s: float,
) -> list[LayerProfile]:
    timed = sum(f + b for f, b in per_step.values())
    base = max(timed, step_s)
    per_step = {**per_step, UNTIMED_KEY: (base - timed, 0.0)}
    seen_params: set[int] = set()
    rows: list[LayerProfile] = []

    def share(seconds: float) -> float:
        return seconds / base if base > 0 else 0.0

    for fqn, module in model.named_modules():
        params = 0
        for param in module.parameters(recurse=False):
            if id(param) not in seen_params:
                seen_params.add(id(param))
                params += param.numel()
        forward_s, backward_s = per_step.get(fqn, (0.0, 0.0))
        flops = own_flops.get(fqn, 0)
        is_leaf = next(iter(module.children()), None) is None
        if not is_leaf and not (params or flops or forward_s or backward_s):
            continue
        part = share(forward_s + backward_s)
        rows.append(
            LayerProfile(
                name=fqn or ROOT_NAME,
                module=fqn,
                module_type=type(module).__name__,
                layer_type=classify_module(module),
                own_ops=not is_leaf,
                params=params,
                forward_flops=flops,
                forward_s=forward_s,
                backward_s=backward_s,
                time_share=part,
                energy_j=energy_j * part,
            )
        )
    for key in (LOSS_KEY, OPTIMIZER_KEY, UNTIMED_KEY):
        forward_s, backward_s = per_step.get(key, (0.0, 0.0))
        part = share(forward_s + backward_s)
        rows.append(
            LayerProfile(
                name=_OUTSIDE_NAMES[key],
                module=key,
                module_type="",
                layer_type=OUTSIDE_MODEL,
                own_ops=False,
                params=0,
                forward_flops=0,
                forward_s=forward_s,
                backward_s=backward_s,
                time_share=part,
                energy_j=energy_j * part,
            )
        )
    return rows


def profile_network(
    model: torch.nn.Module,
    dataset: ImageDataset,
    config: ProfileConfig | None = None,
    *,
    meter: Meter | None = None,
    model_name: str | None = None,
) -> NetworkProfile:
    """Profile ``model`` training on ``dataset``: per layer and per layer type, parameters,
    forward FLOPs, share of clocked forward + backward time, and attributed energy.

    The model is trained for real (``warmup_steps + steps + profile_steps`` Adam steps);
    pass a copy if its weights matter. ``meter`` (optional) is used for the energy window;
    by default a :class:`frugalml.meter.Meter` with its default configuration is opened and
    closed here. See the module docstring for what is counted, measured and attributed.

    Raises:
        ConfigError: a model without trainable parameters, a dataset too small for a step,
            or an input the model cannot take (the message says which shape was tried).
    """
    from frugalml.train import using_threads

    config = config or ProfileConfig()
    with using_threads(config.threads, option="profile threads") as threads:
        profile = _profile_network(model, dataset, config, meter, model_name)
    return dataclasses.replace(profile, threads=threads)


def _prepare(
    model: torch.nn.Module, dataset: ImageDataset, config: ProfileConfig, name: str
) -> tuple[
    torch.nn.Module, torch.device, list[torch.nn.Parameter], list[tuple[torch.Tensor, torch.Tensor]]
]:
    """Seed, move the model to the device, and draw the batches: (model, device, trainable
    parameters, batches)."""
    import torch

    from frugalml.train import resolve_device

    device = torch.device(resolve_device(config.device))
    torch.manual_seed(config.seed)
    model = model.to(device)
    model.train()
    trainable = [p for p in model.parameters() if p.requires_grad]
    if not trainable:
        raise ConfigError(
            f"{name} has no trainable parameters, so there is no training step to profile",
            fix="unfreeze the model (requires_grad=True) or profile another one",
        )
    total_steps = config.warmup_steps + config.steps + config.hooked_steps
    batches = _batches(
        dataset,
        config.batch_size,
        min(total_steps, _MAX_DISTINCT_BATCHES),
        config.seed,
        device,
    )
    return model, device, trainable, batches


def _count_flops(model: torch.nn.Module, x: torch.Tensor, name: str) -> ModuleFlops:
    try:
        return module_flops(model, x)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigError(
            f"{name} cannot run on input {tuple(x.shape[1:])} (C, H, W): {first}",
            fix="give a larger input with image_size=32, or another model",
        ) from exc


def _sync(device: torch.device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _metered_steps(
    step: TrainStep,
    batches: list[tuple[torch.Tensor, torch.Tensor]],
    config: ProfileConfig,
    meter: Meter | None,
    name: str,
    device: torch.device,
) -> tuple[Measurement, list[float]]:
    """Warm up, then ``config.steps`` unhooked steps in one meter window: its measurement
    and each step's seconds."""
    from frugalml.meter import Meter, MeterConfig

    for x, y in _cycle(batches, config.warmup_steps):
        step(x, y)
    own_meter = meter is None
    active = meter if meter is not None else Meter(MeterConfig())
    try:
        _sync(device)
        unhooked_s: list[float] = []
        with active.window(f"profile {name}: {config.steps} training steps") as window:
            t0 = time.perf_counter()
            for x, y in _cycle(batches, config.steps):
                step(x, y)
                _sync(device)
                t1 = time.perf_counter()
                unhooked_s.append(t1 - t0)
                t0 = t1
    finally:
        if own_meter:
            active.close()
    measurement = window.measurement
    if measurement is None:  # pragma: no cover - the meter always sets it
        raise RuntimeError("the meter window ended without a measurement")
    return measurement, unhooked_s


def _profile_network(
    model: torch.nn.Module,
    dataset: ImageDataset,
    config: ProfileConfig,
    meter: Meter | None,
    model_name: str | None,
) -> NetworkProfile:
    name = model_name or type(model).__name__
    model, device, trainable, batches = _prepare(model, dataset, config, name)
    batch_size = int(batches[0][1].shape[0])
    flops = _count_flops(model, batches[0][0], name)
    optimizer = make_optimizer(trainable, lr=config.lr, foreach=True)
    step = TrainStep(model, optimizer)
    measurement, unhooked_s = _metered_steps(step, batches, config, meter, name, device)

    times = time_training_steps(
        model, step.loss_fn, optimizer, batches, config.hooked_steps, device
    )
    per_step = times.per_step(config.statistic)
    window_step_s = _summary(unhooked_s, config.statistic)
    step_s = times.plain_per_step(config.statistic)
    timed_step_s = sum(f + b for f, b in per_step.values())
    layers = _layer_rows(model, flops.own_flops, per_step, measurement.energy_j, step_s)
    params = sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())
    hooked_step_s = times.wall_per_step(config.statistic)
    untimed = max(0.0, 1.0 - timed_step_s / step_s) if step_s > 0 else 0.0
    notes = _notes(
        measurement, config, batch_size, window_step_s, step_s, hooked_step_s, timed_step_s, flops
    )
    logger.debug(
        "profiled %s: %d layers, step %.2f ms unhooked, %.2f ms hooked",
        name,
        len(layers),
        step_s * 1e3,
        hooked_step_s * 1e3,
    )
    return NetworkProfile(
        model=name,
        dataset=dataset.name,
        input_shape=dataset.input_shape,
        num_classes=dataset.num_classes,
        batch_size=batch_size,
        steps=config.steps,
        profile_steps=config.hooked_steps,
        warmup_steps=config.warmup_steps,
        device=str(device),
        params=int(params),
        forward_flops=flops.total_flops,
        layers=tuple(layers),
        measurement=measurement,
        step_s=step_s,
        window_step_s=window_step_s,
        hooked_step_s=hooked_step_s,
        timed_step_s=timed_step_s,
        untimed_fraction=untimed,
        notes=tuple(notes),
    )


def _summary(values: list[float], statistic: str) -> float:
    import statistics

    if not values:
        return 0.0
    if statistic == "median":
        return float(statistics.median(values))
    return float(statistics.fmean(values))


def _notes(
    measurement: Measurement,
    config: ProfileConfig,
    batch_size: int,
    window_step_s: float,
    step_s: float,
    hooked_step_s: float,
    timed_step_s: float,
    flops: ModuleFlops,
) -> list[str]:
    stat = config.statistic
    notes = [
        f"energy: {measurement.provenance} ({measurement.energy_source}) over "
        f"{config.steps} training steps without hooks; attributed to the parts by their "
        f"share of an unhooked step's time, each part clocked in {config.hooked_steps} "
        f"separate hooked steps ({stat} over steps)",
        f"hooks cost time: a hooked step took {hooked_step_s * 1e3:.2f} ms, an unhooked one "
        f"between them {step_s * 1e3:.2f} ms and one in the metered window "
        f"{window_step_s * 1e3:.2f} ms ({stat}s); the clocked parts add up to "
        f"{timed_step_s * 1e3:.2f} ms",
    ]
    if timed_step_s < step_s:
        notes.append(
            f"{1 - timed_step_s / step_s:.0%} of an unhooked step ran outside every clocked "
            "operator (Python between calls, the autograd engine): the 'untimed' part"
        )
    else:
        notes.append(
            "the clocked parts add up to more than an unhooked step (hooks slow the operators "
            "a little, or the machine was busier): shares are of the clocked total, and "
            "Python/autograd overhead is hidden in them"
        )
    notes += [
        f"FLOPs: forward only, per batch of {batch_size}, counted by "
        "torch.utils.flop_counter (element-wise operators and normalisation count 0)",
    ]
    if any(
        c.kind == "estimated" and c.source.startswith("estimate:tdp")
        for c in measurement.components
    ):
        notes.append(
            "the CPU energy is estimated from CPU time (TDP x utilisation), so on the CPU the "
            "energy shares are time shares by construction"
        )
    if flops.unattributed_flops:
        notes.append(
            f"{flops.unattributed_flops} FLOPs ran outside the model's module tree and are "
            "not in any layer's count"
        )
    if window_step_s > 0 and abs(step_s / window_step_s - 1) > 0.25:
        notes.append(
            f"the unhooked steps took {step_s / window_step_s - 1:+.0%} longer between the "
            "hooked steps than in the metered window: the machine's load changed while "
            "profiling; rerun on a quieter machine for steadier shares"
        )
    if not math.isfinite(step_s) or step_s < 1e-3:
        notes.append("steps this short are dominated by Python overhead; timings are noisy")
    return notes

"""The compression pipeline: dense training, then per method regularise -> threshold ->
masked fine-tune -> shrink, each phase a meter window; then the measured comparison.

:func:`compress_method` runs one method on a copy of a trained dense model and returns a
:class:`MethodOutcome` (an ordinary dense model, its accuracy, what the phases cost);
:func:`run_compress` does that for every method of a :class:`CompressSpec` and measures all
models together (interleaved latency at batch 1 and the spec's batch, energy per 1,000
inferences), giving one row per method plus the dense baseline.
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from frugalml.compress._columns import CSV_COLUMNS
from frugalml.compress._graph import ChannelGraph, trace_channels
from frugalml.compress._l0 import attach_gates, fold_gates, gate_penalty
from frugalml.compress._measure import (
    EnergyResult,
    Interval,
    LatencyResult,
    measure_energy,
    measure_latency,
)
from frugalml.compress._prune import Masks, Threshold, threshold_groups, threshold_weights
from frugalml.compress._regularisers import Regulariser
from frugalml.compress._save import ArchitectureRef
from frugalml.compress._shrink import shrink
from frugalml.compress._spec import CompressSpec, MethodSpec
from frugalml.errors import ConfigError
from frugalml.train import TrainConfig, train

if TYPE_CHECKING:
    import torch

    from frugalml.data import ImageDataset
    from frugalml.meter import Measurement, Meter

__all__ = ["CSV_COLUMNS", "CompressResult", "MethodOutcome", "compress_method", "run_compress"]

logger = logging.getLogger(__name__)


@dataclass
class MethodOutcome:
    label: str
    method: str
    model: torch.nn.Module
    accuracy: float
    phases: list[Measurement] = field(default_factory=list)
    removed_channels: int = 0
    shrink_max_abs_diff: float = 0.0
    notes: list[str] = field(default_factory=list)
    pruning: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, torch.nn.Module] = field(default_factory=dict)

    @property
    def compress_energy_j(self) -> float:
        return sum(m.energy_j for m in self.phases)

    @property
    def compress_provenance(self) -> str:
        from frugalml.meter import combine_provenance

        return combine_provenance(m.provenance for m in self.phases)


class _Phases:
    """Meter windows named ``<label> <phase>``; their measurements are kept."""

    def __init__(self, meter: Meter | None, label: str) -> None:
        self.meter, self.label = meter, label
        self.done: list[Measurement] = []

    def run(self, phase: str, fn: Callable[[], Any]) -> Any:
        if self.meter is None:
            return fn()
        with self.meter.window(f"{self.label} {phase}") as window:
            value = fn()
        if window.measurement is not None:
            self.done.append(window.measurement)
        return value


def _threshold(spec: MethodSpec) -> Threshold:
    if spec.threshold is None:
        raise ConfigError(
            f"method {spec.method} ({spec.label}) needs a threshold",
            fix="add threshold: {sparsity: 0.9}, {std: 0.1} or a number",
        )
    return spec.threshold


def _gated_layers(graph: ChannelGraph) -> list[str]:
    return [p for g in graph.groups if not g.frozen for p in g.producers]


def _penni_threshold(model: torch.nn.Module, spec: MethodSpec, graph: ChannelGraph) -> Masks:
    import torch

    from frugalml.compress._penni import penni_layers
    from frugalml.compress._prune import _cut

    layers = penni_layers(model)
    t = _threshold(spec)
    mags = [layer.coefficients.detach().abs() for _, layer in layers]
    cuts = _cut(mags, [float(m.std()) for m in mags], t)
    masks: dict[str, torch.Tensor] = {}
    params = dict(model.named_parameters())
    with torch.no_grad():
        for (name, layer), cut in zip(layers, cuts, strict=True):
            layer.coefficients[layer.coefficients.abs() <= cut] = 0
            keep = layer.coefficients != 0
            masks[f"{name}.coefficients"] = keep
            alive = keep.flatten(1).any(dim=1)
            if layer.bias is not None:
                masks[f"{name}.bias"] = alive
            norm = graph.follow_norm.get(name)
            if norm is not None and f"{norm}.weight" in params:
                masks[f"{norm}.weight"] = alive
                masks[f"{norm}.bias"] = alive
    result = Masks(masks)
    result(model)
    return result


@dataclass
class _Job:
    """What the phases of one method share: its spec, the data, the configs, the traced
    channel graph, the meter windows, and the pruning record it fills."""

    spec: MethodSpec
    dataset: ImageDataset
    training: TrainConfig
    example: torch.Tensor
    graph: ChannelGraph
    phases: _Phases
    meter: Meter | None
    pruning: dict[str, Any]

    def regularise(self, model: torch.nn.Module, **kwargs: Any) -> None:
        """Train with the method's regulariser, in the window ``regularise``."""
        config = self.training.replace(epochs=self.spec.epochs or self.training.epochs)
        self.phases.run(
            "regularise", lambda: train(model, self.dataset, config, meter=self.meter, **kwargs)
        )

    def threshold(self, key: str, fn: Callable[[], Any]) -> Any:
        """Run ``fn`` in the window ``threshold``; record what it returns under ``key``."""
        self.pruning[key] = self.phases.run("threshold", fn)
        return self.pruning[key]


def _prune(job: _Job, model: torch.nn.Module) -> tuple[torch.nn.Module, Any]:
    """Regularise (where the method does) and threshold: (the pruned model, the
    ``on_step`` of its fine-tuning, or None for the zeros it keeps)."""
    spec, graph, kind = job.spec, job.graph, job.spec.info.kind
    if kind in ("regulariser", "group"):
        reg = Regulariser(spec.method, spec.strength, spec.schedule, spec.warmup_steps)  # type: ignore[arg-type]
        job.regularise(model, regulariser=reg)
        threshold = _threshold(spec)
        if kind == "regulariser":
            job.threshold("zeroed_weights", lambda: threshold_weights(model, threshold))
        else:
            job.threshold("zeroed_groups", lambda: threshold_groups(model, graph, threshold))
    elif kind == "gates":
        n_train, strength = len(job.dataset.train.labels), spec.strength
        gated = attach_gates(model, _gated_layers(graph), seed=job.training.seed)
        job.regularise(gated, regulariser=lambda m: gate_penalty(m, strength, n_train))
        model, job.pruning["closed_gates"] = job.phases.run("threshold", lambda: fold_gates(gated))
    elif kind == "magnitude":
        threshold = _threshold(spec)
        job.threshold("zeroed_weights", lambda: threshold_weights(model, threshold))
    elif kind == "channels":
        from frugalml.compress._channels import prune_channels

        job.threshold("removed_params", lambda: prune_channels(model, job.example, spec.ratio))
        return model, None
    elif kind == "penni":
        from frugalml.compress._penni import Alternate, coefficient_l1, to_penni

        job.pruning["penni_layers"] = to_penni(model, spec.basis)
        job.regularise(model, regulariser=coefficient_l1(spec.strength), on_step=Alternate())
        masks = job.phases.run("threshold", lambda: _penni_threshold(model, spec, graph))
        return model, Alternate(after=masks)
    return model, Masks.from_zeros(model, graph)


def _shrink(job: _Job, model: torch.nn.Module) -> tuple[torch.nn.Module, int, float]:
    """Remove the zero channels (window ``shrink``): (the smaller model, the channels it
    lost, the largest output difference from ``model`` on random inputs)."""
    import torch

    if job.spec.info.kind == "channels":
        return model, 0, 0.0
    example = job.example
    result = job.phases.run("shrink", lambda: shrink(model, example, graph=job.graph))
    shrunk = result.model.eval()
    probe = torch.randn((8, *example.shape[1:]), device=example.device)
    with torch.no_grad():
        diff = float((model(probe) - shrunk(probe)).abs().max())
    job.pruning["removed"] = result.removed
    return shrunk, result.removed_channels, diff


def compress_method(
    dense: torch.nn.Module,
    spec: MethodSpec,
    dataset: ImageDataset,
    training: TrainConfig,
    example: torch.Tensor,
    *,
    meter: Meter | None = None,
    graph: ChannelGraph | None = None,
) -> MethodOutcome:
    """Compress a copy of the trained ``dense`` model with one method."""
    graph = graph or trace_channels(dense, example)
    phases = _Phases(meter, spec.label)
    pruning: dict[str, Any] = {"method": spec.method, "settings": spec.to_dict()}
    job = _Job(spec, dataset, training, example, graph, phases, meter, pruning)
    kind = spec.info.kind
    notes: list[str] = []
    extra: dict[str, torch.nn.Module] = {}

    model, on_step = _prune(job, copy.deepcopy(dense))
    tune_config = training.replace(epochs=spec.fine_tune_epochs)
    tuned = phases.run(
        "fine-tune", lambda: train(model, dataset, tune_config, meter=meter, on_step=on_step)
    )
    if kind == "penni":
        from frugalml.compress._penni import Alternate, factorise, from_penni

        Alternate().release(model)
        from_penni(model)
    model.eval()
    shrunk, removed, diff = _shrink(job, model)
    if kind == "penni":
        extra[f"{spec.label}_factorised"] = factorise(shrunk, spec.basis).eval()
    if kind in ("regulariser", "magnitude"):
        notes.append(
            "unstructured zeros: dense kernels gain no speed from them; only whole units or "
            "channels that became zero were removed"
        )
    return MethodOutcome(
        label=spec.label,
        method=spec.method,
        model=shrunk,
        accuracy=tuned.accuracy,
        phases=phases.done,
        removed_channels=removed,
        shrink_max_abs_diff=diff,
        notes=notes,
        pruning=pruning,
        extra=extra,
    )


@dataclass
class CompressResult:
    rows: list[dict[str, Any]]
    outcomes: dict[str, MethodOutcome]
    architecture: ArchitectureRef
    dense_train: list[Measurement]


def _nonzero(model: torch.nn.Module) -> int:
    return sum(int((p != 0).sum()) for p in model.parameters())


def _fmt(value: float) -> float | str:
    return value if math.isfinite(value) else ""


def _latency_words(ratio: Interval, flops: int, dense_flops: int, where: str) -> str | None:
    if not math.isfinite(ratio.median):
        return None
    if ratio.excludes(1.0) and ratio.high < 1:
        saved = "a real latency saving"
    elif ratio.excludes(1.0):
        saved = "slower than dense (interval above 1)"
    else:
        saved = "no latency change that the interval can tell from noise"
    if flops < dense_flops and ratio.excludes(1.0) and ratio.low > 1:
        return (
            f"{where}: fewer FLOPs ({flops / dense_flops:.0%} of dense) but more latency "
            f"(x{ratio.median:.3f}, {ratio.low:.3f}-{ratio.high:.3f})"
        )
    return f"{where}: {saved} (x{ratio.median:.3f}, {ratio.low:.3f}-{ratio.high:.3f})"


def _break_even(compress_j: float, dense_j: float, method_j: float, ratio: Interval) -> int | str:
    """Inferences after which compressing saved more than it cost (energies per 1,000
    inferences), or "" when the interval cannot tell a saving from noise."""
    saving = (dense_j - method_j) / 1000.0
    if ratio.excludes(1.0) and ratio.high < 1 and saving > 0:
        return math.ceil(compress_j / saving)
    return ""


def build_rows(
    outcomes: dict[str, MethodOutcome],
    models: dict[str, torch.nn.Module],
    lat1: LatencyResult,
    latb: LatencyResult,
    energy: EnergyResult,
    input_shape: tuple[int, int, int],
    device: str,
) -> list[dict[str, Any]]:
    """One row per measured model (dense first), columns :data:`CSV_COLUMNS`."""
    from frugalml.models import count_costs

    dense = outcomes["dense"]
    dense_params = sum(p.numel() for p in dense.model.parameters())
    dense_flops = count_costs(dense.model, input_shape).flops_per_sample
    dense_e = energy.interval("dense").median
    rows: list[dict[str, Any]] = []
    for name, model in models.items():
        outcome = outcomes.get(name) or outcomes[name.removesuffix("_factorised")]
        costs = count_costs(model, input_shape)
        nonzero = _nonzero(model)
        l1, lb = lat1.interval(name), latb.interval(name)
        r1, rb = lat1.ratio(name, "dense"), latb.ratio(name, "dense")
        e, er = energy.interval(name), energy.ratio(name, "dense")
        notes = list(outcome.notes)
        drop_points = 100 * (dense.accuracy - outcome.accuracy)
        if drop_points > 1:
            notes.append(f"accuracy {drop_points:.1f} points below dense")
        break_even: float | str = ""
        compress_j: float | str = ""
        compress_provenance = ""
        if name != "dense":
            for ratio, where in ((r1, "batch 1"), (rb, f"batch {latb.batch_size}")):
                words = _latency_words(ratio, costs.flops_per_sample, dense_flops, where)
                if words:
                    notes.append(words)
            compress_j, compress_provenance = outcome.compress_energy_j, outcome.compress_provenance
            break_even = _break_even(outcome.compress_energy_j, dense_e, e.median, er)
            if break_even == "":
                notes.append("no energy saving that the interval can tell from noise")
        rows.append(
            {
                "method": name,
                "accuracy": outcome.accuracy,
                "accuracy_change_points": 100 * (outcome.accuracy - dense.accuracy),
                "params": costs.params,
                "nonzero_params": nonzero,
                "sparsity": 1 - nonzero / dense_params,
                "flops_per_sample": costs.flops_per_sample,
                "latency_ms": l1.median,
                "latency_ms_low": l1.low,
                "latency_ms_high": l1.high,
                "latency_ratio": _fmt(r1.median),
                "latency_ratio_low": _fmt(r1.low),
                "latency_ratio_high": _fmt(r1.high),
                "latency_ms_batch": lb.median,
                "latency_ms_batch_low": lb.low,
                "latency_ms_batch_high": lb.high,
                "latency_ratio_batch": _fmt(rb.median),
                "latency_ratio_batch_low": _fmt(rb.low),
                "latency_ratio_batch_high": _fmt(rb.high),
                "batch_size": latb.batch_size,
                "energy_per_1k_j": _fmt(e.median),
                "energy_per_1k_j_low": _fmt(e.low),
                "energy_per_1k_j_high": _fmt(e.high),
                "energy_per_1k_provenance": energy.provenance.get(name, "none"),
                "energy_source": energy.source.get(name, ""),
                "compress_energy_j": compress_j,
                "compress_energy_provenance": compress_provenance,
                "break_even_inferences": break_even,
                "pepr_energy_per_1k_j": "",
                "pepr_params": "",
                "removed_channels": outcome.removed_channels,
                "shrink_max_abs_diff": outcome.shrink_max_abs_diff,
                "device": device,
                "notes": "; ".join(notes),
            }
        )
    add_pepr(rows)
    return rows


def run_compress(
    spec: CompressSpec,
    meter: Meter,
    *,
    dataset: ImageDataset | None = None,
    on_outcome: Callable[[MethodOutcome], None] | None = None,
    control: bool = False,
) -> CompressResult:
    """Train the dense model, compress it with every method, measure all of them.

    ``control`` adds a row ``dense_control``, an identical copy of the dense model measured
    as if it were a method: any "saving" it shows is the measurement's own artefact.
    """
    import torch

    from frugalml.data import load_dataset
    from frugalml.train import resolve_device

    if dataset is None:
        dataset = load_dataset(spec.dataset, image_size=spec.image_size)
    architecture = ArchitectureRef(
        spec.model, dataset.num_classes, dataset.channels, dict(spec.model_args)
    )
    device = resolve_device(spec.training.device)
    if spec.weights is None:
        dense = architecture.build()
    else:  # the dense phase starts from these weights (a built-in's or a timm model's)
        from frugalml.models import create_model

        dense = create_model(
            spec.model,
            num_classes=dataset.num_classes,
            in_chans=dataset.channels,
            pretrained=True,
            pretrained_file=spec.weights,
            **dict(spec.model_args),
        )
    phases = _Phases(meter, "dense")
    trained = phases.run("train", lambda: train(dense, dataset, spec.training, meter=meter))
    dense.eval()
    size = int(dataset.train.images.shape[-1])
    input_shape = (dataset.channels, int(dataset.train.images.shape[-2]), size)
    example = torch.randn((1, *input_shape), device=device)
    graph = trace_channels(dense, example)
    outcomes: dict[str, MethodOutcome] = {
        "dense": MethodOutcome("dense", "dense", dense, trained.accuracy, phases=[])
    }
    for method in spec.methods:
        outcome = compress_method(
            dense, method, dataset, spec.training, example, meter=meter, graph=graph
        )
        outcomes[method.label] = outcome
        if on_outcome is not None:
            on_outcome(outcome)
    if control:
        outcomes["dense_control"] = MethodOutcome(
            "dense_control", "dense", copy.deepcopy(dense), trained.accuracy
        )
    models: dict[str, torch.nn.Module] = {}
    for label, outcome in outcomes.items():
        models[label] = outcome.model.eval()
        models.update(outcome.extra)
    batch = torch.randn((spec.batch_size, *input_shape), device=device)
    lat1 = measure_latency(
        models, example, repeats=spec.latency_repeats, min_time_s=spec.min_time_s
    )
    latb = measure_latency(models, batch, repeats=spec.latency_repeats, min_time_s=spec.min_time_s)
    energy = measure_energy(
        models, batch, meter, repeats=spec.energy_repeats, min_window_s=spec.min_window_s
    )
    rows = build_rows(outcomes, models, lat1, latb, energy, input_shape, device)
    for outcome in outcomes.values():
        if outcome.extra:
            _recommend(outcome, rows)
    return CompressResult(
        rows=rows, outcomes=outcomes, architecture=architecture, dense_train=phases.done
    )


def add_pepr(rows: list[dict[str, Any]]) -> None:
    """PePR before (dense) and after (each method): accuracy / (1 + R_n), R min-max
    normalised over these rows, for energy per 1,000 inferences and for parameters."""
    import warnings

    import pandas as pd

    from frugalml.analysis import pepr

    table = pd.DataFrame(rows)
    table["energy_per_1k_j"] = pd.to_numeric(table["energy_per_1k_j"], errors="coerce")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # rows without a figure get NaN, said by the empty cell
        scored = pepr(table, performance="accuracy", resource=["energy_per_1k_j", "params"])
    for row, e, n in zip(rows, scored["pepr_energy_per_1k_j"], scored["pepr_params"], strict=True):
        row["pepr_energy_per_1k_j"] = _fmt(float(e))
        row["pepr_params"] = _fmt(float(n))


def _recommend(outcome: MethodOutcome, rows: list[dict[str, Any]]) -> None:
    by_name = {r["method"]: r for r in rows}
    dense_row = by_name[outcome.label]
    for name in outcome.extra:
        fact = by_name[name]
        faster = (
            "factorised" if fact["latency_ms_batch"] < dense_row["latency_ms_batch"] else ("dense")
        )
        words = (
            f"factorised form {fact['latency_ms_batch']:.3g} ms vs dense "
            f"{dense_row['latency_ms_batch']:.3g} ms at batch {fact['batch_size']}: "
            f"the {faster} form is faster on this device"
        )
        for row in (dense_row, fact):
            row["notes"] = "; ".join(x for x in (row["notes"], words) if x)

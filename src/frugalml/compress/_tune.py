"""Tuning one method's strength and threshold under an energy budget.

    tune:
      method: l1                       # a methods: entry's name (default: the first)
      n_trials: 20
      strength: [1.0e-5, 1.0e-3]       # log-uniform
      threshold: {sparsity: [0.5, 0.95]}
      budget_j: 5000                   # stop before a trial would pass it

Each trial compresses a copy of the trained dense model with the suggested settings
(:func:`compress_method`) and measures the compressed model's energy per 1,000 inferences
(:func:`measure_energy`); the objectives are its accuracy (maximised) and that energy
(minimised). Trials are metered and budgeted by :func:`frugalml.tune.metered` (the
BudgetGuard rule of ``frugalml tune``: stop when spent + the mean trial would pass the
budget). The Pareto front is Optuna's, over the complete trials.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from frugalml.compress._columns import TUNE_ATTR_COLUMNS, TUNE_COLUMNS
from frugalml.compress._prune import Threshold, ThresholdMode
from frugalml.errors import ConfigError

if TYPE_CHECKING:
    import optuna
    import torch

    from frugalml.compress._measure import EnergyResult
    from frugalml.compress._pipeline import MethodOutcome
    from frugalml.compress._spec import CompressSpec, MethodSpec
    from frugalml.data import ImageDataset
    from frugalml.meter import Meter

__all__ = ["TUNE_COLUMNS", "CompressTune", "tune_compress"]


_DEFAULT_THRESHOLD: dict[str, tuple[float, float]] = {
    "sparsity": (0.3, 0.95),
    "std": (0.05, 1.0),
}


def _pair(value: Any, where: str, *, below_one: bool = False) -> tuple[float, float]:
    ok = (
        isinstance(value, (list, tuple))
        and len(value) == 2
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
    )
    if ok:
        low, high = float(value[0]), float(value[1])
        ok = 0 < low <= high and (high < 1 or not below_one)
    if not ok:
        raise ConfigError(
            f"{where} must be a range [low, high] with 0 < low <= high"
            + (" < 1" if below_one else "")
            + f", got {value!r}",
            fix=f"e.g. {where.rsplit('.', 1)[-1]}: "
            + ("[0.5, 0.95]" if below_one else "[1.0e-5, 1.0e-3]"),
        )
    return low, high


@dataclass(frozen=True)
class CompressTune:
    """The ``tune:`` block (or ``--tune N [--budget-j J]``)."""

    n_trials: int
    method: str | None = None
    strength: tuple[float, float] | None = None
    threshold: tuple[ThresholdMode, float, float] | None = None
    budget_j: float | None = None

    @classmethod
    def from_mapping(cls, data: Any, where: str = "tune") -> CompressTune:
        if not isinstance(data, Mapping):
            raise ConfigError(f"{where} must be a mapping", fix="e.g. tune: {n_trials: 10}")
        allowed = {"method", "n_trials", "strength", "threshold", "budget_j"}
        unknown = sorted(set(map(str, data)) - allowed)
        if unknown:
            raise ConfigError(
                f"{where} has no key(s) {', '.join(unknown)}",
                fix=f"use {', '.join(sorted(allowed))}",
            )
        n = data.get("n_trials", 10)
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ConfigError(
                f"{where}.n_trials must be an integer >= 1, got {n!r}", fix="n_trials: 10"
            )
        method = data.get("method")
        if method is not None and (not isinstance(method, str) or not method):
            raise ConfigError(f"{where}.method must be a methods: entry's name", fix="method: l1")
        strength = data.get("strength")
        threshold = data.get("threshold")
        parsed: tuple[ThresholdMode, float, float] | None = None
        if threshold is not None:
            if not isinstance(threshold, Mapping) or len(threshold) != 1:
                raise ConfigError(
                    f"{where}.threshold must be one mode and its range",
                    fix="e.g. threshold: {sparsity: [0.5, 0.95]} (or std:, absolute:)",
                )
            ((mode, rng),) = threshold.items()
            if mode not in ("absolute", "std", "sparsity"):
                raise ConfigError(
                    f"{where}.threshold mode {mode!r} is unknown",
                    fix="use absolute, std or sparsity",
                )
            low, high = _pair(rng, f"{where}.threshold.{mode}", below_one=mode == "sparsity")
            parsed = (mode, low, high)
        return cls(
            n_trials=n,
            method=method,
            strength=None if strength is None else _pair(strength, f"{where}.strength"),
            threshold=parsed,
            budget_j=None
            if data.get("budget_j") is None
            else _budget(data.get("budget_j"), f"{where}.budget_j"),
        )


def _budget(value: Any, where: str) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not (math.isfinite(value) and value > 0)
    ):
        raise ConfigError(f"{where} must be a number of joules > 0, got {value!r}", fix="e.g. 5000")
    return float(value)


@dataclass(frozen=True)
class _Plan:
    base: MethodSpec
    strength: tuple[float, float] | None
    threshold: tuple[ThresholdMode, float, float] | None


def plan(spec: CompressSpec, tune: CompressTune) -> _Plan:
    """The method to tune and its search ranges (a method's defaults fill what is unset)."""
    by_label = {m.label: m for m in spec.methods}
    if tune.method is not None and tune.method not in by_label:
        raise ConfigError(
            f"tune.method {tune.method!r} is not a methods: entry",
            fix=f"use one of {', '.join(by_label)}",
        )
    base = by_label[tune.method] if tune.method is not None else spec.methods[0]
    settings = base.info.settings
    strength = tune.strength
    if strength is None and "strength" in settings and base.strength > 0:
        strength = (base.strength / 10, base.strength * 10)
    if strength is not None and "strength" not in settings:
        raise ConfigError(f"method {base.method} has no strength to tune", fix="drop tune.strength")
    threshold = tune.threshold
    if threshold is None and "threshold" in settings and base.threshold is not None:
        mode, value = base.threshold.mode, base.threshold.value
        if mode in _DEFAULT_THRESHOLD:
            threshold = (mode, *_DEFAULT_THRESHOLD[mode])
        elif value > 0:
            threshold = (mode, value / 10, value * 10)
    if threshold is not None and "threshold" not in settings:
        raise ConfigError(
            f"method {base.method} has no threshold to tune", fix="drop tune.threshold"
        )
    if strength is None and threshold is None:
        raise ConfigError(
            f"method {base.label} ({base.method}) has no strength or threshold to tune",
            fix="tune a method that takes them (l1, hoyer_square, l0, magnitude, penni, ...)",
        )
    return _Plan(base, strength, threshold)


@dataclass
class TuneResult:
    rows: list[dict[str, Any]]
    stop_reason: str | None


def _suggest(trial: optuna.Trial, chosen: _Plan) -> MethodSpec:
    """The method with the strength and threshold this trial suggests."""
    changes: dict[str, Any] = {"label": f"{chosen.base.label}_trial{trial.number}"}
    if chosen.strength is not None:
        changes["strength"] = trial.suggest_float("strength", *chosen.strength, log=True)
    if chosen.threshold is not None:
        mode, low, high = chosen.threshold
        value = trial.suggest_float("threshold", low, high, log=mode == "absolute")
        changes["threshold"] = Threshold(mode, value)
    return dataclasses.replace(chosen.base, **changes)


def _trial_attrs(outcome: MethodOutcome, energy: EnergyResult, dense_params: int) -> dict[str, Any]:
    """The user attributes a trial records: the columns :data:`TUNE_ATTR_COLUMNS`, each
    under its own name (a column without a value here fails at the first trial)."""
    model, label = outcome.model, outcome.label
    e = energy.interval(label)
    nonzero = sum(int((p != 0).sum()) for p in model.parameters())
    values: dict[str, Any] = {
        "accuracy": outcome.accuracy,
        "model_params": sum(p.numel() for p in model.parameters()),
        "sparsity": 1 - nonzero / dense_params,
        "energy_per_1k_j": e.median,
        "energy_per_1k_j_low": e.low,
        "energy_per_1k_j_high": e.high,
        "energy_per_1k_provenance": energy.provenance.get(label, "none"),
        "compress_energy_j": outcome.compress_energy_j,
        "compress_energy_provenance": outcome.compress_provenance,
    }
    return {column: values[column] for column in TUNE_ATTR_COLUMNS}


def tune_compress(
    spec: CompressSpec,
    tune: CompressTune,
    dense: torch.nn.Module,
    dataset: ImageDataset,
    meter: Meter,
    *,
    seed: int = 0,
) -> TuneResult:
    """Search ``tune``'s method's strength and threshold; one row per trial."""
    import optuna
    import torch

    from frugalml.compress._graph import trace_channels
    from frugalml.compress._measure import measure_energy
    from frugalml.compress._pipeline import compress_method
    from frugalml.meter import J_PER_KWH, Budget
    from frugalml.train import resolve_device
    from frugalml.tune import metered

    chosen = plan(spec, tune)
    device = resolve_device(spec.training.device)
    shape = tuple(int(s) for s in dataset.train.images.shape[1:])
    example = torch.randn((1, *shape), device=device)
    batch = torch.randn((spec.batch_size, *shape), device=device)
    dense.eval()
    graph = trace_channels(dense, example)
    dense_params = sum(p.numel() for p in dense.parameters())

    def objective(trial: optuna.Trial) -> tuple[float, float]:
        method = _suggest(trial, chosen)
        outcome = compress_method(
            dense, method, dataset, spec.training, example, meter=meter, graph=graph
        )
        model = outcome.model.eval()
        energy = measure_energy(
            {method.label: model},
            batch,
            meter,
            repeats=spec.energy_repeats,
            min_window_s=spec.min_window_s,
        )
        e = energy.interval(method.label)
        for key, attr in _trial_attrs(outcome, energy, dense_params).items():
            trial.set_user_attr(key, attr)
        if not math.isfinite(e.median):
            raise ConfigError(
                "no energy figure for the compressed model (no counter and no estimate)",
                fix="see what this machine can measure (describe_environment())",
            )
        return outcome.accuracy, e.median

    budget = None if tune.budget_j is None else Budget(energy_kwh=tune.budget_j / J_PER_KWH)
    wrapped = metered(objective, budget=budget, meter=meter)
    study = optuna.create_study(
        directions=["maximize", "minimize"], sampler=optuna.samplers.TPESampler(seed=seed)
    )
    try:
        study.optimize(wrapped, n_trials=tune.n_trials, catch=(ConfigError,))
    finally:
        mode = chosen.threshold[0] if chosen.threshold is not None else ""
        rows = _rows(study, chosen.base.label, mode, wrapped.stop_reason)
    return TuneResult(rows, wrapped.stop_reason)


def _rows(study: Any, label: str, mode: str, stop_reason: str | None) -> list[dict[str, Any]]:
    from optuna.trial import TrialState

    from frugalml.tune._metered import STOP_ATTR

    complete = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE]
    front = {t.number for t in study.best_trials} if complete else set()
    rows = []
    for t in study.get_trials(deepcopy=False):
        attrs = t.user_attrs
        notes = []
        if STOP_ATTR in attrs and t.state == TrialState.PRUNED:
            notes.append(f"not run: {attrs[STOP_ATTR]}")
        elif t.state == TrialState.FAIL:
            notes.append("failed: " + str(attrs.get("fail_reason", "see the log")))
        if t.number == len(study.trials) - 1 and stop_reason:
            notes.append(f"budget: {stop_reason}")
        rows.append(
            {
                "trial": t.number,
                "method": label,
                "params": json.dumps(t.params, sort_keys=True),
                "strength": t.params.get("strength", ""),
                "threshold_mode": mode if "threshold" in t.params else "",
                "threshold": t.params.get("threshold", ""),
                **{k: attrs.get(k, "") for k in TUNE_ATTR_COLUMNS},
                "trial_energy_j": attrs.get("energy_j", ""),
                "trial_energy_provenance": attrs.get("energy_provenance", ""),
                "state": t.state.name.lower(),
                "pareto": t.number in front,
                "notes": "; ".join(notes),
            }
        )
    return rows

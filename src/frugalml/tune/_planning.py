"""Budget planning for tuning: calibrate, predict, stop.

Pure functions of the spec and the trials that finished (the calibration alone trains):

- :func:`calibrate`: the spec's base configuration trained under the meter for
  :data:`CALIBRATION_EPOCHS` epochs on at most :data:`CALIBRATION_BATCHES` batches; the last
  (warm) epoch, its training part scaled to the full training split, is the per-epoch figure.
- :func:`predict`: a trial's cost from the trials run so far, *their energy per epoch run
  (the epochs' own windows, summed over every epoch any trial ran) times the epochs the
  trial plans, plus their mean per-trial part* (the rest of a trial's energy: model set-up,
  and the sampler's work that proposed it); CO2 and time follow the energy at the trials'
  CO2 and seconds per joule. A pruned trial so adds the epochs it ran and one per-trial
  part, not a whole trial's figure on its few epochs (which over-predicted the next full
  trial). Trials without per-epoch records: their whole-trial figures per epoch. Before any
  trial, the calibration's epoch. A cost model of the parameters (the frugal strategy's)
  may replace the energy.
- :func:`budget_stop`: the reason to start no further trial, by the one budget rule
  (:func:`frugalml.meter.launch_no_more`), or None.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from frugalml.meter import launch_no_more
from frugalml.tune._results import TrialSummary, spent

if TYPE_CHECKING:
    import optuna

    from frugalml.data import ImageDataset
    from frugalml.meter import Meter
    from frugalml.tune._spec import TuneBudget, TuneSpec

#: The Optuna study user attribute holding calibration (overhead) energy, CO2 and time.
OVERHEAD_ATTR = "frugalml_overhead"
#: Batches the calibration trains on before scaling to a whole epoch.
CALIBRATION_BATCHES = 8
#: Epochs the calibration trains; the last one (warm) gives the per-epoch figure.
CALIBRATION_EPOCHS = 2


@dataclass(frozen=True)
class CostPrediction:
    """A predicted trial cost (J, g, s) and how it was made."""

    energy_j: float
    co2_g: float
    duration_s: float
    method: str


@dataclass(frozen=True)
class Calibration:
    """One epoch of the base configuration, measured (and scaled): see the module docstring."""

    energy_j_per_epoch: float
    co2_g_per_epoch: float
    duration_s_per_epoch: float
    energy_kind: str
    spent_energy_j: float
    spent_co2_g: float
    spent_duration_s: float
    method: str


def base_model(spec: TuneSpec) -> tuple[str, dict[str, Any]]:
    """The model of the spec's base configuration (the first choice when it is tuned)."""
    model_name = spec.search_space.get("model.name")
    if model_name is not None:
        return str(model_name.choices[0]), {}
    return spec.model, dict(spec.model_args)


def calibrate(
    spec: TuneSpec,
    dataset: ImageDataset,
    meter: Meter,
    build: Callable[[str, dict[str, Any], ImageDataset], Any],
) -> Calibration:
    """Measure an epoch of the base configuration (see the module docstring); ``build``
    makes the model (name, args, dataset), as the tuner's trials do."""
    import torch

    from frugalml.train import train

    training = spec.training.replace(epochs=CALIBRATION_EPOCHS)
    name, args = base_model(spec)
    n_train = len(dataset.train.labels)
    sample = dataset
    if math.ceil(n_train / training.batch_size) > CALIBRATION_BATCHES:
        sample = dataset.with_fraction(
            CALIBRATION_BATCHES * training.batch_size / n_train, seed=training.seed
        )
    n_sample = len(sample.train.labels)
    scale = n_train / n_sample
    with meter.window("tune calibration") as window:
        torch.manual_seed(training.seed)
        model = build(name, args, dataset)
        result = train(model, sample, training, meter=meter, pretrained=spec.pretrained)
    record = result.epochs[-1]  # the first epoch also pays one-off warm-up costs
    total = window.measurement
    train_m, eval_m = record.train_measurement, record.eval_measurement
    if total is None or train_m is None or eval_m is None:
        raise RuntimeError("the meter recorded no calibration window")
    per_epoch = (
        train_m.energy_j * scale + eval_m.energy_j,
        train_m.co2_g * scale + eval_m.co2_g,
        train_m.duration_s * scale + eval_m.duration_s,
    )
    method = (
        f"epoch {CALIBRATION_EPOCHS} of the base configuration ({name}, batch "
        f"{training.batch_size}) trained under the meter on {n_sample} of {n_train} training "
        f"samples, the training part scaled by {scale:.3g}: {per_epoch[0]:.3g} J per epoch "
        f"({total.provenance}: {total.energy_source})"
    )
    return Calibration(
        energy_j_per_epoch=per_epoch[0],
        co2_g_per_epoch=per_epoch[1],
        duration_s_per_epoch=per_epoch[2],
        energy_kind=total.provenance,
        spent_energy_j=total.energy_j,
        spent_co2_g=total.co2_g,
        spent_duration_s=total.duration_s,
        method=method,
    )


def split_trial_energy(trial: TrialSummary) -> tuple[float, float]:
    """A trial's energy (sampler's work included) as (its epochs' windows, the rest: set-up
    and sampler); the rest is 0 when its epochs' energy is not recorded."""
    total = trial.total_energy_j
    epochs_j = trial.intermediate[-1][1] if trial.intermediate else math.nan
    if not math.isfinite(epochs_j) or epochs_j <= 0 or len(trial.intermediate) != trial.epochs:
        return total, 0.0
    epochs_j = min(epochs_j, total)
    return epochs_j, total - epochs_j


def _from_trials(
    planned_epochs: int, ran: Sequence[TrialSummary]
) -> tuple[tuple[float, float, float], str]:
    """(J, g, s) of a trial of ``planned_epochs`` from the trials ``ran`` (the module
    docstring) and how."""
    epochs = sum(t.epochs for t in ran)
    energy_j, co2_g, duration_s = spent(ran)
    parts = [split_trial_energy(t) for t in ran]
    per_epoch_j = sum(p[0] for p in parts) / epochs
    per_trial_j = sum(p[1] for p in parts) / len(ran)
    predicted_j = per_epoch_j * planned_epochs + per_trial_j
    if energy_j > 0:
        cost = (predicted_j, predicted_j * co2_g / energy_j, predicted_j * duration_s / energy_j)
    else:  # nothing metered: CO2 and time per epoch
        cost = (0.0, co2_g / epochs * planned_epochs, duration_s / epochs * planned_epochs)
    method = (
        f"{per_epoch_j:.3g} J per epoch over the {epochs} epoch(s) of {len(ran)} trial(s) run "
        f"so far x {planned_epochs} planned epoch(s) + {per_trial_j:.3g} J per trial (set-up "
        "and sampler)"
    )
    return cost, method


def predict(
    planned_epochs: int,
    trials: Sequence[TrialSummary],
    calibration: Calibration | None,
    predicted_j: float | None = None,
) -> CostPrediction | None:
    """The predicted cost of a trial of ``planned_epochs`` (see the module docstring);
    ``predicted_j``, a cost model's energy for the trial's parameters, replaces the energy
    (CO2 and time scaled alike). None: nothing to predict from yet."""
    ran = [t for t in trials if t.epochs > 0 and math.isfinite(t.energy_j) and t.state != "skipped"]
    if ran:
        cost, method = _from_trials(planned_epochs, ran)
    elif calibration is not None:
        c = calibration
        per_epoch = (c.energy_j_per_epoch, c.co2_g_per_epoch, c.duration_s_per_epoch)
        cost = (
            per_epoch[0] * planned_epochs,
            per_epoch[1] * planned_epochs,
            per_epoch[2] * planned_epochs,
        )
        method = f"calibration ({per_epoch[0]:.3g} J/epoch) x {planned_epochs} planned epoch(s)"
    else:
        return None
    if predicted_j is not None and cost[0] > 0:
        ratio = predicted_j / cost[0]
        cost = (predicted_j, cost[1] * ratio, cost[2] * ratio)
        method = f"cost model of the configuration's FLOPs and batches: {predicted_j:.3g} J"
    return CostPrediction(energy_j=cost[0], co2_g=cost[1], duration_s=cost[2], method=method)


def budget_stop(
    budget: TuneBudget,
    used: tuple[float, float, float],
    prediction: CostPrediction | None,
) -> str | None:
    """A reason not to start the next trial (predicted as ``prediction``) when ``used``
    (J, g, s: trials, sampler and calibration) is spent, or None (energy is compared in J;
    the limit is given in kWh, both are shown)."""
    ahead = None
    if prediction is not None:
        ahead = (prediction.energy_j, prediction.co2_g, prediction.duration_s)
    verdict = launch_no_more(budget.limits, used, ahead)
    if verdict is None:
        return None
    of_limit = f"{verdict.spent:.4g} of {verdict.limit:.4g} {verdict.unit}"
    if verdict.resource == "energy":
        of_limit += f" ({verdict.limit_given:.4g} kWh)"
    if verdict.spent_out:
        return f"{verdict.resource} budget spent: {of_limit}"
    method = prediction.method if prediction else ""
    return (
        f"{verdict.resource} budget: the next trial is predicted to cost "
        f"{verdict.ahead:.4g} {verdict.unit} ({method}), and {of_limit} are spent"
    )


def overhead_of(study: optuna.Study | None) -> tuple[float, float, float]:
    """The calibration and warm-up energy (J), CO2 (g) and time (s) recorded on ``study``."""
    if study is None:
        return 0.0, 0.0, 0.0
    overhead = study.user_attrs.get(OVERHEAD_ATTR) or {}
    return (
        float(overhead.get("energy_j", 0.0)),
        float(overhead.get("co2_g", 0.0)),
        float(overhead.get("duration_s", 0.0)),
    )


#: What each part of a study's overhead is (the keys of its ``parts``).
OVERHEAD_PARTS = {
    "calibration": "calibration or warm-up before the first trial (one-off start-up costs)",
    "given_back": "the attempts of trials given back on an interrupt (each rerun anew)",
}


def add_overhead(
    study: optuna.Study,
    energy_j: float,
    co2_g: float,
    duration_s: float,
    what: str = "calibration",
) -> None:
    """Add a calibration's (or warm-up's, or a given-back attempt's: ``what``, a key of
    :data:`OVERHEAD_PARTS`) cost to the overhead recorded on ``study``: the totals, and
    per part."""
    recorded = dict(study.user_attrs.get(OVERHEAD_ATTR) or {})
    parts: dict[str, dict[str, float]] = dict(recorded.get("parts") or {})
    if not parts and recorded.get("energy_j"):  # recorded before parts existed
        parts["calibration"] = {k: float(recorded.get(k, 0.0)) for k in _RESOURCES}
    part = parts.get(what) or dict.fromkeys(_RESOURCES, 0.0)
    added = dict(zip(_RESOURCES, (energy_j, co2_g, duration_s), strict=True))
    parts[what] = {k: float(part.get(k, 0.0)) + added[k] for k in _RESOURCES}
    totals = {k: sum(p.get(k, 0.0) for p in parts.values()) for k in _RESOURCES}
    study.set_user_attr(
        OVERHEAD_ATTR,
        {
            **totals,
            "what": "; ".join(OVERHEAD_PARTS.get(name, name) for name in parts),
            "parts": parts,
        },
    )


_RESOURCES = ("energy_j", "co2_g", "duration_s")


def target_reached(budget: TuneBudget, trials: Sequence[TrialSummary]) -> str | None:
    """The reason ``budget.target_accuracy`` gives to start no further trial (a completed
    trial reached it), or None."""
    target = budget.target_accuracy
    if target is None:
        return None
    for t in trials:
        done = t.state == "complete" and math.isfinite(t.val_accuracy)
        if done and t.val_accuracy >= target - 1e-12:
            return (
                f"target_accuracy reached: trial {t.number} has validation accuracy "
                f"{t.val_accuracy:.4f} (target {target:g})"
            )
    return None

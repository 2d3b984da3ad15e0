"""``metered(objective)``: any Optuna objective, every trial measured by the frugalml meter.

Each call of the wrapped objective runs inside one :class:`frugalml.meter.Meter` window
(recorded even when the objective raises or prunes, so a failed or pruned trial keeps the
energy it spent). The trial's figures become user attributes (``energy_j``, ``co2_g``,
``duration_s``, ``energy_provenance``, ``energy_source`` and the whole measurement as
``frugalml_measurement``) and, with ``energy="objective"``, a last objective value (the
study then needs one more direction, ``"minimize"``).

Budgets follow :class:`frugalml.meter.BudgetGuard` with ``bound="point"`` and one trial as
the unit, which is the rule ``frugalml tune`` applies: the next trial is predicted to cost
the mean of the trials so far, and when *spent + predicted* would pass a limit (or a limit
is already spent) the study is stopped after the current trial (``study.stop()``). Every
trial with a measurement in the study counts, so a resumed study continues its budget.
With ``n_jobs > 1`` the windows of concurrent trials overlap and machine-wide counters
(RAPL, NVML) see each other's work; the records say so in their notes.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

from frugalml.errors import ConfigError
from frugalml.meter import Budget, BudgetGuard, Measurement, Meter, MeterConfig

if TYPE_CHECKING:
    import optuna

__all__ = ["EnergyAs", "MeteredObjective", "measured_trials", "metered", "study_spec_fragment"]

logger = logging.getLogger(__name__)

#: How a trial's energy enters the study: only as user attributes, or also as an objective.
EnergyAs = Literal["attribute", "objective"]

MEASUREMENT_ATTR = "frugalml_measurement"
STOP_ATTR = "frugalml_budget_stop"


class MeteredObjective:
    """The callable :func:`metered` returns; :attr:`stop_reason` says why it stopped."""

    def __init__(
        self,
        objective: Callable[[optuna.Trial], Any],
        *,
        energy: EnergyAs = "attribute",
        budget: Budget | None = None,
        config: MeterConfig | None = None,
        meter: Meter | None = None,
    ) -> None:
        if not callable(objective):
            raise ConfigError(
                f"metered() needs a callable objective, not {type(objective).__name__}",
                fix="pass a function trial -> value, as for study.optimize",
            )
        if energy not in ("attribute", "objective"):
            raise ConfigError(
                f"energy must be 'attribute' or 'objective', not {energy!r}",
                fix="energy='objective' adds the trial's joules as a last value to minimise",
            )
        if budget is not None and not isinstance(budget, Budget):
            raise ConfigError(
                f"budget must be a frugalml.meter.Budget, not {type(budget).__name__}",
                fix="e.g. Budget(energy_kwh=0.01)",
            )
        self.objective = objective
        self.energy: EnergyAs = energy
        self.budget = budget
        self.config = config or MeterConfig()
        self.meter = meter
        self.stop_reason: str | None = None

    def __call__(self, trial: optuna.Trial) -> Any:
        import optuna

        if self.budget is not None:
            reason = self._budget_reason(trial.study)
            if reason is not None:
                self._stop(trial, reason)
                trial.set_user_attr(STOP_ATTR, reason)
                raise optuna.TrialPruned(f"not run: {reason}")
        try:
            if self.meter is not None:
                value, measurement = self._run(self.meter, trial)
            else:
                with Meter(self.config) as meter:
                    value, measurement = self._run(meter, trial)
        finally:
            if self.budget is not None:
                reason = self._budget_reason(trial.study)
                if reason is not None:
                    self._stop(trial, reason)
        if self.energy == "attribute":
            return value
        values = list(value) if isinstance(value, Sequence) else [value]
        return (*values, measurement.energy_j)

    def _run(self, meter: Meter, trial: optuna.Trial) -> tuple[Any, Measurement]:
        window = meter.begin(f"trial {trial.number}")
        try:
            value = self.objective(trial)
        except BaseException as exc:
            _record(trial, meter.end(window, error=f"{type(exc).__name__}: {exc}"))
            raise
        measurement = meter.end(window)
        _record(trial, measurement)
        return value, measurement

    def _budget_reason(self, study: optuna.Study) -> str | None:
        """BudgetGuard over the trials measured so far, one trial as its unit: would the
        next trial, at their mean cost, take a total over a limit?"""
        if self.budget is None:
            return None
        done = measured_trials(study)
        if not done:
            return None
        guard = BudgetGuard(self.budget, len(done) + 1, bound="point")
        decision = guard.check(done)
        if not decision.stop:
            return None
        # the guard counts units; here each unit is a trial
        return decision.reason.replace("epoch(s)", "trial(s)").replace("epochs", "trials")

    def _stop(self, trial: optuna.Trial, reason: str) -> None:
        if self.stop_reason is None:
            logger.info("stopping the study: %s", reason)
        self.stop_reason = reason
        trial.study.set_user_attr(STOP_ATTR, reason)
        trial.study.stop()


def _record(trial: optuna.Trial, m: Measurement) -> None:
    trial.set_user_attr("energy_j", m.energy_j)
    trial.set_user_attr("co2_g", m.co2_g)
    trial.set_user_attr("duration_s", m.duration_s)
    trial.set_user_attr("energy_provenance", m.provenance)
    trial.set_user_attr("energy_source", m.energy_source)
    trial.set_user_attr(MEASUREMENT_ATTR, m.to_dict())


def measured_trials(study: optuna.Study) -> list[Measurement]:
    """The measurements recorded by :func:`metered` in ``study``, in trial order."""
    found = []
    for t in study.get_trials(deepcopy=False):
        data = t.user_attrs.get(MEASUREMENT_ATTR)
        if isinstance(data, Mapping):
            found.append(Measurement.from_dict(data))
    return found


def metered(
    objective: Callable[[optuna.Trial], Any],
    *,
    energy: EnergyAs = "attribute",
    budget: Budget | None = None,
    config: MeterConfig | None = None,
    meter: Meter | None = None,
) -> MeteredObjective:
    """Wrap ``objective`` so every trial is metered (see the module docstring).

    ``study.optimize(metered(objective, budget=Budget(energy_kwh=0.01)), n_trials=50)``;
    ``meter`` shares one open meter across trials (otherwise each trial opens one from
    ``config``).
    """
    return MeteredObjective(objective, energy=energy, budget=budget, config=config, meter=meter)


def study_spec_fragment(params: Mapping[str, Any], *, model: str | None = None) -> dict[str, Any]:
    """A study spec fragment (``models:`` and ``training:``) from a tuning trial's params.

    Keys follow ``frugalml tune``'s search space: ``model.name``, ``model.<knob>`` (model
    arguments), ``betas.0``/``betas.1`` and the :class:`frugalml.train.TrainConfig`
    fields; anything else is an error naming the key.
    """
    from frugalml.train import TrainConfig
    from frugalml.tune._space import apply_params

    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(k for k in _changed_keys(params) if k not in fields)
    if unknown:
        raise ConfigError(
            f"parameter(s) {', '.join(unknown)} are not training options of a study spec",
            fix="keep model.<knob>, betas.0/1 and TrainConfig fields (lr, batch_size, ...)",
        )
    training, name, args = apply_params(params, TrainConfig(), model or "", {})
    tuned = training.to_dict()
    changed = {k: tuned[k] for k in sorted(_changed_keys(params))}
    fragment: dict[str, Any] = {}
    if name:
        fragment["models"] = [{"name": name, "args": args} if args else name]
    fragment["training"] = changed
    return fragment


def _changed_keys(params: Mapping[str, Any]) -> set[str]:
    keys: set[str] = set()
    for key in params:
        if key.startswith("betas"):
            keys.add("betas")
        elif not key.startswith("model."):
            keys.add(key)
    return keys

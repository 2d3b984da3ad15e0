"""Predict a training run's total energy, time and CO2 from its first epochs; guard a budget.

From the first ``k`` completed epochs (each a :class:`Measurement`) and the planned epoch
count ``n``, the total of a quantity ``x`` (energy, duration, CO2) is predicted as

    observed + m * mean,      m = n - k remaining epochs,

with a prediction interval for the sum of the ``m`` remaining epochs, treating epochs as
independent draws around a common mean (Student t with ``k - 1`` degrees of freedom):

    m * mean +- t_{(1+c)/2, k-1} * s * sqrt(m + m^2 / k)

(``m`` for the spread of the future epochs themselves, ``m^2 / k`` for the uncertainty of
the mean). With one epoch there is no spread to estimate and no interval is given (the
bounds are None). The lower bound is never below what has already been spent.
Carbontracker extrapolates the mean of the first epochs without any interval; a budget
decision made on a point figure alone cannot say how sure it is.

``warmup_epochs`` leaves the first epochs (compilation, cache warm-up) out of the mean and
spread while still counting what they cost.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from frugalml.errors import ConfigError, FrugalError
from frugalml.meter._types import J_PER_KWH, Measurement

__all__ = [
    "Budget",
    "BudgetDecision",
    "BudgetExceeded",
    "BudgetGuard",
    "LimitVerdict",
    "Prediction",
    "Projection",
    "launch_no_more",
    "predict_total",
]

#: A budget's resources, in the order they are checked.
Resource = Literal["energy", "CO2", "time"]


@dataclass(frozen=True)
class Projection:
    """The predicted total of one quantity; ``low``/``high`` are None without an interval."""

    observed: float
    total: float
    low: float | None
    high: float | None
    per_epoch_mean: float
    per_epoch_sd: float | None


@dataclass(frozen=True)
class Prediction:
    """Predicted totals for the planned run (energy in J, duration in s, CO2 in g)."""

    completed_epochs: int
    planned_epochs: int
    fitted_epochs: int
    confidence: float
    energy_j: Projection
    duration_s: Projection
    co2_g: Projection
    method: str

    @property
    def energy_kwh(self) -> float:
        return self.energy_j.total / J_PER_KWH

    @property
    def has_interval(self) -> bool:
        return self.energy_j.high is not None


def _t_quantile(p: float, dof: int) -> float:
    from scipy import stats

    return float(stats.t.ppf(p, dof))


def _project(
    values: Sequence[float], fitted: Sequence[float], remaining: int, confidence: float
) -> Projection:
    observed = float(sum(values))
    k = len(fitted)
    mean = float(sum(fitted)) / k
    total = observed + remaining * mean
    if remaining == 0:
        return Projection(observed, observed, observed, observed, mean, None)
    if k < 2:
        return Projection(observed, total, None, None, mean, None)
    sd = math.sqrt(sum((v - mean) ** 2 for v in fitted) / (k - 1))
    half = (
        _t_quantile((1.0 + confidence) / 2.0, k - 1) * sd * math.sqrt(remaining + remaining**2 / k)
    )
    return Projection(observed, total, max(observed, total - half), total + half, mean, sd)


def predict_total(
    epoch_measurements: Sequence[Measurement],
    planned_epochs: int,
    *,
    confidence: float = 0.9,
    warmup_epochs: int = 0,
) -> Prediction:
    """Predict the planned run's totals from its completed epochs (see the module doc)."""
    k = len(epoch_measurements)
    if k < 1:
        raise ConfigError(
            "prediction needs at least one completed epoch",
            fix="call predict_total after the first epoch window has ended",
        )
    if planned_epochs < k:
        raise ConfigError(
            f"planned_epochs ({planned_epochs}) is smaller than the {k} epochs already done",
            fix="pass the total number of epochs the run will have",
        )
    if not 0.0 < confidence < 1.0:
        raise ConfigError(f"confidence must be between 0 and 1, not {confidence!r}")
    if warmup_epochs < 0:
        raise ConfigError(f"warmup_epochs must be >= 0, not {warmup_epochs!r}")
    skip = warmup_epochs if k - warmup_epochs >= 1 else 0
    remaining = planned_epochs - k

    def series(attr: str) -> tuple[list[float], list[float]]:
        values = [float(getattr(m, attr)) for m in epoch_measurements]
        return values, values[skip:]

    method = (
        f"observed + {remaining} x mean of {k - skip} epoch(s); "
        + (
            f"{confidence:.0%} t prediction interval for the remaining sum"
            if k - skip >= 2 and remaining
            else "no interval (needs two fitted epochs)"
            if remaining
            else "all epochs done"
        )
        + (f"; first {skip} epoch(s) left out of the fit as warm-up" if skip else "")
    )
    partial = sum(1 for m in epoch_measurements if m.unmeasured_s > 0)
    if partial:
        method += (
            f"; {partial} epoch(s) have seconds a counter could not measure, so their energy "
            "and the prediction are lower bounds"
        )
    return Prediction(
        completed_epochs=k,
        planned_epochs=planned_epochs,
        fitted_epochs=k - skip,
        confidence=confidence,
        energy_j=_project(*series("energy_j"), remaining, confidence),
        duration_s=_project(*series("duration_s"), remaining, confidence),
        co2_g=_project(*series("co2_g"), remaining, confidence),
        method=method,
    )


@dataclass(frozen=True)
class Budget:
    """Limits for a whole run; at least one must be set."""

    energy_kwh: float | None = None
    co2_g: float | None = None
    duration_s: float | None = None

    def __post_init__(self) -> None:
        limits = {"energy_kwh": self.energy_kwh, "co2_g": self.co2_g, "duration_s": self.duration_s}
        if all(v is None for v in limits.values()):
            raise ConfigError(
                "a budget needs at least one limit",
                fix="set energy_kwh, co2_g or duration_s",
            )
        for name, value in limits.items():
            if value is not None and not (math.isfinite(value) and value > 0):
                raise ConfigError(f"budget {name} must be a number > 0, not {value!r}")


@dataclass(frozen=True)
class LimitVerdict:
    """The limit that says "launch no more": ``limit``, ``spent`` and ``ahead`` (what would
    run next, predicted) in the resource's unit, J, g or s; ``limit_given`` as the budget
    gives it (kWh for energy)."""

    resource: Resource
    limit: float
    spent: float
    ahead: float | None
    unit: str
    limit_given: float

    @property
    def spent_out(self) -> bool:
        """The limit is already reached (else: what is ahead would take it over)."""
        return self.spent >= self.limit


def launch_no_more(
    budget: Budget | None,
    spent: tuple[float, float, float],
    ahead: tuple[float, float, float] | None = None,
) -> LimitVerdict | None:
    """The one budget rule of studies, tuning and :class:`BudgetGuard`: with ``spent``
    (energy J, CO2 g, time s) and the predicted cost of what would run next (``ahead``: the
    next trial and those in flight, or a run's remaining epochs; None: not predictable
    yet), the first limit (energy, CO2, time) that is reached, or that spent plus ahead
    would exceed; None when every limit allows it. Callers word the verdict."""
    if budget is None:
        return None
    limits: tuple[tuple[Resource, float | None, float, str], ...] = (
        ("energy", budget.energy_kwh, J_PER_KWH, "J"),
        ("CO2", budget.co2_g, 1.0, "gCO2e"),
        ("time", budget.duration_s, 1.0, "s"),
    )
    for index, (resource, given, scale, unit) in enumerate(limits):
        if given is None:
            continue
        verdict = LimitVerdict(
            resource,
            float(given) * scale,
            float(spent[index]),
            None if ahead is None else float(ahead[index]),
            unit,
            float(given),
        )
        if verdict.spent_out or (
            verdict.ahead is not None and verdict.spent + verdict.ahead > verdict.limit
        ):
            return verdict
    return None


@dataclass(frozen=True)
class BudgetDecision:
    """Whether to stop, why, and the prediction the decision was made on."""

    stop: bool
    reason: str
    prediction: Prediction


class BudgetExceeded(FrugalError):
    """The run is predicted to exceed (or has exceeded) its budget."""

    exit_code = 3

    def __init__(self, decision: BudgetDecision) -> None:
        super().__init__(
            decision.reason,
            fix="raise the budget, plan fewer epochs or choose a cheaper model",
        )
        self.decision = decision


class BudgetGuard:
    """Tells a training loop to stop when the predicted total would exceed the budget.

    ``bound="upper"`` (the default) compares the upper end of the prediction interval with
    the budget: a budget is a limit, so the guard stops as soon as overrunning it is
    plausible at the given confidence. ``bound="point"`` compares the point prediction
    (stops only when overrunning is more likely than not). With a single completed epoch
    there is no interval and the point prediction is used either way; the reason says so.
    A limit already spent always stops.
    """

    def __init__(
        self,
        budget: Budget,
        planned_epochs: int,
        *,
        bound: Literal["upper", "point"] = "upper",
        confidence: float = 0.9,
        warmup_epochs: int = 0,
    ) -> None:
        if bound not in ("upper", "point"):
            raise ConfigError(f"bound must be 'upper' or 'point', not {bound!r}")
        if planned_epochs < 1:
            raise ConfigError(f"planned_epochs must be >= 1, not {planned_epochs!r}")
        self.budget = budget
        self.planned_epochs = planned_epochs
        self.bound = bound
        self.confidence = confidence
        self.warmup_epochs = warmup_epochs

    def check(self, epoch_measurements: Sequence[Measurement]) -> BudgetDecision:
        """Decide from the epochs completed so far."""
        prediction = predict_total(
            epoch_measurements,
            self.planned_epochs,
            confidence=self.confidence,
            warmup_epochs=self.warmup_epochs,
        )
        projections = (prediction.energy_j, prediction.co2_g, prediction.duration_s)
        figures = [self._figure(p) for p in projections]
        spent = (projections[0].observed, projections[1].observed, projections[2].observed)
        ahead = (figures[0] - spent[0], figures[1] - spent[1], figures[2] - spent[2])
        verdict = launch_no_more(self.budget, spent, ahead)
        which = [self._which(p) for p in projections]
        scales = {"energy": (1.0 / J_PER_KWH, "kWh"), "CO2": (1.0, "g"), "time": (1.0, "s")}
        done = prediction.completed_epochs
        if verdict is not None:
            scale, unit = scales[verdict.resource]
            limit, used = verdict.limit_given, verdict.spent * scale
            if verdict.spent_out:
                reason = (
                    f"{verdict.resource} budget already exceeded: {used:.4g} {unit} spent of "
                    f"{limit:.4g} {unit} after {done} epoch(s)"
                )
            else:
                index = ("energy", "CO2", "time").index(verdict.resource)
                reason = (
                    f"{verdict.resource} budget would be exceeded: {which[index]} "
                    f"{figures[index] * scale:.4g} {unit} for {prediction.planned_epochs} epochs "
                    f"> budget {limit:.4g} {unit} (after {done} epoch(s))"
                )
            return BudgetDecision(True, reason, prediction)
        notes = []
        limits = (self.budget.energy_kwh, self.budget.co2_g, self.budget.duration_s)
        for index, (resource, (scale, unit)) in enumerate(scales.items()):
            given = limits[index]
            if given is not None:
                notes.append(
                    f"{resource} {which[index]} {figures[index] * scale:.4g} {unit} "
                    f"<= {given:.4g} {unit}"
                )
        return BudgetDecision(False, "within budget: " + "; ".join(notes), prediction)

    def _figure(self, projection: Projection) -> float:
        """The predicted total the decision compares: the upper bound, or the point."""
        high = projection.high if self.bound == "upper" else None
        return high if high is not None else projection.total

    def _which(self, projection: Projection) -> str:
        if self.bound == "upper" and projection.high is not None:
            return f"upper {self.confidence:.0%} bound"
        return "point prediction" + (" (no interval yet)" if self.bound == "upper" else "")

    def enforce(self, epoch_measurements: Sequence[Measurement]) -> BudgetDecision:
        """Like :meth:`check`, but raise :class:`BudgetExceeded` when the run should stop."""
        decision = self.check(epoch_measurements)
        if decision.stop:
            raise BudgetExceeded(decision)
        return decision

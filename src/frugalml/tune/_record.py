"""One tuning trial's record: the user attributes :class:`._results.TrialSummary` reads.

Every place the tuner says what a trial is (running, its curve, finished, pruned, skipped,
interrupted) writes the same :class:`TrialRecord` to the Optuna trial's ``TRIAL_ATTR``
attribute, so the fields and their names live here once.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from frugalml._types import TuneState as _TuneState
from frugalml.tune._results import TRIAL_ATTR

if TYPE_CHECKING:
    import optuna

#: What the tuner records of a trial (TrialSummary adds ``waiting`` and ``running`` from
#: Optuna's own states); written once, with the other trial states, in frugalml._types.
TuneState = _TuneState


def json_float(value: float) -> float | None:
    return value if math.isfinite(value) else None


@dataclass
class TrialRecord:
    """What the tuning study keeps of one trial (JSON in the Optuna storage).

    ``intermediate`` is the learning curve, ``[validation accuracy, cumulative energy J]``
    per epoch; ``energy_j``, ``co2_g``, ``duration_s`` and ``energy_kind`` are the trial
    window's (model build, training, evaluation), ``train_energy_j`` its training windows;
    ``sampler`` the cost of the sampler's work that proposed it (energy_j, co2_g,
    duration_s). ``predicted_*`` is the cost predicted before the trial started (estimated;
    ``predicted_by`` names the predictor: per-epoch mean, calibration or the frugal cost
    model). Fields left None are not written.
    """

    tune_state: TuneState = "running"
    store_trial_id: str | None = None
    params: dict[str, Any] | None = None
    epochs_planned: int | None = None
    sampler: dict[str, float] | None = None
    intermediate: list[list[float]] | None = None
    val_accuracy: float | None = None
    test_accuracy: float | None = None
    epochs: int | None = None
    error: str | None = None
    energy_j: float | None = None
    energy_kind: str | None = None
    co2_g: float | None = None
    duration_s: float | None = None
    train_energy_j: float | None = None
    prune_reason: str | None = None
    predicted_energy_j: float | None = None
    predicted_co2_g: float | None = None
    predicted_duration_s: float | None = None
    predicted_by: str | None = None
    curve: list[list[float]] = field(default_factory=list, repr=False)

    def to_attrs(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("curve")
        return {k: v for k, v in data.items() if v is not None}

    def write(self, trial: optuna.Trial | optuna.trial.FrozenTrial) -> None:
        """Store the record on ``trial`` (a live trial; the study's storage keeps it)."""
        trial.set_user_attr(TRIAL_ATTR, self.to_attrs())

    def add_epoch(self, accuracy: float, energy_j: float) -> float:
        """Append an epoch to the learning curve; returns the cumulative energy so far."""
        so_far = (self.curve[-1][1] if self.curve else 0.0) + energy_j
        self.curve.append([accuracy, so_far])
        self.intermediate = self.curve
        return so_far

    def finish(
        self, state: TuneState, result: dict[str, Any] | None, epochs: int, error: str | None
    ) -> None:
        """The finished trial's figures from its results row (``result``: build_result's)."""
        row = result or {}
        self.tune_state = state
        self.val_accuracy = json_float(float(_num(row.get("val_accuracy"))))
        self.test_accuracy = json_float(float(_num(row.get("accuracy"))))
        self.epochs = epochs
        self.error = error
        window = row.get("measurement")
        if isinstance(window, dict):
            self.energy_j = float(window["energy_j"])
            self.energy_kind = str(row.get("energy_kind"))
            self.co2_g = float(window["co2_g"])
            self.duration_s = float(window["duration_s"])
            self.train_energy_j = row.get("train_energy_j")


def _num(value: Any) -> float:
    return (
        float(value) if isinstance(value, int | float) and not isinstance(value, bool) else math.nan
    )

"""What a tuning run found: one summary per Optuna trial, the best trial or the Pareto front.

Everything here is read back from the Optuna storage (the objective values and the user
attributes the tuner sets on every trial), so a finished, interrupted or resumed run reads
the same way.

Trial states: ``complete``, ``pruned``, ``failed`` (the training raised; its energy up to the
failure is kept), ``interrupted`` (Ctrl-C or a killed process; the rerun retries its
parameters), ``skipped`` (not started because the budget would have been exceeded; the
rerun retries it first), ``running`` and ``waiting`` (queued for a retry).
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from frugalml.meter import combine_provenance
from frugalml.tune._prune import pareto_front

if TYPE_CHECKING:
    import optuna

#: Trial states whose trials count against ``budget.max_trials``.
COUNTED_STATES = ("complete", "pruned", "failed")

TRIALS_CSV = "tuning_trials.csv"
#: The Optuna trial user attribute (one JSON object) in which the tuner records each trial.
TRIAL_ATTR = "frugalml"
#: The Optuna system attribute naming the trial a local-search trial of the frugal strategy
#: perturbed (:class:`frugalml.tune._frugal.LocalSearch`).
LOCAL_ATTR = "frugal_local_of"
CSV_COLUMNS = (
    "number",
    "state",
    "params",
    "val_accuracy",
    "test_accuracy",
    "train_energy_j",
    "energy_j",
    "sampler_energy_j",
    "cumulative_energy_j",
    "energy_kind",
    "co2_g",
    "duration_s",
    "epochs",
    "epochs_planned",
    "best_val_accuracy_so_far",
    "on_front",
    "store_trial_id",
    "error",
    "perturbed_trial",
)


def _float(value: Any) -> float:
    if value is None or isinstance(value, bool):
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


@dataclass(frozen=True)
class TrialSummary:
    """One tuning trial as recorded. Energy in joules, with its provenance in ``energy_kind``
    (``measured``, ``estimated`` or ``mixed``); NaN where the trial has no such figure."""

    number: int
    state: str
    params: dict[str, Any]
    val_accuracy: float
    test_accuracy: float
    energy_j: float
    energy_kind: str
    co2_g: float
    duration_s: float
    epochs: int
    epochs_planned: int
    store_trial_id: str | None = None
    error: str | None = None
    intermediate: tuple[tuple[float, float], ...] = ()
    sampler_energy_j: float = 0.0
    sampler_co2_g: float = 0.0
    sampler_duration_s: float = 0.0
    #: The epochs' training windows alone (PePR's resource); ``energy_j`` is the whole trial
    #: window (model build, training, evaluation), which budgets count.
    train_energy_j: float = math.nan
    #: The trial this one perturbed (frugal's local search), None where a sampler proposed it.
    perturbed_trial: int | None = None

    @property
    def total_energy_j(self) -> float:
        """The trial's energy plus the sampler's work that proposed it (0 where unknown)."""
        return (self.energy_j if math.isfinite(self.energy_j) else 0.0) + self.sampler_energy_j

    @property
    def counted(self) -> bool:
        return self.state in COUNTED_STATES

    @property
    def point(self) -> tuple[float, float]:
        """(validation accuracy, energy_j) for Pareto fronts."""
        return (self.val_accuracy, self.energy_j)

    @classmethod
    def from_frozen(cls, trial: optuna.trial.FrozenTrial) -> TrialSummary:
        from optuna.trial import TrialState

        attrs = trial.user_attrs.get(TRIAL_ATTR) or {}
        state = attrs.get("tune_state")
        if state in ("running", None) and trial.state.is_finished():
            state = None  # a trial the tuner never finished recording: the process died
        if state is None:
            state = {
                TrialState.COMPLETE: "complete",
                TrialState.PRUNED: "pruned",
                TrialState.FAIL: "interrupted",  # failed without our record: the process died
                TrialState.RUNNING: "running",
                TrialState.WAITING: "waiting",
            }.get(trial.state, trial.state.name.lower())
        params = attrs.get("params")
        if isinstance(params, dict):
            params = dict(params)  # a copy: the trial may be Optuna's cached one
        else:
            # a queued (waiting) trial has its parameters only as fixed_params
            params = dict(trial.params or trial.system_attrs.get("fixed_params") or {})
        sampler = attrs.get("sampler") or {}
        return cls(
            number=trial.number,
            state=str(state),
            params=params,
            val_accuracy=_float(attrs.get("val_accuracy")),
            test_accuracy=_float(attrs.get("test_accuracy")),
            energy_j=_float(attrs.get("energy_j")),
            energy_kind=str(attrs.get("energy_kind") or ""),
            co2_g=_float(attrs.get("co2_g")),
            duration_s=_float(attrs.get("duration_s")),
            epochs=int(attrs.get("epochs") or 0),
            epochs_planned=int(attrs.get("epochs_planned") or 0),
            store_trial_id=attrs.get("store_trial_id"),
            error=attrs.get("error"),
            intermediate=tuple((float(a), float(e)) for a, e in attrs.get("intermediate") or ()),
            sampler_energy_j=float(sampler.get("energy_j") or 0.0),
            sampler_co2_g=float(sampler.get("co2_g") or 0.0),
            sampler_duration_s=float(sampler.get("duration_s") or 0.0),
            train_energy_j=_float(attrs.get("train_energy_j")),
            perturbed_trial=_int_or_none(trial.system_attrs.get(LOCAL_ATTR)),
        )


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def summarize_trials(study: optuna.Study) -> list[TrialSummary]:
    """Every trial of ``study`` in order of its number.

    Reads the trials without Optuna's deep copy (:meth:`TrialSummary.from_frozen` copies
    what it keeps): the tuner reads them before every trial and after every epoch, and the
    copy was half of each read (``benchmarks/bench_trial_reads.py``)."""
    trials = study.get_trials(deepcopy=False)
    return [TrialSummary.from_frozen(t) for t in sorted(trials, key=lambda t: t.number)]


def spent(trials: Sequence[TrialSummary]) -> tuple[float, float, float]:
    """Energy (J), CO2 (g) and time (s) of every trial that ran (pruned and failed included),
    with the sampler's work of every trial (skipped ones too)."""
    energy = sum(t.total_energy_j for t in trials)
    co2 = sum(t.co2_g for t in trials if math.isfinite(t.co2_g))
    co2 += sum(t.sampler_co2_g for t in trials)
    duration = sum(t.duration_s for t in trials if math.isfinite(t.duration_s))
    duration += sum(t.sampler_duration_s for t in trials)
    return energy, co2, duration


def energy_provenance(kinds: Sequence[str]) -> str:
    """The trials' provenance (:func:`frugalml.meter.combine_provenance`: ``none`` when
    nothing was recorded)."""
    return combine_provenance(kinds)


def best_trial(trials: Sequence[TrialSummary], objective: str = "accuracy") -> TrialSummary | None:
    """The completed trial with the highest validation accuracy (ties: less energy), or the
    lowest energy for ``objective="energy"``."""
    done = [t for t in trials if t.state == "complete"]
    if objective == "energy":
        done = [t for t in done if math.isfinite(t.energy_j)]
        return min(done, key=lambda t: (t.energy_j, -_nan_low(t.val_accuracy)), default=None)
    done = [t for t in done if math.isfinite(t.val_accuracy)]
    return max(done, key=lambda t: (t.val_accuracy, -_nan_high(t.energy_j)), default=None)


def _nan_low(value: float) -> float:
    return value if math.isfinite(value) else -math.inf


def _nan_high(value: float) -> float:
    return value if math.isfinite(value) else math.inf


def front(trials: Sequence[TrialSummary]) -> list[TrialSummary]:
    """Completed trials on the (validation accuracy, energy) Pareto front, by energy."""
    done = [t for t in trials if t.state == "complete"]
    on = [done[i] for i in pareto_front([t.point for t in done])]
    return sorted(on, key=lambda t: (t.energy_j, -t.val_accuracy))


@dataclass
class TuningHistory:
    """Trials in order with cumulative energy (trials and the sampler's work, pruned and
    failed trials included) and the best validation accuracy so far (complete trials)."""

    trials: list[TrialSummary]
    cumulative_energy_j: list[float] = field(default_factory=list)
    best_so_far: list[float] = field(default_factory=list)

    @classmethod
    def from_trials(cls, trials: Sequence[TrialSummary]) -> TuningHistory:
        ran = [t for t in trials if t.state not in ("waiting", "running", "skipped")]
        total = 0.0
        best = math.nan
        cumulative, best_so_far = [], []
        for t in ran:
            total += t.total_energy_j
            if t.state == "complete" and math.isfinite(t.val_accuracy):
                best = t.val_accuracy if math.isnan(best) else max(best, t.val_accuracy)
            cumulative.append(total)
            best_so_far.append(best)
        return cls(list(ran), cumulative, best_so_far)


def write_trials_csv(trials: Sequence[TrialSummary], path: Path) -> Path:
    """One row per trial (including skipped and interrupted ones), the columns of CSV_COLUMNS."""
    history = TuningHistory.from_trials(trials)
    cumulative = {
        t.number: c for t, c in zip(history.trials, history.cumulative_energy_j, strict=True)
    }
    best = {t.number: b for t, b in zip(history.trials, history.best_so_far, strict=True)}
    on_front = {t.number for t in front(trials)}
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        for t in trials:
            writer.writerow(
                {
                    "number": t.number,
                    "state": t.state,
                    "params": json.dumps(t.params, sort_keys=True),
                    "val_accuracy": _cell(t.val_accuracy),
                    "test_accuracy": _cell(t.test_accuracy),
                    "train_energy_j": _cell(t.train_energy_j),
                    "energy_j": _cell(t.energy_j),
                    "sampler_energy_j": _cell(t.sampler_energy_j),
                    "cumulative_energy_j": _cell(cumulative.get(t.number, math.nan)),
                    "energy_kind": t.energy_kind,
                    "co2_g": _cell(t.co2_g),
                    "duration_s": _cell(t.duration_s),
                    "epochs": t.epochs,
                    "epochs_planned": t.epochs_planned,
                    "best_val_accuracy_so_far": _cell(best.get(t.number, math.nan)),
                    "on_front": t.number in on_front,
                    "store_trial_id": t.store_trial_id or "",
                    "error": t.error or "",
                    "perturbed_trial": "" if t.perturbed_trial is None else t.perturbed_trial,
                }
            )
    return path


def _cell(value: float) -> str:
    return "" if not math.isfinite(value) else f"{value:.6g}"

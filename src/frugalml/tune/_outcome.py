"""What a tuning run did (:class:`TuneOutcome`), its progress events and its files.

The files: ``tuning_trials.csv`` (every trial), ``tuning.png`` (accuracy against energy) and
``tuning_summary.json`` (:meth:`TuneOutcome.to_dict` plus the file names), in the output
directory.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from frugalml.meter import J_PER_KWH
from frugalml.tune._record import json_float
from frugalml.tune._results import (
    TRIALS_CSV,
    TrialSummary,
    best_trial,
    energy_provenance,
    front,
    spent,
    write_trials_csv,
)

if TYPE_CHECKING:
    from frugalml.tune._planning import Calibration
    from frugalml.tune._spec import TuneSpec

PLOT_FILENAME = "tuning.png"
SUMMARY_FILENAME = "tuning_summary.json"


@dataclass
class TuneEvent:
    """Progress for displays. ``kind``: started, calibrated, trial_started, epoch,
    trial_finished, stopped, finished. Energy in joules (provenance in ``energy_kind``)."""

    kind: str
    trials_done: int
    trials_total: int | None
    energy_j: float
    energy_kind: str
    message: str = ""
    trial_number: int | None = None
    epoch: int | None = None
    epochs_planned: int | None = None


def progress_event(
    kind: str,
    trials: Sequence[TrialSummary],
    total: int | None,
    spent_j: float,
    message: str = "",
    **extra: Any,
) -> TuneEvent:
    """The :class:`TuneEvent` ``kind`` after ``trials`` (of about ``total``; ``spent_j``
    joules so far, overhead included)."""
    return TuneEvent(
        kind=kind,
        trials_done=sum(t.counted for t in trials),
        trials_total=total,
        energy_j=spent_j,
        energy_kind=energy_provenance([t.energy_kind for t in trials]),
        message=message,
        **extra,
    )


@dataclass
class TuneOutcome:
    """What a run (and every earlier run into the same directory) did.

    ``trial_energy_j`` sums every trial's window (pruned and failed trials included) and the
    sampler's work; ``overhead_energy_j`` is the calibration (with one-off warm-up) and the
    attempts of trials given back on an interrupt."""

    spec: TuneSpec
    out_dir: Path
    storage_path: Path
    trials: list[TrialSummary]
    best: TrialSummary | None
    pareto: list[TrialSummary]
    new_trials: int
    trial_energy_j: float
    overhead_energy_j: float
    co2_g: float
    duration_s: float
    energy_kind: str
    stop_reason: str
    interrupted: bool
    calibration: Calibration | None = None
    plot_path: Path | None = None
    csv_path: Path | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def total_energy_j(self) -> float:
        return self.trial_energy_j + self.overhead_energy_j

    @property
    def total_energy_kwh(self) -> float:
        return self.total_energy_j / J_PER_KWH

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for t in self.trials:
            out[t.state] = out.get(t.state, 0) + 1
        return out

    def to_dict(self) -> dict[str, Any]:
        from frugalml.tune._trial import effective_pruner

        def trial(t: TrialSummary | None) -> dict[str, Any] | None:
            if t is None:
                return None
            return {
                "number": t.number,
                "params": t.params,
                "val_accuracy": json_float(t.val_accuracy),
                "test_accuracy": json_float(t.test_accuracy),
                "energy_j": json_float(t.energy_j),
                "energy_kind": t.energy_kind,
                "epochs": t.epochs,
                "store_trial_id": t.store_trial_id,
            }

        return {
            "study": self.spec.name,
            "strategy": self.spec.strategy,
            "objective": list(self.spec.objectives),
            "pruner": effective_pruner(self.spec),
            "budget": self.spec.budget.to_dict(),
            "seed": self.spec.seed,
            "storage": str(self.storage_path),
            "counts": self.counts(),
            "new_trials": self.new_trials,
            "best": trial(self.best),
            "pareto_front": [trial(t) for t in self.pareto],
            "trial_energy_j": self.trial_energy_j,
            "overhead_energy_j": self.overhead_energy_j,
            "total_energy_j": self.total_energy_j,
            "energy_kind": self.energy_kind,
            "co2_g": self.co2_g,
            "duration_s": self.duration_s,
            "stop_reason": self.stop_reason,
            "interrupted": self.interrupted,
            "accuracy": "validation accuracy after the last epoch selects; test accuracy reported",
            "notes": list(self.notes),
        }


def build_outcome(
    spec: TuneSpec,
    out_dir: Path,
    storage_file: Path,
    trials: Sequence[TrialSummary],
    *,
    overhead: tuple[float, float, float],
    calibration: Calibration | None,
    stop_reason: str,
    interrupted: bool,
    before: set[int],
    notes: list[str],
) -> TuneOutcome:
    """The outcome of the run: ``trials`` (all of the directory's), ``overhead`` (the
    calibration's J, g, s), the trials numbered ``before`` the run left out of new_trials."""
    energy_j, co2_g, duration_s = spent(trials)
    o_energy, o_co2, o_duration = overhead
    kinds = [t.energy_kind for t in trials]
    if calibration is not None:
        kinds.append(calibration.energy_kind)
    return TuneOutcome(
        spec=spec,
        out_dir=out_dir,
        storage_path=storage_file,
        trials=list(trials),
        best=None if spec.multi_objective else best_trial(list(trials), spec.objectives[0]),
        pareto=front(list(trials)) if spec.multi_objective else [],
        new_trials=sum(1 for t in trials if t.number not in before and t.counted),
        trial_energy_j=energy_j,
        overhead_energy_j=o_energy,
        co2_g=co2_g + o_co2,
        duration_s=duration_s + o_duration,
        energy_kind=energy_provenance(kinds),
        stop_reason=stop_reason,
        interrupted=interrupted,
        calibration=calibration,
        notes=notes,
    )


def write_outputs(outcome: TuneOutcome, *, plot: bool = True) -> None:
    """Write the trials CSV, the plot (unless ``plot`` is False) and the JSON summary into
    the outcome's directory; the outcome gets their paths."""
    from frugalml.tune._plots import plot_tuning

    out_dir, spec = outcome.out_dir, outcome.spec
    outcome.csv_path = write_trials_csv(outcome.trials, out_dir / TRIALS_CSV)
    if plot:
        outcome.plot_path = plot_tuning(
            outcome.trials,
            out_dir / PLOT_FILENAME,
            title=f"{spec.name}: {spec.strategy}",
            energy_kind=outcome.energy_kind,
            pareto=spec.multi_objective,
            overhead_j=outcome.overhead_energy_j,
        )
    summary = outcome.to_dict()
    summary["trials_csv"] = outcome.csv_path.name
    summary["plot"] = outcome.plot_path.name if outcome.plot_path else None
    (out_dir / SUMMARY_FILENAME).write_text(
        json.dumps(summary, indent=2, default=str) + "\n", encoding="utf-8"
    )

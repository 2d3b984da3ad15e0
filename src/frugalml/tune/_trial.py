"""One tuning trial: its store definition, its pruning, running it and telling Optuna.

The trial itself runs in :func:`frugalml.study.run_metered_trial` (the one trial runner);
here is what tuning adds: the definition from the sampled parameters, the per-epoch curve
and pruning verdict (``should_stop``), and recording the outcome in both stores.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from typing import TYPE_CHECKING, Any

from frugalml.tune._record import TrialRecord, TuneState
from frugalml.tune._space import apply_params
from frugalml.tune._strategies import FIDELITY_STRATEGIES

if TYPE_CHECKING:
    import optuna

    from frugalml.meter import Meter
    from frugalml.study._trial import TrialOutcome as StudyTrialOutcome
    from frugalml.train import TrainConfig
    from frugalml.tune._spec import TuneSpec
    from frugalml.tune._tuner import Tuner

logger = logging.getLogger(__name__)


def trial_id_for(study: str, number: int, started: Any) -> str:
    text = f"tune|{study}|{number}|{started}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def trial_label(number: int, params: dict[str, Any]) -> str:
    inner = ", ".join(f"{k}={_short(v)}" for k, v in params.items())
    return f"tune #{number} | {inner}"


def _short(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def requeue(study: optuna.Study, trial: optuna.Trial | optuna.trial.FrozenTrial) -> None:
    """Mark ``trial`` failed (if it is not finished) and queue its parameters, so the next
    trial (or the rerun) tries them again: the tuner's one way of giving a trial back."""
    from optuna.trial import TrialState

    study.tell(trial.number, state=TrialState.FAIL, skip_if_finished=True)
    study.enqueue_trial(dict(trial.params), user_attrs={"retry_of": trial.number})


def trial_definition(
    spec: TuneSpec, params: dict[str, Any], number: int
) -> tuple[dict[str, Any], TrainConfig]:
    """The study-store definition of the trial with ``params`` (and its training config)."""
    training, model_name, model_args = apply_params(
        params, spec.training, spec.model, spec.model_args
    )
    definition: dict[str, Any] = {
        "study": spec.name,
        "model": model_name,
        "model_args": model_args,
        "dataset": spec.dataset,
        "pretrained": spec.pretrained,
        "fraction": spec.fraction,
        "seed": training.seed,
        "image_size": spec.image_size,
        "training": training.to_dict(),
        "carbon": dict(spec.carbon),
        "data_root": spec.data_root,
        "download": spec.download,
        "tune": {
            "strategy": spec.strategy,
            "number": number,
            "params": json.loads(json.dumps(params)),
            "objective": list(spec.objectives),
            "pruner": spec.pruner,
            "sampler_seed": spec.seed,
        },
    }
    if spec.pretrained_file is not None:
        definition["pretrained_file"] = spec.pretrained_file
    return definition, training


class TuneTrial:
    """One Optuna trial run by ``tuner``: :meth:`run` trains it and records it."""

    def __init__(self, tuner: Tuner, trial: optuna.Trial, params: dict[str, Any]) -> None:
        self.tuner = tuner
        self.spec = tuner.spec
        self.trial = trial
        self.params = params
        self.number = trial.number
        self.definition, self.training = trial_definition(self.spec, params, trial.number)
        self.trial_id = trial_id_for(self.spec.name, trial.number, trial.datetime_start)
        self.record = TrialRecord()
        self.completed_curves = [
            t.intermediate for t in tuner._trials() if t.state == "complete" and t.intermediate
        ]

    # -- per epoch --------------------------------------------------------------------------
    def on_epoch(self, record: dict[str, Any]) -> None:
        if record["epoch"] == 0:
            return  # the set-up window: in-process, no killed trial is booked from it
        self.tuner.store.record_epoch(self.trial_id, int(record["epoch"]), record)
        energy = float((record.get("measurement") or {}).get("energy_j", math.nan))
        accuracy = float((record.get("val") or {}).get("accuracy", math.nan))
        self.record.add_epoch(accuracy, energy)
        self.record.write(self.trial)
        self.tuner._emit(
            "epoch",
            f"trial {self.number} epoch {record['epoch']}: val accuracy {accuracy:.3f}",
            trial_number=self.number,
            epoch=int(record["epoch"]),
            epochs_planned=self.training.epochs,
        )

    def should_stop(self, record: dict[str, Any]) -> str | None:
        """The pruning verdict after an epoch (run after :meth:`on_epoch`), or None."""
        spec, epoch = self.spec, int(record["epoch"])
        accuracy, so_far = self.record.curve[-1]
        dominance = self.tuner.dominance
        if dominance is not None:
            by = dominance.should_prune(epoch, (accuracy, so_far), self.completed_curves)
            if by is None:
                return None
            return (
                f"dominated at epoch {epoch}: (accuracy {accuracy:.3f}, "
                f"{so_far:.3g} J) by a completed trial's ({by[0]:.3f}, {by[1]:.3g} J)"
            )
        if spec.pruner == "none" and spec.strategy not in FIDELITY_STRATEGIES:
            return None
        value = so_far if spec.objectives[0] == "energy" else accuracy
        if not math.isfinite(value):
            return None
        self.trial.report(value, epoch)
        if not self.trial.should_prune():
            return None
        rule = spec.strategy if spec.strategy in FIDELITY_STRATEGIES else spec.pruner
        return f"{rule} pruner at epoch {epoch}"

    # -- the trial --------------------------------------------------------------------------
    def start(self, sampler: dict[str, float] | None) -> None:
        """Register the trial in the study store, claim it, and say it runs."""
        label = trial_label(self.number, self.params)
        store = self.tuner.store
        store.add_trials([(self.trial_id, self.spec.name, label, self.definition)])
        store.claim([self.trial_id], retry_failed=True)
        self.record = TrialRecord(
            store_trial_id=self.trial_id,
            params=json.loads(json.dumps(self.params)),
            epochs_planned=self.training.epochs,
            sampler=sampler or {},
        )
        self.record.write(self.trial)
        self.tuner._emit(
            "trial_started", label, trial_number=self.number, epochs_planned=self.training.epochs
        )

    def run(self, meter: Meter, sampler: dict[str, float] | None) -> None:
        import torch

        from frugalml.study._trial import TrialPlan, run_metered_trial

        dataset = self.tuner._dataset
        if dataset is None:
            raise RuntimeError("the dataset is not loaded")
        self.start(sampler)
        plan = TrialPlan(self.trial_id, self.definition, threads=int(torch.get_num_threads()))
        outcome = run_metered_trial(
            plan,
            on_epoch=self.on_epoch,
            should_stop=self.should_stop,
            dataset=dataset,
            meter=meter,
            window=f"tune trial {self.number}",
            check=False,
        )
        self.finish(outcome, sampler)

    def finish(self, outcome: StudyTrialOutcome, sampler: dict[str, float] | None) -> None:
        """Record ``outcome`` in the study store and in Optuna (tell), and say so; an
        interrupted trial is given back (:func:`requeue`) and its interrupt raised again."""
        spec = self.spec
        state: TuneState = outcome.status
        error = outcome.error
        if state == "interrupted" and error == "interrupted":
            error = "interrupted by the user"
        row = dict(outcome.result or {})
        row.pop("concurrent_workers", None)  # the tuner runs one trial at a time, in-process
        row.update(
            tune_strategy=spec.strategy,
            tune_number=self.number,
            tune_params=json.dumps(self.record.params, sort_keys=True),
            tune_state=state,
            pruned=state == "pruned",
            tune_sampler_energy_j=(sampler or {}).get("energy_j"),
        )
        self.record.finish(state, outcome.result, len(outcome.trained_epochs), error)
        if state == "pruned":
            self.record.prune_reason = outcome.stop_reason
        self.record.write(self.trial)
        if state == "interrupted":
            error = "interrupted by the user; the rerun retries these parameters as a new trial"
        store_status = "complete" if state in ("complete", "pruned") else "failed"
        self.tuner.store.finish(self.trial_id, store_status, result=row, error=error)
        self._tell(state)
        if state == "interrupted":
            requeue(self.tuner.study, self.trial)
            raise outcome.cause or KeyboardInterrupt
        val_acc = self.record.val_accuracy
        self.tuner._emit(
            "trial_finished",
            f"trial {self.number} {state}"
            + (f": val accuracy {val_acc:.3f}" if val_acc is not None else "")
            + (f" ({error})" if error else ""),
            trial_number=self.number,
        )

    def _tell(self, state: TuneState) -> None:
        from optuna.trial import TrialState

        study = self.tuner.study
        if state == "pruned":
            study.tell(self.trial, state=TrialState.PRUNED)
            return
        if state != "complete":
            study.tell(self.trial, state=TrialState.FAIL)
            return
        val = self.record.val_accuracy
        energy = self.record.energy_j
        values = [val if o == "accuracy" else energy for o in self.spec.objectives]
        finite = [float(v) for v in values if v is not None and math.isfinite(v)]
        if len(finite) == len(values):
            study.tell(self.trial, finite if len(finite) > 1 else finite[0])
            return
        self.record.tune_state = "failed"
        self.record.error = "no finite objective value (empty validation split?)"
        self.record.write(self.trial)
        study.tell(self.trial, state=TrialState.FAIL)

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
from frugalml.tune._results import TRIAL_ATTR, TrialSummary
from frugalml.tune._space import apply_params

if TYPE_CHECKING:
    import optuna

    from frugalml.meter import Meter
    from frugalml.study._trial import TrialOutcome as StudyTrialOutcome
    from frugalml.train import TrainConfig
    from frugalml.tune._planning import CostPrediction
    from frugalml.tune._spec import TuneSpec
    from frugalml.tune._tuner import Tuner

logger = logging.getLogger(__name__)


def prediction_attrs(prediction: CostPrediction | None) -> dict[str, Any]:
    """A trial's predicted cost as record fields and study.db columns (none when nothing
    could be predicted yet: no trial ran, no calibration)."""
    if prediction is None:
        return {}
    return {
        "predicted_energy_j": prediction.energy_j,
        "predicted_co2_g": prediction.co2_g,
        "predicted_duration_s": prediction.duration_s,
        "predicted_by": prediction.method,
    }


def effective_pruner(spec: TuneSpec) -> str:
    """The pruner that decides over epochs (:func:`frugalml.tune._registry.epoch_pruner`):
    the strategy's own where it brings one (``sha``: successive halving, ``hyperband``),
    else the spec's."""
    from frugalml.tune._registry import epoch_pruner

    return epoch_pruner(spec).name


def trial_id_for(study: str, number: int, started: Any) -> str:
    text = f"tune|{study}|{number}|{started}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def trial_label(number: int, params: dict[str, Any]) -> str:
    inner = ", ".join(f"{k}={_short(v)}" for k, v in params.items())
    return f"tune #{number} | {inner}"


def _short(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def requeue(study: optuna.Study, trial: optuna.Trial | optuna.trial.FrozenTrial) -> None:
    """Give ``trial`` back to Optuna: its state goes from RUNNING back to WAITING, so the
    next ``ask`` (this run's or the rerun's) pops the same trial number again, and the
    search space's ``suggest`` returns the parameters it already holds (Optuna returns a
    trial's stored value for a parameter it has suggested before). The tuner's one way of
    giving a trial back (see :func:`give_back`)."""
    from optuna.trial import TrialState

    # Optuna's public API has no "give back": ``tell`` only finishes a trial. The storage
    # call is the one ``enqueue_trial`` and ``ask`` use themselves to move a trial between
    # WAITING and RUNNING.
    study._storage.set_trial_state_values(trial._trial_id, TrialState.WAITING)


def give_back(
    tuner: Tuner,
    trial: optuna.Trial | optuna.trial.FrozenTrial,
    store_trial_id: str | None,
    params: dict[str, Any] | None = None,
) -> None:
    """The interrupt policy (Ctrl-C, SIGTERM, a killed process), as the study worker's and
    the factorial's: the trial goes back to pending. Its ``study.db`` row becomes pending
    again (the rerun claims the same row, its epochs recorded as a new attempt) and the
    Optuna trial WAITING (:func:`requeue`), its record reduced to the row's id and the
    parameters, so the rerun re-asks the same trial with the same parameters first."""
    record: dict[str, Any] = {}
    if store_trial_id:
        record["store_trial_id"] = store_trial_id
        tuner.store.finish(store_trial_id, "pending", only_if_running=True)
    if params is not None:
        record["params"] = json.loads(json.dumps(params))
    tuner.study._storage.set_trial_user_attr(trial._trial_id, TRIAL_ATTR, record)
    requeue(tuner.study, trial)


def _forget_earlier_attempt(trial: optuna.Trial) -> None:
    """A trial given back and re-asked still holds the intermediate values its interrupted
    attempt reported (Optuna cannot delete them), and ``Trial.report`` ignores a step found in
    the trial's cached copy. Clearing that copy lets this attempt's reports write over the
    old steps (both storages update a step in place), so the pruner compares this attempt's
    values; the old attempt's steps beyond the last this one reaches stay in the storage."""
    frozen = trial._cached_frozen_trial  # the copy Trial.report and should_prune read
    frozen.intermediate_values.clear()


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
            "pruner": effective_pruner(spec),
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
        earlier = trial.user_attrs.get(TRIAL_ATTR) or {}
        # a trial given back (interrupted) and re-asked keeps its study.db row
        self.trial_id = str(
            earlier.get("store_trial_id")
            or trial_id_for(self.spec.name, trial.number, trial.datetime_start)
        )
        _forget_earlier_attempt(trial)
        self.record = TrialRecord()
        self._at_start: list[TrialSummary] | None = None  # the study's trials, at start()
        #: The completed trials' learning curves, for the pruner (from start()'s read).
        self.completed_curves: list[tuple[tuple[float, float], ...]] = []

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
            # what the study holds is what it held when this trial started (a running
            # trial's energy is booked when it ends): no read inside its meter window
            trials=self._at_start,
            trial_number=self.number,
            epoch=int(record["epoch"]),
            epochs_planned=self.training.epochs,
        )

    def should_stop(self, record: dict[str, Any]) -> str | None:
        """The pruning verdict after an epoch (run after :meth:`on_epoch`), or None: the
        run's :class:`frugalml.tune._prune.EpochPruner` decides."""
        point = (self.record.curve[-1][0], self.record.curve[-1][1])
        return self.tuner.pruner.should_stop(
            self.trial, int(record["epoch"]), point, self.completed_curves
        )

    # -- the trial --------------------------------------------------------------------------
    def start(
        self, sampler: dict[str, float] | None, *, prediction: CostPrediction | None = None
    ) -> None:
        """Register the trial in the study store, claim it, and say it runs; ``prediction``
        (its predicted cost) is kept on its record and its results row."""
        label = trial_label(self.number, self.params)
        store = self.tuner.store
        store.add_trials([(self.trial_id, self.spec.name, label, self.definition)])
        store.claim([self.trial_id], retry_failed=True)
        self.record = TrialRecord(
            store_trial_id=self.trial_id,
            params=json.loads(json.dumps(self.params)),
            epochs_planned=self.training.epochs,
            sampler=sampler or {},
            **prediction_attrs(prediction),
        )
        self.record.write(self.trial)
        self._at_start = self.tuner._trials()
        self.completed_curves = [
            t.intermediate for t in self._at_start if t.state == "complete" and t.intermediate
        ]
        self.tuner._emit(
            "trial_started",
            label,
            trials=self._at_start,
            trial_number=self.number,
            epochs_planned=self.training.epochs,
        )

    def run(
        self,
        meter: Meter,
        sampler: dict[str, float] | None,
        *,
        prediction: CostPrediction | None = None,
    ) -> None:
        import torch

        from frugalml.study._trial import TrialPlan, run_metered_trial

        dataset = self.tuner._dataset
        if dataset is None:
            raise RuntimeError("the dataset is not loaded")
        self.start(sampler, prediction=prediction)
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
        interrupted trial is given back (:func:`give_back`) and its interrupt raised again."""
        state: TuneState = outcome.status
        if state == "interrupted":
            self._give_back(outcome)
            raise outcome.cause or KeyboardInterrupt
        error = outcome.error
        row = dict(outcome.result or {})
        if row.get("concurrent_workers", 1) == 1:  # kept for --parallel N (tune._parallel)
            row.pop("concurrent_workers", None)
        row.update(
            tune_strategy=self.spec.strategy,
            tune_number=self.number,
            tune_params=json.dumps(self.record.params, sort_keys=True),
            tune_state=state,
            pruned=state == "pruned",
            tune_sampler_energy_j=(sampler or {}).get("energy_j"),
            tune_pruner=effective_pruner(self.spec),
            predicted_energy_j=self.record.predicted_energy_j,
            predicted_co2_g=self.record.predicted_co2_g,
            predicted_duration_s=self.record.predicted_duration_s,
            predicted_by=self.record.predicted_by,
        )
        self.record.finish(state, outcome.result, len(outcome.trained_epochs), error)
        if state == "pruned":
            self.record.prune_reason = outcome.stop_reason
        self.record.write(self.trial)
        store_status = "complete" if state in ("complete", "pruned") else "failed"
        self.tuner.store.finish(self.trial_id, store_status, result=row, error=error)
        self._tell(state)
        val_acc = self.record.val_accuracy
        self.tuner._emit(
            "trial_finished",
            f"trial {self.number} {state}"
            + (f": val accuracy {val_acc:.3f}" if val_acc is not None else "")
            + (f" ({error})" if error else ""),
            trial_number=self.number,
        )

    def _give_back(self, outcome: StudyTrialOutcome) -> None:
        """Ctrl-C or SIGTERM during the trial: back to pending (:func:`give_back`); the
        energy, CO2 and time the interrupted attempt spent (and the sampler's work that
        proposed it) stay counted, as overhead of the study."""
        sampler = self.record.sampler or {}
        window = (outcome.result or {}).get("measurement")
        spent = window if isinstance(window, dict) else {}
        self.tuner._add_overhead(
            float(spent.get("energy_j", 0.0)) + float(sampler.get("energy_j", 0.0)),
            float(spent.get("co2_g", 0.0)) + float(sampler.get("co2_g", 0.0)),
            float(spent.get("duration_s", 0.0)) + float(sampler.get("duration_s", 0.0)),
            what="given_back",
        )
        give_back(self.tuner, self.trial, self.trial_id, self.params)
        if outcome.error != "interrupted":  # the store, not the trial, failed (a full disk)
            logger.warning("trial %d given back: %s", self.number, outcome.error)
        self.tuner._emit(
            "trial_finished",
            f"trial {self.number} interrupted: given back, the rerun runs it again",
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

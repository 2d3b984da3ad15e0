"""The tuning loop: Optuna asks, the study trainer trains, the meter measures, both stores keep it.

Each trial runs in this process (a digits trial takes a second; a fresh process would cost
more than the training): Optuna's ``ask`` samples the parameters (in a meter window of its
own, since TPE's and GP's models cost energy too: ``sampler_energy_j``, counted in the
totals), :func:`frugalml.train.train` trains under one :class:`frugalml.meter.Meter` window
per trial (model set-up included: the objective's ``energy_j``), and ``tell`` records the
objective values. The same trial is a row of ``DIR/study.db`` (registered, claimed, every
epoch recorded, finished with :func:`frugalml.study.build_result` plus the tuning
fields), so ``frugalml study export`` and the report read tuning runs too.

Budgets (each counts everything already in the output directory, so a rerun continues):

- ``max_trials``: trials that ran (complete, pruned or failed).
- ``energy_kwh``, ``co2_g``, ``duration_s``: before a trial starts its cost is predicted as
  *the mean energy (CO2, time) per epoch of every epoch run so far* (whole-trial figures over
  epochs run, so model set-up and the sampler's work are included) *times the epochs the
  trial plans*; a trial that would take the total over the limit is not started. Before any
  trial has run, the per-epoch figure comes from a **calibration**: the spec's base
  configuration trained under the meter for :data:`CALIBRATION_EPOCHS` epochs on at most
  :data:`CALIBRATION_BATCHES` batches; the last (warm) epoch, its training part scaled to the
  full training split, is the figure. A budget below *the fewest epochs the search space
  allows times that figure* is refused before any training. Calibration energy counts
  against the budget and in the totals.

Pruning: Optuna's median or successive-halving pruner on the per-epoch validation accuracy
(``trial.report`` / ``trial.should_prune`` in the trainer's ``on_epoch``; the cumulative
energy for ``objective: energy``), or for accuracy against energy the dominance rule of
:mod:`._prune`. A pruned trial keeps the energy it used: its meter window is recorded even
though the training raised.

A trial whose training raises fails alone (Optuna state FAIL, the study goes on). Ctrl-C
stops after recording the running trial as interrupted; its parameters are queued so the
rerun tries them first.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from frugalml.errors import ConfigError
from frugalml.tune._outcome import TuneEvent, TuneOutcome, build_outcome, write_outputs
from frugalml.tune._planning import (
    Calibration,
    CostPrediction,
    budget_stop,
    calibrate,
    predict,
)
from frugalml.tune._prune import DominancePruner
from frugalml.tune._results import (
    TRIAL_ATTR,
    TrialSummary,
    energy_provenance,
    spent,
    summarize_trials,
)
from frugalml.tune._space import apply_params
from frugalml.tune._spec import TuneSpec
from frugalml.tune._storage import directory_lock, load_or_create_study
from frugalml.tune._strategies import (
    configure_search,
    make_pruner,
    make_sampler,
)
from frugalml.tune._trial import TuneTrial, requeue

if TYPE_CHECKING:
    import optuna

    from frugalml.data import ImageDataset
    from frugalml.meter import Meter
    from frugalml.study import StudyStore

__all__ = ["TuneEvent", "TuneOutcome", "Tuner", "run_tune"]

logger = logging.getLogger(__name__)

#: The Optuna study user attribute holding calibration (overhead) energy, CO2 and time.
OVERHEAD_ATTR = "frugalml_overhead"


def _cost(measurement: Any) -> dict[str, float]:
    """Energy (J), CO2 (g) and time (s) of a finished meter window, for the trial record."""
    if measurement is None:
        return {}
    return {
        "energy_j": measurement.energy_j,
        "co2_g": measurement.co2_g,
        "duration_s": measurement.duration_s,
    }


class Tuner:
    """Tune ``spec`` into ``out_dir`` (created if needed; an existing run is continued).

    ``on_event`` receives :class:`TuneEvent` s for progress displays. ``threads`` sets
    torch's intra-op threads for the run (default :data:`frugalml.train.DEFAULT_THREADS`,
    one, as for every training frugalml runs; restored afterwards). ``meter`` replaces the
    default :class:`frugalml.meter.Meter` (tests inject one); ``write_outputs=False`` skips
    the plot, CSV and JSON summary, ``plot=False`` only the plot. ``warm_up=False`` skips
    the short warm-up run before the first trial (counted as overhead) that otherwise keeps
    the process's one-off start-up costs out of the first trial's energy.
    """

    def __init__(
        self,
        spec: TuneSpec,
        out_dir: str | Path,
        *,
        on_event: Callable[[TuneEvent], None] | None = None,
        threads: int | None = None,
        meter: Meter | None = None,
        write_outputs: bool = True,
        plot: bool = True,
        warm_up: bool = True,
    ) -> None:
        if spec.strategy != "grid" and not spec.budget.is_set:
            raise ConfigError(
                f"the {spec.strategy} strategy has no end without a budget",
                fix="set budget: {max_trials: N} (and/or energy_kwh, co2_g, duration_s), "
                "or use --max-trials",
            )
        from frugalml.train import check_threads

        check_threads(threads)
        self.spec = spec
        self.out_dir = Path(out_dir)
        self.on_event = on_event or (lambda event: None)
        self.threads = threads
        self._meter = meter
        self.write_outputs = write_outputs
        self.plot = plot
        self.warm_up = warm_up
        self.dominance = (
            DominancePruner(**spec.pruner_options) if spec.pruner == "dominance" else None
        )
        self.calibration: Calibration | None = None
        #: Predicted energy (J) of a trial's params (the frugal strategy's cost model).
        self.cost_of: Callable[[dict[str, Any]], float | None] | None = None
        self._store: StudyStore | None = None
        self._study: optuna.Study | None = None
        self._dataset: ImageDataset | None = None

    # -- bookkeeping ------------------------------------------------------------------------
    @property
    def study(self) -> optuna.Study:
        if self._study is None:
            raise RuntimeError("the tuning study is not open")
        return self._study

    @property
    def store(self) -> StudyStore:
        if self._store is None:
            raise RuntimeError("the study store is not open")
        return self._store

    def _trials(self) -> list[TrialSummary]:
        return summarize_trials(self.study)

    def _overhead(self) -> tuple[float, float, float]:
        if self._study is None:
            return 0.0, 0.0, 0.0
        overhead = self._study.user_attrs.get(OVERHEAD_ATTR) or {}
        return (
            float(overhead.get("energy_j", 0.0)),
            float(overhead.get("co2_g", 0.0)),
            float(overhead.get("duration_s", 0.0)),
        )

    def _add_overhead(self, energy_j: float, co2_g: float, duration_s: float) -> None:
        energy, co2, duration = self._overhead()
        self.study.set_user_attr(
            OVERHEAD_ATTR,
            {
                "energy_j": energy + energy_j,
                "co2_g": co2 + co2_g,
                "duration_s": duration + duration_s,
                "what": "calibration before the first trial (includes one-off warm-up)",
            },
        )

    def _spent(self, trials: list[TrialSummary]) -> tuple[float, float, float]:
        energy, co2, duration = spent(trials)
        o_energy, o_co2, o_duration = self._overhead()
        return energy + o_energy, co2 + o_co2, duration + o_duration

    def _total(self) -> int | None:
        totals = []
        if self.spec.budget.max_trials is not None:
            totals.append(self.spec.budget.max_trials)
        if self.spec.strategy == "grid":
            totals.append(self.spec.search_space.grid_size())
        return min(totals) if totals else None

    def _emit(self, kind: str, message: str = "", **extra: Any) -> None:
        trials = self._trials()
        kinds = [t.energy_kind for t in trials]
        self.on_event(
            TuneEvent(
                kind=kind,
                trials_done=sum(t.counted for t in trials),
                trials_total=self._total(),
                energy_j=self._spent(trials)[0],
                energy_kind=energy_provenance(kinds),
                message=message,
                **extra,
            )
        )

    # -- set-up -----------------------------------------------------------------------------
    def _load_dataset(self) -> ImageDataset:
        from frugalml.data import load_dataset

        spec = self.spec
        dataset = load_dataset(
            spec.dataset, root=spec.data_root, download=spec.download, image_size=spec.image_size
        )
        if spec.fraction < 1.0:
            dataset = dataset.with_fraction(spec.fraction, seed=spec.training.seed)
        return dataset

    def _create_model(self, name: str, args: dict[str, Any], dataset: ImageDataset) -> Any:
        from frugalml.models import create_model

        return create_model(
            name,
            num_classes=dataset.num_classes,
            in_chans=dataset.channels,
            pretrained=self.spec.pretrained,
            pretrained_file=self.spec.pretrained_file,
            **args,
        )

    def check_models(self, dataset: ImageDataset) -> None:
        """Build the model at every bound and choice of each model parameter, so an unknown
        knob or model fails before any training, naming the parameter (the same candidates
        ``tune --validate`` checks without data: :meth:`TuneSpec.check_models`)."""
        self.spec.check_models(build=lambda name, args: self._create_model(name, args, dataset))

    def _recover(self) -> None:
        """Trials left RUNNING by a killed process: mark them failed (interrupted) and
        queue their parameters, so the rerun resumes them."""
        from optuna.trial import TrialState

        for trial in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            logger.info("trial %d was left running by an earlier run; retrying it", trial.number)
            trial_id = (trial.user_attrs.get(TRIAL_ATTR) or {}).get("store_trial_id")
            requeue(self.study, trial)
            if trial_id:
                self.store.finish(
                    str(trial_id),
                    "failed",
                    error="interrupted (the tuning process ended); the rerun retries these "
                    "parameters as a new trial",
                    only_if_running=True,
                )

    # -- costs and budget -------------------------------------------------------------------
    def calibrate(self, dataset: ImageDataset, meter: Meter) -> Calibration:
        """Measure an epoch of the base configuration (:func:`._planning.calibrate`)."""
        return calibrate(self.spec, dataset, meter, self._create_model)

    def predict(
        self,
        planned_epochs: int,
        trials: list[TrialSummary],
        params: dict[str, Any] | None = None,
    ) -> CostPrediction | None:
        """The predicted cost of a trial of ``planned_epochs`` (:func:`._planning.predict`);
        with ``params`` and a cost model (:attr:`cost_of`), the energy is that model's
        prediction for those params (CO2 and time scaled alike)."""
        predicted = self.cost_of(params) if params is not None and self.cost_of else None
        return predict(planned_epochs, trials, self.calibration, predicted)

    def budget_stop(
        self,
        planned_epochs: int,
        trials: list[TrialSummary],
        params: dict[str, Any] | None = None,
    ) -> str | None:
        """A reason not to start a trial of ``planned_epochs`` (with ``params``), or None."""
        if not self.spec.budget.has_resource_limit:
            return None
        prediction = self.predict(planned_epochs, trials, params)
        return budget_stop(self.spec.budget, self._spent(trials), prediction)

    def _refuse_if_too_small(self) -> None:
        """Before any training: refuse a budget below the cheapest possible trial."""
        low, _ = self.spec.search_space.epochs_range(self.spec.training.epochs)
        reason = self.budget_stop(low, [])
        if reason is not None:
            raise ConfigError(
                f"the budget ({self.spec.budget.describe()}) is too small for even one trial: "
                f"{reason}; the cheapest trial plans {low} epoch(s)",
                fix="raise the budget, lower training.epochs, or tune on a smaller fraction",
            )

    # -- one trial --------------------------------------------------------------------------
    def _run_trial(
        self,
        trial: optuna.Trial,
        params: dict[str, Any],
        meter: Meter,
        sampler: dict[str, float] | None = None,
    ) -> None:
        TuneTrial(self, trial, params).run(meter, sampler)

    # -- the loop ---------------------------------------------------------------------------
    def _counted(self, trials: list[TrialSummary]) -> int:
        return sum(t.counted for t in trials)

    def _sampler_seed(self, existing: int) -> int:
        """Grid keeps the spec's seed (it fixes the grid order that grid ids refer to);
        other samplers continue with a seed derived from the trials already in storage, so
        a resumed random search does not replay the first suggestions."""
        if self.spec.strategy == "grid" or existing == 0:
            return self.spec.seed
        return (self.spec.seed * 1_000_003 + existing) % (2**32)

    def run(self) -> TuneOutcome:
        from frugalml.train import using_threads

        self.out_dir.mkdir(parents=True, exist_ok=True)
        with using_threads(self.threads), directory_lock(self.out_dir):
            return self._run_locked()

    def _run_locked(self) -> TuneOutcome:
        from frugalml.meter import CarbonConfig, Meter, MeterConfig
        from frugalml.study import StudyStore

        spec = self.spec
        self._check_directory()
        self._study, storage_file = load_or_create_study(
            self.out_dir, spec.name, spec.directions, pruner=make_pruner(spec)
        )
        self.study.sampler = make_sampler(spec, self._sampler_seed(len(self.study.trials)))
        self._store = StudyStore(self.out_dir)
        notes: list[str] = []
        previous = self.study.user_attrs.get("strategy")
        if previous is not None and previous != spec.strategy:
            notes.append(
                f"this study was started with the {previous} strategy and continues with "
                f"{spec.strategy}"
            )
            logger.warning(notes[-1])
        self.study.set_user_attr("strategy", spec.strategy)
        self.study.set_user_attr("spec", json.loads(json.dumps(spec.to_dict())))
        self.store.save_spec({"kind": "tune", **spec.to_dict()})
        self._recover()

        before = {t.number for t in self._trials()}
        self._dataset = self._load_dataset()
        self.check_models(self._dataset)
        stop_reason = ""
        interrupted = False
        meter = self._meter or Meter(MeterConfig(carbon=CarbonConfig(**spec.carbon)))
        owns_meter = self._meter is None
        try:
            if owns_meter:
                meter.start()
            self._emit(
                "started", f"{spec.strategy} on {spec.name}: budget {spec.budget.describe()}"
            )
            trials = self._trials()
            needs_calibration = spec.budget.has_resource_limit and not any(
                t.epochs > 0 and math.isfinite(t.energy_j) for t in trials
            )
            # A budget already spent (a rerun of a finished study) starts nothing: no
            # calibration, no warm-up, no energy spent on a run of 0 trials.
            spent = self._spent_already(trials, needs_calibration)
            if spent is not None:
                stop_reason = spent
            elif needs_calibration:
                self.calibration = self.calibrate(self._dataset, meter)
                c = self.calibration
                self._add_overhead(c.spent_energy_j, c.spent_co2_g, c.spent_duration_s)
                self._emit("calibrated", c.method)
                self._refuse_if_too_small()
            elif self.warm_up:
                # A process pays one-off costs (lazy initialisation, first kernels) on its first
                # training steps. Without a warm-up the first trial of every run carries them
                # (measured here: 16.9 J against 1.7 J for the same trial run later), which
                # skews its energy objective and the pruning decisions compared against it.
                warm = self.calibrate(self._dataset, meter)
                self._add_overhead(warm.spent_energy_j, warm.spent_co2_g, warm.spent_duration_s)
            if spent is None:  # start-up trials scaled to the budget, frugal's cost model
                notes.extend(configure_search(self, self._sampler_seed(len(self.study.trials))))
            try:
                if spent is None:
                    stop_reason = self._loop(meter)
            except KeyboardInterrupt:
                interrupted = True
                stop_reason = "interrupted by the user; rerun the same command to resume"
                self._fail_running()
        finally:
            if owns_meter:
                meter.close()
            self.store.close()
        self._emit("stopped", stop_reason)
        outcome = self._outcome(storage_file, stop_reason, interrupted, before, notes)
        if self.write_outputs:
            write_outputs(outcome, plot=self.plot)
        self._emit("finished", stop_reason)
        return outcome

    def _check_directory(self) -> None:
        """Refuse an --out that holds a study, a factorial or another tuning study (another
        name): tuning there would merge the two. Read-only; nothing is written first."""
        from frugalml.study import STORE_FILENAME, StudyStore

        if not (self.out_dir / STORE_FILENAME).is_file():
            return
        with StudyStore(self.out_dir, create=False, read_only=True) as store:
            previous = store.latest_spec() or {}
            held = bool(store.trial_ids())
        if not previous and not held:
            return
        if previous.get("kind") != "tune":
            what = "factorial experiment" if "factorial" in previous else "study"
            raise ConfigError(
                f"{self.out_dir} holds a {what} ({previous.get('name', '?')!r}), not a tuning "
                "run; tuning there would mix the two",
                fix="give the tuning run its own --out directory",
            )
        if previous.get("name") != self.spec.name:
            raise ConfigError(
                f"{self.out_dir} holds the tuning study {previous.get('name')!r}, not "
                f"{self.spec.name!r}; tuning there would merge the two",
                fix="use another --out directory, or the same name to continue that study",
            )

    def _spent_already(self, trials: list[TrialSummary], uncalibrated: bool) -> str | None:
        """Why not even one trial may start, known before any calibration; else None."""
        spec = self.spec
        counted = self._counted(trials)
        if spec.budget.max_trials is not None and counted >= spec.budget.max_trials:
            return f"max_trials reached: {counted} of {spec.budget.max_trials} trials ran"
        if uncalibrated:
            return None  # spending is not predictable yet; the calibration decides
        low, _ = spec.search_space.epochs_range(spec.training.epochs)
        return self.budget_stop(low, trials)

    def _fail_running(self) -> None:
        """After Ctrl-C outside a trial's training: leave no trial RUNNING."""
        from optuna.trial import TrialState

        for trial in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            requeue(self.study, trial)

    def _loop(self, meter: Meter) -> str:

        spec = self.spec
        import optuna

        sampler = self.study.sampler
        grid_sampler = sampler if isinstance(sampler, optuna.samplers.GridSampler) else None
        while True:
            trials = self._trials()
            counted = self._counted(trials)
            if spec.budget.max_trials is not None and counted >= spec.budget.max_trials:
                return f"max_trials reached: {counted} of {spec.budget.max_trials} trials ran"
            waiting = any(t.state == "waiting" for t in trials)
            if grid_sampler is not None and not waiting and grid_sampler.is_exhausted(self.study):
                return f"the grid of {spec.search_space.grid_size()} points is exhausted"
            low, _ = spec.search_space.epochs_range(spec.training.epochs)
            reason = self.budget_stop(low, trials)
            if reason is not None:
                logger.debug("not starting another trial: %s", reason)  # said once, in the outcome
                return reason
            # The sampler's own work (TPE's and GP's models) is energy spent on tuning too.
            with meter.window("tune sampler") as sampler_window:
                trial = self.study.ask()
                try:
                    params = spec.search_space.suggest(trial, grid_mode=spec.strategy == "grid")
                except KeyboardInterrupt:
                    trial.set_user_attr(TRIAL_ATTR, {"tune_state": "interrupted"})
                    raise
            sampler = _cost(sampler_window.measurement)
            try:
                planned = apply_params(params, spec.training)[0].epochs
                reason = self.budget_stop(planned, trials, params)
                if reason is not None:
                    trial.set_user_attr(
                        TRIAL_ATTR,
                        {
                            "tune_state": "skipped",
                            "params": json.loads(json.dumps(params)),
                            "error": f"not started: {reason}",
                            "sampler": sampler,
                        },
                    )
                    requeue(self.study, trial)
                    logger.debug("trial %d not started: %s", trial.number, reason)
                    return reason
            except KeyboardInterrupt:
                trial.set_user_attr(TRIAL_ATTR, {"tune_state": "interrupted"})
                raise
            self._run_trial(trial, params, meter, sampler)

    # -- results --------------------------------------------------------------------------
    def _outcome(
        self,
        storage_file: Path,
        stop_reason: str,
        interrupted: bool,
        before: set[int],
        notes: list[str],
    ) -> TuneOutcome:
        return build_outcome(
            self.spec,
            self.out_dir,
            storage_file,
            self._trials(),
            overhead=self._overhead(),
            calibration=self.calibration,
            stop_reason=stop_reason,
            interrupted=interrupted,
            before=before,
            notes=notes,
        )


def run_tune(
    spec: TuneSpec,
    out_dir: str | Path,
    *,
    on_event: Callable[[TuneEvent], None] | None = None,
    threads: int | None = None,
    meter: Meter | None = None,
    write_outputs: bool = True,
    plot: bool = True,
    warm_up: bool = True,
) -> TuneOutcome:
    """Run (or continue) tuning ``spec`` into ``out_dir``; the options are
    :class:`Tuner`'s."""
    return Tuner(
        spec,
        out_dir,
        on_event=on_event,
        threads=threads,
        meter=meter,
        write_outputs=write_outputs,
        plot=plot,
        warm_up=warm_up,
    ).run()

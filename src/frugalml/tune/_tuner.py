"""The tuning loop: Optuna asks, the study trainer trains, the meter measures, both stores keep it.

Each trial runs in this process (a digits trial takes a second; a fresh process would cost
more than the training): Optuna's ``ask`` samples the parameters (in a meter window of its
own, since TPE's and GP's models cost energy too: ``sampler_energy_j``, counted in the
totals), :func:`frugalml.study.run_metered_trial` trains under one
:class:`frugalml.meter.Meter` window per trial (model set-up included: the objective's
``energy_j``), and ``tell`` records the objective values. The same trial is a row of
``DIR/study.db`` (registered, claimed, every epoch recorded, finished with the tuning
fields), so ``frugalml study export`` and the report read tuning runs too.

The parts: :class:`Tuner` (this module: options, bookkeeping, the run), :mod:`._setup`
(directory check, dataset, calibration or warm-up), :mod:`._loop` (ask, budget check, run,
give back), :mod:`._trial` (one trial), :mod:`._record` (its record), :mod:`._planning`
(calibrate, predict, stop), :mod:`._outcome` (the outcome and its files).

Budgets (each counts everything already in the output directory, so a rerun continues):
``max_trials`` counts trials that ran (complete, pruned or failed); ``energy_kwh``,
``co2_g``, ``duration_s`` stop before a trial whose predicted cost would take the total over
the limit (:mod:`._planning`: per-epoch figures of the trials so far, else a calibration of
the base configuration, counted as overhead). A budget below the cheapest trial is refused
before any training.

Pruning: the pruner of the spec (or of the ``sha`` / ``hyperband`` strategy) decides after
every epoch on the validation accuracy (the cumulative energy for ``objective: energy``), or
for accuracy against energy the dominance rule of :mod:`._prune`. A pruned trial keeps the
energy it used.

A trial whose training raises fails alone (Optuna state FAIL, the study goes on). Ctrl-C or
SIGTERM gives the running trial back, as a study worker does: its study.db row goes back to
pending and the Optuna trial to WAITING (:func:`._trial.give_back`); the rerun re-asks that
same trial first (Optuna's ``ask`` pops waiting trials, and ``suggest`` returns the
parameters the trial holds) and runs it on the same row, as a new attempt. What the
interrupted attempt spent stays counted (overhead, part ``given_back``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from frugalml.errors import ConfigError
from frugalml.tune._loop import recover, release_running, run_loop
from frugalml.tune._outcome import (
    TuneEvent,
    TuneOutcome,
    build_outcome,
    progress_event,
    write_outputs,
)
from frugalml.tune._parallel import resolve_executor, run_parallel
from frugalml.tune._planning import (
    OVERHEAD_ATTR,
    Calibration,
    CostPrediction,
    add_overhead,
    budget_stop,
    calibrate,
    overhead_of,
    predict,
)
from frugalml.tune._prune import EpochPruner
from frugalml.tune._registry import epoch_pruner, get_strategy
from frugalml.tune._results import (
    TrialSummary,
    spent,
    summarize_trials,
)
from frugalml.tune._setup import (
    check_directory,
    keep_notes,
    load_dataset,
    prepare,
    sigterm_as_interrupt,
)
from frugalml.tune._spec import TuneSpec
from frugalml.tune._storage import directory_lock, load_or_create_study
from frugalml.tune._strategies import (
    configure_search,
    make_pruner,
    make_sampler,
)
from frugalml.tune._trial import requeue as requeue  # re-exported: the one give-back

if TYPE_CHECKING:
    import optuna

    from frugalml.data import ImageDataset
    from frugalml.meter import Meter
    from frugalml.study import StudyStore
    from frugalml.study._executors import ExecutorConfig

__all__ = ["OVERHEAD_ATTR", "TuneEvent", "TuneOutcome", "Tuner", "run_tune"]

logger = logging.getLogger(__name__)


class Tuner:
    """Tune ``spec`` into ``out_dir`` (created if needed; an existing run is continued).

    ``on_event`` receives :class:`TuneEvent` s for progress displays. ``threads`` sets
    torch's intra-op threads for the run (default :data:`frugalml.train.DEFAULT_THREADS`,
    one, as for every training frugalml runs; restored afterwards). ``meter`` replaces the
    default :class:`frugalml.meter.Meter` (tests inject one); ``write_outputs=False`` skips
    the plot, CSV and JSON summary, ``plot=False`` only the plot. ``warm_up=False`` skips
    the short warm-up run before the first trial (counted as overhead) that otherwise keeps
    the process's one-off start-up costs out of the first trial's energy. ``parallel``
    (default: the spec's, 1) trials in flight on ``executor`` (``local`` or ``ray``, or an
    :class:`frugalml.study._executors.ExecutorConfig`; default: the spec's ``executor:``) at
    ``address`` (Ray): :mod:`._parallel`; one trial on ``local`` runs in this process.
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
        parallel: int | None = None,
        executor: ExecutorConfig | str | None = None,
        address: str | None = None,
    ) -> None:
        if not get_strategy(spec.strategy).finite and not spec.budget.is_set:
            raise ConfigError(
                f"the {spec.strategy} strategy has no end without a budget",
                fix="set budget: {max_trials: N} (and/or energy_kwh, co2_g, duration_s), "
                "or pass max_trials=N",
            )
        from frugalml.train import check_threads

        check_threads(threads)
        #: Trials in flight and where they run (:mod:`._parallel`); 1 on ``local``: in here.
        self.parallel, self.executor = resolve_executor(spec, parallel, executor, address)
        self.spec = spec
        self.out_dir = Path(out_dir)
        self.on_event = on_event or (lambda event: None)
        self.threads = threads
        self._meter = meter
        self.write_outputs = write_outputs
        self.plot = plot
        self.warm_up = warm_up and not self.runs_apart  # a warm-up here warms no trial
        #: What decides after each epoch whether a trial stops (the strategy's own pruner
        #: or the spec's, one interface: :class:`._prune.EpochPruner`).
        self.pruner: EpochPruner = epoch_pruner(spec)
        self.calibration: Calibration | None = None
        #: Predicted energy (J) of a trial's params (the frugal strategy's cost model), given
        #: the trials as just read (None: it reads them itself).
        self.cost_of: Callable[[dict[str, Any], list[TrialSummary] | None], float | None] | None = (
            None
        )
        self._store: StudyStore | None = None
        self._study: optuna.Study | None = None
        #: The study's recorded overhead as last read or written by this tuner (None: read
        #: it). Only this process writes it while it holds the directory's lock.
        self._overhead_read: tuple[optuna.Study | None, tuple[float, float, float]] | None = None
        self._dataset: ImageDataset | None = None

    @property
    def runs_apart(self) -> bool:
        """Whether trials run in processes of their own (``--parallel N``, ``ray``)."""
        return self.parallel > 1 or self.executor.kind != "local"

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

    def trials(self) -> list[TrialSummary]:
        """Every trial of the study, as recorded (:class:`TrialSummary`)."""
        return summarize_trials(self.study)

    _trials = trials

    def _overhead(self) -> tuple[float, float, float]:
        """The overhead recorded on the study (a study attribute, read once and again only
        after this tuner adds to it or opens another study)."""
        cached = self._overhead_read
        if cached is None or cached[0] is not self._study:
            cached = (self._study, overhead_of(self._study))
            self._overhead_read = cached
        return cached[1]

    def _add_overhead(
        self, energy_j: float, co2_g: float, duration_s: float, what: str = "calibration"
    ) -> None:
        add_overhead(self.study, energy_j, co2_g, duration_s, what)
        self._overhead_read = None

    def spent_total(self, trials: list[TrialSummary]) -> tuple[float, float, float]:
        """J, g and s spent: ``trials`` (their sampler work included) plus the overhead."""
        energy, co2, duration = spent(trials)
        o_energy, o_co2, o_duration = self._overhead()
        return energy + o_energy, co2 + o_co2, duration + o_duration

    _spent = spent_total

    def _total(self) -> int | None:
        totals = []
        if self.spec.budget.max_trials is not None:
            totals.append(self.spec.budget.max_trials)
        if get_strategy(self.spec.strategy).finite:
            totals.append(self.spec.search_space.grid_size())
        return min(totals) if totals else None

    def _emit(
        self,
        kind: str,
        message: str = "",
        *,
        trials: list[TrialSummary] | None = None,
        **extra: Any,
    ) -> None:
        """Send a progress event; ``trials``: the study's trials as just read (None: read
        them now)."""
        trials = self._trials() if trials is None else trials
        spent_j = self._spent(trials)[0]
        self.on_event(progress_event(kind, trials, self._total(), spent_j, message, **extra))

    # -- set-up -----------------------------------------------------------------------------
    def _load_dataset(self) -> ImageDataset:
        return load_dataset(self.spec)

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
        predicted = self.cost_of(params, trials) if params is not None and self.cost_of else None
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

    # -- the run ----------------------------------------------------------------------------
    @property
    def grid_sampler(self) -> optuna.samplers.GridSampler | None:
        """The study's sampler when it walks a finite grid (its exhaustion ends the run)."""
        import optuna

        sampler = self.study.sampler
        return sampler if isinstance(sampler, optuna.samplers.GridSampler) else None

    def _sampler_seed(self, existing: int) -> int:
        """A finite grid keeps the spec's seed (it fixes the grid order grid ids refer to);
        other samplers continue with a seed derived from the trials already in storage, so
        a resumed random search does not replay the first suggestions."""
        if get_strategy(self.spec.strategy).finite or existing == 0:
            return self.spec.seed
        return (self.spec.seed * 1_000_003 + existing) % (2**32)

    def run(self) -> TuneOutcome:
        from frugalml.train import using_threads

        self.out_dir.mkdir(parents=True, exist_ok=True)
        with using_threads(self.threads), directory_lock(self.out_dir), sigterm_as_interrupt():
            return self._run_locked()

    def _open(self) -> tuple[Path, list[str]]:
        """Open (or create) both stores, record the spec and recover what a killed process
        left running; returns the Optuna storage file and the notes so far."""
        from frugalml.study import StudyStore

        spec = self.spec
        check_directory(self.out_dir, spec.name)
        self._study, storage_file = load_or_create_study(
            self.out_dir, spec.name, spec.directions, pruner=make_pruner(spec)
        )
        self.study.sampler = make_sampler(
            spec, self._sampler_seed(len(self.study.trials)), in_flight=self.parallel
        )
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
        recover(self)
        return storage_file, notes

    def _run_locked(self) -> TuneOutcome:
        from frugalml.meter import CarbonConfig, Meter, MeterConfig

        spec = self.spec
        storage_file, notes = self._open()
        before = {t.number for t in self._trials()}
        self._dataset = load_dataset(spec)
        self.check_models(self._dataset)
        interrupted = False
        meter = self._meter or Meter(MeterConfig(carbon=CarbonConfig(**spec.carbon)))
        owns_meter = self._meter is None
        try:
            if owns_meter:
                meter.start()
            self._emit(
                "started", f"{spec.strategy} on {spec.name}: budget {spec.budget.describe()}"
            )
            stop_reason, interrupted = self._search(meter, notes)
            notes = keep_notes(self.study, notes)
        finally:
            if owns_meter:
                meter.close()
            self.store.close()
        self._emit("stopped", stop_reason)
        outcome = build_outcome(
            spec,
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
        if self.write_outputs:
            write_outputs(outcome, plot=self.plot)
        self._emit("finished", stop_reason)
        return outcome

    def _search(self, meter: Meter, notes: list[str]) -> tuple[str, bool]:
        """Calibrate or warm up, then the ask/tell loop: why it stopped, and whether by
        an interrupt (Ctrl-C: no trial is left running)."""
        if self._dataset is None:
            raise RuntimeError("the dataset is not loaded")
        spent = prepare(self, self._dataset, meter)
        if spent is not None:
            return spent, False
        # start-up trials scaled to the budget, frugal's cost model
        notes.extend(configure_search(self, self._sampler_seed(len(self.study.trials))))
        try:
            if self.runs_apart:
                return run_parallel(self, meter, notes), False
            return run_loop(self, meter), False
        except KeyboardInterrupt:
            release_running(self)
            return "interrupted by the user; rerun the same command to resume", True

    # -- results --------------------------------------------------------------------------


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
    parallel: int | None = None,
    executor: ExecutorConfig | str | None = None,
    address: str | None = None,
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
        parallel=parallel,
        executor=executor,
        address=address,
    ).run()

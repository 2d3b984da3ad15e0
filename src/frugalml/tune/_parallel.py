"""Several tuning trials in flight: ``frugalml tune SPEC --parallel N [--executor local|ray]``.

The spec's ``workers: N`` means the same as a study's (trials in flight; ``--parallel N``
overrides it); a study's ``parallel:`` section (ranks per trial) is refused in a tuning spec.

Optuna's ask and tell stay in the driver (the ``frugalml`` process), which alone writes
``DIR/study.db`` and the Optuna storage. Each trial runs the one trial runner
(:func:`frugalml.study.run_metered_trial`) in a process of its own:

- ``local``: a process per trial forked from the study executors' warm forkserver (torch,
  timm and frugalml already imported: :data:`frugalml.study._executors.PRELOAD`); a
  :func:`multiprocessing.Pipe` carries the epochs to the driver and its verdicts back
  (``executor: {warm: false}``: a fresh interpreter per trial instead). A script that
  calls :func:`frugalml.tune.run_tune` with ``parallel`` needs Python's usual
  ``if __name__ == "__main__":`` guard, as for any forkserver or spawn process.
- ``ray``: a Ray task per trial; one small channel actor (no CPU of its own) holds the
  epochs the tasks push and the verdicts the driver posts.

Pruning with remote trials: after each epoch the trial pushes its record and waits (at most
:data:`VERDICT_WAIT_S`) for the driver's verdict on that epoch. The driver records the
epoch (:meth:`TuneTrial.on_epoch`), asks the pruner (``trial.report`` /
``trial.should_prune``, or the dominance rule: :meth:`TuneTrial.should_stop`) and posts the
reason or None; a trial told to stop ends there, ``pruned``, with the energy it spent
booked by its own meter. A verdict that comes late is taken at the next epoch.

Budgets count the trials in flight, by the one budget rule
(:func:`frugalml.tune._planning.budget_stop`, :func:`frugalml.meter.launch_no_more`):
``max_trials`` counts running trials as if they had ended, and before a launch the predicted
cost of every trial in flight (:func:`frugalml.tune._planning.predict`) is added to what was
spent. A launch refused while trials run waits for one of them to end and asks again; only
with nothing in flight does the refusal end the run. ``duration_s`` adds the trials' own
times, so N trials in flight spend it N times as fast as the wall clock.

Ctrl-C gives the running trials back as one in-process trial is
(:func:`frugalml.tune._trial.give_back`: stopped, the study.db row pending, the Optuna trial
WAITING, re-asked first by the rerun). A trial whose process dies fails alone,
booking what its recorded windows measured (:func:`frugalml.study._results.killed_result`);
on Ray, a trial whose worker dies is run again once, as a study's trials are
(:data:`frugalml.study._executors.RAY_ATTEMPTS`), then failed with the reason.

Energy: trials on one host side by side see each other on machine-wide counters (RAPL per
socket, NVML per GPU). Each row records ``concurrent_workers`` (N) and says so in its
``energy_note``; the run's outcome carries the same note. With N > 1 on the local executor
the driver attributes those counters as a study's runner does (the same code:
``study._runner``'s host attribution, :data:`frugalml.study._runner.ATTRIBUTION_RULE_PUBLISHED`):
one host sampler, the only reader of those counters, each trial joining at launch with its
process and leaving when its outcome comes back; the trial's own meter reads the share the
sampler publishes for it (``DIR/attribution/<trial>.json``); its row gets
``attributed_energy_j`` (kind, source, rule, components) by
:meth:`frugalml.study.StudyStore.merge_result`. Ray trials, and a machine without shared
counters, get ``attributed_energy_j: null`` and an ``attribution_rule`` saying why not.
"""

from __future__ import annotations

import contextlib
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from frugalml.errors import ConfigError
from frugalml.study._executors import ExecutorConfig, import_ray
from frugalml.study._runner import HostAttribution
from frugalml.tune._planning import CostPrediction, budget_stop, predict, target_reached
from frugalml.tune._remote import (
    POLL_S,
    VERDICT_WAIT_S,
    LocalBackend,
    LocalHandle,
    Slot,
    TrialBackend,
)
from frugalml.tune._remote_ray import RayBackend
from frugalml.tune._results import TrialSummary
from frugalml.tune._space import apply_params
from frugalml.tune._trial import TuneTrial

if TYPE_CHECKING:
    import optuna

    from frugalml.meter import Meter
    from frugalml.study._trial import TrialOutcome
    from frugalml.tune._spec import TuneBudget, TuneSpec
    from frugalml.tune._tuner import Tuner

__all__ = [
    "VERDICT_WAIT_S",
    "concurrency_note",
    "in_flight_stop",
    "resolve_executor",
    "run_parallel",
]

logger = logging.getLogger(__name__)

#: How long Ctrl-C waits for the stopped trials to report back before killing them.
GIVE_BACK_S = 15.0


def concurrency_note(workers: int, kind: str) -> str:
    """What an energy figure of a trial run beside ``workers - 1`` others means."""
    return (
        f"{workers} trials ran at once ({kind} executor, concurrent_workers={workers}): a "
        "figure read from a machine-wide counter (RAPL per socket, NVML per GPU) by the "
        "trial itself includes the other trials on the same host, so such figures overlap "
        "and their sum over-counts that counter; a component of kind 'attributed' is the "
        "trial's share of the host sampler's reading instead, and does not overlap "
        "(attribution_rule says how, or why not); estimates from a trial's own process-tree "
        "CPU time do not overlap"
    )


def in_flight_stop(
    budget: TuneBudget,
    used: tuple[float, float, float],
    in_flight: list[CostPrediction | None],
    prediction: CostPrediction | None,
) -> str | None:
    """A reason not to launch the next trial (predicted as ``prediction``) when ``used``
    (J, g, s) is spent and the trials ``in_flight`` are predicted to cost what they list:
    :func:`frugalml.tune._planning.budget_stop` over spent plus in flight, or None."""
    flying = [p for p in in_flight if p is not None]
    total = (
        used[0] + sum(p.energy_j for p in flying),
        used[1] + sum(p.co2_g for p in flying),
        used[2] + sum(p.duration_s for p in flying),
    )
    reason = budget_stop(budget, total, prediction)
    if reason is not None and in_flight:
        reason += f" (with the {len(in_flight)} trial(s) in flight counted as predicted)"
    return reason


def make_backend(config: ExecutorConfig) -> TrialBackend:
    """Where the trials run: Ray tasks, or processes on this machine."""
    if config.kind == "ray":
        return RayBackend(config)
    return LocalBackend(warm=config.warm)


class ParallelTuning:
    """The driver's loop with ``parallel`` trials in flight on ``config``'s executor."""

    def __init__(self, tuner: Tuner, parallel: int, config: ExecutorConfig) -> None:
        self.tuner = tuner
        self.parallel = parallel
        self.backend = make_backend(config)
        self.running: dict[str, Slot] = {}
        self.held: tuple[optuna.Trial, dict[str, Any], dict[str, float]] | None = None
        self.blocked = False  # a launch was refused: wait for a trial to end
        self.skipped = 0  # unaffordable configurations skipped in a row
        self.logs = Path(tuner.out_dir) / "logs"
        #: The study runner's host attribution (one host sampler, trials joining at launch
        #: with their process and leaving when their outcome comes back), with N > 1.
        self.attribution: HostAttribution | None = None

    # -- budget -----------------------------------------------------------------------------
    def _trials(self) -> list[TrialSummary]:
        return self.tuner.trials()

    def _predict(
        self, planned: int, trials: list[TrialSummary], params: dict[str, Any] | None
    ) -> CostPrediction | None:
        cost_of = self.tuner.cost_of
        predicted = cost_of(params, trials) if params is not None and cost_of else None
        return predict(planned, trials, self.tuner.calibration, predicted)

    def budget_stop(
        self, planned: int, trials: list[TrialSummary], params: dict[str, Any] | None = None
    ) -> str | None:
        """The one budget rule with the trials in flight counted as spent (predicted)."""
        budget = self.tuner.spec.budget
        if not budget.has_resource_limit:
            return None
        flying = [self._predict(s.planned, trials, s.trial.params) for s in self.running.values()]
        return in_flight_stop(
            budget,
            self.tuner.spent_total(trials),
            flying,
            self._predict(planned, trials, params),
        )

    def _stop_before_asking(self, trials: list[TrialSummary]) -> str | None:
        spec = self.tuner.spec
        reached = target_reached(spec.budget, trials)
        if reached is not None:
            return reached
        limit = spec.budget.max_trials
        counted = sum(t.counted for t in trials)
        if limit is not None and counted + len(self.running) >= limit:
            flight = f" and {len(self.running)} in flight" if self.running else ""
            return f"max_trials reached: {counted} of {limit} trials ran{flight}"
        grid = self.tuner.grid_sampler
        waiting = any(t.state == "waiting" for t in trials)
        if grid is not None and not waiting and grid.is_exhausted(self.tuner.study):
            return f"the grid of {spec.search_space.grid_size()} points is exhausted"
        low, _ = spec.search_space.epochs_range(spec.training.epochs)
        return self.budget_stop(low, trials)

    # -- launching --------------------------------------------------------------------------
    def _launch_next(self, meter: Meter) -> str | None:
        """Start one more trial, or say why not (None: started). A configuration the budget
        cannot afford with trials in flight is held until one ends; with none in flight it
        is skipped and another asked for, up to ``MAX_SKIPS_IN_A_ROW``, as one trial at a
        time does (:func:`frugalml.tune._loop.run_loop`)."""
        from frugalml.tune._loop import MAX_SKIPS_IN_A_ROW, ask, skip

        while True:
            trials = self._trials()
            if self.held is None:
                reason = self._stop_before_asking(trials)
                if reason is not None:
                    if self.skipped:
                        reason += f" ({self.skipped} unaffordable configuration(s) skipped before)"
                    return reason
                self.held = ask(self.tuner, meter)
            trial, params, sampler = self.held
            planned = apply_params(params, self.tuner.spec.training)[0].epochs
            prediction = self._predict(planned, trials, params)
            reason = self.budget_stop(planned, trials, params)
            if reason is None:
                break
            if self.running:  # what is in flight may free budget (or spend less than said)
                return reason
            self.held = None
            skip(self.tuner, trial, params, sampler, reason, prediction)
            self.skipped += 1
            if self.skipped >= MAX_SKIPS_IN_A_ROW:
                return (
                    f"{self.skipped} configurations in a row were predicted to cost more than "
                    f"the budget has left, so no cheaper one was tried (the last: {reason})"
                )
        self.held = None
        self.skipped = 0
        self._launch(TuneTrial(self.tuner, trial, params), sampler, planned, prediction)
        return None

    def _launch(
        self,
        trial: TuneTrial,
        sampler: dict[str, float],
        planned: int,
        prediction: CostPrediction | None,
    ) -> None:
        from frugalml.study._trial import TrialPlan

        trial.start(sampler, prediction=prediction)
        self.logs.mkdir(parents=True, exist_ok=True)
        log_path = str(self.logs / f"{trial.trial_id}.log")
        attribution = self.attribution if self.backend.kind == "local" else None
        # a local trial meters its share as the host sampler publishes it (one reader per
        # counter); a Ray trial keeps its own meter (it may run on another node)
        publish = attribution.publish_path(trial.trial_id) if attribution is not None else None
        plan = TrialPlan(
            trial.trial_id,
            trial.definition,
            threads=self._threads(),
            workers=self.parallel,
            spawned_at=time.time(),
            attribution_path=publish,
        )
        handle = self.backend.submit(plan, log_path)
        if attribution is not None and isinstance(handle, LocalHandle):
            attribution.join(trial.trial_id, int(handle.process.pid), publish)
        if self.backend.kind == "local":
            self.tuner.store.set_log_path(trial.trial_id, log_path)
        self.running[trial.trial_id] = Slot(trial, sampler, planned, handle, time.time())

    def _threads(self) -> int:
        import torch

        return int(torch.get_num_threads())  # the driver's, under the run's --threads

    # -- what comes back --------------------------------------------------------------------
    def _on_epoch(self, slot: Slot, record: dict[str, Any], *, decide: bool = True) -> None:
        epoch = int(record["epoch"])
        if epoch in slot.records:
            return
        slot.records[epoch] = record
        slot.trial.on_epoch(record)
        if epoch == 0 or not decide or epoch >= slot.trial.training.epochs:
            return  # train asks for no verdict after the last epoch
        reason = slot.reason or slot.trial.should_stop(record)
        if reason is not None and slot.reason is None:
            slot.reason = reason
            logger.debug("trial %d: stopping it: %s", slot.trial.number, reason)
        self.backend.decide(slot, epoch, reason)

    def _on_outcome(self, slot: Slot, outcome: TrialOutcome) -> None:
        """Record a trial's end: epochs it pushed too late for the driver first, then the
        outcome (both stores, Optuna's tell)."""
        for record in outcome.epochs:
            self._on_epoch(slot, record, decide=False)
        self.running.pop(slot.trial_id, None)
        self.blocked = False
        if outcome.result is not None:
            result = dict(outcome.result)
            result.setdefault("executor", self.backend.kind)
            if self.parallel > 1:
                note = concurrency_note(self.parallel, self.backend.kind)
                old = result.get("energy_note")
                result["energy_note"] = f"{old}; {note}" if old else note
            outcome.result = result
        shares = self._leave(slot, outcome)
        slot.trial.finish(outcome, slot.sampler)
        if shares is not None:  # merged into the recorded row, every other field kept
            self.tuner.store.merge_result(slot.trial_id, shares)

    def _leave(self, slot: Slot, outcome: TrialOutcome) -> dict[str, Any] | None:
        """The trial leaves the host sampler: the fields its row gets (its attributed
        share, or why it has none); None for a trial given back (it keeps no share)."""
        if self.attribution is None:
            return None
        if outcome.status == "interrupted":
            self.attribution.discard(slot.trial_id)
            return None
        return self.attribution.leave(slot.trial_id)

    def _step(self, timeout: float, *, decide: bool = True) -> None:
        for slot, kind, payload in self.backend.wait(list(self.running.values()), timeout):
            if kind == "epoch":
                self._on_epoch(slot, payload, decide=decide)
            elif kind == "outcome":
                self._on_outcome(slot, payload)

    # -- the loop ---------------------------------------------------------------------------
    def run(self, meter: Meter) -> str:
        self.backend.start()
        self.attribution = HostAttribution.open(
            self.parallel, self.backend.kind, self.tuner.out_dir
        )
        try:
            return self._loop(meter)
        except KeyboardInterrupt:
            self._give_back()
            raise
        finally:
            for slot in self.running.values():  # only after an error: no trial outlives it
                self.backend.stop(slot, kill=True)
            if self.attribution is not None:
                self.attribution.close()
            self.backend.shutdown()

    def _loop(self, meter: Meter) -> str:
        while True:
            while len(self.running) < self.parallel and not self.blocked:
                reason = self._launch_next(meter)
                if reason is None:
                    continue
                if not self.running:
                    logger.debug("not starting another trial: %s", reason)
                    return reason
                self.blocked = True  # until a trial in flight ends
            self._step(self.backend.idle_wait_s)

    def _give_back(self) -> None:
        """Ctrl-C: stop every trial in flight and give it back (its interrupted outcome
        through :meth:`TuneTrial.finish`), keeping any that ended meanwhile as they ended."""
        from frugalml.study._trial import TrialOutcome

        self.held = None  # asked, not started: RUNNING in Optuna, given back by the tuner
        for slot in self.running.values():
            self.backend.stop(slot)
        deadline = time.monotonic() + GIVE_BACK_S
        while self.running and time.monotonic() < deadline:
            with contextlib.suppress(KeyboardInterrupt):
                self._step(POLL_S * 5, decide=False)
        for slot in list(self.running.values()):
            self.backend.stop(slot, kill=True)
            records = [slot.records[e] for e in sorted(slot.records)]
            with contextlib.suppress(KeyboardInterrupt):
                self._on_outcome(
                    slot, TrialOutcome(slot.trial_id, "interrupted", None, records, "interrupted")
                )


def resolve_executor(
    spec: TuneSpec,
    parallel: int | None,
    executor: ExecutorConfig | str | None,
    address: str | None,
) -> tuple[int, ExecutorConfig]:
    """Trials in flight and the executor for a run: the arguments (the command line's
    ``--parallel`` and ``--executor``) over the spec's ``workers:`` and ``executor:``;
    refuses what cannot run, before anything is created."""
    count = spec.workers if parallel is None else parallel
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ConfigError(
            f"--parallel must be a whole number of 1 or more, got {count!r}",
            fix="e.g. parallel=2 (or workers: 2 in the spec: trials in flight at once)",
        )
    config = executor if isinstance(executor, ExecutorConfig) else spec.executor
    config = config.replace(kind=executor if isinstance(executor, str) else None)
    config = config.replace(address=address)
    if config.address is not None and config.kind != "ray":
        raise ConfigError(
            "--address is for the ray executor", fix="add executor='ray', or drop address=ADDRESS"
        )
    if config.kind == "ray":
        import_ray()  # one line when Ray is missing, before anything is created
    return count, config


def run_parallel(tuner: Tuner, meter: Meter, notes: list[str]) -> str:
    """Run the tuning loop with ``tuner.parallel`` trials in flight on ``tuner.executor``;
    returns why it stopped (and adds the energy note of concurrent trials to ``notes``)."""
    if tuner.parallel > 1:
        notes.append(concurrency_note(tuner.parallel, tuner.executor.kind))
    return ParallelTuning(tuner, tuner.parallel, tuner.executor).run(meter)

"""Runs a study: expands the spec, hands each trial to an executor, resumes.

The runner claims trials, hands them to an executor (``study._executors``: ``local``, one
process per trial on this machine, forked warm; ``ray``, a Ray task per trial), enforces
time-outs and the budget, records crashes that a worker could not record itself, and reports
progress through a callback. Local workers write their results to the store as they exist;
a Ray task returns its outcome and epochs, which the runner (the driver) records: it alone
writes the store then.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from frugalml.errors import ConfigError, StoreError
from frugalml.meter import J_PER_KWH, Budget
from frugalml.study._executors import (
    Executor,
    ExecutorConfig,
    Finished,
    TrialHandle,
    TrialJob,
    log_path_for,
    make_executor,
)
from frugalml.study._spec import StudySpec, Trial
from frugalml.study._store import StudyStore, TrialRow

logger = logging.getLogger(__name__)

#: How long a worker gets to give its trial back after SIGTERM before it is killed.
TERMINATE_GRACE_S = 15.0


@dataclass
class StudyProgress:
    """A snapshot for progress displays. Energy in joules; ``None`` where unknown."""

    total: int
    complete: int
    failed: int
    running: int
    pending: int
    energy_j: float
    co2_g: float
    duration_s: float
    predicted_remaining_j: float | None
    running_labels: list[str] = field(default_factory=list)

    @property
    def done(self) -> int:
        return self.complete + self.failed


@dataclass
class StudyEvent:
    """``kind`` is one of started, trial_started, trial_finished, budget_stop, finished."""

    kind: str
    progress: StudyProgress
    message: str = ""
    trial: TrialRow | None = None


@dataclass
class StudyOutcome:
    progress: StudyProgress
    budget_stopped: bool
    budget_reason: str | None
    interrupted: bool
    new_trials: int
    out_dir: Path


class _Running:
    def __init__(
        self,
        trial: Trial,
        handle: TrialHandle,
        timeout_s: float | None,
    ) -> None:
        self.trial = trial
        self.handle = handle
        self.started = time.monotonic()
        self.launched_at = time.time()  # wall clock, to place the worker's recorded windows
        self.deadline = self.started + timeout_s if timeout_s else None
        self.timed_out = False


def _trial_cost(row: TrialRow) -> tuple[float, float, float] | None:
    result = row.result or {}
    energy = result.get("energy_j")
    if energy is None:
        return None
    return float(energy), float(result.get("co2_g") or 0.0), float(result.get("duration_s") or 0.0)


class StudyRunner:
    """Run ``spec`` into ``out_dir``. One instance per ``run`` call."""

    def __init__(
        self,
        spec: StudySpec,
        out_dir: str | Path,
        *,
        workers: int | None = None,
        threads: int | None = None,
        retry_failed: bool = False,
        trial_timeout_s: float | None = None,
        on_event: Callable[[StudyEvent], None] | None = None,
        python: str | None = None,
        add: bool = False,
        executor: ExecutorConfig | str | None = None,
        address: str | None = None,
    ) -> None:
        for name, value in (("workers", workers), ("threads", threads)):
            if value is not None and value < 1:
                raise ConfigError(f"--{name} must be at least 1, got {value}", fix="use 1 or more")
        self.spec = spec
        self.out_dir = Path(out_dir)
        self.workers = workers or spec.workers
        # One torch thread per trial by default: small-batch training of small models gains
        # little from intra-op threads on a CPU, and oversubscribed cores (other processes,
        # other workers) slowed it 2-7x here (benchmarks/RESULTS.md). Use --workers to fill
        # the cores with trials instead, or --threads to give each trial more.
        self.threads = threads or spec.threads
        self.retry_failed = retry_failed
        if trial_timeout_s is not None:  # -5 would fail every trial, nan disable the limit
            from frugalml._yaml import parse_seconds
            from frugalml.study._spec import WARN_TIMEOUT_S

            trial_timeout_s = parse_seconds(
                trial_timeout_s, "--trial-timeout-s", warn_below=WARN_TIMEOUT_S
            )
        self.trial_timeout_s = trial_timeout_s or spec.trial_timeout_s
        spec.check()  # what every worker would refuse here, before the store is touched
        self.on_event = on_event or (lambda event: None)
        config = spec.executor
        if isinstance(executor, ExecutorConfig):
            config = executor
        config = config.replace(kind=executor if isinstance(executor, str) else None)
        self.executor_config = config.replace(address=address)
        if address is not None and self.executor_config.kind != "ray":
            raise ConfigError(
                "--address is for the ray executor", fix="add --executor ray, or drop --address"
            )
        # a Ray cluster sets the trials in flight unless --workers or the spec's workers do
        self.workers_given = workers is not None or spec.workers != 1
        self.python = python
        self.executor: Executor = make_executor(self.executor_config, python=python)
        self.trials = {t.trial_id: t for t in spec.trials()}
        self.order = list(self.trials)
        self.running: dict[str, _Running] = {}
        #: Set once the runner stops its workers (Ctrl-C, a store failure): a trial whose
        #: worker ends then without recording its own end goes back to pending.
        self.stopping = False
        #: Add this spec's trials to a directory that holds another spec's (``--add``).
        self.add = add
        (self.out_dir / "logs").mkdir(parents=True, exist_ok=True)
        self.store = StudyStore(self.out_dir)

    # -- bookkeeping ------------------------------------------------------------------------

    def _rows(self) -> list[TrialRow]:
        return [r for r in self.store.trials() if r.trial_id in self.trials]

    def progress(self) -> StudyProgress:
        rows = self._rows()
        costs = [
            c for r in rows if r.status in ("complete", "failed") for c in [_trial_cost(r)] if c
        ]
        energy = sum(c[0] for c in costs)
        complete = [c for r in rows if r.status == "complete" for c in [_trial_cost(r)] if c]
        left = sum(1 for r in rows if r.status in ("pending", "running"))
        predicted = None
        if complete:
            predicted = left * sum(c[0] for c in complete) / len(complete)
        return StudyProgress(
            total=len(rows),
            complete=sum(r.status == "complete" for r in rows),
            failed=sum(r.status == "failed" for r in rows),
            running=sum(r.status == "running" for r in rows),
            pending=sum(r.status == "pending" for r in rows),
            energy_j=energy,
            co2_g=sum(c[1] for c in costs),
            duration_s=sum(c[2] for c in costs),
            predicted_remaining_j=predicted,
            running_labels=[self.trials[t].label for t in self.running],
        )

    def _emit(self, kind: str, message: str = "", trial: TrialRow | None = None) -> None:
        self.on_event(StudyEvent(kind, self.progress(), message, trial))

    def _budget_check(self, budget: Budget | None) -> str | None:
        """A reason to launch nothing more, or None. Spent counts every finished trial of the
        study (earlier runs included); the next trial and those in flight are predicted as
        the mean of the completed ones."""
        if budget is None:
            return None
        rows = self._rows()
        spent = [
            c for r in rows if r.status in ("complete", "failed") for c in [_trial_cost(r)] if c
        ]
        complete = [c for r in rows if r.status == "complete" for c in [_trial_cost(r)] if c]
        if not complete:
            return None  # nothing to predict from yet
        n_ahead = len(self.running) + 1
        mean = [sum(c[i] for c in complete) / len(complete) for i in range(3)]
        totals = [sum(c[i] for c in spent) + n_ahead * mean[i] for i in range(3)]
        limits = [
            (budget.energy_kwh, totals[0] / J_PER_KWH, "kWh", mean[0] / J_PER_KWH),
            (budget.co2_g, totals[1], "gCO2e", mean[1]),
            (budget.duration_s, totals[2], "s", mean[2]),
        ]
        for limit, predicted, unit, per_trial in limits:
            if limit is not None and predicted > limit:
                return (
                    f"budget of {limit:g} {unit} would be exceeded: spent plus the trials in "
                    f"flight and the next one is predicted at {predicted:.4g} {unit} "
                    f"({per_trial:.3g} {unit} per trial, the mean of {len(complete)} completed)"
                )
        return None

    # -- processes --------------------------------------------------------------------------

    def _launch(self, trial_id: str) -> None:
        trial = self.trials[trial_id]
        log_path = log_path_for(self.out_dir, trial_id)
        remote = self.executor.kind != "local"
        job = TrialJob(
            trial_id=trial_id,
            store_path=str(self.store.path),
            definition=dict(self.store.trial(trial_id).definition) if remote else {},
            log_path=log_path,
            threads=self.threads,
            workers=self.workers,
        )
        handle = self.executor.submit(job)
        # known as running before the store is written, so a store failure stops it too
        self.running[trial_id] = _Running(trial, handle, self.trial_timeout_s)
        self.store.set_worker(trial_id, handle.pid)
        if not remote:  # a Ray task's log stays on its node (ray logs)
            self.store.set_log_path(trial_id, log_path)
        self._emit("trial_started", trial.label, self.store.trial(trial_id))

    def _record_outcome(self, trial_id: str, outcome: Any) -> None:
        """What a remote trial brought back, written by the driver: its epochs, then its
        end (an interrupted trial goes back to pending)."""
        for number, record in enumerate(outcome.epochs):
            self.store.record_epoch(trial_id, int(record.get("epoch", number)), record)
        status = outcome.status
        if status == "interrupted":
            self.store.finish(trial_id, "pending", only_if_running=True)
            return
        result = dict(outcome.result or {})
        result.setdefault("executor", self.executor.kind)
        if status == "failed":
            self.store.finish(
                trial_id, "failed", result=result, error=outcome.error, only_if_running=True
            )
        else:  # complete; a pruned trial is finished with its partial result
            self.store.finish(trial_id, "complete", result=result, only_if_running=True)

    def _reap(self, trial_id: str, finished: Finished) -> None:
        state = self.running.pop(trial_id)
        state.handle.close()
        returncode = finished.returncode
        if finished.outcome is not None and not state.timed_out:
            self._record_outcome(trial_id, finished.outcome)
        row = self.store.trial(trial_id)
        if row.status == "running":  # the worker could not record its own end
            if state.timed_out:
                error = f"timed out after {self.trial_timeout_s:g} s"
            elif returncode < 0:
                sig = -returncode
                try:
                    name = signal.Signals(sig).name
                except ValueError:
                    name = str(sig)
                error = f"worker killed by signal {name}"
                if sig == signal.SIGKILL:
                    error += " (often the out-of-memory killer)"
            else:
                error = f"worker exited with code {returncode}; see {row.log_path}"
            if finished.error is not None and not state.timed_out:
                error = finished.error
            if (returncode == 130 or self.stopping) and not state.timed_out:
                # interrupted, or stopped by this runner (SIGTERM may land before the worker
                # has installed its handler, while it imports torch): not the trial's fault
                self.store.finish(trial_id, "pending", only_if_running=True)
            else:
                result = self._killed_result(trial_id, state, error)
                self.store.finish(
                    trial_id, "failed", result=result, error=error, only_if_running=True
                )
        elif state.timed_out and row.status == "pending":
            error = f"timed out after {self.trial_timeout_s:g} s"
            result = self._killed_result(trial_id, state, error)
            self.store.finish(trial_id, "failed", result=result, error=error)
        row = self.store.trial(trial_id)
        message = f"{state.trial.label}: {row.status}"
        if row.error:
            message += f" ({row.error})"
        self._emit("trial_finished", message, row)

    def _killed_result(self, trial_id: str, state: _Running, reason: str) -> dict[str, Any]:
        """The energy a worker spent before it was stopped (recorded windows plus an
        estimate for the rest, labelled: study._results.killed_result)."""
        from frugalml.study._results import killed_result

        costs = [c for r in self._rows() if r.status == "complete" for c in [_trial_cost(r)] if c]
        seconds = sum(c[2] for c in costs)
        fallback_w = sum(c[0] for c in costs) / seconds if seconds > 0 else None
        return killed_result(
            trial_id,
            dict(self.store.trial(trial_id).definition),
            self.store.epochs(trial_id),
            launched_at=state.launched_at,
            ended_at=time.time(),
            reason=reason,
            fallback_power_w=fallback_w,
        )

    def _poll(self) -> None:
        now = time.monotonic()
        for trial_id, state in list(self.running.items()):
            finished = state.handle.poll()
            if finished is not None:
                self._reap(trial_id, finished)
            elif state.deadline is not None and now > state.deadline and not state.timed_out:
                state.timed_out = True
                logger.warning("%s: timed out, stopping it", state.trial.label)
                state.handle.kill()

    def _stop_all(self) -> None:
        self.stopping = True
        for state in self.running.values():
            if state.handle.poll() is None:
                state.handle.terminate()
        deadline = time.monotonic() + TERMINATE_GRACE_S
        while self.running and time.monotonic() < deadline:
            for trial_id, state in list(self.running.items()):
                finished = state.handle.poll()
                if finished is not None:
                    self._reap(trial_id, finished)
            time.sleep(0.05)
        for trial_id, state in list(self.running.items()):
            state.handle.kill()
            state.handle.wait(TERMINATE_GRACE_S)
            self.store.finish(trial_id, "pending", only_if_running=True)
            self.running.pop(trial_id).handle.close()

    def _stop_after_store_error(self) -> None:
        """Stop every worker when the store cannot be written (a full disk): kill them, wait,
        and give their trials back where the store still takes a write. A trial it cannot
        give back stays ``running`` with a dead owner, which the next run claims again."""
        self.stopping = True
        for state in self.running.values():
            if state.handle.poll() is None:
                state.handle.terminate()
        deadline = time.monotonic() + TERMINATE_GRACE_S
        for state in self.running.values():
            if state.handle.wait(max(0.0, deadline - time.monotonic())) is None:
                state.handle.kill()
                state.handle.wait(TERMINATE_GRACE_S)
        for trial_id, state in list(self.running.items()):
            state.handle.close()
            try:
                self.store.finish(trial_id, "pending", only_if_running=True)
            except StoreError:
                logger.info("%s: left running in the store; a rerun claims it", trial_id)
        self.running.clear()

    def _check_directory(self) -> None:
        """Refuse to merge this spec into a directory that holds another spec's trials (or a
        tuning run / a factorial), unless ``add`` says to."""
        previous = self.store.latest_spec() or {}
        held = set(self.store.trial_ids())
        kind = "tuning run" if previous.get("kind") == "tune" else None
        if "factorial" in previous:
            kind = "factorial experiment"
        if (self.out_dir / "optuna.db").exists():
            kind = "tuning run"
        if kind is not None:
            raise ConfigError(
                f"{self.out_dir} holds a {kind}, not a study; running the study there would "
                "mix the two",
                fix="give the study its own --out directory",
            )
        wanted = set(self.trials)
        if not held or held == wanted or self.add:
            return
        old_name = previous.get("name", "?")
        only_old = len(held - wanted)
        only_new = len(wanted - held)
        raise ConfigError(
            f"{self.out_dir} holds another spec's study ({old_name!r}: {only_old} of its "
            f"{len(held)} trials are not in this spec, and {only_new} of this spec's are new); "
            "running it there would merge the two",
            fix=f"use another --out directory, or pass --add to add this spec's trials to "
            f"{self.out_dir}",
        )

    # -- main loop --------------------------------------------------------------------------

    def run(self) -> StudyOutcome:
        try:
            self._check_directory()
            self.executor.start()
        except BaseException:
            self.store.close()
            raise
        try:
            return self._run()
        finally:
            self.executor.shutdown()

    def _run(self) -> StudyOutcome:
        if not self.workers_given:  # a Ray cluster's size, in trials of the spec's resources
            self.workers = self.executor.capacity() or self.workers
        self.store.save_spec(self.spec.to_dict())
        extra = {
            "carbon": dict(self.spec.carbon),
            "data_root": self.spec.data_root,
            "download": self.spec.download,
        }
        new = self.store.add_trials(
            [(t.trial_id, t.study, t.label, {**t.to_dict(), **extra}) for t in self.trials.values()]
        )
        self._emit("started", f"{len(self.trials)} trials, {new} new")
        budget_reason: str | None = None
        interrupted = False
        last_heartbeat = 0.0
        try:
            while True:
                while budget_reason is None and len(self.running) < self.workers:
                    budget_reason = self._budget_check(self.spec.budget)
                    if budget_reason is not None:
                        self._emit("budget_stop", budget_reason)
                        break
                    trial_id = self.store.claim(self.order, retry_failed=self.retry_failed)
                    if trial_id is None:
                        break
                    self._launch(trial_id)
                if not self.running:
                    break
                time.sleep(0.1)
                self._poll()
                if time.monotonic() - last_heartbeat > 10:
                    self.store.heartbeat(list(self.running))
                    last_heartbeat = time.monotonic()
        except KeyboardInterrupt:
            interrupted = True
            self._stop_all()
        except StoreError:
            # a full disk, a lock held too long: stop cleanly and say so in one line (the
            # command line prints it); what the store holds stays as it was
            self._stop_after_store_error()
            with contextlib.suppress(Exception):
                self.store.close()
            raise
        progress = self.progress()
        self.on_event(StudyEvent("finished", progress, "interrupted" if interrupted else "done"))
        self.store.close()
        return StudyOutcome(
            progress=progress,
            budget_stopped=budget_reason is not None,
            budget_reason=budget_reason,
            interrupted=interrupted,
            new_trials=new,
            out_dir=self.out_dir,
        )


def run_study(
    spec: StudySpec,
    out_dir: str | Path,
    *,
    workers: int | None = None,
    threads: int | None = None,
    retry_failed: bool = False,
    trial_timeout_s: float | None = None,
    on_event: Callable[[StudyEvent], None] | None = None,
    python: str | None = None,
    add: bool = False,
    executor: ExecutorConfig | str | None = None,
    address: str | None = None,
) -> StudyOutcome:
    """Run (or resume) ``spec`` into ``out_dir``; the options are :class:`StudyRunner`'s."""
    return StudyRunner(
        spec,
        out_dir,
        workers=workers,
        threads=threads,
        retry_failed=retry_failed,
        trial_timeout_s=trial_timeout_s,
        on_event=on_event,
        python=python,
        add=add,
        executor=executor,
        address=address,
    ).run()

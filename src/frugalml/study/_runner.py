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
import inspect
import logging
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ParamSpec

from frugalml.errors import ConfigError, StoreError
from frugalml.meter import J_PER_KWH, Budget, ComponentEnergy, launch_no_more
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

if TYPE_CHECKING:
    from frugalml.meter import HostSampler

logger = logging.getLogger(__name__)

_P = ParamSpec("_P")

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
    #: With several trials in flight on this machine's shared counters: the energy the host
    #: sampler read per counter component over the study, and the part of it read while no
    #: trial ran (given to no one); the trials' ``attributed_energy_j`` add up to the rest.
    host_counter_j: dict[str, float] = field(default_factory=dict)
    unattributed_j: dict[str, float] = field(default_factory=dict)


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


#: How often the host sampler closes an interval while trials share the machine: a trial's
#: CPU time after its last interval (it has exited before it is reaped) is not read.
ATTRIBUTION_INTERVAL_S = 0.1

#: The rule behind ``attributed_energy_j``, stated in every record it gives a figure to.
ATTRIBUTION_RULE = (
    "attributed: the study's one host sampler reads this machine's shared counters (RAPL "
    "zones, NVML GPUs) for all its trials at once; from a trial's launch to its reaping, the "
    "energy of each interval between readings (about "
    f"{ATTRIBUTION_INTERVAL_S:g} s) is split among the trials running in it: CPU, DRAM and "
    "platform zones by their process-tree CPU time, a GPU in equal shares (no per-trial GPU "
    "time is read), equal shares in an interval where none used the CPU; the shares of an "
    "interval add up to what the counter measured (never more, never twice). energy_j stays "
    "the trial's own meter's figure, which on these counters includes its neighbours' energy"
)

#: The rule where the trial's own meter read its published share (a study's local workers).
ATTRIBUTION_RULE_PUBLISHED = ATTRIBUTION_RULE.replace(
    "energy_j stays the trial's own meter's figure, which on these counters includes its "
    "neighbours' energy",
    "The trial's own meter read no counter: it read its share as the sampler published it (a "
    "file rewritten at every interval), so energy_j and its windows (set-up, epochs, "
    "evaluation) are attributed too, their edges accurate to the interval; they cover the "
    "trial's meter, not its process start and exit, so they add up to a little less than "
    "attributed_energy_j",
)

#: Why a study with several trials in flight attributes nothing, as its records say.
NOT_ATTRIBUTED_NO_COUNTERS = (
    "not attributed: this machine has no shared counter (RAPL zone, NVML GPU) to split; "
    "energy_j is the trial's own figure"
)
NOT_ATTRIBUTED_RAY = (
    "not attributed: a Ray trial may run on another node, so the driver's host counters "
    "are not attributed to it; energy_j is its own meter's figure where it ran (machine-wide "
    "counters there see its neighbours: concurrent_workers)"
)


class HostAttribution:
    """The runner's one host sampler (``meter.HostSampler``) while several trials are in
    flight on this machine: trials join at launch and leave when reaped; what a trial was
    given is merged into its stored result (:data:`ATTRIBUTION_RULE`). Without shared
    counters (or for Ray trials) nothing is attributed and :attr:`reason` says why."""

    def __init__(
        self, sampler: HostSampler | None, reason: str | None, publish_dir: Path | None = None
    ) -> None:
        self.sampler = sampler
        self.reason = reason
        #: Whether this runner opened the sampler (and closes it).
        self.owns = sampler is not None
        #: Where each trial's share is published for its own meter (``DIR/attribution``).
        self.publish_dir = publish_dir if sampler is not None else None
        self._published: set[str] = set()

    def publish_path(self, trial_id: str) -> str | None:
        """The file the sampler publishes ``trial_id``'s share to (a stale one removed), for
        the trial's worker (``--attribution``); None when nothing is attributed."""
        if self.publish_dir is None:
            return None
        try:
            self.publish_dir.mkdir(parents=True, exist_ok=True)
            path = self.publish_dir / f"{trial_id}.json"
            path.unlink(missing_ok=True)
        except OSError as exc:  # the trial meters its counters itself, as before
            logger.warning("%s: its share cannot be published: %s", trial_id, exc)
            return None
        return str(path)

    def _unpublish(self, trial_id: str) -> None:
        self._published.discard(trial_id)
        if self.publish_dir is not None:
            with contextlib.suppress(OSError):
                (self.publish_dir / f"{trial_id}.json").unlink(missing_ok=True)

    @classmethod
    def open(
        cls, workers: int, executor: str, out_dir: Path | None = None
    ) -> HostAttribution | None:
        """The attribution for a study; None when one trial runs at a time (its own meter's
        counters then see no neighbour, and records stay as they were)."""
        if workers <= 1:
            return None
        if executor != "local":
            return cls(None, NOT_ATTRIBUTED_RAY)
        from frugalml.errors import MeterError
        from frugalml.meter import HostSampler, MeterConfig, host_sampler

        owns = True
        try:
            sampler = HostSampler(MeterConfig(), interval_s=ATTRIBUTION_INTERVAL_S)
        except MeterError:  # this process already has the one reader (a tuner's): share it
            sampler, owns = host_sampler(), False
        except Exception as exc:  # attribution must never stop a study
            logger.warning("the host sampler could not be opened: %s", exc)
            return cls(None, f"not attributed: the host sampler could not be opened ({exc})")
        if not any(b.capabilities.devices for b in sampler.backends):  # only "none here"s
            if owns:
                sampler.close()
            return cls(None, NOT_ATTRIBUTED_NO_COUNTERS)
        publish_dir = out_dir / "attribution" if out_dir is not None else None
        attribution = cls(sampler.start(), None, publish_dir)
        attribution.owns = owns
        return attribution

    def join(self, trial_id: str, pid: int, publish: str | None = None) -> None:
        if self.sampler is None:
            return
        try:
            self.sampler.join(trial_id, pid=pid, publish=publish)
            if publish is not None:
                self._published.add(trial_id)
        except Exception as exc:  # its record says so; the trial runs on
            logger.warning("%s: not attributed, joining the host sampler failed: %s", trial_id, exc)

    def leave(self, trial_id: str) -> dict[str, Any]:
        """The fields to merge into the trial's result (what it was given, or why not)."""
        if self.sampler is None or trial_id not in self.sampler.trials:
            reason = self.reason or "not attributed: the trial did not join the host sampler"
            return {"attributed_energy_j": None, "attribution_rule": reason}
        shares: tuple[ComponentEnergy, ...] = self.sampler.leave(trial_id)
        published = trial_id in self._published
        self._unpublish(trial_id)
        return {
            "attributed_energy_j": sum(c.energy_j for c in shares),
            "attributed_energy_kind": "attributed",
            "attributed_energy_source": "; ".join(sorted({c.source for c in shares})),
            "attribution_rule": ATTRIBUTION_RULE_PUBLISHED if published else ATTRIBUTION_RULE,
            "attributed_components": [c.to_dict() for c in shares],
        }

    def discard(self, trial_id: str) -> None:
        """A trial given back (or left running): its share is not recorded."""
        if self.sampler is not None and trial_id in self.sampler.trials:
            self.sampler.leave(trial_id)
        self._unpublish(trial_id)

    def close(self) -> None:
        if self.sampler is not None and self.owns:
            self.sampler.close()
        self.sampler = None


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
                "--address is for the ray executor",
                fix="add executor='ray', or drop address=ADDRESS",
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
        #: The host sampler's attribution while several trials share the machine (``_run``).
        self.attribution: HostAttribution | None = None
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
        """A reason to launch nothing more, or None, by the one budget rule
        (:func:`frugalml.meter.launch_no_more`). Spent counts every finished trial of the
        study (earlier runs included); what is ahead, the next trial and those in flight, is
        predicted as the mean of the completed ones (nothing is predicted before one has
        completed)."""
        if budget is None:
            return None
        rows = self._rows()
        finished = [
            c for r in rows if r.status in ("complete", "failed") for c in [_trial_cost(r)] if c
        ]
        complete = [c for r in rows if r.status == "complete" for c in [_trial_cost(r)] if c]
        spent = (
            sum(c[0] for c in finished),
            sum(c[1] for c in finished),
            sum(c[2] for c in finished),
        )
        n_ahead = len(self.running) + 1
        ahead = None
        if complete:
            mean = [sum(c[i] for c in complete) / len(complete) for i in range(3)]
            ahead = (n_ahead * mean[0], n_ahead * mean[1], n_ahead * mean[2])
        verdict = launch_no_more(budget, spent, ahead)
        if verdict is None:
            return None
        scale = J_PER_KWH if verdict.resource == "energy" else 1.0
        unit = "kWh" if verdict.resource == "energy" else verdict.unit
        limit = verdict.limit_given
        if verdict.spent_out:
            return (
                f"budget of {limit:g} {unit} spent: the finished trials used "
                f"{verdict.spent / scale:.4g} {unit}"
            )
        predicted = (verdict.spent + (verdict.ahead or 0.0)) / scale
        per_trial = (verdict.ahead or 0.0) / n_ahead / scale
        return (
            f"budget of {limit:g} {unit} would be exceeded: spent plus the trials in "
            f"flight and the next one is predicted at {predicted:.4g} {unit} "
            f"({per_trial:.3g} {unit} per trial, the mean of {len(complete)} completed)"
        )

    # -- processes --------------------------------------------------------------------------

    def _launch(self, trial_id: str) -> None:
        trial = self.trials[trial_id]
        log_path = log_path_for(self.out_dir, trial_id)
        remote = self.executor.kind != "local"
        attribution = self.attribution
        # a local worker meters its share as the host sampler publishes it; a Ray trial keeps
        # its own meter (it may run on another node: NOT_ATTRIBUTED_RAY)
        publish = attribution.publish_path(trial_id) if attribution and not remote else None
        job = TrialJob(
            trial_id=trial_id,
            store_path=str(self.store.path),
            definition=dict(self.store.trial(trial_id).definition) if remote else {},
            log_path=log_path,
            threads=self.threads,
            workers=self.workers,
            attribution_path=publish,
        )
        handle = self.executor.submit(job)
        if attribution is not None:
            attribution.join(trial_id, handle.pid, publish)
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
        shares = self.attribution.leave(trial_id) if self.attribution is not None else None
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
        if shares is not None and row.status in ("complete", "failed"):
            # merged into the recorded result, every other field left as it was; a trial
            # given back (pending) keeps no share
            self.store.merge_result(trial_id, shares)
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
            if self.attribution is not None:
                self.attribution.discard(trial_id)
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
            if self.attribution is not None:
                self.attribution.discard(trial_id)
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
                fix="give the study its own out_dir=DIR",
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
            fix=f"use another out_dir=DIR, or pass add=True to add this spec's trials to "
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
            if self.attribution is not None:
                self.attribution.close()
            self.executor.shutdown()

    def _run(self) -> StudyOutcome:
        if not self.workers_given:  # a Ray cluster's size, in trials of the spec's resources
            self.workers = self.executor.capacity() or self.workers
        self.attribution = HostAttribution.open(self.workers, self.executor.kind, self.out_dir)
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
        sampler = self.attribution.sampler if self.attribution is not None else None
        return StudyOutcome(
            progress=progress,
            budget_stopped=budget_reason is not None,
            budget_reason=budget_reason,
            interrupted=interrupted,
            new_trials=new,
            out_dir=self.out_dir,
            host_counter_j=dict(sampler.counter_j) if sampler is not None else {},
            unattributed_j=dict(sampler.unattributed_j) if sampler is not None else {},
        )


def _then_run(runner: Callable[_P, StudyRunner]) -> Callable[_P, StudyOutcome]:
    """``runner``'s own signature (its keyword list, written once), returning what its
    :meth:`StudyRunner.run` returns."""

    def run_study(*args: _P.args, **kwargs: _P.kwargs) -> StudyOutcome:
        return runner(*args, **kwargs).run()

    run_study.__signature__ = inspect.signature(runner).replace(  # type: ignore[attr-defined]
        return_annotation="StudyOutcome"
    )
    return run_study


#: ``run_study(spec, out_dir, *, <StudyRunner's keywords>) -> StudyOutcome``: the keyword
#: list is written once, on :meth:`StudyRunner.__init__`; mypy checks every call against it
#: and ``inspect.signature(run_study)`` shows it.
run_study = _then_run(StudyRunner)
run_study.__name__ = run_study.__qualname__ = "run_study"
run_study.__doc__ = (
    "Run (or resume) ``spec`` into ``out_dir``: ``StudyRunner(spec, out_dir, ...).run()``; "
    "the options are :class:`StudyRunner`'s."
)

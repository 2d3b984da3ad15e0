"""Parallel tuning trials on Ray: a task per trial, one channel actor for epochs and verdicts.

The task runs the one trial runner (:func:`frugalml.tune._remote.run_channelled_trial`)
and pushes each epoch to the channel actor, which holds the driver's verdicts; the driver
pulls the epochs and posts verdicts through :class:`RayBackend`. A trial whose Ray worker
dies is run again once (:data:`frugalml.study._executors.RAY_ATTEMPTS`), then failed with
the reason. Ray is imported only when this backend starts.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import time
from typing import TYPE_CHECKING, Any

from frugalml.study._executors import ExecutorConfig
from frugalml.tune._remote import (
    POLL_S,
    Event,
    Slot,
    crashed_outcome,
    first_reason,
    run_channelled_trial,
)

if TYPE_CHECKING:
    from frugalml.study._trial import TrialOutcome, TrialPlan


logger = logging.getLogger(__name__)


class _ChannelActor:
    """One per tuning run on Ray: the epochs the tasks pushed, the verdicts the driver set."""

    def __init__(self) -> None:
        self.records: dict[str, list[dict[str, Any]]] = {}
        self.verdicts: dict[str, dict[int, str | None]] = {}

    def push(self, trial_id: str, record: dict[str, Any]) -> None:
        self.records.setdefault(trial_id, []).append(record)

    def pull(self) -> dict[str, list[dict[str, Any]]]:
        records, self.records = self.records, {}
        return records

    def decide(self, trial_id: str, epoch: int, reason: str | None) -> None:
        self.verdicts.setdefault(trial_id, {})[epoch] = reason

    def verdict(self, trial_id: str, epoch: int) -> tuple[bool, str | None]:
        verdicts = self.verdicts.get(trial_id, {})
        return epoch in verdicts, first_reason(verdicts, epoch)

    def forget(self, trial_id: str) -> None:
        self.verdicts.pop(trial_id, None)
        self.records.pop(trial_id, None)


class _RayChannel:
    def __init__(self, actor: Any, trial_id: str) -> None:
        self.actor = actor
        self.trial_id = trial_id

    def push(self, record: dict[str, Any]) -> None:
        import ray

        ray.get(self.actor.push.remote(self.trial_id, record))  # there before the task ends

    def verdict(self, epoch: int, wait_s: float) -> str | None:
        import ray

        deadline = time.monotonic() + wait_s
        while True:
            decided, reason = ray.get(self.actor.verdict.remote(self.trial_id, epoch))
            if decided or reason is not None or time.monotonic() >= deadline:
                return reason  # type: ignore[no-any-return]
            time.sleep(POLL_S / 2)


def _ray_tune_task(plan: TrialPlan, actor: Any) -> TrialOutcome:
    """The Ray task: one trial on whichever node Ray chose."""
    from frugalml.train import apply_threads

    apply_threads(plan.threads, option="--threads")  # a reused Ray worker: set per trial
    outcome = run_channelled_trial(plan, _RayChannel(actor, plan.trial_id))
    if outcome.status == "failed" and outcome.error:
        outcome.error = f"on Ray node {socket.gethostname()}: {outcome.error}"
    return outcome


class RayBackend:
    kind = "ray"
    idle_wait_s = POLL_S  # epochs sit in the actor until pulled: poll

    def __init__(self, config: ExecutorConfig) -> None:
        from frugalml.study._executors import RayExecutor

        self.executor = RayExecutor(config)
        self.config = config
        self.ray: Any = None
        self.remote: Any = None
        self.actor: Any = None
        self.plans: dict[str, TrialPlan] = {}  # to run a trial again when its worker died
        self.deaths: dict[str, list[str]] = {}  # the worker deaths per trial, as said
        self.stopped: set[str] = set()  # trials the driver stopped: a death is not retried

    def start(self) -> None:
        self.executor.start()  # ray.init: a local Ray, --address or RAY_ADDRESS
        ray = self.ray = self.executor.ray
        self.actor = ray.remote(num_cpus=0)(_ChannelActor).remote()
        self.remote = ray.remote(_ray_tune_task).options(
            num_cpus=self.config.num_cpus,
            num_gpus=self.config.num_gpus,
            max_retries=0,
            name="frugalml_tune_trial",
        )

    def submit(self, plan: TrialPlan, log_path: str) -> Any:
        self.plans[plan.trial_id] = plan
        return self.remote.remote(plan, self.actor)

    def wait(self, slots: list[Slot], timeout: float) -> list[Event]:
        ray = self.ray
        refs = [s.handle for s in slots]
        ready, _ = ray.wait(refs, num_returns=len(refs), timeout=timeout)
        pulled = ray.get(self.actor.pull.remote())  # after wait: a finished task's epochs
        events: list[Event] = []
        for slot in slots:
            events += [(slot, "epoch", r) for r in pulled.get(slot.trial_id, [])]
        done = {id(r) for r in ready}
        for slot in slots:
            if id(slot.handle) in done:
                outcome = self._outcome(slot)
                if outcome is None:  # its worker died and it runs again: its verdicts kept
                    continue
                events.append((slot, "outcome", outcome))
                self.actor.forget.remote(slot.trial_id)
                self.plans.pop(slot.trial_id, None)
                self.deaths.pop(slot.trial_id, None)
                self.stopped.discard(slot.trial_id)
        return events

    def _outcome(self, slot: Slot) -> TrialOutcome | None:
        """The task's outcome, or None when its worker died and the trial was submitted
        again (:data:`frugalml.study._executors.RAY_ATTEMPTS`, as a study's trials are)."""
        from frugalml.study._trial import TrialOutcome

        exceptions = self.ray.exceptions
        try:
            outcome: TrialOutcome = self.ray.get(slot.handle)
        except exceptions.TaskCancelledError:
            return TrialOutcome(slot.trial_id, "interrupted", None, [], error="interrupted")
        except exceptions.RayTaskError as exc:  # the task itself raised (an import on a node)
            cause = getattr(exc, "cause", None) or exc
            if isinstance(cause, KeyboardInterrupt):
                return TrialOutcome(slot.trial_id, "interrupted", None, [], error="interrupted")
            lines = str(cause).strip().splitlines()
            return crashed_outcome(slot, f"{type(cause).__name__}: {lines[-1] if lines else ''}")
        except (exceptions.RayError, OSError) as exc:  # the worker or its node died
            first = str(exc).strip().splitlines()
            return self._worker_died(slot, f"{type(exc).__name__}: {first[0] if first else ''}")
        deaths = self.deaths.get(slot.trial_id)
        if deaths and outcome.result is not None:  # what the attempt that died spent is lost
            note = (
                f"attempt {len(deaths) + 1}: its Ray worker died before ({deaths[-1]}); the "
                "energy of the attempt that died is not included"
            )
            old = outcome.result.get("energy_note")
            outcome.result = {
                **outcome.result,
                "ray_attempts": len(deaths) + 1,
                "energy_note": f"{old}; {note}" if old else note,
            }
        return outcome

    def _worker_died(self, slot: Slot, reason: str) -> TrialOutcome | None:
        """A trial whose Ray worker (or node) died: given back to Ray and run again once,
        then failed with the reason, the study executor's rule and wording
        (:class:`frugalml.study._executors._RayHandle`); one the driver stopped is
        interrupted."""
        import dataclasses

        from frugalml.study._executors import RAY_ATTEMPTS
        from frugalml.study._trial import TrialOutcome

        if slot.trial_id in self.stopped:
            return TrialOutcome(slot.trial_id, "interrupted", None, [], error="interrupted")
        deaths = self.deaths.setdefault(slot.trial_id, [])
        deaths.append(reason)
        if len(deaths) < RAY_ATTEMPTS:
            logger.warning("%s: its Ray worker died (%s); retrying", slot.trial_id, reason)
            plan = dataclasses.replace(self.plans[slot.trial_id], spawned_at=time.time())
            slot.handle = self.remote.remote(plan, self.actor)
            return None
        return crashed_outcome(
            slot, f"its Ray worker died {len(deaths)} times (retried once): {reason}"
        )

    def decide(self, slot: Slot, epoch: int, reason: str | None) -> None:
        self.actor.decide.remote(slot.trial_id, epoch, reason)

    def stop(self, slot: Slot, *, kill: bool = False) -> None:
        self.stopped.add(slot.trial_id)
        with contextlib.suppress(Exception):
            self.ray.cancel(slot.handle, force=kill)

    def shutdown(self) -> None:
        with contextlib.suppress(Exception):
            self.ray.kill(self.actor)
        self.executor.shutdown()

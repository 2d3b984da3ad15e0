"""Where parallel tuning trials run, and how their epochs and verdicts travel.

The driver's loop (:mod:`frugalml.tune._parallel`) hands each trial to a backend and waits
for news (:data:`Event`: an epoch record or the trial's outcome):

- ``local``: a process per trial forked from the study executors' warm forkserver; a
  :func:`multiprocessing.Pipe` carries the epochs up and the driver's verdicts back.
- ``ray``: a Ray task per trial; one channel actor (no CPU of its own) holds the epochs
  the tasks push and the verdicts the driver posts. A trial whose Ray worker dies is run
  again once (:data:`frugalml.study._executors.RAY_ATTEMPTS`), then failed with the reason.

On the trial's side, :func:`run_channelled_trial` runs the one trial runner with a stop
callback that pushes each epoch and waits at most :data:`VERDICT_WAIT_S` for the verdict.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from frugalml.study._executors import pid_alive

if TYPE_CHECKING:
    from frugalml.study._trial import TrialOutcome, TrialPlan
    from frugalml.tune._trial import TuneTrial

logger = logging.getLogger(__name__)


#: How long a trial waits after an epoch for the driver's verdict before it goes on (the
#: verdict is then taken at its next epoch). The driver answers within one poll, unless it
#: is busy sampling (a GP's ask).
VERDICT_WAIT_S = 5.0
#: The driver's poll interval when nothing happens (seconds).
POLL_S = 0.02

# -- the trial's side -------------------------------------------------------------------------


class _Channel(Protocol):
    """The trial's line to the driver."""

    def push(self, record: dict[str, Any]) -> None: ...
    def verdict(self, epoch: int, wait_s: float) -> str | None: ...


def run_channelled_trial(plan: TrialPlan, channel: _Channel) -> TrialOutcome:
    """Run ``plan`` with the one trial runner, pushing every epoch record to the driver and
    stopping when the driver says so (what a local process and a Ray task both run)."""
    from frugalml.study._trial import run_metered_trial

    def should_stop(record: dict[str, Any]) -> str | None:
        return channel.verdict(int(record["epoch"]), VERDICT_WAIT_S)

    outcome = run_metered_trial(
        plan, on_epoch=channel.push, should_stop=should_stop, window="tune trial", check=False
    )
    outcome.cause = None  # an exception stays in this process; error and traceback travel
    return outcome


class _PipeChannel:
    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self.verdicts: dict[int, str | None] = {}

    def push(self, record: dict[str, Any]) -> None:
        self.conn.send(("epoch", record))

    def _read(self, timeout: float) -> None:
        if self.conn.poll(timeout):
            _, epoch, reason = self.conn.recv()
            self.verdicts[int(epoch)] = reason

    def verdict(self, epoch: int, wait_s: float) -> str | None:
        deadline = time.monotonic() + wait_s
        self._read(0)
        while epoch not in self.verdicts and time.monotonic() < deadline:
            self._read(max(0.0, deadline - time.monotonic()))
        return first_reason(self.verdicts, epoch)


def first_reason(verdicts: dict[int, str | None], epoch: int) -> str | None:
    """The driver's stop reason for this epoch or an earlier one (a late verdict), or None."""
    reasons = [r for e, r in sorted(verdicts.items()) if e <= epoch and r is not None]
    return reasons[0] if reasons else None


def _local_trial(
    plan: TrialPlan, conn: Any, log_path: str, driver_pid: int, env: dict[str, str]
) -> None:
    """The body of a local trial process, forked from the warm forkserver (which may have
    started with another environment: the driver's at launch is used, as a study's is)."""
    os.setsid()  # a Ctrl-C reaches the driver, which gives the trial back
    os.environ.clear()
    os.environ.update(env)
    if sys.platform.startswith("linux"):  # die with the forkserver, which dies with the driver
        with contextlib.suppress(Exception):
            import ctypes

            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)
    if os.getppid() == 1 or not pid_alive(driver_pid):
        os._exit(130)
    fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)
    outcome = run_channelled_trial(plan, _PipeChannel(conn))
    conn.send(("outcome", outcome))
    conn.close()


# -- the driver's side ------------------------------------------------------------------------


@dataclass
class Slot:
    """A trial in flight, as the driver sees it."""

    trial: TuneTrial
    sampler: dict[str, float]
    planned: int
    handle: Any
    launched_at: float
    records: dict[int, dict[str, Any]] = field(default_factory=dict)
    reason: str | None = None  # the driver's stop verdict

    @property
    def trial_id(self) -> str:
        return self.trial.trial_id


Event = tuple[Slot, str, Any]  # (slot, "epoch" | "outcome", record | TrialOutcome)


class TrialBackend(Protocol):
    kind: str
    #: How long the driver waits for news when it has nothing to do (s).
    idle_wait_s: float

    def start(self) -> None: ...
    def submit(self, plan: TrialPlan, log_path: str) -> Any: ...
    def wait(self, slots: list[Slot], timeout: float) -> list[Event]: ...
    def decide(self, slot: Slot, epoch: int, reason: str | None) -> None: ...
    def stop(self, slot: Slot, *, kill: bool = False) -> None: ...
    def shutdown(self) -> None: ...


def crashed_outcome(slot: Slot, reason: str) -> TrialOutcome:
    """A failed outcome for a trial whose process ended without one: what its recorded
    windows measured (the records it pushed), the rest estimated, as a study books it."""
    from frugalml.study._results import killed_result
    from frugalml.study._trial import TrialOutcome

    records = [slot.records[e] for e in sorted(slot.records)]
    result = killed_result(
        slot.trial_id,
        slot.trial.definition,
        records,
        launched_at=slot.launched_at,
        ended_at=time.time(),
        reason=reason,
    )
    return TrialOutcome(slot.trial_id, "failed", result, records, error=reason)


@dataclass
class LocalHandle:
    process: Any
    conn: Any
    outcome: Any = None


class LocalBackend:
    kind = "local"
    idle_wait_s = 0.5  # the wait returns as soon as a pipe or a process has news

    def __init__(self, warm: bool = True) -> None:
        self.warm = warm
        self._context: Any = None

    def start(self) -> None:
        import multiprocessing

        if not self.warm:  # executor: {warm: false}: a fresh interpreter per trial
            self._context = multiprocessing.get_context("spawn")
            return
        from multiprocessing import forkserver

        from frugalml.study._executors import PRELOAD

        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(list(PRELOAD))
        forkserver.ensure_running()
        self._context = context

    def submit(self, plan: TrialPlan, log_path: str) -> LocalHandle:
        ours, theirs = self._context.Pipe(duplex=True)
        process = self._context.Process(
            target=_local_trial,
            args=(plan, theirs, log_path, os.getpid(), dict(os.environ)),
            name=f"frugalml-tune-{plan.trial_id}",
        )
        process.start()
        theirs.close()
        return LocalHandle(process, ours)

    def wait(self, slots: list[Slot], timeout: float) -> list[Event]:
        from multiprocessing.connection import wait

        # an outcome read but not yet recorded (an interrupt came between) is given again
        events: list[Event] = [(s, "outcome", s.handle.outcome) for s in slots if s.handle.outcome]
        pending = [s.handle for s in slots if s.handle.outcome is None]
        if pending and not events:
            wait([h.conn for h in pending] + [h.process.sentinel for h in pending], timeout)
        for slot in slots:
            if slot.handle.outcome is None:
                events += self._read(slot)
        return events

    def _read(self, slot: Slot) -> list[Event]:
        handle: LocalHandle = slot.handle
        events: list[Event] = []
        exited = handle.process.exitcode is not None  # before reading: all it sent is there
        with contextlib.suppress(EOFError, OSError):
            while handle.outcome is None and handle.conn.poll(0):
                kind, payload = handle.conn.recv()
                if kind == "outcome":
                    handle.outcome = payload
                events.append((slot, kind, payload))
        if handle.outcome is None and exited:
            code = int(handle.process.exitcode)
            how = f"signal {signal.Signals(-code).name}" if code < 0 else f"exit status {code}"
            handle.outcome = crashed_outcome(
                slot, f"the trial's process ended without a result ({how})"
            )
            events.append((slot, "outcome", handle.outcome))
        if handle.outcome is not None:
            handle.process.join(5)
            with contextlib.suppress(Exception):
                handle.conn.close()
        return events

    def decide(self, slot: Slot, epoch: int, reason: str | None) -> None:
        with contextlib.suppress(OSError):  # it ended meanwhile: its outcome follows
            slot.handle.conn.send(("verdict", epoch, reason))

    def stop(self, slot: Slot, *, kill: bool = False) -> None:
        process = slot.handle.process
        if process.exitcode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signal.SIGKILL if kill else signal.SIGTERM)

    def shutdown(self) -> None:
        """The forkserver stays for the life of this process, as the study executor's."""

"""Runs one trial in its own process: ``python -m frugalml.study._worker STORE TRIAL_ID``.

With ``--attribution PATH`` (the local runner's, while its host sampler attributes the
machine's shared counters) the trial's meter reads its published share from PATH instead of
opening RAPL or NVML: one reader per counter.

The worker loads the dataset and model, trains under a meter, writes every epoch and the final
result to the store as they exist, and exits 0 (complete), 1 (failed, recorded) or 130
(interrupted: the trial is given back as pending). A crash that kills the interpreter is
recorded by the parent from the exit status.
"""

from __future__ import annotations

import time

_PROCESS_START = time.time()  # before the heavy imports: the process start cost is measured

import argparse  # noqa: E402
import contextlib  # noqa: E402
import logging  # noqa: E402
import os  # noqa: E402
import signal  # noqa: E402
import sys  # noqa: E402
from typing import Any  # noqa: E402

logger = logging.getLogger("frugalml.study.worker")

EXIT_COMPLETE = 0
EXIT_FAILED = 1
EXIT_INTERRUPTED = 130


def _die_with_parent(parent_pid: int) -> None:
    """Ask Linux to kill this worker if the study process dies (kill -9 included), so an
    orphan never finishes a trial that a resumed study has already handed out again."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(Exception):
            import ctypes

            libc = ctypes.CDLL("libc.so.6", use_errno=True)
            pr_set_pdeathsig = 1
            libc.prctl(pr_set_pdeathsig, signal.SIGKILL)
    if parent_pid and os.getppid() != parent_pid:
        os._exit(EXIT_INTERRUPTED)  # the parent died before we armed the signal


def _on_sigterm(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def run_trial(
    store_path: str,
    trial_id: str,
    threads: int | None,
    spawned_at: float,
    workers: int = 1,
    attribution_path: str | None = None,
) -> int:
    """Run the store's trial ``trial_id`` (:func:`frugalml.study.run_metered_trial`),
    recording each epoch as it ends and the outcome; returns the exit status.
    ``attribution_path``: where the runner's host sampler publishes this trial's share of
    the shared counters (its meter reads that instead of the counters)."""
    from frugalml.study._store import StudyStore
    from frugalml.study._trial import TrialPlan, run_metered_trial
    from frugalml.train import apply_threads

    threads = apply_threads(threads, option="--threads")
    store = StudyStore(store_path, create=False)
    plan = TrialPlan(
        trial_id=trial_id,
        definition=store.trial(trial_id).definition,
        threads=threads,
        workers=workers,
        spawned_at=spawned_at,
        attribution_path=attribution_path,
    )

    def on_epoch(record: dict[str, Any]) -> None:
        store.record_epoch(trial_id, int(record["epoch"]), record)

    outcome = run_metered_trial(plan, on_epoch=on_epoch)
    if outcome.traceback and outcome.status == "failed":
        print(outcome.traceback, file=sys.stderr, end="")
    if outcome.status == "interrupted":
        if outcome.error != "interrupted":  # the store, not the trial, failed (a full disk)
            print(f"frugalml: trial {trial_id} given back: {outcome.error}", file=sys.stderr)
        # give the trial back, so a resume runs it again; where even that write fails, its
        # dead owner makes it claimable
        store.finish(trial_id, "pending", result=None, error=None, only_if_running=True)
        store.close()
        return EXIT_INTERRUPTED
    if outcome.status == "failed":
        store.finish(
            trial_id, "failed", result=outcome.result, error=outcome.error, only_if_running=True
        )
        print(f"frugalml: trial {trial_id} failed: {outcome.error}", file=sys.stderr)
        store.close()
        return EXIT_FAILED
    store.finish(trial_id, "complete", result=outcome.result, only_if_running=True)
    store.close()
    return EXIT_COMPLETE


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m frugalml.study._worker")
    parser.add_argument("store")
    parser.add_argument("trial_id")
    parser.add_argument("--parent-pid", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--spawned-at", type=float, default=_PROCESS_START)
    parser.add_argument("--attribution", default=None, metavar="PATH")
    args = parser.parse_args(argv)
    _die_with_parent(args.parent_pid)
    signal.signal(signal.SIGTERM, _on_sigterm)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    return run_trial(
        args.store,
        args.trial_id,
        args.threads,
        args.spawned_at,
        args.workers,
        attribution_path=args.attribution,
    )


if __name__ == "__main__":
    sys.exit(main())

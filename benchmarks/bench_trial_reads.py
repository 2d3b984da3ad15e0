"""The tuner's read of every trial: Optuna's deep-copied trials against the cached ones.

The tuner summarises every trial of the study (``Tuner.trials`` ->
``_results.summarize_trials``) before each trial, for the stop check and the progress
event at its start and end, and after every epoch, for the progress event. The reads after
each epoch fall inside the running trial's meter window, so their energy was booked as the
trial's set-up energy. ``study.trials`` deep-copies every trial; ``summarize_trials`` now
reads them without the copy (``TrialSummary.from_frozen`` copies what it keeps).

This runs a real frugal tuning of ``examples/compare_digits.yaml`` and times both reads
side by side at each of its reads (alternating which goes first, so the load of the
machine hits both alike), checking that they give the same summaries. CPU time
(``time.process_time``).

    python benchmarks/bench_trial_reads.py [--trials 40]

Prints Markdown for ``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=40, help="trials of the tuning run")
    args = parser.parse_args()

    from frugalml.tune import Tuner, TuneSpec
    from frugalml.tune._results import TrialSummary, summarize_trials

    data = yaml.safe_load((ROOT / "examples" / "compare_digits.yaml").read_text())
    data["strategy"] = {"name": "frugal", "n_startup_trials": 5, "multivariate": False}
    data["budget"]["max_trials"] = args.trials
    spec = TuneSpec.from_mapping(data)

    copied: list[tuple[int, float]] = []  # (trials in the study, CPU s)
    cached: list[tuple[int, float]] = []

    def deep_copied(study: Any) -> list[TrialSummary]:  # the read before this change
        return [TrialSummary.from_frozen(t) for t in sorted(study.trials, key=lambda t: t.number)]

    def timed(self: Any) -> list[TrialSummary]:
        def once(read: Any) -> tuple[float, list[TrialSummary]]:
            started = time.process_time()
            found = read(self.study)
            return time.process_time() - started, found

        if len(copied) % 2 == 0:
            slow, expected = once(deep_copied)
            fast, found = once(summarize_trials)
        else:
            fast, found = once(summarize_trials)
            slow, expected = once(deep_copied)
        assert repr(found) == repr(expected)  # the same summaries either way (NaN included)
        copied.append((len(found), slow))
        cached.append((len(found), fast))
        return found

    original = Tuner.trials
    Tuner.trials = timed  # type: ignore[method-assign]
    Tuner._trials = timed  # type: ignore[method-assign]
    try:
        with tempfile.TemporaryDirectory() as out:
            started = time.process_time()
            outcome = Tuner(spec, Path(out), plot=False, threads=1).run()
            run_cpu_s = time.process_time() - started
    finally:
        Tuner.trials = original  # type: ignore[method-assign]
        Tuner._trials = original  # type: ignore[method-assign]

    n = len(outcome.trials)
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    print(
        f"{stamp}, {platform.machine()}, `python benchmarks/bench_trial_reads.py "
        f"--trials {args.trials}`"
    )
    print()
    print(
        f"{n} trials, {len(copied)} reads ({len(copied) / max(n, 1):.1f} a trial); the whole "
        f"run {run_cpu_s:.2f} CPU s (both reads of every call included)"
    )
    print()
    print("| read | trials in the study | CPU ms a read, median | ratio |")
    print("|---|---:|---:|---:|")
    for low, high in ((0, n // 3), (n // 3, 2 * n // 3), (2 * n // 3, n + 1)):
        slow = [s for k, s in copied if low <= k < high]
        fast = [s for k, s in cached if low <= k < high]
        if not slow:
            continue
        slow_ms, fast_ms = 1000 * statistics.median(slow), 1000 * statistics.median(fast)
        span = f"{low}-{high - 1}"
        print(f"| deep-copied (`study.trials`) | {span} | {slow_ms:.2f} | |")
        print(
            f"| cached (`get_trials(deepcopy=False)`) | {span} | {fast_ms:.2f} | "
            f"{slow_ms / fast_ms:.1f}x |"
        )
    total_slow = sum(s for _, s in copied)
    total_fast = sum(s for _, s in cached)
    print()
    print(
        f"over the run: {total_slow:.3f} CPU s deep-copied, {total_fast:.3f} CPU s cached "
        f"({total_slow / total_fast:.1f}x); per trial {1000 * total_slow / max(n, 1):.1f} -> "
        f"{1000 * total_fast / max(n, 1):.1f} CPU ms"
    )


if __name__ == "__main__":
    main()

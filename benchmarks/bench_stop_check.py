"""The tuning loop's stop check under the frugal strategy: the cheapest configuration's
predicted cost, with the trials read once for every corner against each corner reading them.

Before each trial the loop asks whether even the cheapest configuration the space allows
still fits the energy left (``_loop.next_stop`` -> ``_loop.cheapest_params``), predicting
every corner of the cost-setting parameters (27 on the tuning example). Each prediction
used to read every trial from the Optuna storage again; now the check passes the trials it
has just read. This runs a real frugal tuning of ``examples/compare_digits.yaml`` and, at
each of its stop checks, times both ways side by side (alternating which goes first), so
the load of the machine hits both alike. CPU time (``time.process_time``), not energy: this
work falls between trials, outside any trial's meter window.

    python benchmarks/bench_stop_check.py [--trials 25]

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
    parser.add_argument("--trials", type=int, default=25, help="trials of the tuning run")
    args = parser.parse_args()

    import frugalml.tune._loop as loop
    from frugalml.tune import Tuner, TuneSpec

    data = yaml.safe_load((ROOT / "examples" / "compare_digits.yaml").read_text())
    data["strategy"] = {"name": "frugal", "n_startup_trials": 5, "multivariate": False}
    data["budget"]["max_trials"] = args.trials
    spec = TuneSpec.from_mapping(data)

    each_read: list[float] = []
    read_once: list[float] = []
    original = loop.cheapest_params

    def timed(tuner: Any, trials: Any = None) -> Any:
        def once(passed: Any) -> tuple[float, Any]:
            started = time.process_time()
            found = original(tuner, passed)
            return time.process_time() - started, found

        if len(each_read) % 2 == 0:
            slow, expected = once(None)
            fast, found = once(trials)
        else:
            fast, found = once(trials)
            slow, expected = once(None)
        assert found == expected, (found, expected)  # the same answer either way
        each_read.append(slow)
        read_once.append(fast)
        return found

    loop.cheapest_params = timed  # type: ignore[assignment]
    with tempfile.TemporaryDirectory() as out:
        started = time.process_time()
        outcome = Tuner(spec, Path(out), plot=False, threads=1).run()
        run_cpu_s = time.process_time() - started
    loop.cheapest_params = original

    checks = [(a, b) for a, b in zip(each_read, read_once, strict=True) if b > 0]
    slow_ms = 1000 * statistics.median(a for a, _ in checks)
    fast_ms = 1000 * statistics.median(b for _, b in checks)
    ratios = sorted(a / b for a, b in checks)
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    print(
        f"{stamp}, {platform.machine()}, `python benchmarks/bench_stop_check.py "
        f"--trials {args.trials}`"
    )
    print()
    print(
        f"{len(outcome.trials)} trials, {len(checks)} stop checks; the whole run "
        f"{run_cpu_s:.2f} CPU s (both ways of every check included)"
    )
    print()
    print("| stop check | CPU ms a check, median | in all over the run (CPU s) |")
    print("|---|---:|---:|")
    print(f"| every corner reads the trials | {slow_ms:.2f} | {sum(each_read):.3f} |")
    print(f"| the trials read once | {fast_ms:.2f} | {sum(read_once):.3f} |")
    print()
    print(
        f"ratio over the run: {sum(each_read) / sum(read_once):.0f}x; per check: median "
        f"{statistics.median(ratios):.0f}x (min {ratios[0]:.1f}x, max {ratios[-1]:.0f}x). "
        "Refitting the cost model after a new trial falls on whichever way runs first "
        "(alternated), so the per-check ratios are spread by it; the totals share it evenly."
    )


if __name__ == "__main__":
    main()

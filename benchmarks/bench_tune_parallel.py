"""Wall time of one small tuning run with one trial at a time and with two in flight.

The same spec (digits, the built-in CNN, random search, a fixed number of trials, the
median pruner) is tuned three ways through the command line, each into a fresh directory:

- ``--parallel 1`` (local): one trial at a time, in the tuning process (the path of before);
- ``--parallel 2`` (local): two trials in flight, each in a process forked from the warm
  forkserver;
- ``--executor ray --parallel 2``: two Ray tasks on a local Ray the command starts.

    python benchmarks/bench_tune_parallel.py [--trials 8] [--epochs 3] [--fraction 0.5]
        [--width 8] [--out DIR]

Prints one Markdown row per run: wall time (the whole command, Ray's start included), the
time from the first trial window's start to the last one's end, the sum of the trials' own
durations, the median per-trial process overhead
(``process_overhead_s``, trials in processes of their own), the trials' energy (estimated
or measured, as the meter says; with two in flight machine-wide counters overlap), the
counts of complete and pruned trials, and the 1-minute load average before and after.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import yaml

RUNS = (
    ("local, --parallel 1", ["--parallel", "1"]),
    ("local, --parallel 2", ["--parallel", "2"]),
    ("ray, --parallel 2", ["--executor", "ray", "--parallel", "2"]),
)


def _spec(trials: int, epochs: int, fraction: float, width: int) -> dict[str, object]:
    return {
        "name": "bench-parallel",
        "dataset": "digits",
        "fraction": fraction,
        "model": {"name": "frugal_cnn", "args": {"conv_layers": 1, "width": width}},
        "training": {"epochs": epochs, "batch_size": 32, "seed": 0},
        "search_space": {
            "lr": {"type": "float", "low": 1e-4, "high": 3e-2, "log": True},
            "batch_size": {"type": "categorical", "choices": [16, 32]},
        },
        "strategy": "random",
        "seed": 0,
        "pruner": {"type": "median", "n_startup_trials": 2, "n_warmup_steps": 1},
        "budget": {"max_trials": trials},
    }


def _row(label: str, out: Path, wall_s: float, load: tuple[float, float]) -> str:
    from frugalml.study import StudyStore

    with StudyStore(out, read_only=True) as store:
        results = [r.result or {} for r in store.trials()]
    durations = sum(float(r.get("duration_s") or 0.0) for r in results)
    energy = sum(float(r.get("energy_j") or 0.0) for r in results)
    kinds = sorted({str(r.get("energy_kind")) for r in results})
    overheads = [float(r["process_overhead_s"]) for r in results if r.get("process_overhead_s")]
    overhead = f"{statistics.median(overheads):.3f} s" if overheads else "-"
    pruned = sum(bool(r.get("pruned")) for r in results)
    windows = [r["measurement"] for r in results if isinstance(r.get("measurement"), dict)]
    starts = [datetime.fromisoformat(str(m["started_at"])).timestamp() for m in windows]
    ends = [t + float(m["duration_s"]) for t, m in zip(starts, windows, strict=True)]
    span = f"{max(ends) - min(starts):.1f} s" if windows else "-"
    return (
        f"| {label} | {wall_s:.1f} s | {span} | {durations:.1f} s | {overhead} | {energy:.0f} J "
        f"({', '.join(kinds)}) | {len(results) - pruned} / {pruned} | "
        f"{load[0]:.1f} -> {load[1]:.1f} |"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--fraction", type=float, default=0.5)
    parser.add_argument("--width", type=int, default=8)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    root = args.out or Path(tempfile.mkdtemp(prefix="bench_tune_parallel_"))
    root.mkdir(parents=True, exist_ok=True)
    spec = root / "spec.yaml"
    spec.write_text(yaml.safe_dump(_spec(args.trials, args.epochs, args.fraction, args.width)))
    frugalml = [sys.executable, "-m", "frugalml"]
    print(f"{args.trials} trials, {args.epochs} epochs, {os.cpu_count()} logical CPUs; {root}")
    print()
    print(
        "| run | wall | first trial start to last end | sum of trial durations "
        "| overhead per trial (median) | energy | complete / pruned | load 1 min |"
    )
    print("|---|---|---|---|---|---|---|---|")
    rows = []
    for i, (label, extra) in enumerate(RUNS):
        out = root / f"run{i}"
        before = os.getloadavg()[0]
        started = time.perf_counter()
        subprocess.run(
            [*frugalml, "-q", "tune", str(spec), "--out", str(out), "--no-progress", *extra],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        wall_s = time.perf_counter() - started
        rows.append(_row(label, out, wall_s, (before, os.getloadavg()[0])))
        print(rows[-1], flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

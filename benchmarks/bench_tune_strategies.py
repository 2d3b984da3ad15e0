"""Energy each tuning strategy needs to reach a target accuracy on digits (built-in CNN).

Runs ``frugalml.tune.compare_strategies`` on ``examples/compare_digits.yaml``: every
strategy ``--repeats`` times under the spec's energy budget, repeat r with sampler seed r,
every trial trained by frugalml's trainer and metered. Then, for each ``--targets`` value,
the energy each strategy needed to come within that much (absolute validation accuracy) of
the best validation accuracy any run found: the Kaplan-Meier median with a bootstrap
interval, runs that never got there censored at the energy they spent, pairwise log-rank
and Mann-Whitney tests, and whether each strategy meets issue 15's goal against random
(:func:`frugalml.tune._compare_tables.goal_check`). ``--threshold`` adds the same tables for a
validation accuracy fixed before the runs (first, since it does not move with the runs).

    python benchmarks/bench_tune_strategies.py [--repeats 10] [--threads 1]
        [--strategies random,tpe,frugal] [--targets 0.02,0.01] [--threshold 0.96]
        [--out DIR]

Before the comparison, one untimed training warms up the process (imports, first-call
initialisation), so the first run does not pay for it. The run directories are resumable:
rerunning with the same --out continues rather than restarts. Prints Markdown; the plot is
DIR/comparison.png.

Energy here is what frugalml's meter reports on this machine: estimated (CPU seconds of
this process x a per-core TDP share, plus DRAM by resident memory) where no RAPL or NVML
counter is readable, which the tables say.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

from frugalml.tune import (
    TuneSpec,
    compare_strategies,
    comparison_table,
    load_study,
    pairwise_tests,
    summarize_trials,
    table_markdown,
)
from frugalml.tune._compare import parse_strategies, run_dir
from frugalml.tune._compare_tables import goal_check

ROOT = Path(__file__).resolve().parent.parent


def warm_up(spec: TuneSpec, threads: int) -> None:
    """One short untimed training, so imports and lazy initialisation are paid up front."""
    import torch

    from frugalml.data import load_dataset
    from frugalml.models import create_model
    from frugalml.train import train

    torch.set_num_threads(threads)
    dataset = load_dataset(spec.dataset)
    model = create_model(
        spec.model, num_classes=dataset.num_classes, in_chans=dataset.channels, **spec.model_args
    )
    train(model, dataset, spec.training.replace(epochs=1))


def run_details(out: Path, labels: list[str], repeats: int) -> str:
    """Per strategy: trials run, pruned, and the sampler's share of the energy."""
    lines = [
        "| strategy | trials per run, median | pruned per run, median | total energy per run, "
        "median (J) | sampler share of energy | best val acc (min-max) | its test acc, median |",
        "|---|---|---|---|---|---|---|",
    ]
    for label in labels:
        trials_n, pruned_n, totals, shares, bests, tests = [], [], [], [], [], []
        for r in range(repeats):
            trials = summarize_trials(load_study(run_dir(out, label, r)))
            ran = [t for t in trials if t.counted]
            trials_n.append(len(ran))
            pruned_n.append(sum(t.state == "pruned" for t in ran))
            total = sum(t.total_energy_j for t in trials)
            totals.append(total)
            shares.append(sum(t.sampler_energy_j for t in trials) / total if total else math.nan)
            done = [t for t in ran if t.state == "complete"]
            if done:
                best = max(done, key=lambda t: (t.val_accuracy, -t.energy_j))
                bests.append(best.val_accuracy)
                tests.append(best.test_accuracy)
        lines.append(
            f"| {label} | {statistics.median(trials_n):g} | {statistics.median(pruned_n):g} | "
            f"{statistics.median(totals):,.1f} | {statistics.median(shares):.1%} | "
            f"{min(bests):.4f}-{max(bests):.4f} | {statistics.median(tests):.4f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", type=Path, default=ROOT / "examples" / "compare_digits.yaml")
    parser.add_argument("--strategies", default="random,tpe,frugal")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--targets", default="0.02,0.01")
    parser.add_argument("--threshold", type=float, default=None)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    spec = TuneSpec.from_yaml(args.spec)
    targets = [float(t) for t in args.targets.split(",")]
    out = args.out or Path(tempfile.mkdtemp(prefix="bench-tune-"))
    labels = [label for label, _, _ in parse_strategies(args.strategies, spec)]

    load_before = os.getloadavg()
    started = time.perf_counter()
    warm_up(spec, args.threads)

    def progress(label: str, repeat: int, event: object) -> None:
        kind = getattr(event, "kind", "")
        if kind == "finished":
            print(
                f"  {label} repeat {repeat}: {getattr(event, 'trials_done', '?')} trials, "
                f"{getattr(event, 'energy_j', math.nan):.1f} J ({getattr(event, 'message', '')})",
                flush=True,
            )

    comparison = compare_strategies(
        spec,
        out,
        args.strategies,
        args.repeats,
        target=targets[0],
        on_event=progress,
        threads=args.threads,
    )
    wall_s = time.perf_counter() - started
    load_after = os.getloadavg()

    print()
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} logical CPUs, "
        f"torch threads {args.threads}; load average {load_before[0]:.1f} before, "
        f"{load_after[0]:.1f} after (other processes share the CPUs: timings are noisy)"
    )
    print(
        f"spec: {args.spec.name}, budget {spec.budget.describe()} per run; strategies "
        f"{', '.join(labels)}; {args.repeats} repeats; wall time {wall_s:.0f} s; out {out}"
    )
    print()
    fixed = [] if args.threshold is None else [(0.0, args.threshold)]
    for target, best in fixed + [(t, None) for t in targets]:
        table = comparison_table(comparison.curves, target, best_accuracy=best)
        tests = pairwise_tests(comparison.curves, target, best_accuracy=best)
        print(table_markdown(table, target=target, tests=tests, fixed=best is not None))
        for line in goal_check(comparison.curves, target, best_accuracy=best):
            print(line)
        print()
    for note in comparison.notes:
        if not note.startswith("Goal for"):  # printed per target above
            print(note)
    print(run_details(out, labels, len({c.repeat for c in comparison.curves})))
    print(f"plot: {comparison.plot_path}")


if __name__ == "__main__":
    main()

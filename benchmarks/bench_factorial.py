"""The factorial layer experiment (Yarally et al., CAIN 2023) on this machine, as Markdown.

Runs :func:`frugalml.profile.run_factorial` (frugal_cnn, {4, 1} conv x {7, 3} linear x ReLU
on/off, REPEATS seeds per cell) and prints the lines for the "Layer energy" section of
benchmarks/RESULTS.md: the command, date, machine, the per-factor median energy and accuracy
changes, the Kruskal-Wallis H, p and epsilon-squared, and whether conv layers dominate.
Optionally also profiles one frugal_cnn per conv level (``--profile``): where the joules of
a training step go, by layer type.

    python benchmarks/bench_factorial.py [--epochs 10] [--repeats 5] [--threads 1]
        [--out runs/bench-factorial] [--profile]

Energy without readable counters is the meter's estimate (CPU TDP x utilisation): it is
proportional to CPU time, and the output says so.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import torch

from frugalml.profile import FactorialConfig, FactorialProgress, run_factorial


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _machine(threads: int) -> str:
    load = os.getloadavg()
    return (
        f"{_cpu_model()}, {os.cpu_count()} logical CPUs, no GPU used, torch "
        f"{torch.__version__} with {threads} intra-op thread(s); load average "
        f"{load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} (1/5/15 min) at the start"
    )


def _profiles(threads: int) -> list[str]:
    from frugalml.data import load_dataset
    from frugalml.models import create_model
    from frugalml.profile import ProfileConfig, profile_network

    data = load_dataset("digits")
    lines = [
        "",
        "Where the joules of one training step go (`frugalml profile frugal_cnn --arg "
        "conv_layers=C --arg linear_layers=7 --steps 50 --threads 1`, batch 32, energy "
        "attributed by time share):",
        "",
        "| conv layers | step (ms) | energy/step (mJ) | conv | linear | activation | pooling "
        "| loss + optimizer + untimed |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for conv in (4, 1):
        torch.manual_seed(0)
        model = create_model(
            "frugal_cnn", num_classes=10, in_chans=1, conv_layers=conv, linear_layers=7
        )
        profile = profile_network(
            model, data, ProfileConfig(steps=50, warmup_steps=5), model_name="frugal_cnn"
        )
        share = {t.layer_type: t.time_share for t in profile.by_type()}
        lines.append(
            f"| {conv} | {profile.window_step_s * 1e3:.2f} | "
            f"{profile.energy_per_step_j * 1e3:.1f} ({profile.energy_kind}) | "
            f"{share.get('convolution', 0):.0%} | {share.get('linear', 0):.0%} | "
            f"{share.get('activation', 0):.0%} | {share.get('pooling', 0):.0%} | "
            f"{share.get('outside model', 0):.0%} |"
        )
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("runs/bench-factorial"))
    parser.add_argument("--profile", action="store_true", help="also profile conv 4 and 1")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    started = datetime.now(timezone.utc)
    machine = _machine(args.threads)
    config = FactorialConfig(epochs=args.epochs, repeats=args.repeats)

    def progress(p: FactorialProgress) -> None:
        if p.event in ("trial_finished", "trial_failed"):
            print(
                f"  {p.trials_done + p.trials_failed}/{p.trials_total} {p.current}: {p.message}",
                file=sys.stderr,
            )

    t0 = time.perf_counter()
    result = run_factorial(config, args.out, on_progress=progress)
    wall_s = time.perf_counter() - t0
    total_j = sum(float(r["energy_j"]) for r in result.rows)
    lines = [
        f"Command: `python benchmarks/bench_factorial.py --epochs {args.epochs} --repeats "
        f"{args.repeats} --threads {args.threads}` (equivalently `frugalml factorial --epochs "
        f"{args.epochs} --repeats {args.repeats} --threads {args.threads}`), "
        f"{started:%Y-%m-%d %H:%M} UTC, {wall_s / 60:.1f} min for {len(result.rows)} trials "
        f"({total_j:.0f} J {result.energy_kind} in all).",
        f"Machine: {machine}.",
        f"Energy: {result.energy_kind} ({result.energy_source}); analysed: training steps "
        "only (`train_energy_j`).",
        "",
        "| factor | median training energy | energy change | median test accuracy | "
        "accuracy change | KW H (energy) | p | epsilon^2 | KW p (accuracy) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for e in result.effects:
        f = e.factor
        lines.append(
            f"| {f.describe(f.level_from)} -> {f.describe(f.level_to)} | "
            f"{e.median_energy_from_j:.2f} J -> {e.median_energy_to_j:.2f} J | "
            f"{e.energy_change_pct:+.1f}% | {e.median_accuracy_from:.3f} -> "
            f"{e.median_accuracy_to:.3f} | {e.accuracy_change_pp:+.1f} pp | "
            f"{e.energy_test.h:.2f} | {e.energy_test.p:.2g} | "
            f"{e.energy_test.epsilon_squared:.2f} | {e.accuracy_test.p:.2g} |"
        )
    lines += ["", f"{result.conv_sentence}; {result.dominance_sentence}."]
    lines += [f"- {note}" for note in result.notes]
    if args.profile:
        lines += _profiles(args.threads)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())

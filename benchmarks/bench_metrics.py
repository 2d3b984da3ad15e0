"""The per-epoch metrics: frugalml's numpy ones against scikit-learn's, side by side.

Two parts, in one run:

1. ``classification_metrics`` on a validation-sized and a test-sized split of random
   10-class scores, against the scikit-learn calls it replaced (``balanced_accuracy_score``,
   ``f1_score``, ``roc_auc_score``), CPU ms per call;
2. whole 4-epoch trainings of the tuning example's base configuration on digits
   (``examples/compare_digits.yaml``: every epoch evaluates validation and test), metered,
   alternating the two metric implementations so that drift in the machine hits both
   alike. Energy is whatever the meter can read here (its provenance is printed).

    python benchmarks/bench_metrics.py [--repeats 8] [--calls 200]

Prints Markdown for ``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def time_calls(fn: Any, labels: np.ndarray, probabilities: np.ndarray, calls: int) -> float:
    fn(labels, probabilities, 10)  # first call: imports
    started = time.process_time()
    for _ in range(calls):
        fn(labels, probabilities, 10)
    return 1000 * (time.process_time() - started) / calls


def part_calls(calls: int) -> None:
    from frugalml.train import classification_metrics
    from frugalml.train._metrics import sklearn_reference_metrics

    rng = np.random.default_rng(0)
    print("| split | scikit-learn (CPU ms a call) | frugalml (CPU ms a call) | ratio |")
    print("|---|---|---|---|")
    for name, n in (("validation, 179 images", 179), ("test, 361 images", 361)):
        labels = rng.integers(0, 10, n)
        logits = rng.normal(size=(n, 10))
        probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
        slow = time_calls(sklearn_reference_metrics, labels, probabilities, calls)
        fast = time_calls(classification_metrics, labels, probabilities, calls)
        print(f"| {name} | {slow:.2f} | {fast:.3f} | {slow / fast:.0f}x |")


def part_trials(repeats: int) -> None:
    import torch

    import frugalml.train._loop as loop
    from frugalml.data import load_dataset
    from frugalml.meter import Meter, MeterConfig
    from frugalml.models import create_model
    from frugalml.train import classification_metrics, train
    from frugalml.train._metrics import sklearn_reference_metrics
    from frugalml.tune import TuneSpec
    from frugalml.tune._space import apply_params

    torch.set_num_threads(1)
    spec = TuneSpec.from_yaml(ROOT / "examples" / "compare_digits.yaml")
    dataset = load_dataset(spec.dataset)
    config, name, args = apply_params({}, spec.training, spec.model, spec.model_args)
    implementations = {
        "scikit-learn": sklearn_reference_metrics,
        "frugalml": classification_metrics,
    }
    figures: dict[str, list[tuple[float, float]]] = {k: [] for k in implementations}
    provenance = ""
    with Meter(MeterConfig()) as meter:
        for r in range(repeats + 1):  # the first round warms up, uncounted
            for label, fn in implementations.items():
                setattr(loop, "classification_metrics", fn)  # noqa: B010
                torch.manual_seed(config.seed)
                model = create_model(
                    name, num_classes=dataset.num_classes, in_chans=dataset.channels, **args
                )
                cpu = time.process_time()
                window = meter.begin(f"{label} {r}")
                train(model, dataset, config)
                m = meter.end(window)
                provenance = f"{m.provenance}, {m.energy_source}"
                if r:
                    figures[label].append((m.energy_j, time.process_time() - cpu))
    setattr(loop, "classification_metrics", classification_metrics)  # noqa: B010
    print()
    print(f"4-epoch trainings, {repeats} each, alternating; energy {provenance}")
    print()
    print("| metrics | energy a training, median (J) | CPU s, median | min-max (J) |")
    print("|---|---|---|---|")
    medians = {}
    for label, rows in figures.items():
        energy = [e for e, _ in rows]
        medians[label] = statistics.median(energy)
        print(
            f"| {label} | {medians[label]:.2f} | {statistics.median(c for _, c in rows):.3f} "
            f"| {min(energy):.2f}-{max(energy):.2f} |"
        )
    print()
    print(f"frugalml's metrics: {medians['frugalml'] / medians['scikit-learn']:.2f}x the energy")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=8)
    parser.add_argument("--calls", type=int, default=200)
    args = parser.parse_args()
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    print(f"{when}, {platform.machine()}, {os.cpu_count()} logical CPUs")
    print()
    part_calls(args.calls)
    part_trials(args.repeats)


if __name__ == "__main__":
    main()

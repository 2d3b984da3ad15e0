"""Overhead of the meter on a real training run: with vs without, interleaved (ABAB...).

Trains the example CNN (examples/train_digits.py) on scikit-learn's digits for a few epochs
per run, alternately without the meter (A) and with it (B: a Meter for the run, one window
per epoch, the poller running), and compares training throughput (samples/s). The meter's
whole life (construction, poller start, windows, close) is inside the timed region.

    .venv/bin/python benchmarks/bench_meter_overhead.py --pairs 10 --epochs 10
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from types import ModuleType

import torch

from frugalml.meter import Meter, MeterConfig
from frugalml.meter._estimate import cpu_model_name

ROOT = Path(__file__).resolve().parents[1]


def load_example() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "train_digits", ROOT / "examples" / "train_digits.py"
    )
    if spec is None or spec.loader is None:
        raise SystemExit("cannot load examples/train_digits.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["train_digits"] = module
    spec.loader.exec_module(module)
    return module


def run(
    example: ModuleType, data: object, epochs: int, metered: bool, seed: int
) -> tuple[float, float]:
    """One training run; returns samples per wall second and per CPU second (all threads,
    the meter's poller included)."""
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    model = example.SmallCNN()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    samples = epochs * len(data.x_train)  # type: ignore[attr-defined]
    start = time.perf_counter()
    cpu_start = time.process_time()
    if metered:
        with Meter(MeterConfig()) as meter:
            for epoch in range(epochs):
                window = meter.begin(f"epoch {epoch + 1}")
                example.train_epoch(model, optimizer, data, generator=generator)
                meter.end(window)
    else:
        for _ in range(epochs):
            example.train_epoch(model, optimizer, data, generator=generator)
    wall_s = time.perf_counter() - start
    cpu_s = time.process_time() - cpu_start
    return samples / wall_s, samples / cpu_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=10, help="A/B pairs after one warm-up pair")
    parser.add_argument("--epochs", type=int, default=10, help="epochs per run (the example's 10)")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads (1 by default: on a shared 2-core machine, spinning OpenMP "
        "threads make wall times far noisier than the effect measured)",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    example = load_example()
    data = example.load_data(0)
    run(example, data, 1, False, 0)  # warm-up (allocator, kernels), not counted
    run(example, data, 1, True, 0)
    without: list[float] = []
    with_meter: list[float] = []
    cpu_without: list[float] = []
    cpu_with: list[float] = []
    started = time.perf_counter()
    for pair in range(args.pairs):
        wall, cpu = run(example, data, args.epochs, False, pair)  # A
        without.append(wall)
        cpu_without.append(cpu)
        wall, cpu = run(example, data, args.epochs, True, pair)  # B
        with_meter.append(wall)
        cpu_with.append(cpu)
    total_s = time.perf_counter() - started
    ratios = [b / a for a, b in zip(without, with_meter, strict=True)]
    q = statistics.quantiles(ratios, n=4)
    ratio_of_medians = statistics.median(with_meter) / statistics.median(without)
    cpu_ratio = statistics.median(cpu_with) / statistics.median(cpu_without)
    print(f"date: {datetime.now(timezone.utc).isoformat(timespec='seconds')}")
    print(
        f"machine: {cpu_model_name()}, {torch.get_num_threads()} torch threads, "
        f"Python {platform.python_version()}, torch {torch.__version__}"
    )
    print(f"command: {' '.join([Path(sys.executable).name, *sys.argv])}")
    print(
        f"runs: {args.pairs} pairs x {args.epochs} epochs x {len(data.x_train)} samples, "
        f"interleaved ABAB, {total_s:.0f} s in all"
    )
    print(
        f"without meter: median {statistics.median(without):.0f} samples/s "
        f"(min {min(without):.0f}, max {max(without):.0f})"
    )
    print(
        f"with meter:    median {statistics.median(with_meter):.0f} samples/s "
        f"(min {min(with_meter):.0f}, max {max(with_meter):.0f})"
    )
    print(f"throughput ratio (median with / median without): {ratio_of_medians:.4f}")
    print(
        f"paired ratios: median {statistics.median(ratios):.4f}, "
        f"IQR {q[0]:.4f}-{q[2]:.4f}, target >= 0.99"
    )
    print(
        f"samples per CPU second (all threads): without {statistics.median(cpu_without):.0f}, "
        f"with {statistics.median(cpu_with):.0f}, ratio {cpu_ratio:.4f}"
    )
    load = os.getloadavg()
    print(f"load average at the end (1/5/15 min): {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")


if __name__ == "__main__":
    main()

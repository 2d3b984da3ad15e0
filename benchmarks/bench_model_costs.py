"""Costs and CPU training time of a preset's models on digits (the cpu-tiny budget check).

For each model: parameters, forward FLOPs per sample (``count_costs``), and the wall time of
one training epoch over digits' 1,257 training images (70 % of scikit-learn's 1,797),
resized to the model's preset size, batch 32, Adam lr 5e-4, fp32, the paper's step. One
warm-up epoch, then ``--epochs`` timed epochs: the median, and the fastest (the least
disturbed by other processes on a shared machine). Data are plain tensors in
memory (no DataLoader), so this is the model's cost, not the input pipeline's.

    python benchmarks/bench_model_costs.py [--preset cpu-tiny] [--threads 2] [--epochs 3]

Prints a Markdown table; the ``10 epochs`` column is 10 x the median epoch.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import torch
import torch.nn.functional as F

from frugalml.models import count_costs, model_input_size, resolve_models


def digits_train(size: int) -> tuple[torch.Tensor, torch.Tensor]:
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(digits.target)
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))[:1257]
    x, y = x[order], y[order]
    if size != 8:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    return x, y


def epoch_seconds(
    model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, epochs: int
) -> list[float]:
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-4)
    model.train()
    times = []
    for epoch in range(epochs + 1):
        order = torch.randperm(len(y), generator=torch.Generator().manual_seed(epoch))
        start = time.perf_counter()
        for i in range(0, len(y), 32):
            batch = order[i : i + 32]
            loss = F.cross_entropy(model(x[batch]), y[batch])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        if epoch > 0:  # the first epoch is a warm-up
            times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="cpu-tiny")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs per model")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    resolved = resolve_models([args.preset])
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"# {args.preset} on {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPUs, torch {torch.__version__}, {args.threads} thread(s), "
        f"load average {load:.1f} at start"
    )
    print(
        "| model | input | params | MFLOPs/sample | s/epoch median | s/epoch fastest "
        "| 10 epochs (s) |"
    )
    print("|---|---|---|---|---|---|---|")
    for ref in resolved.models:
        size = model_input_size(ref, 8)
        x, y = digits_train(size)
        model = ref.create(num_classes=10, in_chans=1)
        costs = count_costs(model, (1, size, size))
        times = epoch_seconds(model, x, y, args.epochs)
        median = statistics.median(times)
        print(
            f"| {ref.key} | {size}x{size} | {costs.params:,} | "
            f"{costs.flops_per_sample / 1e6:.2f} | {median:.2f} | {min(times):.2f} | "
            f"{10 * median:.1f} |",
            flush=True,
        )
    for name, reason in resolved.unresolved:
        print(f"unresolved: {name}: {reason}")


if __name__ == "__main__":
    main()

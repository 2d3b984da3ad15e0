"""Trainer throughput vs a plain PyTorch loop written the usual way, side by side.

The plain loop is what most training scripts do: a DataLoader over float tensors with
shuffle=True, a per-batch ``.to(device)``, Adam, cross-entropy. frugalml's trainer runs the
same model and data through its fast path (the split kept as tensors on the device, batches
gathered by index, normalised on the device). Runs are interleaved (A B A B ...) so drift
of the machine hits both alike; throughput is training samples per second of the training
phase only (evaluation excluded in both).

    python benchmarks/bench_trainer.py [--model frugal_cnn] [--image-size 8] [--rounds 5]

On a CUDA machine it also reports NVML joules per epoch for both loops (the meter's GPU
component), with MedMNIST-shaped synthetic data (7,007 x 3 x 28 x 28, 7 classes) when
``--synthetic-medmnist`` is given.
"""

from __future__ import annotations

import argparse
import contextlib
import platform
import statistics
import sys
import time
from datetime import datetime, timezone

import numpy as np
import torch

from frugalml.data import ImageDataset, Split, load_dataset
from frugalml.meter import Meter, MeterConfig
from frugalml.models import create_model
from frugalml.train import TrainConfig, train


def plain_loop(
    model: torch.nn.Module, dataset: ImageDataset, epochs: int, batch: int, device: str
) -> float:
    """The usual way. Returns training samples per second."""
    from torch.utils.data import DataLoader, TensorDataset

    images = torch.from_numpy(dataset.train.images).float().div(255.0)
    mean = images.mean(dim=(0, 2, 3), keepdim=True)
    std = images.std(dim=(0, 2, 3), keepdim=True).clamp_min(1e-6)
    images = (images - mean) / std
    labels = torch.from_numpy(dataset.train.labels)
    loader = DataLoader(TensorDataset(images, labels), batch_size=batch, shuffle=True)
    model = model.to(device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-4)
    loss_fn = torch.nn.CrossEntropyLoss()
    samples, seconds = 0, 0.0
    for _ in range(epochs):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        for x, y in loader:
            x, y = x.to(device), y.to(device)
            loss = loss_fn(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            samples += len(y)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        seconds += time.perf_counter() - t0
    return samples / seconds


def frugal_loop(
    model: torch.nn.Module, dataset: ImageDataset, epochs: int, batch: int, device: str
) -> float:
    config = TrainConfig(epochs=epochs, batch_size=batch, device=device, data_path="tensors")
    result = train(model, dataset, config)
    samples = sum(e.train_samples for e in result.epochs)
    return samples / sum(e.train_duration_s for e in result.epochs)


def synthetic_medmnist() -> ImageDataset:
    rng = np.random.default_rng(0)

    def split(n: int) -> Split:
        return Split(
            images=rng.integers(0, 256, size=(n, 3, 28, 28), dtype=np.uint8),
            labels=rng.integers(0, 7, size=n).astype(np.int64),
        )

    return ImageDataset(
        name="synthetic dermamnist shape",
        num_classes=7,
        channels=3,
        image_size=(28, 28),
        class_names=tuple(str(i) for i in range(7)),
        train=split(7007),
        val=split(1003),
        test=split(2005),
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="frugal_cnn")
    parser.add_argument("--image-size", type=int, default=None)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--synthetic-medmnist", action="store_true")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads (default: torch's own choice)"
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    dataset = synthetic_medmnist() if args.synthetic_medmnist else load_dataset("digits")
    if args.image_size:
        dataset = dataset.resized(args.image_size)

    def fresh() -> torch.nn.Module:
        torch.manual_seed(0)
        return create_model(args.model, num_classes=dataset.num_classes, in_chans=dataset.channels)

    frugal_loop(fresh(), dataset, 1, args.batch, args.device)  # warm-up, both paths
    plain_loop(fresh(), dataset, 1, args.batch, args.device)
    plain, ours = [], []
    joules: dict[str, list[float]] = {"plain": [], "frugalml": []}
    gpu = args.device.startswith("cuda")
    meter = Meter(MeterConfig(gpus="auto")) if gpu else None
    with meter if meter is not None else contextlib.nullcontext():
        for _ in range(args.rounds):
            for name, loop, out in (("plain", plain_loop, plain), ("frugalml", frugal_loop, ours)):
                window = meter.begin(name) if meter is not None else None
                out.append(loop(fresh(), dataset, args.epochs, args.batch, args.device))
                if meter is not None and window is not None:
                    m = meter.end(window)
                    gpu_j = sum(c.energy_j for c in m.components if c.component.startswith("gpu"))
                    joules[name].append(gpu_j / args.epochs)
    ratios = [o / p for o, p in zip(ours, plain, strict=True)]
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    print(f"date: {datetime.now(timezone.utc).isoformat(timespec='seconds')}")
    print(f"machine: {cpu}, {torch.get_num_threads()} torch threads, device {args.device}")
    print(f"command: python {' '.join(sys.argv)}")
    print(
        f"data: {dataset.name}, {len(dataset.train)} training images "
        f"{dataset.channels}x{dataset.image_size[0]}x{dataset.image_size[1]}, model {args.model}, "
        f"batch {args.batch}, {args.epochs} epochs x {args.rounds} interleaved rounds"
    )
    print(
        f"plain loop (DataLoader, per-batch .to): median {statistics.median(plain):,.0f} samples/s"
    )
    print(
        f"frugalml trainer (tensors path):        median {statistics.median(ours):,.0f} samples/s"
    )
    print(
        f"ratio frugalml/plain: median {statistics.median(ratios):.2f}x "
        f"(min {min(ratios):.2f}, max {max(ratios):.2f})"
    )
    if gpu and joules["plain"]:
        # Whole windows (model creation and the per-loop setup included), GPU components only.
        for name, values in joules.items():
            print(f"{name}: median {statistics.median(values):,.1f} J per epoch (NVML, GPU only)")
        print(
            "joules frugalml/plain: median "
            f"{statistics.median(joules['frugalml']) / statistics.median(joules['plain']):.2f}x"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

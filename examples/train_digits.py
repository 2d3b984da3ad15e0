"""Train a small CNN on scikit-learn's digits and meter every epoch.

A real, short training run (a few seconds on 2 CPU cores): 8 x 8 grey digit images bundled
with scikit-learn, a two-layer CNN written here, Adam. One meter window per epoch; after
each epoch the script prints the epoch's energy and the predicted total for the planned
epochs, and an optional energy budget stops the run early.

    python examples/train_digits.py --epochs 10
    frugalml measure -- python examples/train_digits.py        # the whole process, too
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn

from frugalml.meter import Budget, BudgetGuard, Meter, MeterConfig, predict_total
from frugalml.train import apply_threads


class SmallCNN(nn.Module):
    """Two 3x3 conv layers and a linear classifier, for 1 x 8 x 8 inputs."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(32, 64, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(64 * 4 * 4, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.classifier(self.features(x))
        return logits


@dataclass
class Data:
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor


def load_data(seed: int = 0) -> Data:
    digits = load_digits()
    images = (digits.images / 16.0).astype(np.float32)[:, None, :, :]
    x_tr, x_te, y_tr, y_te = train_test_split(
        images, digits.target, test_size=0.2, random_state=seed, stratify=digits.target
    )
    return Data(
        torch.from_numpy(x_tr),
        torch.from_numpy(y_tr).long(),
        torch.from_numpy(x_te),
        torch.from_numpy(y_te).long(),
    )


def train_epoch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    data: Data,
    *,
    batch_size: int = 32,
    generator: torch.Generator | None = None,
) -> float:
    """One pass over the training set; returns the mean loss."""
    model.train()
    order = torch.randperm(len(data.x_train), generator=generator)
    loss_fn = nn.CrossEntropyLoss()
    total = 0.0
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        optimizer.zero_grad()
        loss = loss_fn(model(data.x_train[idx]), data.y_train[idx])
        loss.backward()
        optimizer.step()
        total += loss.item() * len(idx)
    return total / len(order)


@torch.no_grad()
def accuracy(model: nn.Module, data: Data) -> float:
    model.eval()
    predicted = model(data.x_test).argmax(dim=1)
    return float((predicted == data.y_test).float().mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--budget-kwh", type=float, default=None, help="stop when the run would exceed this"
    )
    parser.add_argument(
        "--threads", type=int, default=None, help="torch CPU threads (default 1, as frugalml's)"
    )
    args = parser.parse_args()

    threads = apply_threads(args.threads, option="--threads")  # frugalml's one threads rule
    print(f"torch threads: {threads}")
    torch.manual_seed(args.seed)
    generator = torch.Generator().manual_seed(args.seed)
    data = load_data(args.seed)
    model = SmallCNN()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    guard = (
        BudgetGuard(Budget(energy_kwh=args.budget_kwh), args.epochs) if args.budget_kwh else None
    )

    started = time.monotonic()
    with Meter(MeterConfig()) as meter:
        epochs = []
        for epoch in range(1, args.epochs + 1):
            window = meter.begin(f"epoch {epoch}")
            loss = train_epoch(model, optimizer, data, generator=generator)
            m = meter.end(window)
            epochs.append(m)
            line = (
                f"epoch {epoch:2d}  loss {loss:.3f}  {m.duration_s:.2f} s  "
                f"{m.energy_j:.2f} J ({m.provenance})  {m.co2_g * 1000:.3f} mg CO2e"
            )
            prediction = predict_total(epochs, args.epochs)
            energy = prediction.energy_j
            if energy.high is not None and energy.low is not None:
                line += (
                    f"  | predicted total {energy.total:.1f} J "
                    f"[{energy.low:.1f}, {energy.high:.1f}] ({prediction.confidence:.0%})"
                )
            else:
                line += f"  | predicted total {energy.total:.1f} J (no interval yet)"
            print(line)
            if guard is not None:
                decision = guard.check(epochs)
                if decision.stop:
                    print(f"stopping: {decision.reason}")
                    break
        with meter.window("evaluation"):  # records the window even if this raises
            acc = accuracy(model, data)
    evaluation = meter.measurements[-1]
    total_j = sum(m.energy_j for m in epochs)
    print(
        f"test accuracy {acc:.3f} after {len(epochs)} epochs; training {total_j:.1f} J, "
        f"evaluation {evaluation.energy_j:.2f} J, {time.monotonic() - started:.1f} s wall"
    )
    print(f"energy sources: {epochs[0].energy_source}")
    for component in epochs[0].components:
        if component.kind == "estimated":
            print(f"  {component.component} is estimated: {component.notes[0]}")


if __name__ == "__main__":
    main()

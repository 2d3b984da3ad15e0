"""Training configuration: the PePR paper's protocol unless told otherwise."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from frugalml.errors import ConfigError

DataPath = Literal["auto", "tensors", "loader"]
Normalization = Literal["auto", "dataset", "imagenet", "none"]


@dataclass(frozen=True)
class TrainConfig:
    """How one model is trained and evaluated.

    The defaults are the protocol of Selvan et al. (NLDL 2025): Adam, learning rate 5e-4,
    batch 32, 10 epochs, cross-entropy, no augmentation; performance is the test accuracy
    after the last epoch.

    ``data_path`` chooses how batches reach the model: ``tensors`` keeps the whole split as
    tensors on the training device and gathers batches by index (no loader workers, no
    per-batch host-to-device copy); ``loader`` is the usual DataLoader with a per-batch
    ``.to(device)``. Both draw the same batches in the same order, so on one device they
    give the same results. ``auto`` picks ``tensors`` when the training split fits in
    ``tensor_path_max_bytes``.
    """

    epochs: int = 10
    batch_size: int = 32
    lr: float = 5e-4
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 0.0
    eval_batch_size: int = 256
    device: str = "auto"
    seed: int = 0
    bf16: bool = False
    channels_last: bool = False
    data_path: DataPath = "auto"
    tensor_path_max_bytes: int = 2 * 1024**3
    normalization: Normalization = "auto"

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        def positive_int(name: str) -> None:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(
                    f"training.{name} must be a positive integer, got {value!r}",
                    fix=f"set training.{name} to 1 or more",
                )

        for name in ("epochs", "batch_size", "eval_batch_size"):
            positive_int(name)
        if not isinstance(self.lr, (int, float)) or not 0 < float(self.lr) < 10:
            raise ConfigError(
                f"training.lr must be a number in (0, 10), got {self.lr!r}",
                fix="use a learning rate such as 5e-4",
            )
        if len(self.betas) != 2 or not all(0 <= float(b) < 1 for b in self.betas):
            raise ConfigError(
                f"training.betas must be two numbers in [0, 1), got {self.betas!r}",
                fix="use e.g. [0.9, 0.999]",
            )
        if not isinstance(self.weight_decay, (int, float)) or self.weight_decay < 0:
            raise ConfigError(
                f"training.weight_decay must be >= 0, got {self.weight_decay!r}",
                fix="use 0 or a small positive number such as 1e-4",
            )
        if self.data_path not in ("auto", "tensors", "loader"):
            raise ConfigError(
                f"training.data_path must be auto, tensors or loader, got {self.data_path!r}",
                fix="leave it at auto",
            )
        if self.normalization not in ("auto", "dataset", "imagenet", "none"):
            raise ConfigError(
                "training.normalization must be auto, dataset, imagenet or none, "
                f"got {self.normalization!r}",
                fix="leave it at auto",
            )
        if not isinstance(self.device, str) or not (
            self.device in ("auto", "cpu", "cuda", "mps") or self.device.startswith("cuda:")
        ):
            raise ConfigError(
                f"training.device must be auto, cpu, cuda, cuda:N or mps, got {self.device!r}",
                fix="leave it at auto (CUDA when available, else CPU)",
            )

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any] | None) -> TrainConfig:
        """Build from a spec's ``training:`` mapping, rejecting unknown keys by name."""
        values = dict(values or {})
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(
                f"unknown training option(s): {', '.join(unknown)}",
                fix=f"use only: {', '.join(sorted(known))}",
            )
        if "betas" in values:
            betas = values["betas"]
            if not isinstance(betas, (list, tuple)):
                raise ConfigError(
                    f"training.betas must be a list of two numbers, got {betas!r}",
                    fix="use e.g. [0.9, 0.999]",
                )
            values["betas"] = tuple(float(b) for b in betas)
        if "lr" in values and isinstance(values["lr"], str):
            try:
                values["lr"] = float(values["lr"])  # YAML reads 5e-4 (no dot) as a string
            except ValueError:
                raise ConfigError(
                    f"training.lr must be a number, got {values['lr']!r}", fix="e.g. lr: 5.0e-4"
                ) from None
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["betas"] = list(self.betas)
        return data

    def replace(self, **changes: Any) -> TrainConfig:
        return dataclasses.replace(self, **changes)

"""Training configuration: the PePR paper's protocol unless told otherwise."""

from __future__ import annotations

import dataclasses
import math
import numbers
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from frugalml.errors import ConfigError

DataPath = Literal["auto", "tensors", "loader"]
Normalization = Literal["auto", "dataset", "imagenet", "none"]

_DATA_PATHS: tuple[str, ...] = ("auto", "tensors", "loader")
_NORMALIZATIONS: tuple[str, ...] = ("auto", "dataset", "imagenet", "none")
_DEVICE_RE = re.compile(r"^(auto|cpu|cuda|mps|cuda:[0-9]{1,3})$")

#: Largest seed: numpy's legacy ``RandomState`` and several samplers take 32-bit seeds.
MAX_SEED = 2**32 - 1
#: Hard limits (a value beyond is a typo, not a plan) and the level that draws a warning.
MAX_EPOCHS = 100_000
WARN_EPOCHS = 1_000
MAX_BATCH_SIZE = 2**20
MAX_WEIGHT_DECAY = 10.0
_INT_LIMITS = {
    "epochs": MAX_EPOCHS,
    "batch_size": MAX_BATCH_SIZE,
    "eval_batch_size": MAX_BATCH_SIZE,
}


def _check_int(name: str, value: Any, low: int, high: int) -> None:
    wrong_type = isinstance(value, bool) or not isinstance(value, int)
    if wrong_type or not low <= value <= high:
        raise ConfigError(
            f"training.{name} must be an integer in [{low}, {high:,}], got {value!r}",
            fix=f"write training.{name} as a whole number, without quotes or a dot"
            if wrong_type
            else f"set training.{name} to {low} .. {high:,}",
        )


def _check_real(name: str, value: Any, *, fix: str) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ConfigError(f"training.{name} must be a number, got {value!r}", fix=fix)
    if not math.isfinite(float(value)):
        raise ConfigError(f"training.{name} must be a finite number, got {value!r}", fix=fix)


_EXAMPLES = {"lr": "lr: 5.0e-4", "weight_decay": "weight_decay: 1.0e-4", "betas": "[0.9, 0.999]"}


def _number_from_text(value: Any, name: str) -> Any:
    """A number written as text (YAML reads ``5e-4`` as one) becomes a float; anything else
    but a number is refused: ``true`` is not a learning rate."""
    fix = f"write a number, e.g. {_EXAMPLES[name]}"
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            raise ConfigError(f"training.{name} must be a number, got {value!r}", fix=fix) from None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ConfigError(f"training.{name} must be a number, got {value!r}", fix=fix)
    return value


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
        """Every field has its type (a bool is not a number, a number is finite) and lies in
        its range; anything else is a :class:`ConfigError` naming the field and the fix."""
        for name in ("epochs", "batch_size", "eval_batch_size"):
            _check_int(name, getattr(self, name), 1, _INT_LIMITS[name])
        _check_int("seed", self.seed, 0, MAX_SEED)
        _check_int("tensor_path_max_bytes", self.tensor_path_max_bytes, 0, 2**62)
        _check_real("lr", self.lr, fix="use a learning rate such as 5e-4")
        if not 0 < float(self.lr) < 10:
            raise ConfigError(
                f"training.lr must be a number in (0, 10), got {self.lr!r}",
                fix="use a learning rate such as 5e-4",
            )
        if not isinstance(self.betas, tuple) or len(self.betas) != 2:
            raise ConfigError(
                f"training.betas must be two numbers in [0, 1), got {self.betas!r}",
                fix="use e.g. [0.9, 0.999]",
            )
        for beta in self.betas:
            _check_real("betas", beta, fix="use e.g. [0.9, 0.999]")
            if not 0 <= float(beta) < 1:
                raise ConfigError(
                    f"training.betas must be two numbers in [0, 1), got {list(self.betas)!r}",
                    fix="use e.g. [0.9, 0.999]",
                )
        _check_real("weight_decay", self.weight_decay, fix="use 0 or e.g. 1e-4")
        if not 0 <= float(self.weight_decay) <= MAX_WEIGHT_DECAY:
            raise ConfigError(
                f"training.weight_decay must be in [0, {MAX_WEIGHT_DECAY:g}], "
                f"got {self.weight_decay!r}",
                fix="use 0 or a small positive number such as 1e-4",
            )
        for name in ("bf16", "channels_last"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(
                    f"training.{name} must be true or false, got {getattr(self, name)!r}",
                    fix=f"write {name}: false (no quotes)",
                )
        for name, choices in (("data_path", _DATA_PATHS), ("normalization", _NORMALIZATIONS)):
            value = getattr(self, name)
            if not isinstance(value, str) or value not in choices:
                raise ConfigError(
                    f"training.{name} must be {', '.join(choices[:-1])} or {choices[-1]}, "
                    f"got {value!r}",
                    fix="leave it at auto",
                )
        _check_device_name(self.device, "training.device")

    def warnings(self) -> list[str]:
        """Legal but probably unintended values, one sentence each (the specs log them)."""
        out: list[str] = []
        if self.epochs > WARN_EPOCHS:
            out.append(
                f"training.epochs is {self.epochs:,}: far beyond the paper's 10; check the "
                "number (validate predicts what it costs)"
            )
        if float(self.lr) > 1:
            out.append(f"training.lr is {self.lr:g}: Adam usually diverges above 1e-2")
        if float(self.weight_decay) > 0.1:
            out.append(f"training.weight_decay is {self.weight_decay:g}: usually 0 to 1e-2")
        return out

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any] | None) -> TrainConfig:
        """Build from a spec's ``training:`` mapping, rejecting unknown keys by name.

        Numbers may come as text (YAML reads ``5e-4`` without a dot as a string); nothing
        else is converted: ``"false"`` is not a boolean and ``true`` is not a learning rate.
        """
        if values is not None and not isinstance(values, Mapping):
            raise ConfigError(
                f"training must be a mapping of options, got {values!r}",
                fix="e.g. training: {epochs: 5}",
            )
        values = {str(k): v for k, v in (values or {}).items()}
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(
                f"unknown training option(s): {', '.join(unknown)}",
                fix=f"use only: {', '.join(sorted(known))}",
            )
        if "betas" in values:
            betas = values["betas"]
            if not isinstance(betas, (list, tuple)) or len(betas) != 2:
                raise ConfigError(
                    f"training.betas must be a list of two numbers, got {betas!r}",
                    fix="use e.g. [0.9, 0.999]",
                )
            values["betas"] = tuple(_number_from_text(b, "betas") for b in betas)
        for name in ("lr", "weight_decay"):
            if name in values:
                values[name] = _number_from_text(values[name], name)
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["betas"] = list(self.betas)
        return data

    def replace(self, **changes: Any) -> TrainConfig:
        return dataclasses.replace(self, **changes)


def _check_device_name(device: Any, where: str) -> None:
    if not isinstance(device, str) or not _DEVICE_RE.match(device):
        raise ConfigError(
            f"{where} must be auto, cpu, cuda, cuda:N or mps, got {device!r}",
            fix="leave it at auto (CUDA when available, else CPU)",
        )


def check_device(device: Any, *, where: str = "training.device") -> None:
    """Refuse a device name that is malformed (``tpu``, ``cuda:banana``) or that this
    machine lacks (``cuda`` without CUDA, ``cuda:3`` on one GPU, ``mps`` off a Mac).

    ``auto`` and ``cpu`` always exist and need no torch import. Shared by the training
    config, the study worker, ``study validate``, ``profile`` and ``factorial``.
    """
    _check_device_name(device, where)
    if device in ("auto", "cpu"):
        return
    import torch

    if device.startswith("cuda"):
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ConfigError(
                f"{where} is {device!r} but CUDA is not available here",
                fix="use auto or cpu",
            )
        if ":" in device and int(device.split(":", 1)[1]) >= count:
            raise ConfigError(
                f"{where} is {device!r} but this machine has {count} CUDA device(s)",
                fix=f"use cuda:0 .. cuda:{count - 1}, cuda or auto",
            )
    elif device == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"{where} is 'mps' but MPS is not available here", fix="use auto or cpu")

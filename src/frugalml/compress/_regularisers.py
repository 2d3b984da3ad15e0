"""Sparsity-inducing terms added to the training loss.

Each measure is a plain function of one weight tensor; :class:`Regulariser` sums one measure
over named weights, times a strength that follows a schedule (constant, or a linear warm-up
over the first steps). Definitions:

- ``l1``: ``sum |w|``.
- ``hoyer``: ``sum |w| / sqrt(sum w^2)`` (Hoyer's L1/L2 ratio, scale invariant).
- ``hoyer_square``: ``(sum |w|)^2 / sum w^2`` per weight tensor (DeepHoyer, ICLR 2020); it is
  1 for a tensor with one non-zero and N for N equal magnitudes.
- ``group_lasso``: the sum of the L2 norms of the output filters and of the input channels
  (structured sparsity learning, SSL).
- ``group_hoyer_square``: DeepHoyer's Group-HS over filters and over channels, each squared
  sum of group norms divided by the one shared denominator ``sum w^2``.

A tensor whose weights are all zero contributes 0 (the ratio measures would divide by zero),
as in DeepHoyer's code. The hard-concrete L0 gates are in :mod:`._l0`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from frugalml.errors import ConfigError

if TYPE_CHECKING:
    import torch

__all__ = [
    "MEASURES",
    "Measure",
    "Regulariser",
    "Schedule",
    "group_hoyer_square",
    "group_lasso",
    "hoyer",
    "hoyer_square",
    "l1",
    "prunable_weights",
]

Measure = Literal["l1", "hoyer", "hoyer_square", "group_lasso", "group_hoyer_square"]
Schedule = Literal["constant", "warmup"]


def l1(w: torch.Tensor) -> torch.Tensor:
    """``sum |w|``."""
    return w.abs().sum()


def _ratio(numerator: torch.Tensor, squares: torch.Tensor) -> torch.Tensor:
    import torch

    # 0 for an all-zero tensor: the measure is undefined there and its gradient would be NaN.
    safe = torch.where(squares > 0, squares, torch.ones_like(squares))
    return torch.where(squares > 0, numerator / safe, torch.zeros_like(squares))


def hoyer(w: torch.Tensor) -> torch.Tensor:
    """``sum |w| / sqrt(sum w^2)`` (0 when every weight is zero)."""
    import torch

    squares = (w * w).sum()
    safe = torch.where(squares > 0, squares, torch.ones_like(squares))
    return torch.where(squares > 0, w.abs().sum() / safe.sqrt(), torch.zeros_like(squares))


def hoyer_square(w: torch.Tensor) -> torch.Tensor:
    """``(sum |w|)^2 / sum w^2`` (0 when every weight is zero)."""
    return _ratio(w.abs().sum() ** 2, (w * w).sum())


def _group_norms(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """L2 norms of the output filters (dim 0) and of the input channels (dim 1)."""
    import torch

    squares = w * w
    other = tuple(range(1, w.dim()))
    filters = squares.sum(dim=other)
    channels = squares.sum(dim=(0, *range(2, w.dim()))) if w.dim() > 1 else squares[:0]
    # sqrt has an infinite gradient at 0: a group that is exactly zero stays at zero.
    eps = torch.finfo(w.dtype).tiny
    return (
        torch.where(filters > 0, (filters + eps).sqrt(), torch.zeros_like(filters)),
        torch.where(channels > 0, (channels + eps).sqrt(), torch.zeros_like(channels)),
    )


def group_lasso(w: torch.Tensor) -> torch.Tensor:
    """Sum of the L2 norms of the output filters plus those of the input channels."""
    filters, channels = _group_norms(w)
    return filters.sum() + channels.sum()


def group_hoyer_square(w: torch.Tensor) -> torch.Tensor:
    """Group-HS: ``((sum filter norms)^2 + (sum channel norms)^2) / sum w^2``."""
    filters, channels = _group_norms(w)
    return _ratio(filters.sum() ** 2 + channels.sum() ** 2, (w * w).sum())


MEASURES: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "l1": l1,
    "hoyer": hoyer,
    "hoyer_square": hoyer_square,
    "group_lasso": group_lasso,
    "group_hoyer_square": group_hoyer_square,
}


def prunable_weights(model: torch.nn.Module) -> list[tuple[str, torch.Tensor]]:
    """The weights of every Conv2d and Linear layer, by parameter name, in model order."""
    from torch import nn

    return [
        (f"{name}.weight" if name else "weight", module.weight)
        for name, module in model.named_modules()
        if isinstance(module, (nn.Conv2d, nn.Linear))
    ]


@dataclass
class Regulariser:
    """``strength x sum of measure(w)`` over the named weights, as a loss term.

    Call it with the model (``train(..., regulariser=reg)``); each call is one step of the
    schedule: ``constant`` uses ``strength`` throughout, ``warmup`` ramps it linearly from 0
    over the first ``warmup_steps`` calls. ``names`` restricts it to those parameter names
    (default: every Conv2d and Linear weight, :func:`prunable_weights`).
    """

    measure: Measure
    strength: float
    schedule: Schedule = "constant"
    warmup_steps: int = 0
    names: Sequence[str] | None = None
    steps: int = 0

    def __post_init__(self) -> None:
        if self.measure not in MEASURES:
            raise ConfigError(
                f"unknown sparsity measure {self.measure!r}",
                fix=f"use one of {', '.join(MEASURES)}",
            )
        if isinstance(self.strength, bool) or not isinstance(self.strength, (int, float)):
            raise ConfigError(
                f"strength must be a number, got {self.strength!r}", fix="e.g. strength: 1e-4"
            )
        if not self.strength >= 0:
            raise ConfigError(f"strength must be >= 0, got {self.strength}", fix="e.g. 1e-4")
        if self.schedule not in ("constant", "warmup"):
            raise ConfigError(
                f"schedule must be constant or warmup, got {self.schedule!r}",
                fix="schedule: constant",
            )
        if self.schedule == "warmup" and self.warmup_steps < 1:
            raise ConfigError(
                "a warmup schedule needs warmup_steps >= 1", fix="e.g. warmup_steps: 200"
            )

    def current_strength(self) -> float:
        if self.schedule == "warmup":
            return float(self.strength) * min(1.0, self.steps / self.warmup_steps)
        return float(self.strength)

    def value(self, model: torch.nn.Module) -> torch.Tensor:
        """The unscaled sum of the measure over the chosen weights."""
        import torch

        fn = MEASURES[self.measure]
        weights = prunable_weights(model)
        if self.names is not None:
            wanted = set(self.names)
            weights = [(n, w) for n, w in weights if n in wanted]
        total = torch.zeros((), device=weights[0][1].device if weights else "cpu")
        for _, w in weights:
            total = total + fn(w)
        return total

    def __call__(self, model: torch.nn.Module) -> torch.Tensor:
        self.steps += 1
        return self.current_strength() * self.value(model)

"""Pruning for accuracy against energy, where Optuna cannot prune multi-objective studies.

The rule: after epoch ``e`` a running trial has an intermediate point ``(accuracy, energy so
far)`` (validation accuracy after epoch ``e``, joules of its epochs 1..e). It is stopped when
a completed trial's point at the same epoch **dominates** it: accuracy at least as high and
energy at most as high, one of the two strictly. Trials shorter than ``e`` epochs take no
part at epoch ``e``. Like Optuna's median pruner, the rule waits for ``n_startup_trials``
completed trials and does not act in the first ``n_warmup_steps`` epochs.

A trial dominated half-way may still have ended on the front; the rule trades that risk
for the energy of the epochs it saves, as every pruner does.

Every pruner the tuner uses sits behind one per-epoch interface, :class:`EpochPruner`:
:class:`OptunaEpochPruner` (Optuna's median, successive halving, Hyperband and the
strategies' own: the epoch's value reported, ``should_prune`` asked),
:class:`DominanceEpochPruner` (the rule above) and :class:`NoEpochPruner`. Each gives the
Optuna study its pruner and, after every epoch, a reason to stop or None.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import optuna

Point = tuple[float, float]  # (accuracy: higher is better, energy_j: lower is better)


def dominates(a: Point, b: Point) -> bool:
    """Whether ``a`` dominates ``b``: accuracy >= and energy <=, one of them strictly."""
    acc_a, energy_a = a
    acc_b, energy_b = b
    if any(math.isnan(v) for v in (acc_a, energy_a, acc_b, energy_b)):
        return False
    return acc_a >= acc_b and energy_a <= energy_b and (acc_a > acc_b or energy_a < energy_b)


def dominated_by(point: Point, others: Iterable[Point]) -> Point | None:
    """The first of ``others`` that dominates ``point``, or None."""
    return next((other for other in others if dominates(other, point)), None)


@dataclass(frozen=True)
class DominancePruner:
    """Stops a trial whose intermediate point is dominated by a completed trial's point at the
    same epoch (see the module docstring)."""

    n_startup_trials: int = 2
    n_warmup_steps: int = 0

    def should_prune(
        self, epoch: int, point: Point, completed: Sequence[Sequence[Point]]
    ) -> Point | None:
        """The dominating point if the trial should stop after ``epoch`` (1-based), else None.

        ``completed`` holds one curve per completed trial: its points after epochs 1, 2, ...
        """
        if epoch <= self.n_warmup_steps or len(completed) < self.n_startup_trials:
            return None
        peers = [curve[epoch - 1] for curve in completed if len(curve) >= epoch]
        return dominated_by(point, peers)


def pareto_front(points: Sequence[Point]) -> list[int]:
    """Indices of the points no other point dominates (ties kept), in the input order."""
    return [
        i
        for i, p in enumerate(points)
        if not any(math.isnan(v) for v in p)
        and not any(dominates(q, p) for j, q in enumerate(points) if j != i)
    ]


class EpochPruner(Protocol):
    """What decides, after each epoch of a trial, whether it stops (see the module
    docstring). ``name`` is recorded with each trial (``tune_pruner``)."""

    @property
    def name(self) -> str: ...

    def optuna_pruner(self) -> optuna.pruners.BasePruner:
        """The pruner the Optuna study is created with."""
        ...

    def should_stop(
        self,
        trial: optuna.Trial,
        epoch: int,
        point: Point,
        completed: Sequence[Sequence[Point]],
    ) -> str | None:
        """A reason to stop ``trial`` after ``epoch`` (1-based) at ``point`` (validation
        accuracy, energy so far in J), given the completed trials' curves; else None."""
        ...


@dataclass(frozen=True)
class NoEpochPruner:
    """No pruning: every trial runs its planned epochs."""

    name: str = "none"

    def optuna_pruner(self) -> optuna.pruners.BasePruner:
        import optuna

        return optuna.pruners.NopPruner()

    def should_stop(
        self, trial: Any, epoch: int, point: Point, completed: Sequence[Sequence[Point]]
    ) -> str | None:
        return None


@dataclass(frozen=True)
class OptunaEpochPruner:
    """An Optuna pruner: the epoch's validation accuracy (the energy so far for ``objective:
    energy``) is reported and ``should_prune`` asked; ``label`` names it in the reason."""

    name: str
    label: str
    pruner: Any
    objective: str = "accuracy"

    def optuna_pruner(self) -> optuna.pruners.BasePruner:
        return self.pruner  # type: ignore[no-any-return]

    def should_stop(
        self,
        trial: optuna.Trial,
        epoch: int,
        point: Point,
        completed: Sequence[Sequence[Point]],
    ) -> str | None:
        accuracy, energy_so_far_j = point
        value = energy_so_far_j if self.objective == "energy" else accuracy
        if not math.isfinite(value):
            return None
        trial.report(value, epoch)
        if not trial.should_prune():
            return None
        return f"{self.label} pruner at epoch {epoch}"


@dataclass(frozen=True)
class DominanceEpochPruner:
    """The dominance rule (:class:`DominancePruner`) for accuracy against energy; Optuna,
    which cannot prune multi-objective studies, gets a no-op pruner."""

    rule: DominancePruner
    name: str = "dominance"

    def optuna_pruner(self) -> optuna.pruners.BasePruner:
        import optuna

        return optuna.pruners.NopPruner()

    def should_stop(
        self, trial: Any, epoch: int, point: Point, completed: Sequence[Sequence[Point]]
    ) -> str | None:
        by = self.rule.should_prune(epoch, point, completed)
        if by is None:
            return None
        return (
            f"dominated at epoch {epoch}: (accuracy {point[0]:.3f}, "
            f"{point[1]:.3g} J) by a completed trial's ({by[0]:.3f}, {by[1]:.3g} J)"
        )

"""Pruning for accuracy against energy, where Optuna cannot prune multi-objective studies.

The rule: after epoch ``e`` a running trial has an intermediate point ``(accuracy, energy so
far)`` (validation accuracy after epoch ``e``, joules of its epochs 1..e). It is stopped when
a completed trial's point at the same epoch **dominates** it: accuracy at least as high and
energy at most as high, one of the two strictly. Trials shorter than ``e`` epochs take no
part at epoch ``e``. Like Optuna's median pruner, the rule waits for ``n_startup_trials``
completed trials and does not act in the first ``n_warmup_steps`` epochs.

A trial dominated half-way may still have ended on the front; the rule trades that risk
for the energy of the epochs it saves, as every pruner does.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

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

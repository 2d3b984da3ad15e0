"""The cost-aware ``frugal`` sampler: TPE whose acquisition knows what a trial costs.

Used by :func:`frugalml.tune._strategies.make_sampler` for the ``frugal`` strategy; the
cost predictions come from :mod:`frugalml.tune._cost`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import optuna


def _cost_aware_tpe(
    seed: int,
    n_startup_trials: int,
    predict_costs: Callable[[list[dict[str, Any]]], list[float | None]],
    remaining_j: Callable[[], float | None],
) -> optuna.samplers.TPESampler:
    """TPE whose acquisition is per joule and skips what the remaining budget cannot afford.

    TPE picks, among candidates drawn from the density of good trials ``l(x)``, the one with
    the largest ``log l(x) - log g(x)`` (a monotone transform of expected improvement). Here
    ``log predicted_energy_j(x)`` is subtracted (expected improvement per joule), and a
    candidate predicted to cost more than the remaining budget scores ``-inf``; when none
    is affordable the cheapest is proposed (and the tuner's budget check stops the run).
    Multivariate, so that a candidate is a whole configuration whose cost can be predicted.
    """
    import numpy as np
    import optuna

    class CostAwareTPESampler(optuna.samplers.TPESampler):
        _space: dict[str, Any]

        def _sample(self, study: Any, trial: Any, search_space: dict[str, Any]) -> dict[str, Any]:
            self._space = search_space
            return super()._sample(study, trial, search_space)

        def _compute_acquisition_func(
            self, samples: dict[str, Any], mpe_below: Any, mpe_above: Any
        ) -> Any:
            values = super()._compute_acquisition_func(samples, mpe_below, mpe_above)
            size = int(values.size)
            candidates = [
                {
                    name: self._space[name].to_external_repr(samples[name][i].item())
                    for name in samples
                }
                for i in range(size)
            ]
            costs = predict_costs(candidates)
            if any(c is None or not math.isfinite(c) or c <= 0 for c in costs):
                return values
            cost = np.array(costs, dtype=float)
            left = remaining_j()
            scored = values - np.log(cost)
            if left is not None:
                affordable = cost <= left
                if not affordable.any():
                    return -cost
                scored = np.where(affordable, scored, -np.inf)
            return scored

    return CostAwareTPESampler(seed=seed, n_startup_trials=n_startup_trials, multivariate=True)

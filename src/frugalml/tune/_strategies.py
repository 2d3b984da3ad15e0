"""Optuna samplers and pruners for the strategies and pruners a spec names.

The names, their options, builders and traits are registered in :mod:`._registry` (one
table); :func:`make_sampler` and :func:`make_pruner` build from it.

=================  ==========================================================
strategy           Optuna sampler
=================  ==========================================================
``grid``           :class:`optuna.samplers.GridSampler` over ``space.grid()``
``random``         :class:`optuna.samplers.RandomSampler`
``tpe``            :class:`optuna.samplers.TPESampler` (multi-objective too)
``gp``             :class:`optuna.samplers.GPSampler` (Gaussian process)
``nsga2``          :class:`optuna.samplers.NSGAIISampler`
``frugal``         multivariate TPE; candidates the remaining energy budget cannot
                   afford skipped (:mod:`._cost`); a best-curve pruner (:mod:`._frugal`)
``sha``            random sampling, successive halving over epochs
``hyperband``      random sampling, Hyperband over epochs
=================  ==========================================================

TPE, GP and frugal start with random trials: a fifth of the trials the budget affords
(2 to 10), unless the spec names ``n_startup_trials`` (:func:`startup_trials`).

Pruners: ``median`` (:class:`optuna.pruners.MedianPruner`), ``successive_halving``
(:class:`optuna.pruners.SuccessiveHalvingPruner`), ``none``; ``dominance`` is our own rule
for accuracy against energy (:mod:`._prune`), so Optuna gets a ``NopPruner`` for it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from frugalml.tune._frugal import frugal_settings
from frugalml.tune._registry import (
    FIDELITY,
    SamplerContext,
    epoch_pruner,
    get_strategy,
    list_strategies,
)

if TYPE_CHECKING:
    import optuna

    from frugalml.tune._spec import TuneSpec
    from frugalml.tune._tuner import Tuner


def grid_sampler(search_space: dict[str, list[Any]], seed: int) -> optuna.samplers.GridSampler:
    """Optuna's GridSampler for the ask-and-tell loop.

    After each trial GridSampler calls ``study.stop()`` once the grid is used up, which Optuna
    allows only inside ``study.optimize`` (a RuntimeError after ``study.tell``). The tuner
    checks ``is_exhausted`` itself before asking, so the stop is left out; the sampling is
    GridSampler's own.
    """
    import optuna

    class AskTellGridSampler(optuna.samplers.GridSampler):
        def after_trial(self, *args: Any, **kwargs: Any) -> None:
            return None

    return AskTellGridSampler(search_space, seed=seed)


#: Start-up (random) trials of a model-based strategy: a fifth of the trials the budget
#: affords, within these bounds, unless the spec names ``n_startup_trials``.
MIN_STARTUP_TRIALS = 2
MAX_STARTUP_TRIALS = 10
#: Without an estimate of the trials the budget affords: Optuna's default.
DEFAULT_STARTUP_TRIALS = 10
#: Strategies whose sampler starts with random trials (from the registry).
MODEL_BASED: tuple[str, ...] = tuple(n for n in list_strategies() if get_strategy(n).model_based)
#: Strategies whose own pruner over epochs replaces the spec's (from the registry).
FIDELITY_STRATEGIES: tuple[str, ...] = FIDELITY


def startup_trials(spec: TuneSpec, affordable_trials: float | None) -> tuple[int | None, str]:
    """The start-up trials of ``spec``'s strategy and a sentence saying why (None: not a
    model-based strategy)."""
    if not get_strategy(spec.strategy).model_based:
        return None, ""
    named = spec.strategy_options.get("n_startup_trials")
    if named is not None:
        return int(named), f"{spec.strategy}: {named} random start-up trial(s), as the spec says"
    if affordable_trials is None or not math.isfinite(affordable_trials):
        n = DEFAULT_STARTUP_TRIALS
        return n, f"{spec.strategy}: {n} random start-up trial(s) (no estimate of the budget)"
    n = max(MIN_STARTUP_TRIALS, min(MAX_STARTUP_TRIALS, int(affordable_trials // 5)))
    return n, (
        f"{spec.strategy}: {n} random start-up trial(s), a fifth of the about "
        f"{affordable_trials:.0f} trial(s) the budget affords (bounds "
        f"{MIN_STARTUP_TRIALS}-{MAX_STARTUP_TRIALS})"
    )


def make_sampler(
    spec: TuneSpec,
    seed: int,
    *,
    affordable_trials: float | None = None,
    predict_costs: Callable[[list[dict[str, Any]]], list[float | None]] | None = None,
    remaining_j: Callable[[], float | None] | None = None,
    costs_and_left: (
        Callable[[list[dict[str, Any]]], tuple[list[float | None], float | None]] | None
    ) = None,
    in_flight: int | None = None,
) -> optuna.samplers.BaseSampler:
    """The sampler of ``spec.strategy`` seeded with ``seed``.

    ``affordable_trials`` (about how many trials the budget affords) sets the start-up
    trials of tpe, gp and frugal (:func:`startup_trials`). ``frugal`` is TPE with a cost-aware
    acquisition (:func:`_cost_aware_tpe`), given ``predict_costs`` (Optuna parameters of
    candidates -> predicted J) and ``remaining_j`` (J the budget has left; None: no energy
    limit; ``costs_and_left``: both from one read of the trials); without them it is plain
    multivariate TPE. ``sha`` and ``hyperband`` sample at
    random; their pruner (:func:`make_pruner`) does the multi-fidelity work over epochs.
    ``in_flight``: the trials that can run at once (None: not known); TPE (tpe, frugal)
    counts running trials as bad ones (Optuna's constant liar) unless it is 1.
    """
    startup, _ = startup_trials(spec, affordable_trials)
    context = SamplerContext(
        affordable_trials=affordable_trials,
        startup_trials=startup,
        predict_costs=predict_costs,
        remaining_j=remaining_j,
        costs_and_left=costs_and_left,
        in_flight=in_flight,
    )
    return get_strategy(spec.strategy).build(spec, seed, context)


def make_pruner(spec: TuneSpec) -> optuna.pruners.BasePruner:
    """Optuna's pruner for ``spec`` (:func:`._registry.epoch_pruner`): the strategy's own
    where it brings one (``sha``, ``hyperband``: over epochs, minimum 1 epoch, reduction
    factor 3 unless the strategy's options say otherwise; ``frugal`` where the spec names no
    pruner), else the spec's (a no-op for ``none`` and ``dominance``)."""
    return epoch_pruner(spec).optuna_pruner()


def configure_search(tuner: Tuner, seed: int) -> list[str]:
    """Once the tuner can predict costs (after its calibration or from its trials): the
    sampler with start-up trials scaled to the budget and, for ``frugal``, the cost-aware
    acquisition and per-configuration budget checks. Returns the sentences saying so."""
    from frugalml.tune._cost import TrialCosts

    spec = tuner.spec
    if not get_strategy(spec.strategy).model_based:
        return []
    costs = TrialCosts(tuner)
    affordable = costs.affordable_trials()
    tuner.study.sampler = make_sampler(
        spec,
        seed,
        affordable_trials=affordable,
        predict_costs=costs.predict_candidates,
        remaining_j=costs.remaining_j,
        costs_and_left=costs.costs_and_left,
        in_flight=tuner.parallel,
    )
    notes = [startup_trials(spec, affordable)[1]]
    if spec.strategy == "frugal":
        tuner.cost_of = costs.predict
        notes.append(
            "frugal: each configuration's energy is predicted before it runs from its FLOPs "
            "(frugalml.models.count_costs), batches and epochs, refined by the trials so far; "
            "what the energy left cannot afford is skipped; " + frugal_settings(spec).describe()
        )
    return notes


_grid_sampler = grid_sampler  # the former private name

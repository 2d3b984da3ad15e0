"""Optuna samplers and pruners for the strategies and pruners a spec names.

=================  ==========================================================
strategy           Optuna sampler
=================  ==========================================================
``grid``           :class:`optuna.samplers.GridSampler` over ``space.grid()``
``random``         :class:`optuna.samplers.RandomSampler`
``tpe``            :class:`optuna.samplers.TPESampler` (multi-objective too)
``gp``             :class:`optuna.samplers.GPSampler` (Gaussian process)
``nsga2``          :class:`optuna.samplers.NSGAIISampler`
=================  ==========================================================

Pruners: ``median`` (:class:`optuna.pruners.MedianPruner`), ``successive_halving``
(:class:`optuna.pruners.SuccessiveHalvingPruner`), ``none``; ``dominance`` is our own rule
for accuracy against energy (:mod:`._prune`), so Optuna gets a ``NopPruner`` for it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from frugalml.errors import ConfigError

if TYPE_CHECKING:
    import optuna

    from frugalml.tune._spec import TuneSpec


def _grid_sampler(search_space: dict[str, list[Any]], seed: int) -> optuna.samplers.GridSampler:
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


def make_sampler(spec: TuneSpec, seed: int) -> optuna.samplers.BaseSampler:
    """The sampler of ``spec.strategy`` seeded with ``seed``."""
    import optuna

    options: dict[str, Any] = dict(spec.strategy_options)
    name = spec.strategy
    if name == "grid":
        return _grid_sampler(spec.search_space.grid(), seed)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed, **options)
    if name == "gp":
        return optuna.samplers.GPSampler(seed=seed, **options)
    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed, **options)
    raise ConfigError(f"unknown strategy {name!r}", fix="use one of: grid, random, tpe, gp, nsga2")


def make_pruner(spec: TuneSpec) -> optuna.pruners.BasePruner:
    """Optuna's pruner for ``spec.pruner`` (a no-op for ``none`` and ``dominance``)."""
    import optuna

    options: dict[str, Any] = dict(spec.pruner_options)
    if spec.pruner == "median":
        return optuna.pruners.MedianPruner(**options)
    if spec.pruner == "successive_halving":
        return optuna.pruners.SuccessiveHalvingPruner(**options)
    if spec.pruner in ("none", "dominance"):
        return optuna.pruners.NopPruner()
    raise ConfigError(
        f"unknown pruner {spec.pruner!r}",
        fix="use none, median, successive_halving or dominance",
    )

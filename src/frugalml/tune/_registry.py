"""Tuning strategies and pruners: one table each.

The spec's allowed names and options (:data:`frugalml.tune.STRATEGIES`, ``PRUNERS``), the
help texts of the spec keys and of ``--strategy``, the fix hints of unknown names, and the
branches that differ by strategy (a finite grid needs no budget and keeps its seed; start-up
trials of model-based samplers; strategies that bring their own pruner over epochs) all read
these tables. Adding a strategy is one :func:`register_strategy` call (and its builder);
``frugalml.testing.TuningStrategyContract`` then runs it like every other.

Pruning, whoever decides it, goes through one per-epoch interface, :class:`EpochPruner`
(:mod:`._prune`): Optuna's pruners, the dominance rule for accuracy against energy, and the
strategies' own.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from frugalml.errors import ConfigError

if TYPE_CHECKING:
    import optuna

    from frugalml.tune._prune import EpochPruner
    from frugalml.tune._spec import TuneSpec

__all__ = [
    "PrunerInfo",
    "SamplerContext",
    "StrategyInfo",
    "epoch_pruner",
    "get_pruner",
    "get_strategy",
    "list_pruners",
    "list_strategies",
    "register_pruner",
    "register_strategy",
]


@dataclass(frozen=True)
class SamplerContext:
    """What the tuner knows when it (re)builds a sampler: about how many trials the budget
    affords (None: no estimate), the start-up trials chosen from it, and for cost-aware
    samplers a predictor of candidates' energy (J) and the energy the budget has left."""

    affordable_trials: float | None = None
    startup_trials: int | None = None
    predict_costs: Callable[[list[dict[str, Any]]], list[float | None]] | None = None
    remaining_j: Callable[[], float | None] | None = None
    #: Both at once, from one read of the trials (what the sampler asks on every trial).
    costs_and_left: (
        Callable[[list[dict[str, Any]]], tuple[list[float | None], float | None]] | None
    ) = None
    #: Trials that can be running while the sampler asks (None: not known). TPE lies about
    #: running trials (Optuna's constant liar) only when this may exceed 1: the liar reads
    #: every trial afresh for each parameter it samples, where one at a time it samples
    #: from the one read the ask already made, and decides the same.
    in_flight: int | None = None

    @property
    def constant_liar(self) -> bool:
        """Whether TPE should count running trials as bad ones (trials may be in flight)."""
        return self.in_flight is None or self.in_flight > 1


@dataclass(frozen=True)
class StrategyInfo:
    """A tuning strategy: its name and ``help``, the spec ``options`` its sampler takes,
    ``build(spec, seed, context)`` for its Optuna sampler, and what sets it apart:

    - ``finite``: it walks a finite grid, so it ends by itself (no budget needed), the
      spec's seed is kept on reruns (it fixes the grid order) and grid values apply.
    - ``multi_objective``: it can optimise accuracy and energy together.
    - ``model_based``: its sampler starts with random start-up trials scaled to the budget.
    - ``own_pruner`` / ``own_pruner_name`` / ``pruner_label``: a pruner over epochs it
      brings (multi-fidelity); with ``own_pruner_always`` it replaces the spec's pruner,
      else it is used only where the spec names none.
    """

    name: str
    help: str
    build: Callable[[TuneSpec, int, SamplerContext], optuna.samplers.BaseSampler]
    options: frozenset[str] = frozenset()
    finite: bool = False
    multi_objective: bool = True
    model_based: bool = False
    own_pruner: Callable[[TuneSpec], optuna.pruners.BasePruner] | None = None
    own_pruner_name: str | None = None
    pruner_label: str | None = None
    own_pruner_always: bool = True

    def brings_pruner(self, spec_pruner: str) -> bool:
        """Whether this strategy's own pruner decides, given the spec's pruner name."""
        if self.own_pruner is None:
            return False
        return self.own_pruner_always or spec_pruner == "none"


@dataclass(frozen=True)
class PrunerInfo:
    """A pruner a spec may name: its ``help``, ``options``, the objectives it works on
    (``single``: one objective, ``multi``: accuracy and energy together, ``any``), and
    ``build(spec)`` for its :class:`EpochPruner`."""

    name: str
    help: str
    build: Callable[[TuneSpec], EpochPruner]
    options: frozenset[str] = frozenset()
    objectives: Literal["single", "multi", "any"] = "any"


_STRATEGIES: dict[str, StrategyInfo] = {}
_PRUNERS: dict[str, PrunerInfo] = {}


def register_strategy(info: StrategyInfo) -> StrategyInfo:
    """Add (or replace) a tuning strategy; returns it."""
    _STRATEGIES[info.name] = info
    return info


def register_pruner(info: PrunerInfo) -> PrunerInfo:
    """Add (or replace) a pruner; returns it."""
    _PRUNERS[info.name] = info
    return info


def list_strategies() -> list[str]:
    """The registered strategies' names, in registration order."""
    return list(_STRATEGIES)


def list_pruners() -> list[str]:
    """The registered pruners' names, in registration order."""
    return list(_PRUNERS)


def get_strategy(name: str) -> StrategyInfo:
    """The strategy ``name``; an unknown one is a :class:`ConfigError` naming the known."""
    info = _STRATEGIES.get(name)
    if info is None:
        raise ConfigError(f"unknown strategy {name!r}", fix=f"use one of: {', '.join(_STRATEGIES)}")
    return info


def get_pruner(name: str) -> PrunerInfo:
    """The pruner ``name``; an unknown one is a :class:`ConfigError` naming the known."""
    info = _PRUNERS.get(name)
    if info is None:
        raise ConfigError(f"unknown pruner {name!r}", fix=f"use one of: {', '.join(_PRUNERS)}")
    return info


def check_pruner_for(strategy: str, pruner: str) -> None:
    """Refuse a pruner the strategy would ignore: a strategy whose own pruner over epochs
    always decides (``sha``, ``hyperband``) takes ``pruner: none`` only."""
    info = get_strategy(strategy)
    if info.own_pruner is None or not info.own_pruner_always or pruner == "none":
        return
    takes = [n for n, s in _STRATEGIES.items() if s.own_pruner is None or not s.own_pruner_always]
    raise ConfigError(
        f"the {strategy} strategy prunes over epochs itself ({info.own_pruner_name}), so "
        f"pruner: {pruner} would be ignored",
        fix=f"drop the pruner (pruner: none) with strategy: {strategy}, or use a strategy that "
        f"takes one: {', '.join(takes)}",
    )


def pruner_deciding(strategy: str, pruner: str) -> str:
    """The name of the pruner that decides over epochs for ``strategy`` with the spec's
    ``pruner`` (as :func:`epoch_pruner` builds it and trials record it)."""
    info = get_strategy(strategy)
    if info.own_pruner is not None and info.brings_pruner(pruner):
        return info.own_pruner_name or info.name
    return pruner


def epoch_pruner(spec: TuneSpec) -> EpochPruner:
    """What decides after each epoch of ``spec``'s trials: the strategy's own pruner where it
    brings one (:meth:`StrategyInfo.brings_pruner`), else the spec's pruner."""
    from frugalml.tune._prune import OptunaEpochPruner

    strategy = get_strategy(spec.strategy)
    if strategy.own_pruner is not None and strategy.brings_pruner(spec.pruner):
        return OptunaEpochPruner(
            name=strategy.own_pruner_name or strategy.name,
            label=strategy.pruner_label or strategy.name,
            pruner=strategy.own_pruner(spec),
            objective=spec.objectives[0],
        )
    return get_pruner(spec.pruner).build(spec)


# -- the built-in strategies ----------------------------------------------------------------
def _grid(spec: TuneSpec, seed: int, context: SamplerContext) -> optuna.samplers.BaseSampler:
    from frugalml.tune._strategies import grid_sampler

    return grid_sampler(spec.search_space.grid(), seed)


def _random(spec: TuneSpec, seed: int, context: SamplerContext) -> optuna.samplers.BaseSampler:
    import optuna

    return optuna.samplers.RandomSampler(seed=seed)


def _options(spec: TuneSpec, context: SamplerContext) -> dict[str, Any]:
    options: dict[str, Any] = dict(spec.strategy_options)
    if context.startup_trials is not None:
        options["n_startup_trials"] = context.startup_trials
    return options


def _tpe(spec: TuneSpec, seed: int, context: SamplerContext) -> optuna.samplers.BaseSampler:
    import optuna

    return optuna.samplers.TPESampler(
        seed=seed, constant_liar=context.constant_liar, **_options(spec, context)
    )


def _gp(spec: TuneSpec, seed: int, context: SamplerContext) -> optuna.samplers.BaseSampler:
    import optuna

    return optuna.samplers.GPSampler(seed=seed, **_options(spec, context))


def _nsga2(spec: TuneSpec, seed: int, context: SamplerContext) -> optuna.samplers.BaseSampler:
    import optuna

    return optuna.samplers.NSGAIISampler(seed=seed, **_options(spec, context))


def _frugal(spec: TuneSpec, seed: int, context: SamplerContext) -> optuna.samplers.BaseSampler:
    from frugalml.meter import J_PER_KWH
    from frugalml.tune._frugal import _cost_aware_tpe, frugal_settings

    options = _options(spec, context)
    settings = frugal_settings(spec)  # the spec's frugal options, in the settings
    startup = int(options.get("n_startup_trials", 10))
    energy_kwh = spec.budget.energy_kwh
    if context.predict_costs is None or context.remaining_j is None:
        # no cost model (a sampler built outside a tuner): TPE with the other rules
        return _cost_aware_tpe(
            seed,
            startup,
            lambda c: [None] * len(c),
            lambda: None,
            settings,
            constant_liar=context.constant_liar,
        )
    return _cost_aware_tpe(
        seed,
        startup,
        context.predict_costs,
        context.remaining_j,
        settings,
        budget_j=None if energy_kwh is None else energy_kwh * J_PER_KWH,
        costs_and_left=context.costs_and_left,
        constant_liar=context.constant_liar,
    )


def _fidelity(spec: TuneSpec) -> dict[str, Any]:
    fidelity: dict[str, Any] = {"min_resource": 1, "reduction_factor": 3}
    fidelity.update(spec.strategy_options)
    return fidelity


def _sha_pruner(spec: TuneSpec) -> optuna.pruners.BasePruner:
    import optuna

    return optuna.pruners.SuccessiveHalvingPruner(**_fidelity(spec))


def _hyperband_pruner(spec: TuneSpec) -> optuna.pruners.BasePruner:
    import optuna

    _, high = spec.search_space.epochs_range(spec.training.epochs)
    return optuna.pruners.HyperbandPruner(max_resource=max(high, 1), **_fidelity(spec))


def _frugal_pruner(spec: TuneSpec) -> optuna.pruners.BasePruner:
    from frugalml.tune._frugal import frugal_pruner

    return frugal_pruner(spec)


_STARTUP = frozenset({"n_startup_trials"})
_FIDELITY = frozenset({"min_resource", "reduction_factor"})

for _info in (
    StrategyInfo("grid", "every point of the search space's grid, in a seeded order", _grid,
                 finite=True),
    StrategyInfo("random", "independent uniform (or log-uniform) samples", _random),
    StrategyInfo("tpe", "Optuna's Tree-structured Parzen Estimator (Bayesian)", _tpe,
                 options=_STARTUP | {"multivariate"}, model_based=True),
    StrategyInfo("gp", "Optuna's Gaussian-process sampler (Bayesian)", _gp, options=_STARTUP,
                 model_based=True),
    StrategyInfo("nsga2", "Optuna's NSGA-II genetic algorithm (Pareto fronts)", _nsga2,
                 options=frozenset({"population_size"})),
    StrategyInfo("frugal", "multivariate TPE that predicts each configuration's energy and "
                 "skips what the budget cannot afford, with a best-curve pruner", _frugal,
                 options=_STARTUP | {"multivariate", "local_share"}, model_based=True,
                 own_pruner=_frugal_pruner,
                 own_pruner_name="frugal", own_pruner_always=False),
    StrategyInfo("sha", "random sampling with successive halving over epochs", _random,
                 options=_FIDELITY, multi_objective=False, own_pruner=_sha_pruner,
                 own_pruner_name="successive_halving", pruner_label="sha"),
    StrategyInfo("hyperband", "random sampling with Hyperband over epochs", _random,
                 options=_FIDELITY, multi_objective=False, own_pruner=_hyperband_pruner,
                 own_pruner_name="hyperband"),
):  # fmt: skip
    register_strategy(_info)


# -- the built-in pruners -------------------------------------------------------------------
def _no_pruner(spec: TuneSpec) -> EpochPruner:
    from frugalml.tune._prune import NoEpochPruner

    return NoEpochPruner()


def _optuna_pruner(name: str) -> Callable[[TuneSpec], EpochPruner]:
    def build(spec: TuneSpec) -> EpochPruner:
        import optuna

        from frugalml.tune._prune import OptunaEpochPruner

        options = dict(spec.pruner_options)
        pruner: optuna.pruners.BasePruner = (
            optuna.pruners.MedianPruner(**options)
            if name == "median"
            else optuna.pruners.SuccessiveHalvingPruner(**options)
        )
        return OptunaEpochPruner(name, name, pruner, spec.objectives[0])

    return build


def _dominance(spec: TuneSpec) -> EpochPruner:
    from frugalml.tune._prune import DominanceEpochPruner, DominancePruner

    return DominanceEpochPruner(DominancePruner(**spec.pruner_options))


_WARMUP = frozenset({"n_startup_trials", "n_warmup_steps"})

for _pruner in (
    PrunerInfo("none", "no pruning", _no_pruner),
    PrunerInfo("median", "Optuna's median rule on one objective", _optuna_pruner("median"),
               options=_WARMUP, objectives="single"),
    PrunerInfo("successive_halving", "Optuna's successive halving on one objective",
               _optuna_pruner("successive_halving"), options=_FIDELITY, objectives="single"),
    PrunerInfo("dominance", "stops a trial dominated in (accuracy, energy) by a completed "
               "one at the same epoch", _dominance, options=_WARMUP, objectives="multi"),
):  # fmt: skip
    register_pruner(_pruner)

#: Strategies whose own pruner replaces the spec's (the multi-fidelity ones).
FIDELITY: tuple[str, ...] = tuple(
    n for n, s in _STRATEGIES.items() if s.own_pruner is not None and s.own_pruner_always
)

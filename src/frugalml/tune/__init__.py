"""Energy-aware hyperparameter tuning on Optuna, every trial trained and metered for real.

A YAML spec names a dataset, a base model and training config, a search space, a strategy
(``grid``, ``random``, ``tpe``, ``gp`` or ``nsga2``), an objective (validation accuracy,
energy, or both as a Pareto front), a pruner and a budget (trials, kWh, gCO2e, seconds).
Every trial is trained by :func:`frugalml.train.train` under a :class:`frugalml.meter.Meter`
window, kept in Optuna's storage and in the study store of the output directory, and a rerun
continues where the last one stopped.

Modules:

- ``_space``: :class:`SearchSpace` and :class:`Param` (float, log-float, int, categorical;
  grids), :func:`apply_params`.
- ``_spec``: :class:`TuneSpec` (YAML parsing and checks) and :class:`TuneBudget`.
- ``_registry``: the one table of strategies and pruners (:func:`register_strategy`,
  :func:`register_pruner`, :func:`list_strategies`, :func:`list_pruners`; name -> options,
  builder, finite or not, multi-objective or not, help); ``_strategies``:
  :func:`make_sampler` and :func:`make_pruner` built from it.
- ``_prune``: :class:`EpochPruner`, the one per-epoch pruner interface (Optuna's pruners,
  the dominance rule, the strategies' own).
- ``_prune``: :class:`DominancePruner`, the accuracy-against-energy pruning rule, and
  :func:`pareto_indices` (indices of the non-dominated (accuracy, energy) points).
- ``_storage``: Optuna storage in the output directory (``optuna.db``, or a journal file),
  corrupt-file errors, the directory lock.
- ``_tuner``: :class:`Tuner` / :func:`run_tune` (options, bookkeeping, the run under its
  lock); ``_setup``: directory check, dataset, calibration or warm-up; ``_loop``: the
  ask/tell loop (stop checks, ask, skip, recovery, the one give-back); ``_trial``: one
  trial (definition, pruning, recording; it runs in
  :func:`frugalml.study.run_metered_trial`); ``_record``: a trial's record (``TrialRecord``);
  ``_planning``: calibrate, predict, stop (the one budget rule); ``_outcome``: the outcome
  and its files.
- ``_results``: :class:`TrialSummary`, best trial, Pareto front, the trials CSV.
- ``_compare``: :func:`compare_strategies`, :func:`strategy_comparison_table` (energy to
  target per strategy).

Names that mean one thing: ``frugalml.analysis.pareto_front`` and
``frugalml.analysis.comparison_table`` work on a study's results table and
``frugalml.report.load_study`` reads a study store; the tuning ones are
:func:`pareto_indices`, :func:`strategy_comparison_table` and :func:`load_optuna_study`
(the old names ``pareto_front``, ``comparison_table`` and ``load_study`` remain importable
from here as deprecated aliases, outside ``__all__``).
- ``_metered``: :func:`metered`, any user objective metered per trial under a budget;
  :func:`study_spec_fragment` (a trial's params as ``models:``/``training:``).
- ``_plots``: :func:`plot_tuning`, :func:`plot_comparison` (PNG).
"""

from __future__ import annotations

from frugalml.tune._compare import (
    compare_strategies,
    load_comparison,
    parse_strategies,
)
from frugalml.tune._compare_report import Comparison, table_markdown
from frugalml.tune._compare_tables import (
    RunCurve,
    best_at,
    energy_to_target,
    pairwise_tests,
)
from frugalml.tune._compare_tables import comparison_table as strategy_comparison_table
from frugalml.tune._metered import (
    EnergyAs,
    MeteredObjective,
    measured_trials,
    metered,
    study_spec_fragment,
)
from frugalml.tune._outcome import TuneEvent, TuneOutcome
from frugalml.tune._planning import CALIBRATION_BATCHES, Calibration, CostPrediction
from frugalml.tune._plots import plot_comparison, plot_tuning
from frugalml.tune._prune import DominancePruner, EpochPruner, dominated_by, dominates
from frugalml.tune._prune import pareto_front as pareto_indices
from frugalml.tune._registry import (
    PrunerInfo,
    StrategyInfo,
    list_pruners,
    list_strategies,
    register_pruner,
    register_strategy,
)
from frugalml.tune._results import (
    TrialSummary,
    TuningHistory,
    best_trial,
    front,
    summarize_trials,
    write_trials_csv,
)
from frugalml.tune._space import Param, SearchSpace, apply_params, parse_param
from frugalml.tune._spec import OBJECTIVES, PRUNERS, STRATEGIES, TuneBudget, TuneSpec
from frugalml.tune._storage import load_study as load_optuna_study
from frugalml.tune._storage import open_storage
from frugalml.tune._strategies import make_pruner, make_sampler
from frugalml.tune._tuner import Tuner, run_tune

__all__ = [
    "CALIBRATION_BATCHES",
    "OBJECTIVES",
    "PRUNERS",
    "STRATEGIES",
    "Calibration",
    "Comparison",
    "CostPrediction",
    "DominancePruner",
    "EnergyAs",
    "EpochPruner",
    "MeteredObjective",
    "Param",
    "PrunerInfo",
    "RunCurve",
    "SearchSpace",
    "StrategyInfo",
    "TrialSummary",
    "TuneBudget",
    "TuneEvent",
    "TuneOutcome",
    "TuneSpec",
    "Tuner",
    "TuningHistory",
    "apply_params",
    "best_at",
    "best_trial",
    "compare_strategies",
    "dominated_by",
    "dominates",
    "energy_to_target",
    "front",
    "list_pruners",
    "list_strategies",
    "load_comparison",
    "load_optuna_study",
    "make_pruner",
    "make_sampler",
    "measured_trials",
    "metered",
    "open_storage",
    "pairwise_tests",
    "pareto_indices",
    "parse_param",
    "parse_strategies",
    "plot_comparison",
    "plot_tuning",
    "register_pruner",
    "register_strategy",
    "run_tune",
    "strategy_comparison_table",
    "study_spec_fragment",
    "summarize_trials",
    "table_markdown",
    "write_trials_csv",
]

# Deprecated aliases (the names collide with frugalml.analysis / frugalml.report ones that
# mean something else); not in __all__, kept so existing imports keep working.
comparison_table = strategy_comparison_table
load_study = load_optuna_study
pareto_front = pareto_indices

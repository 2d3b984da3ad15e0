"""PePR analytics: turn a table of results into a decision.

Implements the analyses of Selvan et al., "Equity through Access" (NLDL 2025) on any
pandas DataFrame, so a study's own results and published tables are scored alike.

Modules (private; use the names re-exported here):

- ``_pepr``: :func:`pepr` (PePR = P / (1 + R_n), R min-max normalised per group),
  the named variants :data:`PEPR_VARIANTS` (E, C, M, T, params, flops; PePR-E and PePR-T
  score the training alone, ``train_energy_j`` and ``train_duration_s``),
  :func:`score_study` for a study results table, and :func:`rank`.
- ``_pareto``: :func:`pareto_front`, the rows no other row beats on both axes.
- ``_stats``: :func:`small_vs_large` (Mann-Whitney U), :func:`paired_comparison`
  (Wilcoxon signed-rank), :func:`describe_test` and :func:`comparison_table`.
- ``_plots``: :func:`pepr_profile_plot`, :func:`pareto_plot`, :func:`size_plot` (PNG).
- ``_table``: the input checks they share.

Importing this package loads pandas and NumPy only; SciPy and matplotlib load when a test
runs or a plot is drawn.
"""

from __future__ import annotations

from frugalml.analysis._pareto import pareto_front
from frugalml.analysis._pepr import (
    FALLBACK_COLUMNS,
    MEMORY_COLUMN,
    PEPR_VARIANTS,
    SETTING_COLUMNS,
    ColumnFallbackWarning,
    MissingDataWarning,
    MixedSettingsWarning,
    mixed_settings,
    pepr,
    prepare_variants,
    rank,
    score_label,
    score_study,
)
from frugalml.analysis._plots import axis_label, pareto_plot, pepr_profile_plot, size_plot
from frugalml.analysis._stats import (
    MANN_WHITNEY,
    PAPER_SIZE_THRESHOLD,
    WILCOXON,
    PairedComparison,
    SizeComparison,
    comparison_table,
    describe_test,
    paired_comparison,
    small_vs_large,
)

__all__ = [
    "FALLBACK_COLUMNS",
    "MANN_WHITNEY",
    "MEMORY_COLUMN",
    "PAPER_SIZE_THRESHOLD",
    "PEPR_VARIANTS",
    "SETTING_COLUMNS",
    "WILCOXON",
    "ColumnFallbackWarning",
    "MissingDataWarning",
    "MixedSettingsWarning",
    "PairedComparison",
    "SizeComparison",
    "axis_label",
    "comparison_table",
    "describe_test",
    "mixed_settings",
    "paired_comparison",
    "pareto_front",
    "pareto_plot",
    "pepr",
    "pepr_profile_plot",
    "prepare_variants",
    "rank",
    "score_label",
    "score_study",
    "size_plot",
    "small_vs_large",
]

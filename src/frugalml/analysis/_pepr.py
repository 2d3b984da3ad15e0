"""The PePR score of Selvan et al. ("Equity through Access", NLDL 2025) and its variants.

PePR(R, P) = P / (1 + R_n), where R_n = (R - min R) / (max R - min R) is the resource
min-max normalised over the rows of one group (one experiment setting). The cheapest row of
a group scores exactly P, the dearest P / 2. Rows that lack P or R get no score (NaN) and
take no part in their group's min and max.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from types import MappingProxyType

import numpy as np
import pandas as pd

from frugalml.analysis._table import (
    BoolArray,
    FloatArray,
    IntArray,
    as_columns,
    check_table,
    group_codes,
    group_label,
    numeric_column,
    require_columns,
    row_name,
    row_names,
)
from frugalml.errors import ConfigError, DataError

__all__ = [
    "FALLBACK_COLUMNS",
    "MEMORY_COLUMN",
    "PEPR_VARIANTS",
    "SETTING_COLUMNS",
    "ColumnFallbackWarning",
    "MissingDataWarning",
    "MixedSettingsWarning",
    "pepr",
    "prepare_variants",
    "rank",
    "score_label",
    "score_study",
]

#: The columns of a study table that make one experiment setting, PePR's normalisation
#: group: the dataset, whether the model started from pretrained weights, and the fraction
#: of the training data used.
SETTING_COLUMNS: tuple[str, str, str] = ("dataset", "pretrained", "fraction")

#: The memory column :func:`prepare_variants` derives for PePR-M (bytes), and the column
#: that records, row by row, which measured column it was taken from.
MEMORY_COLUMN = "peak_mem_bytes"
MEMORY_SOURCE_COLUMN = "peak_mem_source"

#: PePR variants by name, each mapped to the study-table column it normalises.
#: ``E``, ``C``, ``M`` and ``T`` are the paper's PePR-E (energy), PePR-C (CO2), PePR-M
#: (memory) and PePR-T (time); ``params`` and ``flops`` score the counted model costs.
#: PePR-E, -C and -T use the training alone, as the paper measured: ``train_energy_j``,
#: ``train_co2_g`` and ``train_duration_s`` (the epochs' training windows; setup and
#: evaluation are separate columns). ``M`` uses :data:`MEMORY_COLUMN`, which
#: :func:`prepare_variants` fills per setting from the training's own peak,
#: ``train_peak_gpu_mem_bytes`` where the setting has GPU measurements, else
#: ``train_peak_rss_bytes`` (the process's ``peak_*`` columns in tables without them).
PEPR_VARIANTS: Mapping[str, str] = MappingProxyType(
    {
        "E": "train_energy_j",
        "C": "train_co2_g",
        "M": MEMORY_COLUMN,
        "T": "train_duration_s",
        "params": "params",
        "flops": "flops_per_sample",
    }
)

#: The whole trial's column that stands in for a training-only column in tables written
#: before trials recorded the split (with a :class:`ColumnFallbackWarning`).
FALLBACK_COLUMNS: Mapping[str, str] = MappingProxyType(
    {"train_energy_j": "energy_j", "train_co2_g": "co2_g", "train_duration_s": "duration_s"}
)

_GPU_MEMORY = "peak_gpu_mem_bytes"
_RSS_MEMORY = "peak_rss_bytes"
_TRAIN_GPU_MEMORY = "train_peak_gpu_mem_bytes"
_TRAIN_RSS_MEMORY = "train_peak_rss_bytes"


class MissingDataWarning(UserWarning):
    """Some rows could not be scored because they lack the performance or the resource."""


class ColumnFallbackWarning(UserWarning):
    """A variant's column is absent, and the whole trial's column was scored instead."""


class MixedSettingsWarning(UserWarning):
    """Rows of several settings were normalised together (no group was given)."""


_OWN_WARNINGS = (MissingDataWarning, ColumnFallbackWarning, MixedSettingsWarning)


def pepr(
    table: pd.DataFrame,
    *,
    performance: str,
    resource: str | Sequence[str],
    group: str | Sequence[str] | None = None,
) -> pd.DataFrame:
    """Score every row of ``table`` by performance per resource unit.

    Args:
        table: any results table, one row per model (and setting).
        performance: column with the performance P, a fraction in [0, 1] (accuracy, AUC...).
        resource: column name, or list of names, of the resources R (energy in J, time...).
        group: column(s) whose values make one setting; R is normalised within each group.
            ``None`` normalises over the whole table.

    Returns:
        A copy of ``table`` (same rows, columns and order) with two columns added per
        resource: ``<resource>_norm`` (R_n in [0, 1]) and ``pepr_<resource>``. Columns of
        those names already in the table are overwritten in place.

    Rows missing P or R get NaN in both new columns and are left out of their group's min
    and max; a :class:`MissingDataWarning` counts them and names groups with no scorable
    row. If every scorable row of a group has the same R, R_n is 0 and PePR equals P.
    Without ``group``, a table whose setting columns (:data:`SETTING_COLUMNS`) hold several
    values is normalised as one group, with a :class:`MixedSettingsWarning`.

    Raises:
        ConfigError: a column is not in the table, or a column is named twice.
        DataError: no rows; non-numeric or infinite values; a negative resource (naming
            the rows); P outside [0, 1] (values up to 100 are reported as a percentage).
    """
    df = check_table(table)
    resources = as_columns(resource, role="resource")
    groups = as_columns(group, role="group")
    if not resources:
        raise ConfigError(
            "no resource column given", fix="name at least one, e.g. resource='energy_j'"
        )
    require_columns(df, [performance], role="performance")
    require_columns(df, resources, role="resource")
    require_columns(df, groups, role="group")
    if performance in resources:
        raise ConfigError(
            f"column {performance!r} is given as both performance and resource",
            fix="score the performance against a different resource column",
        )
    clash = [g for g in groups if g == performance or g in resources]
    if clash:
        raise ConfigError(
            f"column {clash[0]!r} is given as a group and as a score input",
            fix="group by setting columns (dataset, pretrained, fraction...) only",
        )

    p = performance_values(df, performance)
    codes = group_codes(df, groups)
    values = {name: resource_values(df, name) for name in resources}
    if not groups:
        mixed = mixed_settings(df, exclude=[performance, *resources])
        if mixed:
            warnings.warn(
                "PePR normalised over the whole table, which mixes several settings ("
                + ", ".join(f"{c}: {n} values" for c, n in mixed.items())
                + "); group by them to compare models within a setting, e.g. group="
                + repr(list(mixed)),
                MixedSettingsWarning,
                stacklevel=2,
            )
    out = df.copy()
    for name in resources:
        r = values[name]
        norm, score = _normalise_and_score(p, r, codes)
        out[f"{name}_norm"] = norm
        out[f"pepr_{name}"] = score
        message = _missing_message(df, performance, name, p, r, codes, groups)
        if message:
            warnings.warn(message, MissingDataWarning, stacklevel=2)
    return out


def performance_values(table: pd.DataFrame, column: str) -> FloatArray:
    """The performance column as floats, checked to lie in [0, 1] (NaN where missing)."""
    p = numeric_column(table, column, role="performance")
    present = ~np.isnan(p)
    outside: BoolArray = present & ((p < 0.0) | (p > 100.0))
    if outside.any():
        first = int(np.argmax(outside))
        raise DataError(
            f"performance column {column!r} has value {p[first]:g} at "
            f"{row_name(table, first)}, outside [0, 1]",
            fix="PePR needs a performance in [0, 1] such as accuracy, AUC or F1",
        )
    percent: BoolArray = present & (p > 1.0)
    if percent.any():
        first = int(np.argmax(percent))
        raise DataError(
            f"performance column {column!r} looks like a percentage (value {p[first]:g} at "
            f"{row_name(table, first)}); PePR needs P in [0, 1]",
            fix=f"divide {column!r} by 100",
        )
    return p


def resource_values(table: pd.DataFrame, column: str) -> FloatArray:
    """A resource column as floats (NaN where missing), refused if any value is negative.

    A negative energy, time, memory or count is not a cost a model could have: it would
    rank first and lower every total, so it is an error naming the rows, not a score.
    """
    r = numeric_column(table, column, role="resource")
    negative: BoolArray = r < 0
    if negative.any():
        raise DataError(
            f"resource column {column!r} has negative values at {row_names(table, negative)} "
            f"(first {r[int(np.argmax(negative))]:g}); a resource cannot be negative",
            fix=f"correct or remove those rows (a meter never records a negative {column}); "
            "a negative value would rank first and lower the totals",
        )
    return r


def mixed_settings(table: pd.DataFrame, *, exclude: Sequence[str] = ()) -> dict[str, int]:
    """The setting columns (:data:`SETTING_COLUMNS`) of ``table`` with several distinct
    values, mapped to how many: the columns a PePR without groups would mix."""
    out: dict[str, int] = {}
    for column in SETTING_COLUMNS:
        if column in table.columns and column not in exclude:
            n = int(table[column].nunique(dropna=False))
            if n > 1:
                out[column] = n
    return out


def _normalise_and_score(
    p: FloatArray, r: FloatArray, codes: IntArray
) -> tuple[FloatArray, FloatArray]:
    """R_n and PePR for every row; NaN where P or R is missing."""
    valid = ~np.isnan(p) & ~np.isnan(r)
    usable = pd.Series(np.where(valid, r, np.nan))
    by_group = usable.groupby(codes)
    low = by_group.transform("min").to_numpy(dtype=np.float64)
    high = by_group.transform("max").to_numpy(dtype=np.float64)
    span = high - low
    norm = np.full(r.shape, np.nan)
    spread = valid & (span > 0)
    norm[spread] = (r[spread] - low[spread]) / span[spread]
    norm[valid & (span == 0)] = 0.0
    score: FloatArray = p / (1.0 + norm)
    return norm, score


def _missing_message(
    table: pd.DataFrame,
    performance: str,
    resource: str,
    p: FloatArray,
    r: FloatArray,
    codes: IntArray,
    groups: Sequence[str],
) -> str:
    """One line on rows that could not be scored, or ``""`` when every row was."""
    missing = np.isnan(p) | np.isnan(r)
    if not missing.any():
        return ""
    n = len(p)
    parts = [
        f"pepr_{resource}: {int(missing.sum())} of {n} rows lack {performance!r} or "
        f"{resource!r} ({row_names(table, missing)}) and get no score (NaN)"
    ]
    scorable = np.bincount(codes, weights=~missing)
    empty = [int(code) for code in np.flatnonzero(scorable == 0)]
    if empty and not groups:
        parts.append("no row of the table can be scored")
    elif empty:
        firsts = [int(np.argmax(codes == code)) for code in empty[:3]]
        named = "; ".join(group_label(table, groups, pos) for pos in firsts)
        more = f" and {len(empty) - 3} more" if len(empty) > 3 else ""
        noun = "group" if len(empty) == 1 else "groups"
        parts.append(f"{len(empty)} {noun} with no scorable row: {named}{more}")
    return "; ".join(parts)


def prepare_variants(
    table: pd.DataFrame,
    variants: Sequence[str],
    group: str | Sequence[str] | None = SETTING_COLUMNS,
) -> tuple[pd.DataFrame, list[str]]:
    """The resource columns for named PePR variants, deriving the memory column if needed.

    Args:
        table: a study results table (see ``docs/architecture.md``).
        variants: keys of :data:`PEPR_VARIANTS`, e.g. ``("E", "M")``.
        group: the setting columns; for ``M`` each setting uses the GPU peak if any of
            its rows has it, else the host RSS peak (GPU and host memory are never mixed
            within one normalisation).

    A training-only column the table lacks (:data:`FALLBACK_COLUMNS`: tables written
    before trials recorded the split) is replaced by the whole trial's column, with a
    :class:`ColumnFallbackWarning`.

    Returns:
        The table (a copy with :data:`MEMORY_COLUMN` and ``peak_mem_source`` added when
        ``M`` is asked for) and the resource column of each variant, in order.
    """
    names = as_columns(variants, role="variant")
    unknown = [v for v in names if v not in PEPR_VARIANTS]
    if unknown:
        known = ", ".join(f"{k} ({v})" for k, v in PEPR_VARIANTS.items())
        raise ConfigError(f"unknown PePR variant {unknown[0]!r}", fix=f"use one of: {known}")
    df = check_table(table)
    if "M" in names:
        df = _with_peak_memory(df, as_columns(group, role="group"))
    columns = []
    for variant in names:
        column = PEPR_VARIANTS[variant]
        stand_in = FALLBACK_COLUMNS.get(column)
        if stand_in is not None and not _has_values(df, column) and stand_in in df.columns:
            warnings.warn(
                f"PePR-{variant} uses the training alone ({column}), which this table does "
                f"not have (written before trials recorded it?); scoring {stand_in}, the whole "
                "trial's figure with setup and evaluation included, instead",
                ColumnFallbackWarning,
                stacklevel=2,
            )
            column = stand_in
        columns.append(column)
    return df, columns


def _has_values(table: pd.DataFrame, column: str) -> bool:
    return column in table.columns and bool(table[column].notna().any())


def _with_peak_memory(table: pd.DataFrame, groups: list[str]) -> pd.DataFrame:
    """Add the memory column: the training's own peak where recorded (GPU where a setting
    measured it, host RSS otherwise), else the process's peak with a warning."""
    own = [c for c in (_TRAIN_GPU_MEMORY, _TRAIN_RSS_MEMORY) if _has_values(table, c)]
    gpu_column, rss_column = (
        (_TRAIN_GPU_MEMORY, _TRAIN_RSS_MEMORY) if own else (_GPU_MEMORY, _RSS_MEMORY)
    )
    have = [c for c in (gpu_column, rss_column) if c in table.columns]
    if not have:
        raise ConfigError(
            f"PePR-M needs column {_GPU_MEMORY!r} or {_RSS_MEMORY!r}; available columns: "
            + ", ".join(str(c) for c in table.columns),
            fix="score a study results table, or pass the memory column as a resource",
        )
    if not own and (_TRAIN_RSS_MEMORY in table.columns or _TRAIN_GPU_MEMORY in table.columns):
        warnings.warn(
            f"PePR-M uses the training's own peak memory ({_TRAIN_RSS_MEMORY}, "
            f"{_TRAIN_GPU_MEMORY}), which this table does not have; scoring the process's "
            "peak (the runtime's baseline included) instead",
            ColumnFallbackWarning,
            stacklevel=3,
        )
    require_columns(table, groups, role="group")
    n = len(table.index)
    gpu = resource_values(table, gpu_column) if gpu_column in table.columns else np.full(n, np.nan)
    rss = resource_values(table, rss_column) if rss_column in table.columns else np.full(n, np.nan)
    codes = group_codes(table, groups)
    group_has_gpu = pd.Series(~np.isnan(gpu)).groupby(codes).transform("any")
    use_gpu = group_has_gpu.to_numpy(dtype=bool)
    out = table.copy()
    out[MEMORY_COLUMN] = np.where(use_gpu, gpu, rss)
    out[MEMORY_SOURCE_COLUMN] = np.where(use_gpu, gpu_column, rss_column)
    return out


def score_study(
    df: pd.DataFrame,
    variants: Sequence[str] = ("E", "C", "M", "T", "params", "flops"),
    group: str | Sequence[str] | None = SETTING_COLUMNS,
    performance: str = "accuracy",
) -> pd.DataFrame:
    """Score a study results table with several PePR variants at once.

    Equivalent to :func:`prepare_variants` followed by :func:`pepr` with the variants'
    resource columns: adds ``<resource>_norm`` and ``pepr_<resource>`` per variant, e.g.
    ``pepr_energy_j`` for ``E`` and ``pepr_peak_mem_bytes`` for ``M``.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        table, resources = prepare_variants(df, variants, group)
        scored = pepr(table, performance=performance, resource=resources, group=group)
    for warning in caught:
        # Re-issued so that they point at the caller of score_study, not at this module.
        if issubclass(warning.category, _OWN_WARNINGS):
            warnings.warn(str(warning.message), warning.category, stacklevel=2)
        else:
            warnings.warn_explicit(
                warning.message, warning.category, warning.filename, warning.lineno
            )
    return scored


def score_label(column: str) -> str:
    """A readable name for a score column: ``pepr_train_energy_j`` -> ``PePR-E``.

    The whole trial's stand-ins (:data:`FALLBACK_COLUMNS`) are named alike
    (``pepr_energy_j`` -> ``PePR-E``); the text around a score says which column it used.
    """
    if column.startswith("pepr_"):
        resource = column[len("pepr_") :]
        for key, name in PEPR_VARIANTS.items():
            if resource in (name, FALLBACK_COLUMNS.get(name)) and len(key) == 1:
                return f"PePR-{key}"
        return f"PePR ({resource})"
    return column


def rank(
    df: pd.DataFrame,
    by: str | None = None,
    group: str | Sequence[str] | None = None,
    *,
    ascending: bool = False,
    column: str = "rank",
) -> pd.DataFrame:
    """Rank the rows by a score, best first, within each group.

    ``by`` defaults to PePR-E: ``pepr_train_energy_j``, or ``pepr_energy_j`` in a table
    scored on the whole trial's energy.

    Ties share the best rank among them (``method="min"``: 1, 2, 2, 4). Rows without a
    score get no rank (``<NA>``) and come last in their group.

    Returns:
        A copy of ``df`` with the integer column ``column`` (nullable ``Int64``), sorted by
        group (in order of first appearance), then rank, then original order. The index is
        kept, so the result can be joined back to ``df``.
    """
    table = check_table(df)
    groups = as_columns(group, role="group")
    if by is None:
        present = [c for c in ("pepr_train_energy_j", "pepr_energy_j") if c in table.columns]
        by = present[0] if present else "pepr_train_energy_j"
    require_columns(table, [by], role="score")
    require_columns(table, groups, role="group")
    values = numeric_column(table, by, role="score")
    codes = group_codes(table, groups)
    ranks = pd.Series(values).groupby(codes).rank(method="min", ascending=ascending)
    rank_values = ranks.to_numpy(dtype=np.float64, na_value=np.nan)
    order = np.lexsort(
        (
            np.arange(len(values)),
            np.where(np.isnan(rank_values), np.inf, rank_values),
            codes,
        )
    )
    out = table.copy()
    out[column] = pd.array(rank_values, dtype="Float64").astype("Int64")
    return out.iloc[order]

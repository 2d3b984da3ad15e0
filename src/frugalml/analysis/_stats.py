"""Significance tests of the PePR paper: small vs large models, paired factor comparisons.

- :func:`small_vs_large`: split the models at a parameter count and compare a score with a
  two-sided Mann-Whitney U test, per setting and over all rows.
- :func:`paired_comparison`: the same model with and without a factor (pretrained weights,
  the full training set), compared with a two-sided Wilcoxon signed-rank test.

Both return plain results (:class:`SizeComparison`, :class:`PairedComparison`); too few
samples give a result whose ``p_value`` is NaN and whose ``reason`` says why, never an
exception. SciPy is imported when a test runs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from frugalml.analysis._pepr import SETTING_COLUMNS, score_label
from frugalml.analysis._table import (
    FloatArray,
    as_columns,
    check_table,
    group_codes,
    group_setting,
    human_count,
    numeric_column,
    require_columns,
)
from frugalml.errors import ConfigError, DataError

__all__ = [
    "MANN_WHITNEY",
    "PAPER_SIZE_THRESHOLD",
    "WILCOXON",
    "PairedComparison",
    "SizeComparison",
    "comparison_table",
    "describe_test",
    "paired_comparison",
    "small_vs_large",
]

#: The parameter count at which the PePR paper split small from large models.
PAPER_SIZE_THRESHOLD = 24.6e6

#: Names of the tests, as they appear in results and descriptions.
MANN_WHITNEY = "Mann-Whitney U (two-sided)"
WILCOXON = "Wilcoxon signed-rank (two-sided)"

_MIN_PER_SIDE = 2


@dataclass(frozen=True)
class SizeComparison:
    """A score of small vs large models in one setting (or over all rows).

    ``statistic`` is scipy's U for the small models (the first sample). Small means
    ``size <= threshold``. ``setting`` is empty for the test over all rows.
    """

    setting: dict[str, object]
    score: str
    size: str
    threshold: float
    n_small: int
    n_large: int
    median_small: float
    median_large: float
    statistic: float
    p_value: float
    test: str = MANN_WHITNEY
    reason: str | None = None
    n_dropped: int = 0

    def to_dict(self) -> dict[str, Any]:
        """Flat record: the setting's columns first, then the fields (``setting`` as text)."""
        return _flat(self)


@dataclass(frozen=True)
class PairedComparison:
    """``value`` at ``levels[0]`` vs ``levels[1]`` of ``factor``, paired on ``pair_on``.

    ``median_difference`` is the median over pairs of value(levels[0]) - value(levels[1]);
    ``statistic`` is scipy's Wilcoxon W. Pairs with a zero difference count in ``n_pairs``
    and are dropped by the test itself (scipy's ``zero_method="wilcox"``).
    """

    setting: dict[str, object]
    factor: str
    value: str
    levels: tuple[object, object]
    pair_on: tuple[str, ...]
    n_pairs: int
    median_difference: float
    statistic: float
    p_value: float
    test: str = WILCOXON
    reason: str | None = None
    n_unpaired: int = 0
    n_dropped: int = 0

    def to_dict(self) -> dict[str, Any]:
        """Flat record: the setting's columns first, then the fields (``setting`` as text)."""
        return _flat(self)


def _flat(result: SizeComparison | PairedComparison) -> dict[str, Any]:
    record: dict[str, Any] = dict(result.setting)
    fields = asdict(result)
    fields["setting"] = _setting_text(result.setting) or "all"
    record.update(fields)
    return record


def comparison_table(results: Sequence[SizeComparison | PairedComparison]) -> pd.DataFrame:
    """The results as a DataFrame, one row each, with a ``description`` column."""
    rows = []
    for result in results:
        record = result.to_dict()
        record["description"] = describe_test(result)
        rows.append(record)
    return pd.DataFrame(rows)


def small_vs_large(
    df: pd.DataFrame,
    score: str = "pepr_energy_j",
    size: str = "params",
    threshold: float | None = None,
    group: str | Sequence[str] | None = None,
    *,
    average_by: str | None = None,
) -> list[SizeComparison]:
    """Do small models score differently from large ones? (two-sided Mann-Whitney U)

    Args:
        df: a scored table.
        score: the column to compare, e.g. ``pepr_energy_j``.
        size: the model size column; small means ``size <= threshold``.
        threshold: the split point; ``None`` takes the median size of the rows compared
            over all (the paper used :data:`PAPER_SIZE_THRESHOLD`, 24.6M parameters).
        group: setting columns; one test per setting besides the test over all.
        average_by: for the test over all, first average score and size per value of this
            column (e.g. ``"model"``, as the paper averaged each model over its settings), so
            that no model counts more than once. ``None`` pools all rows.

    Returns:
        The test over all rows first, then one per setting in order of first appearance.
        Rows lacking the score or the size are left out and counted in ``n_dropped``.
    """
    table = check_table(df)
    groups = as_columns(group, role="group")
    require_columns(table, [score], role="score")
    require_columns(table, [size], role="size")
    require_columns(table, groups, role="group")
    values = numeric_column(table, score, role="score")
    sizes = numeric_column(table, size, role="size")
    valid = ~np.isnan(values) & ~np.isnan(sizes)
    if not valid.any():
        raise DataError(
            f"no row has both {score!r} and {size!r}",
            fix="score the table first (frugalml.analysis.pepr) and check the size column",
        )

    overall_values, overall_sizes = values[valid], sizes[valid]
    if average_by is not None:
        require_columns(table, [average_by], role="average_by")
        means = (
            pd.DataFrame({"unit": table[average_by].to_numpy(), "v": values, "s": sizes})[valid]
            .groupby("unit", sort=False, dropna=False)[["v", "s"]]
            .mean()
        )
        overall_values = means["v"].to_numpy(dtype=np.float64)
        overall_sizes = means["s"].to_numpy(dtype=np.float64)
    if threshold is None:
        threshold = float(np.median(overall_sizes))
    elif not math.isfinite(threshold):
        raise ConfigError(
            f"size threshold must be a finite number, got {threshold!r}",
            fix=f"pass a parameter count such as {PAPER_SIZE_THRESHOLD:g}, or None for the median",
        )

    results = [
        _size_test({}, overall_values, overall_sizes, threshold, score, size, int((~valid).sum()))
    ]
    if groups:
        codes = group_codes(table, groups)
        for code in _codes_in_order(codes):
            members = codes == code
            keep = members & valid
            setting = group_setting(table, groups, int(np.argmax(members)))
            results.append(
                _size_test(
                    setting,
                    values[keep],
                    sizes[keep],
                    threshold,
                    score,
                    size,
                    int((members & ~valid).sum()),
                )
            )
    return results


def _codes_in_order(codes: np.ndarray[Any, np.dtype[np.intp]]) -> list[int]:
    """Group codes in order of first appearance."""
    _, first = np.unique(codes, return_index=True)
    return [int(codes[i]) for i in sorted(first)]


def _size_test(
    setting: dict[str, object],
    values: FloatArray,
    sizes: FloatArray,
    threshold: float,
    score: str,
    size: str,
    n_dropped: int,
) -> SizeComparison:
    small = values[sizes <= threshold]
    large = values[sizes > threshold]
    statistic, p_value, reason = math.nan, math.nan, None
    if len(small) < _MIN_PER_SIDE or len(large) < _MIN_PER_SIDE:
        reason = (
            f"too few models to test: {len(small)} small and {len(large)} large "
            f"(need at least {_MIN_PER_SIDE} on each side)"
        )
    else:
        from scipy.stats import mannwhitneyu

        test = mannwhitneyu(small, large, alternative="two-sided")
        statistic, p_value = float(test.statistic), float(test.pvalue)
    return SizeComparison(
        setting=setting,
        score=score,
        size=size,
        threshold=float(threshold),
        n_small=len(small),
        n_large=len(large),
        median_small=float(np.median(small)) if len(small) else math.nan,
        median_large=float(np.median(large)) if len(large) else math.nan,
        statistic=statistic,
        p_value=p_value,
        reason=reason,
        n_dropped=n_dropped,
    )


def _pair_keys(
    table: pd.DataFrame,
    factor: str,
    value: str,
    pair_on: Sequence[str] | None,
    groups: list[str],
    levels: tuple[object, object],
) -> list[str]:
    """The columns that identify a pair (group columns included), checked against the
    table, the factor and its two levels."""
    if pair_on is None:
        keys = ["model"] + [c for c in SETTING_COLUMNS if c != factor and c in table.columns]
    else:
        keys = as_columns(pair_on, role="pair_on")
    keys += [g for g in groups if g not in keys]
    require_columns(table, [factor], role="factor")
    require_columns(table, [value], role="value")
    require_columns(table, keys, role="pair_on")
    if factor in keys:
        raise ConfigError(
            f"factor {factor!r} cannot also be a pair or group column",
            fix=f"remove {factor!r} from pair_on and group",
        )
    if levels[0] == levels[1]:
        raise ConfigError(
            f"the two levels of {factor!r} are the same ({levels[0]!r})",
            fix="pass two different levels, e.g. levels=(True, False)",
        )
    return keys


def _level_side(
    table: pd.DataFrame, factor: str, level: object, keys: list[str], values: FloatArray
) -> pd.DataFrame:
    """The rows at one level of ``factor``: their pair keys and ``_value``; a level that does
    not occur, or two rows sharing a pair key, is refused."""
    at_level = (table[factor] == level).fillna(False).to_numpy(dtype=bool)
    if not at_level.any():
        present = table[factor].dropna().unique().tolist()
        raise ConfigError(
            f"level {level!r} of {factor!r} does not occur in the table; values present: "
            + ", ".join(repr(v) for v in present[:10]),
            fix="pass two of the values present as levels",
        )
    side = table.loc[at_level, keys].copy()
    side["_value"] = values[at_level]
    duplicated = side.duplicated(subset=keys, keep=False).to_numpy(dtype=bool)
    if duplicated.any():
        first = int(np.argmax(duplicated))
        where = ", ".join(f"{k}={side[k].iloc[first]!r}" for k in keys)
        raise DataError(
            f"several rows with {factor}={level!r} share {where}; cannot pair them",
            fix="add the column that tells them apart (e.g. 'seed') to pair_on, "
            "or average them first",
        )
    return side


def _paired_result(
    setting: dict[str, object],
    factor: str,
    value: str,
    levels: tuple[object, object],
    keys: list[str],
    x: FloatArray,
    y: FloatArray,
    dropped: int,
    unpaired: int,
) -> PairedComparison:
    """One Wilcoxon signed-rank test of the pairs ``x`` (``levels[0]``) and ``y``."""
    statistic, p_value, reason = _wilcoxon(x, y)
    return PairedComparison(
        setting=setting,
        factor=factor,
        value=value,
        levels=(levels[0], levels[1]),
        pair_on=tuple(keys),
        n_pairs=len(x),
        median_difference=float(np.median(x - y)) if len(x) else math.nan,
        statistic=statistic,
        p_value=p_value,
        reason=reason,
        n_unpaired=unpaired,
        n_dropped=dropped,
    )


def paired_comparison(
    df: pd.DataFrame,
    factor: str = "pretrained",
    value: str = "accuracy",
    pair_on: Sequence[str] | None = None,
    levels: tuple[object, object] = (True, False),
    group: str | Sequence[str] | None = None,
) -> list[PairedComparison]:
    """Does a factor change a value for the same model? (two-sided Wilcoxon signed-rank)

    Pretrained vs from scratch: ``factor="pretrained", levels=(True, False)``; full vs
    reduced training data: ``factor="fraction", levels=(1.0, 0.1)``.

    Args:
        df: a results table.
        factor: the column whose two levels are compared.
        value: the column compared (accuracy, a PePR score...).
        pair_on: the columns that identify a pair; ``None`` means ``model`` plus those of
            ``dataset``, ``pretrained``, ``fraction`` that are in the table, except
            ``factor``. Group columns are always part of the pair.
        levels: the two values of ``factor``; differences are ``levels[0] - levels[1]``.
        group: setting columns; one test per setting besides the test over all pairs.

    Returns:
        The test over all pairs first, then one per setting.

    Raises:
        ConfigError: missing columns, a level that does not occur, ``factor`` in ``pair_on``.
        DataError: two rows of one level share a pair key (add the column that tells them
            apart, e.g. ``seed``, to ``pair_on``, or average them first).
    """
    table = check_table(df)
    groups = as_columns(group, role="group")
    keys = _pair_keys(table, factor, value, pair_on, groups, levels)
    values = numeric_column(table, value, role="value")
    sides = [_level_side(table, factor, level, keys, values) for level in levels]
    merged = sides[0].merge(sides[1], on=keys, how="inner", suffixes=("_a", "_b"))
    n_unpaired = len(sides[0]) + len(sides[1]) - 2 * len(merged)
    complete = merged["_value_a"].notna() & merged["_value_b"].notna()
    n_dropped = int((~complete).sum())
    pairs = merged[complete].reset_index(drop=True)
    a = pairs["_value_a"].to_numpy(dtype=np.float64)
    b = pairs["_value_b"].to_numpy(dtype=np.float64)
    results = [_paired_result({}, factor, value, levels, keys, a, b, n_dropped, n_unpaired)]
    if groups and len(pairs):
        codes = group_codes(pairs, groups)
        for code in _codes_in_order(codes):
            members = codes == code
            setting = group_setting(pairs, groups, int(np.argmax(members)))
            results.append(
                _paired_result(setting, factor, value, levels, keys, a[members], b[members], 0, 0)
            )
    return results


def _wilcoxon(x: FloatArray, y: FloatArray) -> tuple[float, float, str | None]:
    if len(x) < _MIN_PER_SIDE:
        return math.nan, math.nan, f"too few pairs to test: {len(x)} (need at least 2)"
    if np.all(x == y):
        return math.nan, math.nan, "all differences are zero: the test has nothing to rank"
    from scipy.stats import wilcoxon

    test = wilcoxon(x, y, alternative="two-sided")
    return float(test.statistic), float(test.pvalue), None


def describe_test(result: SizeComparison | PairedComparison) -> str:
    """The result in one sentence, e.g. for a report.

    ``small models (<= 24.6M params, n=12): median PePR-E 0.66 vs 0.56 for large (n=9);
    two-sided Mann-Whitney U = 80.0, p = 0.031``
    """
    where = _setting_text(result.setting)
    prefix = f"{where}: " if where else ""
    if isinstance(result, SizeComparison):
        text = (
            f"small models (<= {human_count(result.threshold)} {result.size}, n={result.n_small}): "
            f"median {score_label(result.score)} {_number(result.median_small)} vs "
            f"{_number(result.median_large)} for large (n={result.n_large}); "
        )
        statistic = "two-sided Mann-Whitney U"
    else:
        first, second = result.levels
        text = (
            f"{result.value} with {result.factor}={first!r} vs {result.factor}={second!r} "
            f"({result.n_pairs} pairs matched on {', '.join(result.pair_on)}): "
            f"median difference {_signed(result.median_difference)}; "
        )
        statistic = "two-sided Wilcoxon signed-rank W"
    if result.reason is not None:
        return f"{prefix}{text}no test: {result.reason}"
    return f"{prefix}{text}{statistic} = {result.statistic:.1f}, {_p_value(result.p_value)}"


def _setting_text(setting: dict[str, object]) -> str:
    return ", ".join(f"{k}={v}" for k, v in setting.items())


def _number(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.3g}"


def _signed(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:+.3g}"


def _p_value(p: float) -> str:
    if math.isnan(p):
        return "p = n/a"
    if p < 0.001:
        return f"p = {p:.1e}"
    return f"p = {p:.3f}"

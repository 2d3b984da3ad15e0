"""What a prepared study says, in sentences: the choice per setting and the tests.

- :func:`decision`: per setting, the best model by PePR-E, how the most accurate model
  compares with it, which models are on the accuracy-energy Pareto front, and whether
  the top two differ by more than the test set's sampling noise (:func:`noise_sentence`).
- :func:`significance`: small vs large models (two-sided Mann-Whitney U on PePR-E, per
  setting and over all models, each model averaged over its settings for the latter) and,
  where the study has both levels, pretrained vs from scratch and full vs reduced data
  (two-sided Wilcoxon signed-rank on accuracy and on PePR-E, paired by model).

Every sentence is built from the numbers of the table; a test that cannot run (too few
models) says why instead of giving a p-value. Where the samples are so small that no
outcome could reach p < 0.05, the sentence says so.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from frugalml.analysis import (
    PairedComparison,
    SizeComparison,
    describe_test,
    paired_comparison,
    small_vs_large,
)
from frugalml.errors import FrugalError
from frugalml.report._format import (
    fmt_count,
    fmt_energy,
    fmt_fixed,
    fmt_joules,
    fmt_p_value,
    fmt_percent,
    plain_text,
)
from frugalml.report._prepare import (
    LABEL,
    PARETO,
    PERFORMANCE,
    PreparedStudy,
    Setting,
    distinct_levels,
    has_values,
    kind_column,
    setting_label,
)
from frugalml.report._tables import energy_words

__all__ = [
    "PairedSection",
    "Significance",
    "decision",
    "noise_sentence",
    "significance",
]

_ALPHA = 0.05
_EXACT_LIMIT = 8  # scipy's Mann-Whitney U is exact when one side has at most 8 (no ties)


@dataclass(frozen=True)
class PairedSection:
    """One factor's comparison: ``title`` names the two levels compared."""

    title: str
    factor: str
    levels: tuple[object, object]
    results: dict[str, list[PairedComparison]]


@dataclass(frozen=True)
class Significance:
    """The tests of a study. ``threshold`` is the parameter count splitting small from large."""

    threshold: float
    threshold_source: str
    size_overall: SizeComparison | None
    size_by_setting: dict[int, SizeComparison]
    paired: list[PairedSection]
    notes: list[str] = field(default_factory=list)


def decision(setting: Setting) -> list[str]:
    """Sentences on which model to choose in one setting (best first)."""
    table = setting.table
    if not len(table.index):
        return []
    energy = setting.energy_column
    best = table.iloc[0]
    kind = _kind(best, kind_column(setting))
    sentences = [
        f"Best PePR-E: {best[LABEL]}, test accuracy after the last epoch "
        f"{fmt_fixed(float(best[PERFORMANCE]))} for {fmt_energy(float(best[energy]))} of "
        f"{energy_words(energy)}{kind}."
    ]
    if len(table.index) > 1:
        top = int(np.argmax(table[PERFORMANCE].to_numpy(dtype=np.float64)))
        accurate = table.iloc[top]
        if top == 0 or float(accurate[PERFORMANCE]) == float(best[PERFORMANCE]):
            sentences.append("It is also the most accurate model of this setting.")
        else:
            gain = float(accurate[PERFORMANCE]) - float(best[PERFORMANCE])
            ratio = float(accurate[energy]) / float(best[energy]) if best[energy] > 0 else math.nan
            times = f"{ratio:.2g} times the energy" if math.isfinite(ratio) else "more energy"
            sentences.append(
                f"The most accurate, {accurate[LABEL]}, gains {gain:+.3f} accuracy "
                f"({fmt_fixed(float(accurate[PERFORMANCE]))}) for {times} "
                f"({fmt_joules(float(accurate[energy]))})."
            )
        front = table[table[PARETO].astype(bool)].sort_values(energy, kind="stable")
        names = ", ".join(str(n) for n in front[LABEL])
        sentences.append(
            f"On the accuracy-energy Pareto front (no other model is both more accurate and "
            f"cheaper): {names}."
        )
        noise = noise_sentence(setting)
        if noise:
            sentences.append(noise)
    return sentences


def noise_sentence(setting: Setting) -> str:
    """Whether the top two models by PePR-E differ in accuracy beyond sampling noise.

    The bound is the binomial standard error of the difference of two accuracies on the
    test set, sqrt(p1 (1 - p1) / N + p2 (1 - p2) / N) with N test images (``test_samples``);
    a difference within two of them is called within noise. Per-sample predictions, which
    a McNemar test would need, are not recorded. With several seeds the seeds' spread is
    reported beside it; with one seed each, the sentence says so.
    """
    table = setting.table
    if len(table.index) < 2:
        return ""
    first, second = table.iloc[0], table.iloc[1]
    p1, p2 = float(first[PERFORMANCE]), float(second[PERFORMANCE])
    if not (math.isfinite(p1) and math.isfinite(p2)):
        return ""
    names = f"The top two by PePR-E, {first[LABEL]} and {second[LABEL]},"
    diff = abs(p1 - p2)
    n_test = _test_samples(first, second)
    counts = (int(first["n_trials"]), int(second["n_trials"]))
    if min(counts) > 1:
        seed_text = f" Both are means over at least {min(counts)} seeds (n)."
    elif max(counts) > 1:
        seed_text = " One of them is a single seed (n = 1): its spread over reruns is unknown."
    else:
        seed_text = " One seed each (n = 1): how much a rerun would move them is not measured."
    if n_test is None:
        if diff == 0:
            return f"{names} have the same test accuracy: their order rests on energy.{seed_text}"
        return (
            f"{names} differ in test accuracy by {diff:.3f}; the test set's size is not "
            f"recorded, so no noise bound is given.{seed_text}"
        )
    if diff == 0:
        return (
            f"{names} have the same test accuracy ({fmt_fixed(p1)} on {n_test} test images): "
            f"their order rests on energy alone.{seed_text}"
        )
    bound = 2.0 * math.sqrt(p1 * (1.0 - p1) / n_test + p2 * (1.0 - p2) / n_test)
    images = round(diff * n_test)
    verdict = (
        f"within noise, less than two binomial standard errors of the difference ({bound:.3f}): "
        "their order rests on energy, not on accuracy."
        if diff <= bound
        else f"more than two binomial standard errors of the difference ({bound:.3f})."
    )
    return (
        f"{names} differ in test accuracy by {diff:.3f} ({images} of {n_test} test images), "
        f"{verdict}{seed_text}"
    )


def _test_samples(*rows: pd.Series[Any]) -> int | None:
    """The test set size of the rows compared, if recorded and the same for all."""
    sizes = set()
    for row in rows:
        value = row.get("test_samples")
        if value is None:
            return None
        try:
            number = float(value)
        except (TypeError, ValueError):
            return None
        if not math.isfinite(number) or number < 1:
            return None
        sizes.add(round(number))
    return sizes.pop() if len(sizes) == 1 else None


def _kind(row: pd.Series[Any], column: str = "energy_kind") -> str:
    kind = plain_text(row.get(column, ""))
    return f" ({kind})" if kind else ""


def significance(prepared: PreparedStudy, *, size_threshold: float | None = None) -> Significance:
    """Run the small-vs-large and paired tests the study's design allows."""
    scored = prepared.scored
    score = prepared.score_column
    notes: list[str] = []
    threshold, source = _threshold(scored, size_threshold)
    size_overall: SizeComparison | None = None
    by_setting: dict[int, SizeComparison] = {}
    if not has_values(scored, "params"):
        notes.append("small vs large: no parameter counts in the table, no test")
    elif len(scored.index):
        try:
            size_overall = small_vs_large(
                scored, score=score, size="params", threshold=threshold, average_by=LABEL
            )[0]
            for setting in prepared.settings:
                if has_values(setting.table, "params"):
                    result = small_vs_large(
                        setting.table, score=score, size="params", threshold=threshold
                    )[0]
                    by_setting[setting.index] = replace(result, setting=setting.key)
        except FrugalError as exc:
            notes.append(f"small vs large: no test ({exc})")
    paired = _paired(prepared, notes)
    return Significance(
        threshold=threshold,
        threshold_source=source,
        size_overall=size_overall,
        size_by_setting=by_setting,
        paired=paired,
        notes=notes,
    )


def _threshold(scored: pd.DataFrame, given: float | None) -> tuple[float, str]:
    if given is not None:
        return float(given), "given"
    if not has_values(scored, "params"):
        return math.nan, "none"
    per_model = scored.groupby(LABEL, sort=False)["params"].mean().dropna()
    return float(np.median(per_model.to_numpy(dtype=np.float64))), "median"


def _paired(prepared: PreparedStudy, notes: list[str]) -> list[PairedSection]:
    scored = prepared.scored
    sections = []
    plans: list[tuple[str, str, tuple[object, object]]] = []
    pretrained = distinct_levels(scored, "pretrained")
    if "pretrained" in prepared.setting_columns and {True, False} <= set(pretrained):
        plans.append(("pretrained", "pretrained vs from scratch", (True, False)))
    fractions = sorted((float(str(v)) for v in distinct_levels(scored, "fraction")), reverse=True)
    if "fraction" in prepared.setting_columns and len(fractions) > 1:
        full = fractions[0]
        for other in fractions[1:]:
            title = f"{fmt_percent(full)} vs {fmt_percent(other)} of the training data"
            plans.append(("fraction", title, (full, other)))
    for factor, title, levels in plans:
        others = [c for c in prepared.setting_columns if c != factor]
        results: dict[str, list[PairedComparison]] = {}
        for value in (PERFORMANCE, prepared.score_column):
            try:
                found = paired_comparison(
                    scored,
                    factor=factor,
                    value=value,
                    pair_on=[LABEL, *others],
                    levels=levels,
                    group=others or None,
                )
            except FrugalError as exc:
                notes.append(f"{title}, {value}: no test ({exc})")
                continue
            per_setting = [r for r in found if r.setting]
            if len(per_setting) == 1 and len(found) == 2:
                # One setting: its test is the test over all pairs; say it once, by name.
                found = per_setting
            results[value] = found
        if results:
            sections.append(PairedSection(title, factor, levels, results))
    return sections


def describe_size(result: SizeComparison, *, within_setting: bool) -> str:
    """The small-vs-large test in words, with its verdict."""
    shown = replace(result, setting={}) if within_setting else result
    text = _capital(describe_test(shown))
    if result.reason is None:
        text += ". " + _verdict(result.p_value, _min_p_mann_whitney(result.n_small, result.n_large))
    return text


def describe_paired(result: PairedComparison, section: PairedSection) -> str:
    """A paired comparison in words, e.g. ``pretrained minus from scratch: median +0.12``."""
    where = setting_label(result.setting) if result.setting else "all settings"
    first, second = _level_names(section)
    value = "accuracy" if result.value == PERFORMANCE else "PePR-E"
    text = (
        f"{_capital(where)}: {value}, {first} minus {second}, median difference "
        f"{_signed(result.median_difference)} over {result.n_pairs} "
        f"{'pair' if result.n_pairs == 1 else 'pairs'} (the same model at both levels)"
    )
    if result.n_unpaired:
        text += f" ({result.n_unpaired} rows without a partner left out)"
    if result.reason is not None:
        return f"{text}; no test: {result.reason}."
    text += (
        f"; two-sided Wilcoxon signed-rank W = {result.statistic:.1f}, "
        f"{fmt_p_value(result.p_value)}. "
    )
    return text + _verdict(result.p_value, _min_p_wilcoxon(result.n_pairs))


def _level_names(section: PairedSection) -> tuple[str, str]:
    if section.factor == "pretrained":
        return "pretrained", "from scratch"
    a, b = section.levels
    return f"{fmt_percent(float(str(a)))} data", f"{fmt_percent(float(str(b)))} data"


def _verdict(p: float, min_p: float) -> str:
    if math.isnan(p):
        return ""
    if p < _ALPHA:
        return f"The difference is significant at the {_ALPHA:g} level."
    text = f"No significant difference at the {_ALPHA:g} level"
    if min_p >= _ALPHA:
        text += (
            f" (with samples this small no outcome could give p below {min_p:.3g}: "
            "run more models to test)"
        )
    return text + "."


def _min_p_mann_whitney(n_small: int, n_large: int) -> float:
    """The least two-sided p of an exact Mann-Whitney U test (NaN where scipy is not exact)."""
    if n_small < 1 or n_large < 1 or min(n_small, n_large) > _EXACT_LIMIT:
        return math.nan
    return min(1.0, 2.0 / math.comb(n_small + n_large, n_small))


def _min_p_wilcoxon(n_pairs: int) -> float:
    """The least two-sided p of an exact Wilcoxon signed-rank test on ``n_pairs`` pairs."""
    if n_pairs < 1 or n_pairs > 50:
        return math.nan
    return min(1.0, 2.0 / 2.0**n_pairs)


def _capital(text: str) -> str:
    return text[:1].upper() + text[1:]


def _signed(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:+.3f}"


def threshold_text(result: Significance) -> str:
    """How small and large were split, in words."""
    if math.isnan(result.threshold):
        return ""
    how = (
        "the median parameter count of the study's models"
        if result.threshold_source == "median"
        else "the threshold given"
    )
    return (
        f"Small models have at most {fmt_count(result.threshold)} parameters ({how}; the PePR "
        "paper split at 24.6M)."
    )

"""The tables of a strategy comparison: each run's curve, its energy to target, the
per-strategy table, the pairwise tests and issue 15's goal, in words.

A run's curve is *best validation accuracy among completed trials* against *cumulative
energy of every trial* (pruned and failed ones included). Its energy to target is the
cumulative energy at the end of the first trial that brings its best to the threshold or
above; a run that never reaches it is *censored* at the energy it spent (:mod:`._stats`).
:mod:`._compare` runs the comparison, :mod:`._compare_report` writes these tables as
Markdown and HTML.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from frugalml.errors import ConfigError
from frugalml.tune._results import TrialSummary, TuningHistory, energy_provenance
from frugalml.tune._stats import (
    Outcome,
    bootstrap_median_ci,
    bootstrap_ratio_ci,
    km_median,
    logrank_test,
    mann_whitney_censored,
    median_at_most,
    median_ratio,
    p_in_words,
)

if TYPE_CHECKING:
    import pandas as pd

TABLE_COLUMNS = (
    "strategy",
    "runs",
    "reached",
    "not_reached",
    "reached_share",
    "median_energy_to_target_j",
    "ci_low_energy_to_target_j",
    "ci_high_energy_to_target_j",
    "min_energy_to_target_j",
    "max_energy_to_target_j",
    "median_trials_to_target",
    "median_best_val_accuracy",
    "min_best_val_accuracy",
    "max_best_val_accuracy",
    "median_total_energy_j",
    "median_trials",
    "threshold",
    "energy_kind",
)

TESTS_COLUMNS = (
    "strategy_a",
    "strategy_b",
    "logrank_statistic",
    "logrank_p",
    "mann_whitney_u",
    "mann_whitney_p",
    "less_energy",
    "in_words",
    "median_ratio",
    "ratio_ci_low",
    "ratio_ci_high",
)


@dataclass(frozen=True)
class RunCurve:
    """One tuning run: after each trial, the cumulative energy (J) and the best validation
    accuracy of the completed trials so far (NaN before the first)."""

    strategy: str
    repeat: int
    energy_j: tuple[float, ...]
    best_accuracy: tuple[float, ...]
    energy_kind: str = "estimated"

    @classmethod
    def from_trials(cls, strategy: str, repeat: int, trials: Sequence[TrialSummary]) -> RunCurve:
        history = TuningHistory.from_trials(trials)
        return cls(
            strategy=strategy,
            repeat=repeat,
            energy_j=tuple(history.cumulative_energy_j),
            best_accuracy=tuple(history.best_so_far),
            energy_kind=energy_provenance([t.energy_kind for t in history.trials]),
        )

    @property
    def total_energy_j(self) -> float:
        return self.energy_j[-1] if self.energy_j else 0.0

    @property
    def final_best(self) -> float:
        finite = [b for b in self.best_accuracy if math.isfinite(b)]
        return max(finite) if finite else math.nan


def best_at(curve: RunCurve, energy_j: float) -> float:
    """The best accuracy a run had reached having spent at most ``energy_j`` (NaN if none)."""
    best = math.nan
    for spent, accuracy in zip(curve.energy_j, curve.best_accuracy, strict=True):
        if spent > energy_j:
            break
        best = accuracy
    return best


def energy_to_target(curve: RunCurve, threshold: float) -> tuple[float, int] | None:
    """(cumulative energy, trials run) when the run's best first reached ``threshold``."""
    for index, (spent, accuracy) in enumerate(
        zip(curve.energy_j, curve.best_accuracy, strict=True)
    ):
        if math.isfinite(accuracy) and accuracy >= threshold - 1e-12:
            return spent, index + 1
    return None


def _median_with_inf(values: list[float]) -> float:
    return float(statistics.median(values)) if values else math.nan


def run_outcome(curve: RunCurve, threshold: float) -> Outcome:
    """The run's energy to target, or censored at the energy it spent in all."""
    hit = energy_to_target(curve, threshold) if math.isfinite(threshold) else None
    if hit is not None:
        return Outcome(hit[0], True)
    return Outcome(curve.total_energy_j, False)


def _threshold(curves: Sequence[RunCurve], target: float, best_accuracy: float | None) -> float:
    if not (math.isfinite(target) and target >= 0):
        raise ConfigError(f"target must be a number >= 0, got {target!r}", fix="e.g. target=0.01")
    reference = best_accuracy
    if reference is None:
        finals = [c.final_best for c in curves if math.isfinite(c.final_best)]
        reference = max(finals) if finals else math.nan
    return reference - target


def check_threshold(threshold: float | None) -> None:
    """Refuse a fixed threshold that is not an accuracy in (0, 1] (None: none given)."""
    if threshold is None:
        return
    if isinstance(threshold, bool) or not (
        isinstance(threshold, float | int) and math.isfinite(threshold) and 0 < threshold <= 1
    ):
        raise ConfigError(
            f"threshold must be a validation accuracy in (0, 1], got {threshold!r}",
            fix="e.g. threshold=0.96 (or leave it out and give target=0.01 below the best run)",
        )


def _by_strategy(curves: Sequence[RunCurve]) -> dict[str, list[RunCurve]]:
    groups: dict[str, list[RunCurve]] = {}
    for curve in curves:
        groups.setdefault(curve.strategy, []).append(curve)
    return groups


def comparison_table(
    curves: Sequence[RunCurve],
    target: float = 0.01,
    *,
    best_accuracy: float | None = None,
    seed: int = 0,
) -> pd.DataFrame:
    """Energy to come within ``target`` of the best accuracy any run found, per strategy.

    Columns: see :data:`TABLE_COLUMNS`. Energies in joules. A run that never reached the
    threshold is censored at the energy it spent (:mod:`._stats`): the median is the
    Kaplan-Meier median (``inf``: fewer than half of the runs reached it), its 95% interval
    a bootstrap over runs (``seed``; an ``inf`` bound: not reached in the resamples), min and
    max over the runs that reached it. ``best_accuracy`` overrides the reference (default:
    the best of ``curves``); the best validation accuracy is each run's at the end of its
    budget.
    """
    import pandas as pd

    if not curves:
        return pd.DataFrame(columns=list(TABLE_COLUMNS))
    threshold = _threshold(curves, target, best_accuracy)
    rows: list[dict[str, Any]] = []
    for strategy, runs in _by_strategy(curves).items():
        outcomes = [run_outcome(c, threshold) for c in runs]
        hits = [energy_to_target(c, threshold) if math.isfinite(threshold) else None for c in runs]
        trials = [float(h[1]) if h else math.inf for h in hits]
        reached = [o.energy_j for o in outcomes if o.reached]
        bests = [c.final_best for c in runs if math.isfinite(c.final_best)]
        low, high = bootstrap_median_ci(outcomes, seed=seed)
        rows.append(
            {
                "strategy": strategy,
                "runs": len(runs),
                "reached": len(reached),
                "not_reached": len(runs) - len(reached),
                "reached_share": len(reached) / len(runs),
                "median_energy_to_target_j": km_median(outcomes),
                "ci_low_energy_to_target_j": low,
                "ci_high_energy_to_target_j": high,
                "min_energy_to_target_j": min(reached) if reached else math.inf,
                "max_energy_to_target_j": max(reached) if reached else math.inf,
                "median_trials_to_target": _median_with_inf(trials),
                "median_best_val_accuracy": statistics.median(bests) if bests else math.nan,
                "min_best_val_accuracy": min(bests) if bests else math.nan,
                "max_best_val_accuracy": max(bests) if bests else math.nan,
                "median_total_energy_j": statistics.median(c.total_energy_j for c in runs),
                "median_trials": statistics.median(len(c.energy_j) for c in runs),
                "threshold": threshold,
                "energy_kind": energy_provenance([c.energy_kind for c in runs]),
            }
        )
    return pd.DataFrame(rows, columns=list(TABLE_COLUMNS))


def pairwise_tests(
    curves: Sequence[RunCurve],
    target: float = 0.01,
    *,
    best_accuracy: float | None = None,
    seed: int = 0,
) -> pd.DataFrame:
    """Every pair of strategies: the log-rank test and the Mann-Whitney test with censored
    runs ranked last, on energy to target, and the ratio of the first one's median energy
    to target to the second's with a bootstrap interval (``seed``;
    :func:`._stats.bootstrap_ratio_ci`; a bound when the second's median is not reached)
    (columns: :data:`TESTS_COLUMNS`).

    ``less_energy`` names the strategy that reached the target for less energy (lower
    Kaplan-Meier median; on a tie of medians, more runs reaching it); ``in_words`` states the
    log-rank p-value.
    """
    import pandas as pd

    groups = _by_strategy(curves)
    if len(groups) < 2:
        return pd.DataFrame(columns=list(TESTS_COLUMNS))
    threshold = _threshold(curves, target, best_accuracy)
    outcomes = {s: [run_outcome(c, threshold) for c in runs] for s, runs in groups.items()}
    rows: list[dict[str, Any]] = []
    names = list(groups)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            logrank = logrank_test(outcomes[a], outcomes[b])
            mw = mann_whitney_censored(outcomes[a], outcomes[b])
            ratio_low, ratio_high = bootstrap_ratio_ci(outcomes[a], outcomes[b], seed=seed)

            def key(name: str) -> tuple[float, int]:
                return (km_median(outcomes[name]), -sum(o.reached for o in outcomes[name]))

            better, worse = (a, b) if key(a) <= key(b) else (b, a)
            same = key(a) == key(b)
            rows.append(
                {
                    "strategy_a": a,
                    "strategy_b": b,
                    "logrank_statistic": logrank.statistic,
                    "logrank_p": logrank.p_value,
                    "mann_whitney_u": mw.statistic,
                    "mann_whitney_p": mw.p_value,
                    "less_energy": "" if same else better,
                    "in_words": p_in_words(
                        logrank.p_value,
                        better=None if same else better,
                        worse=None if same else worse,
                    ),
                    "median_ratio": median_ratio(outcomes[a], outcomes[b]),
                    "ratio_ci_low": ratio_low,
                    "ratio_ci_high": ratio_high,
                }
            )
    return pd.DataFrame(rows, columns=list(TESTS_COLUMNS))


#: The goal of issue 15 a strategy is checked against, relative to random search: reach the
#: target in at least this share of runs ...
GOAL_REACHED_SHARE = 0.9
#: ... at a median energy to target at most this fraction of the reference's ...
GOAL_MEDIAN_FRACTION = 0.5
#: ... with the log-rank difference significant at this level.
GOAL_ALPHA = 0.05


def goal_check(
    curves: Sequence[RunCurve],
    target: float = 0.01,
    *,
    reference: str = "random",
    best_accuracy: float | None = None,
) -> list[str]:
    """One sentence per strategy other than ``reference``: does it reach the target in at
    least :data:`GOAL_REACHED_SHARE` of its runs, at a median energy to target at most
    :data:`GOAL_MEDIAN_FRACTION` of the reference's (a bound when the reference's median is
    not reached: :func:`._stats.median_at_most`), with a log-rank p below
    :data:`GOAL_ALPHA`? Empty when ``reference`` is not among the strategies."""
    groups = _by_strategy(curves)
    if reference not in groups or len(groups) < 2:
        return []
    threshold = _threshold(curves, target, best_accuracy)
    outcomes = {s: [run_outcome(c, threshold) for c in runs] for s, runs in groups.items()}
    base = outcomes[reference]
    lines = []
    for name, runs in outcomes.items():
        if name == reference:
            continue
        reached = sum(o.reached for o in runs)
        share_ok = reached >= GOAL_REACHED_SHARE * len(runs) - 1e-9
        median = median_at_most(runs, base, GOAL_MEDIAN_FRACTION, names=(name, reference))
        p = logrank_test(runs, base).p_value
        faster = km_median(runs) < km_median(base) or (
            km_median(runs) == km_median(base) and reached > sum(o.reached for o in base)
        )
        p_ok = p < GOAL_ALPHA and faster
        met = share_ok and median.holds is True and p_ok
        low, high = bootstrap_ratio_ci(runs, base)
        ratio = median_ratio(runs, base)
        lines.append(
            f"Goal for {name} against {reference} (threshold {threshold:.4f}): reached in "
            f"{reached}/{len(runs)} runs ({'at least' if share_ok else 'below'} "
            f"{GOAL_REACHED_SHARE:.0%}); {median.in_words}; the ratio of the medians, 95% "
            f"bootstrap interval {fmt_share(low)} to {fmt_share(high)}"
            f"{interval_vs(low, high, GOAL_MEDIAN_FRACTION, ratio, min(len(runs), len(base)))}"
            "; log-rank "
            f"{p_phrase(p)} "
            f"({'significant' if p_ok else 'not significant'} at {GOAL_ALPHA:.0%}"
            f"{'' if faster else f', and {name} is not the one needing less'}): "
            f"{'goal met' if met else 'goal not met'}."
        )
    return lines


def p_phrase(value: float) -> str:
    """``p = 0.035`` or ``p < 0.001`` (never ``p = < 0.001``)."""
    shown = fmt_p(value)
    return f"p {shown}" if shown.startswith("<") else f"p = {shown}"


def fmt_p(value: float) -> str:
    if not math.isfinite(value):
        return "-"
    return "< 0.001" if value < 0.001 else f"{value:.3f}"


def interval_vs(low: float, high: float, fraction: float, ratio: float, runs: int) -> str:
    """Whether a ratio's interval lies below, above or across ``fraction``, in words; across
    it, roughly how many runs a side would put the interval's upper end at ``fraction``.

    The rough count assumes the ratio stays at ``ratio`` and the interval's upper half on a
    log scale shrinks as ``1 / sqrt(runs)`` (the bootstrap's usual rate): ``runs x
    (log(high / ratio) / log(fraction / ratio)) ** 2``.
    """
    if math.isnan(low) or math.isnan(high):
        return ""
    if high <= fraction:
        return f" (at most {fraction:g} throughout)"
    if low > fraction:
        return f" (above {fraction:g} throughout)"
    head = f" (it holds {fraction:g}: {runs} runs a side cannot tell on which side of it"
    if not (0 < ratio < fraction) or not math.isfinite(high):
        return f"{head} the ratio is)"
    needed = math.ceil(runs * (math.log(high / ratio) / math.log(fraction / ratio)) ** 2)
    return f"{head} the ratio is; at this ratio and spread, roughly {needed} would)"


def fmt_share(value: float) -> str:
    return f"{value:.2f}" if math.isfinite(value) else "not bounded"

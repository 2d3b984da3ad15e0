"""Strategy comparison: which search reaches a good accuracy for the least energy?

Each strategy runs ``repeats`` times under the spec's budget; repeat ``r`` uses sampler seed
``first_seed + r`` for every strategy (``first_seed`` 0 unless told; the training seed stays
the spec's), so strategies differ only in how they search, and a second comparison with
another ``first_seed`` repeats the first on fresh seeds. A strategy is a name (``grid``,
``random``, ``tpe``, ``gp``, ``nsga2``), optionally with a pruner that replaces the spec's
(``tpe+median``, ``random+none``, ``nsga2+dominance``; a pruner other than the spec's gets
Optuna's default options).

For each run the curve is *best validation accuracy among completed trials* against
*cumulative energy of every trial* (pruned and failed ones included). The threshold is the
best validation accuracy any run found minus ``target``; a run's energy to target is the
cumulative energy at the end of the first trial that brings its best to the threshold or
above. A run that never reaches it is *censored* at the energy it spent (:mod:`._stats`).
Per strategy the table gives the share of runs that reached the threshold, the Kaplan-Meier
median energy to target with a 95% bootstrap interval, min and max over the runs that
reached it, and the best validation accuracy at the end of the budget; every pair of
strategies gets a log-rank test and a Mann-Whitney test (censored runs ranked last) on
energy to target, with the p-value in words; with ``random`` among them, each other strategy
is checked against issue 15's goal (:func:`goal_check`: reached in >= 90% of runs, median at
most half of random's, stated as a bound when random's is not reached, log-rank p < 5%).
Repeats are interleaved across strategies, and
the load average around each run is recorded, with a warning when it exceeds the cores.

Output in ``out_dir``: one tuning directory per run (``<strategy>/repeat<r>/``, each
resumable, with its trials CSV but no per-run plot), ``comparison.png``, ``comparison.csv``,
``comparison_tests.csv``, ``comparison_load.csv``, ``comparison.md``, ``comparison.html``
and ``comparison_curves.csv``.
"""

from __future__ import annotations

import csv
import logging
import math
import os
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from frugalml.errors import ConfigError
from frugalml.tune._registry import get_strategy, pruner_deciding
from frugalml.tune._results import TrialSummary, TuningHistory, energy_provenance
from frugalml.tune._spec import PRUNERS, STRATEGIES, TuneSpec
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
from frugalml.tune._strategies import FIDELITY_STRATEGIES

if TYPE_CHECKING:
    import pandas as pd

    from frugalml.tune._tuner import TuneEvent

logger = logging.getLogger(__name__)
PLOT_FILENAME = "comparison.png"
TABLE_CSV = "comparison.csv"
TABLE_MD = "comparison.md"
PAGE_HTML = "comparison.html"
CURVES_CSV = "comparison_curves.csv"

TESTS_CSV = "comparison_tests.csv"
LOAD_CSV = "comparison_load.csv"

#: Repeats per strategy unless told: fewer cannot show a difference at 5% between two
#: strategies that both reach the target in most runs.
DEFAULT_REPEATS = 10

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
            f"bootstrap interval {_fmt_share(low)} to {_fmt_share(high)}"
            f"{_interval_vs(low, high, GOAL_MEDIAN_FRACTION, ratio, min(len(runs), len(base)))}"
            "; log-rank "
            f"{_p_phrase(p)} "
            f"({'significant' if p_ok else 'not significant'} at {GOAL_ALPHA:.0%}"
            f"{'' if faster else f', and {name} is not the one needing less'}): "
            f"{'goal met' if met else 'goal not met'}."
        )
    return lines


def _fmt_j(value: float) -> str:
    if not math.isfinite(value):
        return "not reached"
    return f"{value:,.1f}"


_TABLE_HEADERS = (
    "strategy",
    "reached target",
    "energy to target, median (J)",
    "95% interval (J)",
    "min-max of runs reaching it (J)",
    "trials to target, median",
    "best val acc at the budget, median (min-max)",
    "total energy, median (J)",
    "trials, median",
)

_TESTS_HEADERS = (
    "strategies",
    "log-rank p",
    "Mann-Whitney p (censored last)",
    "median energy, first / second (95% interval)",
    "in words (log-rank)",
)


def _p_phrase(value: float) -> str:
    """``p = 0.035`` or ``p < 0.001`` (never ``p = < 0.001``)."""
    shown = _fmt_p(value)
    return f"p {shown}" if shown.startswith("<") else f"p = {shown}"


def _fmt_p(value: float) -> str:
    if not math.isfinite(value):
        return "-"
    return "< 0.001" if value < 0.001 else f"{value:.3f}"


def _table_rows(table: pd.DataFrame) -> list[list[str]]:
    """The comparison table's rows as text (energies in J; "not reached" for infinity)."""
    rows = []
    for row in table.to_dict("records"):
        trials_to = float(row["median_trials_to_target"])
        reached = int(row["reached"])
        rows.append(
            [
                str(row["strategy"]),
                f"{reached}/{row['runs']} ({float(row['reached_share']):.0%})",
                _fmt_j(float(row["median_energy_to_target_j"])),
                f"{_fmt_j(float(row['ci_low_energy_to_target_j']))} to "
                f"{_fmt_j(float(row['ci_high_energy_to_target_j']))}",
                (
                    f"{_fmt_j(float(row['min_energy_to_target_j']))}-"
                    f"{_fmt_j(float(row['max_energy_to_target_j']))}"
                    if reached
                    else "none reached"
                ),
                "not reached" if not math.isfinite(trials_to) else f"{trials_to:g}",
                f"{float(row['median_best_val_accuracy']):.4f} "
                f"({float(row['min_best_val_accuracy']):.4f}-"
                f"{float(row['max_best_val_accuracy']):.4f})",
                f"{float(row['median_total_energy_j']):,.1f}",
                f"{float(row['median_trials']):g}",
            ]
        )
    return rows


def _interval_vs(low: float, high: float, fraction: float, ratio: float, runs: int) -> str:
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


def _fmt_share(value: float) -> str:
    return f"{value:.2f}" if math.isfinite(value) else "not bounded"


def _fmt_ratio(row: Mapping[Any, Any]) -> str:
    """``0.60 (0.41 to 0.98)``; ``-`` for a table written before the ratio was."""
    ratio = float(row.get("median_ratio", math.nan))
    low = float(row.get("ratio_ci_low", math.nan))
    high = float(row.get("ratio_ci_high", math.nan))
    if math.isnan(ratio):
        return "-"
    return f"{_fmt_share(ratio)} ({_fmt_share(low)} to {_fmt_share(high)})"


def _tests_rows(tests: pd.DataFrame) -> list[list[str]]:
    return [
        [
            f"{row['strategy_a']} vs {row['strategy_b']}",
            _fmt_p(float(row["logrank_p"])),
            _fmt_p(float(row["mann_whitney_p"])),
            _fmt_ratio(row),
            str(row["in_words"]),
        ]
        for row in tests.to_dict("records")
    ]


def _table_caption(table: pd.DataFrame, target: float, *, fixed: bool = False) -> str:
    threshold = float(table["threshold"].iloc[0])
    kind = ", ".join(sorted(set(map(str, table["energy_kind"]))))
    where = "fixed before the runs" if fixed else f"best of all runs minus {target:g}"
    return (
        f"Energy to reach validation accuracy >= {threshold:.4f} ({where}); energy {kind}, "
        "in joules. A run that never reached it counts as "
        "censored at the energy it spent: the median is the Kaplan-Meier median over repeats "
        "('not reached': fewer than half reached it), the interval a 95% bootstrap over runs."
    )


def _markdown_table(headers: Sequence[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines.extend("| " + " | ".join(row) + " |" for row in rows)
    return lines


def table_markdown(
    table: pd.DataFrame,
    *,
    target: float | None = None,
    tests: pd.DataFrame | None = None,
    fixed: bool = False,
) -> str:
    """The comparison table as Markdown (energies in J; "not reached" for infinity), with
    the pairwise tests when given; ``fixed``: the threshold was given, not taken from the
    best run."""
    if table.empty:
        return "(no runs)\n"
    lines = []
    if target is not None:
        lines.append(_table_caption(table, target, fixed=fixed) + "\n")
    lines.extend(_markdown_table(_TABLE_HEADERS, _table_rows(table)))
    if tests is not None and not tests.empty:
        lines.append("")
        lines.append("Pairwise tests on energy to target (two-sided):\n")
        lines.extend(_markdown_table(_TESTS_HEADERS, _tests_rows(tests)))
    return "\n".join(lines) + "\n"


def comparison_html(comparison: Comparison) -> str:
    """The comparison as a self-contained HTML page: the plot, the tables, what was run."""
    from frugalml.report import figure_html, html_page, paragraph_html, table_html

    body = []
    if comparison.table.empty:
        body.append(paragraph_html("No run finished a trial: nothing to compare."))
    else:
        body.append(
            paragraph_html(
                _table_caption(
                    comparison.table, comparison.target, fixed=comparison.fixed_threshold
                )
            )
        )
        if comparison.plot_path is not None and comparison.plot_path.exists():
            body.append(
                figure_html(
                    comparison.plot_path,
                    "Best validation accuracy so far against the energy spent, per strategy; "
                    "the line is the median over repeats, the dark band the interquartile "
                    "range, the light band min to max; dashed: the target. Last panel: the "
                    "share of runs that had reached the target against the energy spent.",
                    "best accuracy against cumulative energy for each strategy",
                    wide=True,
                )
            )
        body.append(table_html(_TABLE_HEADERS, _table_rows(comparison.table)))
        if not comparison.tests.empty:
            body.append(paragraph_html("Pairwise tests on energy to target (two-sided):"))
            body.append(table_html(_TESTS_HEADERS, _tests_rows(comparison.tests)))
    runs = sorted({(c.strategy, c.repeat) for c in comparison.curves})
    body.append(
        paragraph_html(
            f"{len(runs)} runs: "
            + ", ".join(f"{strategy} repeat {repeat}" for strategy, repeat in runs)
            + (
                "; the comparison was interrupted before every run finished."
                if comparison.interrupted
                else "."
            )
        )
    )
    for note in comparison.notes:
        body.append(paragraph_html(note, "sub"))
    return html_page("Tuning strategies compared by energy to accuracy", body)


def parse_strategies(text: str | Sequence[str], spec: TuneSpec) -> list[tuple[str, str, str]]:
    """``"grid,random,tpe+median"`` -> [(label, strategy, pruner)]: the spec's pruner where
    none is named, and ``pruner`` the one that decides over epochs, as the trials record it
    (``sha``: ``successive_halving``, ``hyperband``; ``frugal`` with none named: its own)."""
    items = [s.strip() for s in text.split(",")] if isinstance(text, str) else list(text)
    items = [s for s in items if s]
    if not items:
        raise ConfigError("no strategies to compare", fix="e.g. strategies='grid,random,tpe'")
    out: list[tuple[str, str, str]] = []
    for item in items:
        name, _, named = item.partition("+")
        if named and name in FIDELITY_STRATEGIES:
            raise ConfigError(
                f"{item!r}: the {name} strategy brings its own pruner over epochs",
                fix=f"list it as plain {name}",
            )
        given = "none" if name in FIDELITY_STRATEGIES else named or spec.pruner
        if name not in STRATEGIES:
            raise ConfigError(
                f"unknown strategy {name!r} in {item!r}",
                fix=f"use {', '.join(STRATEGIES)}, optionally with +pruner ({', '.join(PRUNERS)})",
            )
        if given not in PRUNERS:
            raise ConfigError(
                f"unknown pruner {given!r} in {item!r}", fix=f"use one of: {', '.join(PRUNERS)}"
            )
        label = name if given == "none" else f"{name}+{given}"
        if any(label == o[0] for o in out):
            raise ConfigError(f"strategy {label!r} is listed twice", fix="list each once")
        out.append((label, name, pruner_deciding(name, given)))
    return out


def run_spec(spec: TuneSpec, strategy: str, pruner: str, seed: int) -> TuneSpec:
    """The spec of one comparison run (the checks of the spec parser apply); ``pruner`` as
    :func:`parse_strategies` gives it (a strategy's own one: the spec names none)."""
    if pruner == get_strategy(strategy).own_pruner_name:
        pruner = "none"
    options = dict(spec.pruner_options) if pruner == spec.pruner else {}
    mapping = spec.to_dict()
    mapping["strategy"] = {
        "name": strategy,
        **{k: v for k, v in spec.strategy_options.items() if strategy == spec.strategy},
    }
    mapping["pruner"] = {"type": pruner, **options}
    mapping["seed"] = seed
    mapping["model"] = {k: v for k, v in mapping["model"].items() if v is not None}
    for key in ("data_root", "download", "image_size"):
        if mapping.get(key) is None:
            mapping.pop(key, None)
    return TuneSpec.from_mapping(mapping, source=spec.source)


@dataclass
class Comparison:
    """The outcome of :func:`compare_strategies`."""

    table: pd.DataFrame
    curves: list[RunCurve]
    target: float
    threshold: float
    out_dir: Path
    plot_path: Path | None = None
    csv_path: Path | None = None
    markdown_path: Path | None = None
    html_path: Path | None = None
    curves_path: Path | None = None
    interrupted: bool = False
    notes: list[str] = field(default_factory=list)
    tests: pd.DataFrame = field(default_factory=lambda: _empty_tests())
    tests_path: Path | None = None
    load_path: Path | None = None
    #: The threshold was given (``threshold=``), not the best run minus ``target``.
    fixed_threshold: bool = False

    @property
    def markdown(self) -> str:
        text = table_markdown(
            self.table, target=self.target, tests=self.tests, fixed=self.fixed_threshold
        )
        return text + "".join(f"\n{note}\n" for note in self.notes)


def _empty_tests() -> pd.DataFrame:
    import pandas as pd

    return pd.DataFrame(columns=list(TESTS_COLUMNS))


def check_first_seed(first_seed: int, repeats: int) -> None:
    """Refuse a first sampler seed whose repeats would leave ``[0, MAX_SEED]``."""
    from frugalml.train._config import MAX_SEED

    last = MAX_SEED - max(repeats, 1) + 1
    if (
        isinstance(first_seed, bool)
        or not isinstance(first_seed, int)
        or not 0 <= first_seed <= last
    ):
        raise ConfigError(
            f"first_seed must be an integer in [0, {last}] for {repeats} repeat(s), "
            f"got {first_seed!r}",
            fix="e.g. first_seed=100 (repeat r then uses sampler seed 100 + r)",
        )


def _check_stored_seed(directory: Path, seed: int, first_seed: int) -> None:
    """A run directory made with another sampler seed is not continued with this one."""
    from frugalml.tune._storage import load_study, storage_path

    if not storage_path(directory).exists():
        return
    stored = (load_study(directory).user_attrs.get("spec") or {}).get("seed")
    if stored is None or stored == seed:
        return
    raise ConfigError(
        f"{directory} was run with sampler seed {stored}; this comparison gives it {seed} "
        f"(first seed {first_seed})",
        fix="give another out_dir for another first seed, or the first seed it was run with",
    )


def run_dir(out_dir: Path, label: str, repeat: int) -> Path:
    return out_dir / label.replace("+", "_") / f"repeat{repeat}"


def _load_average() -> float:
    """The 1-minute load average (NaN where the system does not report one)."""
    try:
        return float(os.getloadavg()[0])
    except (AttributeError, OSError):
        return math.nan


def read_loads(out_dir: Path) -> dict[tuple[str, int], tuple[float, float]]:
    """(strategy, repeat) -> (load before, load after) from ``comparison_load.csv``."""
    path = out_dir / LOAD_CSV
    loads: dict[tuple[str, int], tuple[float, float]] = {}
    if not path.is_file():
        return loads
    with path.open(newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            try:
                key = (row["strategy"], int(row["repeat"]))
                loads[key] = (float(row["load_before"]), float(row["load_after"]))
            except (KeyError, ValueError):
                logger.warning("%s: a row could not be read and is left out: %s", path, row)
    return loads


def _write_loads(out_dir: Path, loads: dict[tuple[str, int], tuple[float, float]]) -> Path:
    path = out_dir / LOAD_CSV
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".csv.tmp")
    with tmp.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["strategy", "repeat", "load_before", "load_after", "cpus"])
        for (label, repeat), (before, after) in loads.items():
            writer.writerow([label, repeat, f"{before:.2f}", f"{after:.2f}", os.cpu_count()])
    tmp.replace(path)  # a kill -9 leaves the old file or the new one, never half of one
    return path


def load_notes(loads: dict[tuple[str, int], tuple[float, float]]) -> list[str]:
    """The load average the runs saw, and a warning when it exceeded the cores."""
    values = [v for pair in loads.values() for v in pair if math.isfinite(v)]
    if not values:
        return []
    cpus = os.cpu_count() or 1
    notes = [
        f"Load average (1 min) around the {len(loads)} runs: median "
        f"{statistics.median(values):.2f}, max {max(values):.2f}, on {cpus} logical CPU(s)."
    ]
    over = [key for key, pair in loads.items() if any(v > cpus for v in pair)]
    if over:
        notes.append(
            f"Warning: the load average exceeded the {cpus} CPU(s) around {len(over)} of "
            f"{len(loads)} runs: other processes competed for the cores, which inflates "
            "estimated (CPU-time) energy unevenly; the repeats were interleaved across "
            "strategies so that drift hits all of them alike."
        )
    return notes


def compare_strategies(
    spec: TuneSpec,
    out_dir: str | Path,
    strategies: str | Sequence[str],
    repeats: int = DEFAULT_REPEATS,
    *,
    target: float = 0.01,
    threshold: float | None = None,
    on_event: Callable[[str, int, TuneEvent], None] | None = None,
    threads: int | None = None,
    stop_at_threshold: bool = False,
    first_seed: int = 0,
) -> Comparison:
    """Tune ``spec`` with each strategy ``repeats`` times (see the module docstring).

    A run reaches the target when its best validation accuracy comes within ``target`` of
    the best any run found, or, given ``threshold``, when it reaches that accuracy: a
    threshold fixed before the runs does not move with the strategies compared.
    ``stop_at_threshold`` ends each run there (its budget's ``target_accuracy``): the energy
    to target is what a full run would have spent to reach it, for a fraction of the
    comparison's energy, but the best accuracy and energy "at the budget" are then at the
    stop.

    The runs are interleaved: repeat 0 of every strategy, then repeat 1 of every strategy,
    and so on, so that a change in the machine's load during the comparison falls on all
    strategies alike. The 1-minute load average before and after each run goes to
    ``comparison_load.csv`` (replaced when a resumed run runs more trials). ``on_event(label,
    repeat, event)`` relays each run's progress. Runs already in ``out_dir`` continue rather
    than restart (after Ctrl-C or kill -9 alike: every run is a resumable tuning directory);
    one that was made with another sampler seed than ``first_seed + r`` is refused before
    anything runs (another ``first_seed`` needs another ``out_dir``).
    """
    from frugalml.tune._tuner import run_tune

    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise ConfigError(
            f"repeats must be an integer >= 1, got {repeats!r}",
            fix=f"e.g. repeats={DEFAULT_REPEATS}",
        )
    if not (math.isfinite(target) and target >= 0):
        raise ConfigError(f"target must be a number >= 0, got {target!r}", fix="e.g. target=0.01")
    check_threshold(threshold)
    if stop_at_threshold and threshold is None:
        raise ConfigError(
            "stopping each run at the threshold needs a threshold fixed before the runs",
            fix="give threshold=ACC with stop_at_threshold=True, e.g. threshold=0.96",
        )
    check_first_seed(first_seed, repeats)
    out = Path(out_dir)
    plan = parse_strategies(strategies, spec)
    specs = {
        (label, r): run_spec(spec, name, pruner, seed=first_seed + r)
        for r in range(repeats)
        for label, name, pruner in plan
    }
    for (label, r), run in specs.items():
        _check_stored_seed(run_dir(out, label, r), run.seed, first_seed)
    if stop_at_threshold:
        specs = {
            key: run.replace(budget=run.budget.replace(target_accuracy=threshold))
            for key, run in specs.items()
        }
    curves: list[RunCurve] = []
    interrupted = False
    loads = read_loads(out)
    for (label, repeat), run in specs.items():
        relay = None
        if on_event is not None:

            def relay(event: TuneEvent, label: str = label, repeat: int = repeat) -> None:
                on_event(label, repeat, event)

        before = _load_average()
        outcome = run_tune(
            run, run_dir(out, label, repeat), on_event=relay, threads=threads, plot=False
        )
        if outcome.new_trials > 0 or (label, repeat) not in loads:
            loads[(label, repeat)] = (before, _load_average())
            _write_loads(out, loads)
        curves.append(RunCurve.from_trials(label, repeat, outcome.trials))
        if outcome.interrupted:
            interrupted = True
            break
    stops = {t for run in specs.values() if (t := run.budget.target_accuracy) is not None}
    comparison = summarize_comparison(
        curves, out, target=target, threshold=threshold, loads=loads, stopped_at=stops
    )
    comparison.interrupted = interrupted
    return comparison


def summarize_comparison(
    curves: Sequence[RunCurve],
    out_dir: Path,
    *,
    target: float,
    threshold: float | None = None,
    loads: dict[tuple[str, int], tuple[float, float]] | None = None,
    stopped_at: set[float] | None = None,
) -> Comparison:
    """Tables, plot, CSVs and Markdown of ``curves`` written into ``out_dir`` (``threshold``:
    a fixed accuracy to reach instead of the best run minus ``target``; ``stopped_at``: the
    accuracies at which runs stopped, their budgets' ``target_accuracy``, said in a note)."""
    from frugalml.tune._plots import plot_comparison

    check_threshold(threshold)
    # a fixed threshold is the reference with nothing below it
    margin = target if threshold is None else 0.0
    table = comparison_table(curves, margin, best_accuracy=threshold)
    reached_at = float(table["threshold"].iloc[0]) if not table.empty else math.nan
    out_dir.mkdir(parents=True, exist_ok=True)
    comparison = Comparison(
        table=table,
        curves=list(curves),
        target=target,
        threshold=reached_at,
        out_dir=out_dir,
        fixed_threshold=threshold is not None,
    )
    comparison.tests = (
        pairwise_tests(curves, margin, best_accuracy=threshold) if curves else _empty_tests()
    )
    if loads is None:
        loads = read_loads(out_dir)
    ran = {(c.strategy, c.repeat) for c in curves}
    comparison.notes.extend(goal_check(curves, margin, best_accuracy=threshold))
    if stopped_at:
        comparison.notes.append(stop_note(stopped_at))
    comparison.notes.extend(load_notes({k: v for k, v in loads.items() if k in ran}))
    for note in comparison.notes:
        if note.startswith("Warning"):
            logger.warning(note)
    if (out_dir / LOAD_CSV).is_file():
        comparison.load_path = out_dir / LOAD_CSV
    kind = energy_provenance([c.energy_kind for c in curves])
    comparison.plot_path = plot_comparison(
        curves, out_dir / PLOT_FILENAME, threshold=reached_at, energy_kind=kind
    )
    comparison.csv_path = out_dir / TABLE_CSV
    table.to_csv(comparison.csv_path, index=False)
    comparison.tests_path = out_dir / TESTS_CSV
    comparison.tests.to_csv(comparison.tests_path, index=False)
    comparison.markdown_path = out_dir / TABLE_MD
    comparison.markdown_path.write_text(comparison.markdown, encoding="utf-8")
    comparison.html_path = out_dir / PAGE_HTML
    comparison.html_path.write_text(comparison_html(comparison), encoding="utf-8")
    comparison.curves_path = out_dir / CURVES_CSV
    with comparison.curves_path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["strategy", "repeat", "trial", "cumulative_energy_j", "best_val_accuracy"])
        for curve in curves:
            for index, (energy, best) in enumerate(
                zip(curve.energy_j, curve.best_accuracy, strict=True)
            ):
                writer.writerow(
                    [
                        curve.strategy,
                        curve.repeat,
                        index + 1,
                        f"{energy:.6g}",
                        "" if math.isnan(best) else f"{best:.6g}",
                    ]
                )
    return comparison


def load_comparison(
    out_dir: str | Path, *, target: float = 0.01, threshold: float | None = None
) -> Comparison:
    """Rebuild a comparison from the run directories under ``out_dir`` (for reports)."""
    from frugalml.tune._results import summarize_trials
    from frugalml.tune._storage import load_study, storage_path

    out = Path(out_dir)
    curves = []
    stops: set[float] = set()
    for strategy_dir in sorted(p for p in out.iterdir() if p.is_dir()):
        for repeat_dir in sorted(strategy_dir.glob("repeat*")):
            if not storage_path(repeat_dir).exists():
                continue
            study = load_study(repeat_dir)
            label = strategy_dir.name.replace("_", "+", 1)  # strategy names have no "_"
            repeat = int(repeat_dir.name[len("repeat") :] or 0)
            curves.append(RunCurve.from_trials(label, repeat, summarize_trials(study)))
            budget = (study.user_attrs.get("spec") or {}).get("budget") or {}
            if budget.get("target_accuracy") is not None:
                stops.add(float(budget["target_accuracy"]))
    if not curves:
        raise ConfigError(
            f"no tuning runs under {out}", fix="give the out_dir=DIR of 'frugalml tune compare'"
        )
    return summarize_comparison(curves, out, target=target, threshold=threshold, stopped_at=stops)


def stop_note(stopped_at: set[float]) -> str:
    """The note of a comparison whose runs stopped at a target accuracy."""
    shown = ", ".join(f"{v:g}" for v in sorted(stopped_at))
    return (
        f"Each run stopped once a trial reached validation accuracy {shown} (its budget's "
        "target_accuracy, --stop-at-threshold): the energy to that target is what a full run "
        "spends to reach it; the best accuracy and the energy per run are at the stop, not at "
        "the budget."
    )

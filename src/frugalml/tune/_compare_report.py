"""A strategy comparison's outcome (:class:`Comparison`), as Markdown and as a
self-contained HTML page."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from frugalml.tune._compare_tables import TESTS_COLUMNS, RunCurve, fmt_p, fmt_share

if TYPE_CHECKING:
    import pandas as pd


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


def _fmt_ratio(row: Mapping[Any, Any]) -> str:
    """``0.60 (0.41 to 0.98)``; ``-`` when there is no ratio (a side without runs)."""
    ratio = float(row["median_ratio"])
    low = float(row["ratio_ci_low"])
    high = float(row["ratio_ci_high"])
    if math.isnan(ratio):
        return "-"
    return f"{fmt_share(ratio)} ({fmt_share(low)} to {fmt_share(high)})"


def _tests_rows(tests: pd.DataFrame) -> list[list[str]]:
    return [
        [
            f"{row['strategy_a']} vs {row['strategy_b']}",
            fmt_p(float(row["logrank_p"])),
            fmt_p(float(row["mann_whitney_p"])),
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


@dataclass
class Comparison:
    """The outcome of :func:`._compare.compare_strategies`: its tables, curves and files."""

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
    tests: pd.DataFrame = field(default_factory=lambda: empty_tests())
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


def empty_tests() -> pd.DataFrame:
    import pandas as pd

    return pd.DataFrame(columns=list(TESTS_COLUMNS))

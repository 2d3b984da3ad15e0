"""Strategy comparison: which search reaches a good accuracy for the least energy?

Each strategy runs ``repeats`` times under the spec's budget; repeat ``r`` uses sampler seed
``r`` for every strategy (the training seed stays the spec's), so strategies differ only in
how they search. A strategy is a name (``grid``, ``random``, ``tpe``, ``gp``, ``nsga2``),
optionally with a pruner that replaces the spec's (``tpe+median``, ``random+none``,
``nsga2+dominance``; a pruner other than the spec's gets Optuna's default options).

For each run the curve is *best validation accuracy among completed trials* against
*cumulative energy of every trial* (pruned and failed ones included). The threshold is the
best validation accuracy any run found minus ``target``; a run's energy to target is the
cumulative energy at the end of the first trial that brings its best to the threshold or
above. Per strategy the table gives the median, min and max over repeats, with runs that
never reach the threshold counted as infinitely expensive (so the median is "not reached"
when half or more of the runs did not reach it) and reported in ``not_reached``.

Output in ``out_dir``: one tuning directory per run (``<strategy>/repeat<r>/``, each
resumable, with its trials CSV but no per-run plot), ``comparison.png``, ``comparison.csv``,
``comparison.md`` and ``comparison_curves.csv``.
"""

from __future__ import annotations

import csv
import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from frugalml.errors import ConfigError
from frugalml.tune._results import TrialSummary, TuningHistory, energy_provenance
from frugalml.tune._spec import PRUNERS, STRATEGIES, TuneSpec

if TYPE_CHECKING:
    import pandas as pd

    from frugalml.tune._tuner import TuneEvent

PLOT_FILENAME = "comparison.png"
TABLE_CSV = "comparison.csv"
TABLE_MD = "comparison.md"
PAGE_HTML = "comparison.html"
CURVES_CSV = "comparison_curves.csv"

TABLE_COLUMNS = (
    "strategy",
    "runs",
    "reached",
    "not_reached",
    "median_energy_to_target_j",
    "min_energy_to_target_j",
    "max_energy_to_target_j",
    "median_trials_to_target",
    "median_best_val_accuracy",
    "median_total_energy_j",
    "median_trials",
    "threshold",
    "energy_kind",
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


def comparison_table(
    curves: Sequence[RunCurve], target: float = 0.01, *, best_accuracy: float | None = None
) -> pd.DataFrame:
    """Energy to come within ``target`` of the best accuracy any run found, per strategy.

    Columns: see :data:`TABLE_COLUMNS`. Energies in joules; ``inf`` means not reached (in the
    median: half or more of the runs did not reach it; in the max: at least one did not).
    ``best_accuracy`` overrides the reference (default: the best of ``curves``).
    """
    import pandas as pd

    if not curves:
        return pd.DataFrame(columns=list(TABLE_COLUMNS))
    if not (math.isfinite(target) and target >= 0):
        raise ConfigError(f"target must be a number >= 0, got {target!r}", fix="e.g. --target 0.01")
    reference = best_accuracy
    if reference is None:
        finals = [c.final_best for c in curves if math.isfinite(c.final_best)]
        reference = max(finals) if finals else math.nan
    threshold = reference - target
    rows: list[dict[str, Any]] = []
    strategies: list[str] = []
    for curve in curves:
        if curve.strategy not in strategies:
            strategies.append(curve.strategy)
    for strategy in strategies:
        runs = [c for c in curves if c.strategy == strategy]
        hits = [energy_to_target(c, threshold) if math.isfinite(threshold) else None for c in runs]
        energies = [h[0] if h else math.inf for h in hits]
        trials = [float(h[1]) if h else math.inf for h in hits]
        reached = [e for e in energies if math.isfinite(e)]
        bests = [c.final_best for c in runs if math.isfinite(c.final_best)]
        rows.append(
            {
                "strategy": strategy,
                "runs": len(runs),
                "reached": len(reached),
                "not_reached": len(runs) - len(reached),
                "median_energy_to_target_j": _median_with_inf(energies),
                "min_energy_to_target_j": min(reached) if reached else math.inf,
                "max_energy_to_target_j": max(energies),
                "median_trials_to_target": _median_with_inf(trials),
                "median_best_val_accuracy": statistics.median(bests) if bests else math.nan,
                "median_total_energy_j": statistics.median(c.total_energy_j for c in runs),
                "median_trials": statistics.median(len(c.energy_j) for c in runs),
                "threshold": threshold,
                "energy_kind": energy_provenance([c.energy_kind for c in runs]),
            }
        )
    return pd.DataFrame(rows, columns=list(TABLE_COLUMNS))


def _fmt_j(value: float) -> str:
    if not math.isfinite(value):
        return "not reached"
    return f"{value:,.1f}"


_TABLE_HEADERS = (
    "strategy",
    "reached",
    "energy to target, median (J)",
    "min (J)",
    "max (J)",
    "trials to target, median",
    "best val acc, median",
    "total energy, median (J)",
    "trials, median",
)


def _table_rows(table: pd.DataFrame) -> list[list[str]]:
    """The comparison table's rows as text (energies in J; "not reached" for infinity)."""
    rows = []
    for row in table.to_dict("records"):
        trials_to = float(row["median_trials_to_target"])
        rows.append(
            [
                str(row["strategy"]),
                f"{row['reached']}/{row['runs']}",
                _fmt_j(float(row["median_energy_to_target_j"])),
                _fmt_j(float(row["min_energy_to_target_j"])),
                _fmt_j(float(row["max_energy_to_target_j"])),
                "not reached" if not math.isfinite(trials_to) else f"{trials_to:g}",
                f"{float(row['median_best_val_accuracy']):.4f}",
                f"{float(row['median_total_energy_j']):,.1f}",
                f"{float(row['median_trials']):g}",
            ]
        )
    return rows


def _table_caption(table: pd.DataFrame, target: float) -> str:
    threshold = float(table["threshold"].iloc[0])
    kind = ", ".join(sorted(set(map(str, table["energy_kind"]))))
    return (
        f"Energy to reach validation accuracy >= {threshold:.4f} (best of all runs minus "
        f"{target:g}); energy {kind}, in joules; median [min, max] over repeats."
    )


def table_markdown(table: pd.DataFrame, *, target: float | None = None) -> str:
    """The comparison table as Markdown (energies in J; "not reached" for infinity)."""
    if table.empty:
        return "(no runs)\n"
    lines = []
    if target is not None:
        lines.append(_table_caption(table, target) + "\n")
    lines.append("| " + " | ".join(_TABLE_HEADERS) + " |")
    lines.append("|" + "---|" * len(_TABLE_HEADERS))
    lines.extend("| " + " | ".join(row) + " |" for row in _table_rows(table))
    return "\n".join(lines) + "\n"


def comparison_html(comparison: Comparison) -> str:
    """The comparison as a self-contained HTML page: the plot, the table, what was run."""
    from frugalml.report import figure_html, html_page, paragraph_html, table_html

    body = []
    if comparison.table.empty:
        body.append(paragraph_html("No run finished a trial: nothing to compare."))
    else:
        body.append(paragraph_html(_table_caption(comparison.table, comparison.target)))
        if comparison.plot_path is not None and comparison.plot_path.exists():
            body.append(
                figure_html(
                    comparison.plot_path,
                    "Best validation accuracy so far against the energy spent, per strategy; "
                    "the line is the median over repeats, the band their range; dashed: the "
                    "target.",
                    "best accuracy against cumulative energy for each strategy",
                    wide=True,
                )
            )
        body.append(table_html(_TABLE_HEADERS, _table_rows(comparison.table)))
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
    """``"grid,random,tpe+median"`` -> [(label, strategy, pruner)]; the spec's pruner where
    none is named."""
    items = [s.strip() for s in text.split(",")] if isinstance(text, str) else list(text)
    items = [s for s in items if s]
    if not items:
        raise ConfigError("no strategies to compare", fix="e.g. --strategies grid,random,tpe")
    out: list[tuple[str, str, str]] = []
    for item in items:
        name, _, pruner = item.partition("+")
        pruner = pruner or spec.pruner
        if name not in STRATEGIES:
            raise ConfigError(
                f"unknown strategy {name!r} in {item!r}",
                fix=f"use {', '.join(STRATEGIES)}, optionally with +pruner ({', '.join(PRUNERS)})",
            )
        if pruner not in PRUNERS:
            raise ConfigError(
                f"unknown pruner {pruner!r} in {item!r}", fix=f"use one of: {', '.join(PRUNERS)}"
            )
        label = name if pruner == "none" else f"{name}+{pruner}"
        if any(label == o[0] for o in out):
            raise ConfigError(f"strategy {label!r} is listed twice", fix="list each once")
        out.append((label, name, pruner))
    return out


def run_spec(spec: TuneSpec, strategy: str, pruner: str, seed: int) -> TuneSpec:
    """The spec of one comparison run (the checks of the spec parser apply)."""
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

    @property
    def markdown(self) -> str:
        return table_markdown(self.table, target=self.target)


def run_dir(out_dir: Path, label: str, repeat: int) -> Path:
    return out_dir / label.replace("+", "_") / f"repeat{repeat}"


def compare_strategies(
    spec: TuneSpec,
    out_dir: str | Path,
    strategies: str | Sequence[str],
    repeats: int = 3,
    *,
    target: float = 0.01,
    on_event: Callable[[str, int, TuneEvent], None] | None = None,
    threads: int | None = None,
) -> Comparison:
    """Tune ``spec`` with each strategy ``repeats`` times (see the module docstring).

    ``on_event(label, repeat, event)`` relays each run's progress. Runs already in
    ``out_dir`` continue rather than restart.
    """
    from frugalml.tune._tuner import run_tune

    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise ConfigError(
            f"repeats must be an integer >= 1, got {repeats!r}", fix="e.g. --repeats 3"
        )
    if not (math.isfinite(target) and target >= 0):
        raise ConfigError(f"target must be a number >= 0, got {target!r}", fix="e.g. --target 0.01")
    out = Path(out_dir)
    plan = parse_strategies(strategies, spec)
    specs = {
        (label, r): run_spec(spec, name, pruner, seed=r)
        for r in range(repeats)
        for label, name, pruner in plan
    }
    curves: list[RunCurve] = []
    interrupted = False
    for (label, repeat), run in specs.items():
        relay = None
        if on_event is not None:

            def relay(event: TuneEvent, label: str = label, repeat: int = repeat) -> None:
                on_event(label, repeat, event)

        outcome = run_tune(
            run, run_dir(out, label, repeat), on_event=relay, threads=threads, plot=False
        )
        curves.append(RunCurve.from_trials(label, repeat, outcome.trials))
        if outcome.interrupted:
            interrupted = True
            break
    comparison = summarize_comparison(curves, out, target=target)
    comparison.interrupted = interrupted
    return comparison


def summarize_comparison(curves: Sequence[RunCurve], out_dir: Path, *, target: float) -> Comparison:
    """Table, plot, CSVs and Markdown of ``curves`` written into ``out_dir``."""
    from frugalml.tune._plots import plot_comparison

    table = comparison_table(curves, target)
    threshold = float(table["threshold"].iloc[0]) if not table.empty else math.nan
    out_dir.mkdir(parents=True, exist_ok=True)
    comparison = Comparison(
        table=table, curves=list(curves), target=target, threshold=threshold, out_dir=out_dir
    )
    kind = energy_provenance([c.energy_kind for c in curves])
    comparison.plot_path = plot_comparison(
        curves, out_dir / PLOT_FILENAME, threshold=threshold, energy_kind=kind
    )
    comparison.csv_path = out_dir / TABLE_CSV
    table.to_csv(comparison.csv_path, index=False)
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


def load_comparison(out_dir: str | Path, *, target: float = 0.01) -> Comparison:
    """Rebuild a comparison from the run directories under ``out_dir`` (for reports)."""
    from frugalml.tune._results import summarize_trials
    from frugalml.tune._storage import load_study, storage_path

    out = Path(out_dir)
    curves = []
    for strategy_dir in sorted(p for p in out.iterdir() if p.is_dir()):
        for repeat_dir in sorted(strategy_dir.glob("repeat*")):
            if not storage_path(repeat_dir).exists():
                continue
            study = load_study(repeat_dir)
            label = strategy_dir.name.replace("_", "+", 1)  # strategy names have no "_"
            repeat = int(repeat_dir.name[len("repeat") :] or 0)
            curves.append(RunCurve.from_trials(label, repeat, summarize_trials(study)))
    if not curves:
        raise ConfigError(
            f"no tuning runs under {out}", fix="give the --out directory of 'frugalml tune compare'"
        )
    return summarize_comparison(curves, out, target=target)

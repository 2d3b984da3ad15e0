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
energy to target, with the p-value in words and the ratio of the medians with a bootstrap
interval; with ``random`` among them, each other strategy is checked against issue 15's goal
(:func:`._compare_tables.goal_check`: reached in >= 90% of runs, median at most half of
random's, stated as a bound when random's is not reached, log-rank p < 5%). The tables are
computed in :mod:`._compare_tables` and written in :mod:`._compare_report`; this module runs
the comparison. Repeats are interleaved across strategies, and the load average around each
run is recorded, with a warning when it exceeds the cores.

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
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from frugalml.errors import ConfigError
from frugalml.tune._compare_report import Comparison, comparison_html, empty_tests
from frugalml.tune._compare_tables import (
    RunCurve,
    check_threshold,
    comparison_table,
    goal_check,
    pairwise_tests,
)
from frugalml.tune._registry import get_strategy, pruner_deciding
from frugalml.tune._results import energy_provenance
from frugalml.tune._spec import PRUNERS, STRATEGIES, TuneSpec
from frugalml.tune._strategies import FIDELITY_STRATEGIES

if TYPE_CHECKING:
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
        pairwise_tests(curves, margin, best_accuracy=threshold) if curves else empty_tests()
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

"""``frugalml compress SPEC --out DIR``: shrink a model with each method of a spec and
measure what each saves.

Writes ``DIR/compress.csv`` (one row per method plus the dense baseline), ``DIR/compress.png``
(accuracy vs sparsity, latency and energy per method) and ``DIR/models/<method>.pt`` (each
compressed model, loadable with :func:`frugalml.compress.load_compressed`), and prints a
summary table.
"""

from __future__ import annotations

import argparse
import csv
import math
from pathlib import Path
from typing import Any

from frugalml.cli._format import HelpFormatter, fmt_energy
from frugalml.errors import ConfigError

_DESCRIPTION = """\
Train the spec's model dense, then compress a copy with each method (regularised training,
threshold, masked fine-tuning, physical shrinking; or Torch-Pruning channels, or PENNI), and
measure every result against the dense baseline: accuracy, parameters, FLOPs, latency at
batch 1 and at the spec's batch (median of interleaved repeats, with an interval), energy per
1,000 inferences (with its provenance), the energy the compression cost and its break-even.
A saving counts only when its interval excludes no change.
"""


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``compress`` command."""
    from frugalml.compress._spec import METHODS

    parser = subparsers.add_parser(
        "compress",
        help="shrink a model with sparsity, pruning or PENNI and measure the savings",
        description=_DESCRIPTION
        + "\nmethods: "
        + "; ".join(f"{m.name} ({m.description})" for m in METHODS.values()),
        formatter_class=HelpFormatter,
    )
    parser.add_argument("spec", metavar="SPEC", help="compress spec (YAML)")
    parser.add_argument("--out", required=True, metavar="DIR", help="output directory")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default 1)")
    parser.add_argument(
        "--tune",
        type=int,
        default=None,
        metavar="N",
        help="then tune one method's strength and threshold for N trials (accuracy and "
        "energy per 1k inferences as objectives); writes DIR/compress_tune.csv",
    )
    parser.add_argument(
        "--budget-j",
        type=float,
        default=None,
        metavar="J",
        help="with --tune: stop before a trial would pass J joules (the BudgetGuard rule)",
    )
    parser.set_defaults(handler=_run)


def _cell(value: Any) -> Any:
    if isinstance(value, float):
        return "" if not math.isfinite(value) else f"{value:.6g}"
    return value


def write_csv(
    path: Path, rows: list[dict[str, Any]], columns: tuple[str, ...] | None = None
) -> None:
    from frugalml.compress import CSV_COLUMNS

    columns = columns or CSV_COLUMNS
    tmp = path.with_suffix(".csv.tmp")
    with tmp.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(columns))
        writer.writeheader()
        for row in rows:
            writer.writerow({k: _cell(row.get(k, "")) for k in columns})
    tmp.replace(path)


def _run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from frugalml.compress import CompressSpec, plot_compress, run_compress, save_compressed
    from frugalml.meter import Meter, MeterConfig
    from frugalml.train import apply_threads

    spec = CompressSpec.from_yaml(args.spec)
    tune = _tune_settings(spec, args)
    apply_threads(args.threads, option="--threads")  # the one threads rule: 1 unless told
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file", fix="give a directory")
    if (out / "compress.csv").exists():
        raise ConfigError(
            f"{out / 'compress.csv'} already exists",
            fix="choose another --out directory (nothing recorded is overwritten)",
        )
    out.mkdir(parents=True, exist_ok=True)
    console = Console(stderr=True)
    console.print(
        f"compress {spec.name}: {spec.model} on {spec.dataset}, {len(spec.methods)} method(s)"
    )
    from frugalml.data import load_dataset

    dataset = load_dataset(spec.dataset, image_size=spec.image_size)
    with Meter(MeterConfig()) as meter:
        result = run_compress(
            spec,
            meter,
            dataset=dataset,
            on_outcome=lambda o: console.print(
                f"  {o.label}: accuracy {o.accuracy:.3f}, compression "
                f"{fmt_energy(o.compress_energy_j)} ({o.compress_provenance})"
            ),
        )
    (out / "models").mkdir(exist_ok=True)
    for label, outcome in result.outcomes.items():
        save_compressed(
            out / "models" / f"{label}.pt", outcome.model, result.architecture, outcome.pruning
        )
    write_csv(out / "compress.csv", result.rows)
    plot_compress(result.rows, out / "compress.png")
    table = Table(title=f"{spec.name}: measured against dense")
    for column in (
        "method",
        "accuracy",
        "params",
        "sparsity",
        "ms b1",
        "ms batch",
        "J / 1k",
        "compress",
        "break-even",
    ):
        table.add_column(column)
    for row in result.rows:
        table.add_row(
            str(row["method"]),
            f"{row['accuracy']:.3f}",
            f"{row['params']:,}",
            f"{row['sparsity']:.0%}",
            f"{row['latency_ms']:.3g} ({row['latency_ms_low']:.3g}-{row['latency_ms_high']:.3g})",
            f"{row['latency_ms_batch']:.3g}",
            f"{fmt_energy(row['energy_per_1k_j'] or math.nan)} {row['energy_per_1k_provenance']}",
            fmt_energy(row["compress_energy_j"]) if row["compress_energy_j"] != "" else "",
            str(row["break_even_inferences"]),
        )
    Console().print(table)
    console.print(f"wrote {out / 'compress.csv'}, {out / 'compress.png'} and {out / 'models'}/")
    if tune is not None:
        _run_tune(spec, tune, result.outcomes["dense"].model, dataset, out, console)
    return 0


def _tune_settings(spec: Any, args: argparse.Namespace) -> Any:
    import dataclasses

    from frugalml.compress._tune import CompressTune, _budget, plan

    tune = spec.tune
    if args.tune is None and tune is None:
        if args.budget_j is not None:
            raise ConfigError("--budget-j needs --tune N", fix="add --tune 10")
        return None
    if args.tune is not None and args.tune < 1:
        raise ConfigError(f"--tune must be >= 1, got {args.tune}", fix="e.g. --tune 10")
    tune = tune or CompressTune(n_trials=args.tune)
    if args.tune is not None:
        tune = dataclasses.replace(tune, n_trials=args.tune)
    if args.budget_j is not None:
        tune = dataclasses.replace(tune, budget_j=_budget(args.budget_j, "--budget-j"))
    plan(spec, tune)  # checked before any training
    return tune


def _run_tune(spec: Any, tune: Any, dense: Any, dataset: Any, out: Path, console: Any) -> None:
    from frugalml.cli._tune import _quiet_optuna
    from frugalml.compress._tune import TUNE_COLUMNS, tune_compress
    from frugalml.meter import Meter, MeterConfig

    _quiet_optuna(debug=False)

    with Meter(MeterConfig()) as meter:
        result = tune_compress(spec, tune, dense, dataset, meter, seed=spec.training.seed)
    path = out / "compress_tune.csv"
    write_csv(path, result.rows, TUNE_COLUMNS)
    front = [r for r in result.rows if r["pareto"]]
    for row in front:
        console.print(
            f"  pareto: trial {row['trial']} {row['params']}: accuracy {row['accuracy']:.3f}, "
            f"{row['energy_per_1k_j']:.4g} J per 1k inferences ({row['energy_per_1k_provenance']})"
        )
    if result.stop_reason:
        console.print(f"  tuning stopped: {result.stop_reason}")
    console.print(f"wrote {path} ({len(result.rows)} trial(s), {len(front)} on the Pareto front)")

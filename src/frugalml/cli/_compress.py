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
    parser.set_defaults(handler=_run)


def _cell(value: Any) -> Any:
    if isinstance(value, float):
        return "" if not math.isfinite(value) else f"{value:.6g}"
    return value


def write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    from frugalml.compress import CSV_COLUMNS

    tmp = path.with_suffix(".csv.tmp")
    with tmp.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(CSV_COLUMNS))
        writer.writeheader()
        for row in rows:
            writer.writerow({k: _cell(row.get(k, "")) for k in CSV_COLUMNS})
    tmp.replace(path)


def _run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from frugalml.compress import CompressSpec, plot_compress, run_compress, save_compressed
    from frugalml.meter import Meter, MeterConfig
    from frugalml.train import apply_threads

    spec = CompressSpec.from_yaml(args.spec)
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
    with Meter(MeterConfig()) as meter:
        result = run_compress(
            spec,
            meter,
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
    return 0

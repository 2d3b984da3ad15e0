"""``frugalml report``: a study's results as an HTML page, PNG plots and leaderboards.

    frugalml report runs/quickstart                   # -> runs/quickstart/report/report.html
    frugalml report runs/quickstart -o derma.html     # the HTML there, the rest beside it
    frugalml report --csv results.csv -o out/report.html
    frugalml report runs/quickstart --energy-column energy_j   # PePR-E on the whole trial

Exit codes: 0 when the report ranks at least one model; 1 when the study has trials but
none complete with accuracy and energy (the report is still written and lists the failures
with their errors); 2 for input that cannot be reported on (no study store, an unreadable or
empty CSV, missing columns).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from frugalml.errors import ConfigError

_DESCRIPTION = """\
Write a study's report: one self-contained HTML page (plots embedded, no scripts), the plots
as PNG files, and the leaderboards by PePR-E as Markdown and CSV. Per setting (dataset,
pretrained, fraction): leaderboard, accuracy-energy Pareto front, PePR-E against size,
small-vs-large test; for the study: paired pretrained/scratch and full/reduced-data tests,
the PePR profile, total energy and CO2 with their provenance, and the failed trials.
Trials of one model in one setting (seeds) are averaged before scoring. PePR-E uses
training energy, train_energy_j: the epochs' training windows; setup and evaluation are
reported separately (studies run before trials recorded it fall back to energy_j).
"""


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``report`` command."""
    parser = subparsers.add_parser(
        "report",
        help="write a study's HTML report, plots and leaderboards",
        description=_DESCRIPTION,
    )
    parser.add_argument(
        "dir",
        metavar="DIR",
        nargs="?",
        type=Path,
        help="the study's output directory (the --out of 'frugalml study run'), or a "
        "'frugalml compress' --out directory (its compress.csv becomes DIR/report/compress.html)",
    )
    parser.add_argument(
        "--csv",
        "--from-csv",
        dest="csv",
        metavar="RESULTS.csv",
        type=Path,
        help="input: report on a results table instead of DIR ('frugalml study export "
        "--csv' writes one)",
    )
    parser.add_argument(
        "-o",
        "--output",
        "--out",
        dest="output",
        metavar="REPORT.html",
        type=Path,
        help="where the HTML goes; the PNGs and leaderboards go beside it "
        "(default DIR/report/report.html, or report/report.html beside the CSV)",
    )
    parser.add_argument("--title", help="page title (default: names the study)")
    parser.add_argument(
        "--size-threshold",
        type=float,
        metavar="PARAMS",
        help="parameter count splitting small from large models in the tests "
        "(default: the median of the study's models; the PePR paper used 24.6e6)",
    )
    parser.add_argument(
        "--energy-column",
        metavar="COL",
        help="the energy PePR-E, the ranking and the Pareto front use (default: "
        "train_energy_j, the training alone; energy_j: the whole trial; eval_energy_j, "
        "setup_energy_j)",
    )
    parser.add_argument(
        "--no-plots", action="store_true", help="leave out the figures (quicker; numbers only)"
    )
    parser.add_argument(
        "--column",
        action="append",
        default=[],
        metavar="ROLE=COL",
        help="with --csv: which column plays which role, so a published table reports as it "
        "is; roles: model, performance, energy_j, energy_kwh, co2_g, time_s, time_h, params, "
        "setting (repeatable), e.g. --column performance=test_09 --column energy_kwh=energy",
    )
    parser.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    from frugalml.report import build_report, load_study, read_results_csv

    if (args.dir is None) == (args.csv is None):
        raise ConfigError(
            "give a study directory or --csv RESULTS.csv (one of them)",
            fix="e.g. 'frugalml report runs/quickstart' or 'frugalml report --csv results.csv'",
        )
    if args.column and args.csv is None:
        raise ConfigError(
            "--column maps the columns of a --csv table",
            fix="use it with --csv RESULTS.csv; a study directory's columns are frugalml's own",
        )
    if args.output is not None and args.output.suffix.lower() not in (".html", ".htm"):
        raise ConfigError(
            f"-o {args.output}: the report is an HTML file",
            fix="give a path ending in .html, e.g. -o report/study.html",
        )
    if args.dir is not None and (args.dir / "compress.csv").is_file():
        return _compress(args)  # a 'frugalml compress --out DIR' directory
    if args.csv is not None:
        results = read_results_csv(args.csv)
        if args.column:
            from frugalml.analysis._mapping import apply_mapping, parse_column_mapping

            mapping = parse_column_mapping(args.column)
            results, _ = apply_mapping(results, mapping, join_settings=True)
        notes = None
        default_dir = args.csv.parent / "report"
    else:
        study = load_study(args.dir)
        results, notes = study.results, study.energy_notes
        default_dir = args.dir / "report"
    out_dir = args.output.parent if args.output is not None else default_dir
    report = build_report(
        results,
        out_dir,
        title=args.title,
        html_path=args.output,
        energy_notes=notes,
        size_threshold=args.size_threshold,
        plots=not args.no_plots,
        energy_column=args.energy_column,
    )
    print(f"report: {report.html_path}")
    print(f"leaderboards: {report.markdown_path}, {report.csv_path}")
    print(f"plots: {len(report.png_paths)} PNG files in {out_dir}")
    if report.empty:
        print(
            f"frugalml: no complete trial with accuracy and energy to rank ({report.n_failed} "
            f"failed, "
            + (f"{report.n_pruned} pruned, " if report.n_pruned else "")
            + f"{report.n_unfinished} unfinished of {report.n_trials}); the report lists "
            "the failures and their errors",
            file=sys.stderr,
        )
        return 1
    return 0


def _compress(args: argparse.Namespace) -> int:
    from frugalml.report._compress import compress_report

    report = compress_report(
        args.dir, html_path=args.output, plots=not args.no_plots, title=args.title
    )
    print(f"report: {report.html_path}")
    print(f"plots: {len(report.png_paths)} PNG files in {report.html_path.parent}")
    return 0

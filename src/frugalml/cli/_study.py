"""``frugalml study validate|run|status|export``."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from frugalml.cli._format import (
    HelpFormatter,
    fmt_energy,
    fmt_time,
    progress_bar,
    progress_line,
    stderr_console,
    time_left,
)

if TYPE_CHECKING:
    from frugalml.study import StudyOutcome
    from frugalml.study._store import TrialRow


def register(subparsers: Any) -> None:
    study = subparsers.add_parser(
        "study",
        help="run a PePR study: models x datasets x pretraining x data fractions",
        description="Expand a YAML spec into trials, train and measure each, keep every result.",
        formatter_class=HelpFormatter,
    )
    sub = study.add_subparsers(dest="study_command", metavar="SUBCOMMAND")
    _add_validate(sub)
    _add_run(sub)
    _add_status_and_export(sub)
    study.set_defaults(handler=lambda args: (study.print_help(sys.stderr), 2)[1])


def _add_validate(sub: Any) -> None:
    validate = sub.add_parser(
        "validate",
        help="check a spec; count trials; predict energy and time",
        description=(
            "Check a study spec the way the workers will, count its trials and predict their "
            "energy and time from a short calibration on this machine (--no-calibrate: only "
            "check). Nothing is written."
        ),
        formatter_class=HelpFormatter,
    )
    validate.add_argument("spec", type=Path, help="the study spec (YAML)")
    validate.add_argument(
        "--no-calibrate", action="store_true", help="only check the spec, predict nothing"
    )
    validate.add_argument(
        "--calibration-cap-s",
        type=float,
        default=30.0,
        help="time the models for at most this many seconds",
    )
    validate.set_defaults(handler=_validate)


def _add_run(sub: Any) -> None:
    run = sub.add_parser(
        "run",
        help="run (or resume) a study",
        description=(
            "Train and measure every trial of SPEC, each in its own process, writing each "
            "result to OUT/study.db as it exists. Run the same command again to resume. A "
            "directory that holds another spec's study is refused unless --add is given."
        ),
        formatter_class=HelpFormatter,
    )
    run.add_argument("spec", type=Path, help="the study spec (YAML)")
    run.add_argument(
        "-o", "--out", type=Path, default=None, help="output directory (default: runs/NAME)"
    )
    run.add_argument(
        "--workers", type=int, default=None, help="trials run at once (default: the spec's, or 1)"
    )
    run.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch threads per trial (default: the spec's, or 1; see the README)",
    )
    run.add_argument("--retry-failed", action="store_true", help="run failed trials again")
    run.add_argument(
        "--trial-timeout-s",
        type=float,
        default=None,
        help="per-trial time limit in seconds (default: the spec's, or none)",
    )
    run.add_argument(
        "--add",
        action="store_true",
        help="add this spec's trials to an --out that holds another spec's study",
    )
    run.add_argument("--no-report", action="store_true", help="do not write the report at the end")
    run.add_argument(
        "--executor",
        choices=("local", "ray"),
        default=None,
        help="where trials run: local processes (default: the spec's executor, or local) or "
        "Ray tasks (needs frugalml[ray]; the README's 'On a cluster')",
    )
    run.add_argument(
        "--address",
        default=None,
        help="Ray cluster to join ('auto', host:6379, ray://host:10001; default: RAY_ADDRESS, "
        "or a local Ray is started)",
    )
    run.set_defaults(handler=_run)


def _add_status_and_export(sub: Any) -> None:
    status = sub.add_parser(
        "status",
        help="what a study has done and what is left",
        description=(
            "Count a study's trials by state, sum the energy spent, list failed and running "
            "trials and name rows that cannot be read. Opens the store read-only."
        ),
        formatter_class=HelpFormatter,
    )
    status.add_argument("dir", type=Path, help="the study's output directory")
    status.set_defaults(handler=_status)

    export = sub.add_parser(
        "export",
        help="write the results table (one row per trial)",
        description=(
            "Write the results table of a study as CSV, one row per trial (the columns of "
            "docs/architecture.md). Opens the store read-only. Here --csv names the file "
            "written (in 'frugalml report', --csv names a table read)."
        ),
        formatter_class=HelpFormatter,
    )
    export.add_argument("dir", type=Path, help="the study's output directory")
    export.add_argument(
        "--csv",
        "-o",
        "--out",
        dest="csv",
        metavar="PATH",
        type=Path,
        required=True,
        help="the CSV file to write (output)",
    )
    export.set_defaults(handler=_export)


def _load_spec(path: Path) -> Any:
    from frugalml.study import StudySpec

    spec = StudySpec.from_yaml(path)
    spec.check()  # what a worker would refuse on this machine, refused now
    for name, reason in spec.unresolved_models:
        print(f"frugalml: warning: model {name} left out: {reason}", file=sys.stderr)
    for old, new in spec.renamed_models:
        print(f"frugalml: note: model {old} is now called {new} in timm", file=sys.stderr)
    return spec


def _validate(args: argparse.Namespace) -> int:
    from frugalml._yaml import parse_seconds

    parse_seconds(args.calibration_cap_s, "--calibration-cap-s", example="30")
    spec = _load_spec(args.spec)
    trials = spec.trials()
    estimate = None
    if not args.no_calibrate:  # first: a model that cannot run fails here, before "OK"
        from frugalml.study._estimate import estimate_study

        print("  calibrating on this machine ...", file=sys.stderr)
        estimate = estimate_study(spec, calibration_cap_s=args.calibration_cap_s)
    out = sys.stdout
    print(f"spec {args.spec}: OK", file=out)
    print(
        f"  {len(trials)} trials = {len(spec.datasets)} dataset(s) x {len(spec.models)} model(s)"
        f" x {len(spec.pretrained)} pretraining x {len(spec.fractions)} fraction(s)"
        f" x {len(spec.seeds)} seed(s)",
        file=out,
    )
    if spec.budget is not None:
        from frugalml.study._spec import budget_dict

        limits = ", ".join(
            f"{k}={v:g}" for k, v in budget_dict(spec.budget).items() if v is not None
        )
        print(f"  budget: {limits}", file=out)
    if estimate is None:
        return 0
    print(
        f"  predicted training: {fmt_energy(estimate.total_train_energy_j)} "
        f"({estimate.power_provenance}), {fmt_time(estimate.total_train_duration_s)} "
        f"(the training steps, PePR's resource; {estimate.threads} torch thread(s))",
        file=out,
    )
    print(
        f"  predicted total: {fmt_energy(estimate.total_energy_j)}, "
        f"{fmt_time(estimate.total_duration_s)} (with evaluation "
        f"{fmt_energy(estimate.total_eval_energy_j)} and set-up "
        f"{fmt_energy(estimate.total_setup_energy_j)}; what the budget counts)",
        file=out,
    )
    print(f"  how: {estimate.method}", file=out)
    for note in estimate.notes:
        print(f"  note: {note}", file=out)
    slowest = sorted(estimate.trials, key=lambda t: -t.duration_s)[:5]
    print("  most expensive trials:", file=out)
    for t in slowest:
        print(
            f"    {t.label}: {fmt_time(t.duration_s)}, {fmt_energy(t.energy_j)} "
            f"({t.params / 1e6:.2f}M params, {t.flops_per_sample / 1e6:.1f} MFLOPs/sample, "
            f"step {t.step_s * 1000:.1f} ms {t.step_source})",
            file=out,
        )
    return 0


def _run(args: argparse.Namespace) -> int:
    from frugalml._yaml import parse_count, parse_seconds
    from frugalml.study import StudyEvent, run_study

    if args.trial_timeout_s is not None:  # before the progress bar draws a line
        parse_seconds(args.trial_timeout_s, "--trial-timeout-s")
    for option in ("workers", "threads"):
        if getattr(args, option) is not None:
            parse_count(getattr(args, option), f"--{option}")
    spec = _load_spec(args.spec)
    out_dir = args.out or Path("runs") / spec.name
    console = stderr_console()
    progress, task = progress_bar(
        console,
        "trials | {task.fields[energy]} so far | ~{task.fields[remaining]} left",
        energy="0 J",
        remaining="?",
    )
    progress.update(task, description=spec.name)
    workers = args.workers or spec.workers
    started = time.monotonic()

    def on_event(event: StudyEvent) -> None:
        p = event.progress
        remaining = (
            fmt_energy(p.predicted_remaining_j) if p.predicted_remaining_j is not None else "?"
        )
        # time left: the mean time of this run's finished trials, over the workers
        finished_here = p.done - done_before[0]
        left = time_left(
            finished_here * workers,
            (p.total - done_before[0]) * workers,
            time.monotonic() - started,
        )
        if finished_here <= 0:
            left = "?"
        progress.update(
            task,
            total=p.total,
            completed=p.done,
            energy=fmt_energy(p.energy_j),
            remaining=remaining,
            time_left=left,
        )
        quiet = args.quiet
        if event.kind == "started":
            done_before[0] = p.done
        elif event.kind == "trial_finished" and event.trial is not None and not quiet:
            text = _trial_line(event.trial)
            if console.is_terminal:
                console.print(f"  {text}", markup=False)
            else:
                console.print(progress_line(p.done, p.total, text, left), markup=False)
        # a budget stop is said once, in the summary at the end

    done_before = [0]
    with progress:
        outcome = run_study(
            spec,
            out_dir,
            workers=args.workers,
            threads=args.threads,
            retry_failed=args.retry_failed,
            trial_timeout_s=args.trial_timeout_s,
            on_event=on_event,
            add=args.add,
            executor=args.executor,
            address=args.address,
        )
    return _summarise(outcome, out_dir, report=not args.no_report)


def _trial_line(trial: TrialRow) -> str:
    """What one finished trial says on the progress lines."""
    status = trial.status
    result = trial.result or {}
    if status == "complete":
        accuracy = result.get("accuracy")
        shown = f"{accuracy:.3f}" if isinstance(accuracy, int | float) else "?"
        return (
            f"done {trial.label}: accuracy {shown}, "
            f"{fmt_energy(result.get('energy_j'))} ({result.get('energy_kind', '?')}), "
            f"{fmt_time(result.get('duration_s') or 0)}"
        )
    if status == "failed":
        return f"failed {trial.label}: {trial.error}"
    return f"{status} {trial.label}"


def _summarise(outcome: StudyOutcome, out_dir: Path, *, report: bool) -> int:
    """The run's summary on stderr, the report when asked; the exit code."""
    p = outcome.progress
    summary = (
        f"{p.complete} complete, {p.failed} failed, {p.pending + p.running} left of {p.total}; "
        f"energy {fmt_energy(p.energy_j)}, {p.co2_g:.3g} gCO2e; store {out_dir / 'study.db'}"
    )
    print(f"frugalml: {summary}", file=sys.stderr)
    if outcome.interrupted:
        print("frugalml: interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    if outcome.budget_stopped:
        print(
            f"frugalml: stopped launching trials: {outcome.budget_reason}; raise the budget and "
            "run again to continue",
            file=sys.stderr,
        )
    if p.failed:
        print(
            f"frugalml: {p.failed} trial(s) failed; see 'frugalml study status {out_dir}' "
            "(--retry-failed runs them again)",
            file=sys.stderr,
        )
    if report and p.complete:
        _report_after_run(out_dir)
    return 1 if p.failed and not p.complete else 0


def _report_after_run(out_dir: Path) -> None:
    from frugalml.report import build_report, leaderboard_text, load_study

    study = load_study(out_dir)  # results and the energy assumptions, read once
    report = build_report(study.results, out_dir / "report", energy_notes=study.energy_notes)
    print(leaderboard_text(study.results, top=5))
    print(f"\nreport: {report.html_path}")


def _status(args: argparse.Namespace) -> int:
    from frugalml.study import StudyStore

    with StudyStore(args.dir, create=False, read_only=True) as store:
        counts = store.counts()
        rows = store.trials()
        spec = store.latest_spec()
        warnings = list(store.warnings)
    total = sum(counts.values())
    name = spec.get("name") if spec else "?"
    energy = sum((r.result or {}).get("energy_j") or 0.0 for r in rows)
    # A tuner records a pruned trial as finished ("complete" in the store) with pruned=True;
    # say "pruned", as Optuna and the report do.
    stopped = sum(r.status == "complete" and (r.result or {}).get("pruned") is True for r in rows)
    pruned = stopped + counts.get("pruned", 0)
    print(f"study {name} in {args.dir}: {total} trials")
    print(
        f"  complete {counts['complete'] - stopped}"
        + (f", pruned {pruned}" if pruned else "")
        + f", failed {counts['failed']}, running {counts['running']}, pending {counts['pending']}"
    )
    print(f"  energy spent: {fmt_energy(energy)}")
    for row in rows:
        if row.status == "failed":
            print(f"  failed: {row.label}: {row.error}")
        elif row.status == "running":
            print(f"  running (or left by a killed run): {row.label}")
    if warnings:
        print(f"  {len(warnings)} row(s) could not be read and are left out (named above)")
    return 0


def _export(args: argparse.Namespace) -> int:
    from frugalml.study import export_csv

    n = export_csv(args.dir, args.csv)
    print(f"wrote {n} rows to {args.csv}", file=sys.stderr)
    return 0

"""``frugalml tune SPEC`` and ``frugalml tune compare SPEC``: energy-aware tuning on Optuna."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from frugalml.cli._format import (
    RawHelpFormatter,
    fmt_energy,
    progress_bar,
    progress_line,
    stderr_console,
    time_left,
)
from frugalml.errors import ConfigError

if TYPE_CHECKING:
    from frugalml.tune import TrialSummary, TuneEvent, TuneOutcome, TuneSpec

_USAGE = """frugalml tune SPEC [--out DIR] [--strategy S] [--seed N] [--max-trials N]
                         [--target-accuracy ACC] [...]
       frugalml tune SPEC --out DIR --parallel N [--executor local|ray] [--address ADDR]
       frugalml tune compare SPEC --strategies grid,random,tpe[,gp] [--repeats N]
                             [--target 0.01 | --threshold ACC [--stop-at-threshold]]
                             [--seed N] [--out DIR]"""

_DESCRIPTION = """Tune hyperparameters with Optuna, training and metering every trial.

The first form runs (or continues) the tuning study of SPEC in DIR (default runs/NAME):
DIR/optuna.db holds Optuna's study, DIR/study.db the trials for 'frugalml study export',
DIR/tuning.png, DIR/tuning_trials.csv and DIR/tuning_summary.json the results.

'compare' runs each strategy --repeats times under the spec's budget (repeat r uses sampler
seed r, or N + r with --seed N, for every strategy; repeats interleaved across strategies:
another --seed into another --out repeats a comparison on fresh seeds) and writes the energy
each needs to come within --target of the best validation accuracy any run found, or to
reach the fixed accuracy --threshold (share of runs reaching it, Kaplan-Meier median with a
bootstrap interval, runs that never reach it censored), pairwise log-rank and Mann-Whitney
tests, and the load average around each run: DIR/comparison.{png,csv,md,html},
comparison_tests.csv, comparison_load.csv. A strategy may name a pruner: tpe+median,
random+none, nsga2+dominance. --stop-at-threshold ends each run once it reaches --threshold:
the energy to target is unchanged and the comparison costs a fraction of its budgets.

--target-accuracy ACC (budget.target_accuracy) ends a tuning run once a trial reaches the
validation accuracy ACC: good enough, no energy spent looking for better.

See examples/tune_digits.yaml and examples/compare_digits.yaml for the spec format."""


def register(subparsers: Any) -> None:
    tune = subparsers.add_parser(
        "tune",
        help="energy-aware hyperparameter tuning; 'tune compare' compares strategies",
        usage=_USAGE,
        description=_DESCRIPTION,
        formatter_class=RawHelpFormatter,
    )
    tune.add_argument("spec", metavar="SPEC", help="the tuning spec (YAML), or 'compare'")
    tune.add_argument("compare_spec", nargs="?", default=None, help=argparse.SUPPRESS)
    tune.add_argument(
        "-o",
        "--out",
        type=Path,
        default=None,
        help="output directory (default: runs/NAME, or runs/NAME-compare)",
    )
    tune.add_argument("--strategy", default=None, help=f"override: {', '.join(_strategies())}")
    tune.add_argument(
        "--seed",
        type=int,
        default=None,
        help="override the sampler seed (compare: the first repeat's; repeat r uses N + r)",
    )
    tune.add_argument("--max-trials", type=int, default=None, help="override budget.max_trials")
    tune.add_argument("--energy-kwh", type=float, default=None, help="override budget.energy_kwh")
    tune.add_argument("--co2-g", type=float, default=None, help="override budget.co2_g")
    tune.add_argument("--duration-s", type=float, default=None, help="override budget.duration_s")
    tune.add_argument(
        "--target-accuracy",
        type=float,
        default=None,
        metavar="ACC",
        help="override budget.target_accuracy: stop once a trial's validation accuracy reaches ACC",
    )
    tune.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: 1)")
    tune.add_argument(
        "--parallel",
        type=int,
        default=None,
        help="trials in flight at once, each in its own process (overrides the spec's "
        "workers:; default 1: one at a time, in this process)",
    )
    tune.add_argument(
        "--executor",
        choices=("local", "ray"),
        default=None,
        help="where --parallel trials run: local processes (default) or Ray tasks "
        "(frugalml[ray]; the README's 'On a cluster')",
    )
    tune.add_argument(
        "--address",
        default=None,
        help="Ray cluster to join ('auto', host:6379, ray://host:10001; default: RAY_ADDRESS, "
        "or a local Ray is started)",
    )
    tune.add_argument(
        "--validate", action="store_true", help="only check the spec and show the search space"
    )
    tune.add_argument("--no-progress", action="store_true", help="no progress bar")
    compare = tune.add_argument_group("compare")
    compare.add_argument(
        "--strategies", default=None, help="compare: comma-separated, e.g. grid,random,tpe,gp"
    )
    compare.add_argument(
        "--repeats",
        type=int,
        default=10,
        help="compare: runs per strategy, interleaved (default 10: fewer rarely decide a test)",
    )
    compare.add_argument(
        "--target",
        type=float,
        default=None,
        help="compare: absolute accuracy below the best any run found that counts as reached "
        "(default 0.01)",
    )
    compare.add_argument(
        "--threshold",
        type=float,
        default=None,
        metavar="ACC",
        help="compare: a validation accuracy fixed before the runs that counts as reached "
        "(instead of --target below the best run, which moves with the strategies compared)",
    )
    compare.add_argument(
        "--stop-at-threshold",
        action="store_true",
        help="compare: end each run once it reaches --threshold (the energy to target is "
        "unchanged, the comparison spends a fraction of its budgets; the best accuracy at the "
        "budget is then not measured)",
    )
    tune.set_defaults(handler=_handle)


def _strategies() -> list[str]:
    from frugalml.tune._registry import list_strategies

    return list_strategies()


def _quiet_optuna(debug: bool) -> None:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.DEBUG if debug else optuna.logging.WARNING)


def _load(args: argparse.Namespace, path: str) -> TuneSpec:
    from frugalml.train import check_threads
    from frugalml.train._config import MAX_SEED
    from frugalml.tune import TuneSpec

    check_threads(args.threads, option="--threads")  # --validate refuses what a run would
    spec = TuneSpec.from_yaml(Path(path))
    spec.check()  # the device and the dataset, on this machine
    changes: dict[str, Any] = {}
    if args.strategy is not None:
        changes["strategy"] = args.strategy
    if args.seed is not None:
        if not 0 <= args.seed <= MAX_SEED:
            raise ConfigError(
                f"--seed must be in [0, {MAX_SEED}], got {args.seed}", fix="e.g. --seed 0"
            )
        changes["seed"] = args.seed
    budget: dict[str, Any] = {}
    for key in ("max_trials", "energy_kwh", "co2_g", "duration_s", "target_accuracy"):
        value = getattr(args, key)
        if value is not None:
            budget[key] = value
    if budget:
        from frugalml.tune import TuneBudget

        changes["budget"] = TuneBudget.from_mapping({**spec.budget.to_dict(), **budget})
    return spec.replace(**changes) if changes else spec


def _handle(args: argparse.Namespace) -> int:
    if args.spec == "compare":
        if args.compare_spec is None:
            raise ConfigError(
                "'frugalml tune compare' needs a spec",
                fix="frugalml tune compare SPEC --strategies ...",
            )
        return _compare(args, args.compare_spec)
    if args.compare_spec is not None:
        raise ConfigError(
            f"unexpected argument {args.compare_spec!r}",
            fix="frugalml tune SPEC [--out DIR], or frugalml tune compare SPEC",
        )
    if args.strategies is not None or args.stop_at_threshold:
        flag = "--strategies" if args.strategies is not None else "--stop-at-threshold"
        raise ConfigError(
            f"{flag} belongs to 'frugalml tune compare'",
            fix="add 'compare' (or, for one run, --target-accuracy ACC)",
        )
    return _tune(args, args.spec)


def _describe(spec: TuneSpec) -> str:
    from frugalml.tune._registry import get_strategy

    lines = [
        f"tuning study {spec.name}: {spec.dataset} (fraction {spec.fraction:g}), "
        f"model {spec.model or '(searched)'} {spec.model_args or ''}".rstrip(),
        f"  strategy {spec.strategy} (seed {spec.seed}), objective "
        f"{' + '.join(spec.objectives)}, pruner {spec.pruner}, budget {spec.budget.describe()}",
        "  search space:",
    ]
    lines += [f"    {p.describe()}" for p in spec.search_space]
    if get_strategy(spec.strategy).finite:
        lines.append(f"  grid: {spec.search_space.grid_size()} points")
    return "\n".join(lines)


class _ProgressView:
    """A progress bar fed by tuning events, with the time left; without a terminal, one
    plain line per finished trial instead."""

    def __init__(self, enabled: bool, title: str, *, lines: bool = True) -> None:
        self.console = stderr_console()
        self.enabled = enabled
        self.lines = lines
        self.progress, self.task = progress_bar(
            self.console,
            "trials | {task.fields[energy]} so far ({task.fields[kind]}) | {task.fields[now]}",
            energy="0 J",
            kind="-",
            now="",
        )
        if not enabled:
            self.progress.disable = True
        self.progress.update(self.task, description=title)
        self.started = time.monotonic()
        self.first_done: int | None = None

    def __enter__(self) -> _ProgressView:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.__exit__(None, None, None)

    def on_event(self, event: TuneEvent, prefix: str = "") -> None:
        now = ""
        if event.kind == "epoch" and event.trial_number is not None:
            now = f"trial {event.trial_number}: epoch {event.epoch}/{event.epochs_planned}"
        elif event.kind == "trial_started":
            now = f"trial {event.trial_number} starting"
        if self.first_done is None:
            self.first_done = event.trials_done
            self.started = time.monotonic()
        total = event.trials_total
        left = "?"
        if total is not None:
            left = time_left(
                event.trials_done - self.first_done,
                total - self.first_done,
                time.monotonic() - self.started,
            )
        self.progress.update(
            self.task,
            total=total,
            completed=event.trials_done,
            energy=fmt_energy(event.energy_j),
            kind=event.energy_kind,
            now=now,
            time_left=left,
            description=prefix or self.progress.tasks[0].description,
        )
        if not self.lines:
            return
        text = ""
        if event.kind == "trial_finished":
            text = f"{prefix + ': ' if prefix else ''}{event.message}"
        elif event.kind == "calibrated":
            text = f"calibration: {event.message}"
        # the stop reason is printed once, with the outcome
        if not text:
            return
        if self.console.is_terminal:
            self.console.print(f"  {text}", markup=False)
        else:
            self.console.print(
                progress_line(event.trials_done, total, text, left if total else None),
                markup=False,
            )


def _trial_line(t: TrialSummary) -> str:
    params = ", ".join(f"{k}={_short(v)}" for k, v in t.params.items())
    return (
        f"#{t.number}: val accuracy {t.val_accuracy:.4f}, test accuracy {t.test_accuracy:.4f}, "
        f"{fmt_energy(t.energy_j)} ({t.energy_kind}), {t.epochs} epoch(s); {params}"
    )


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _print_outcome(outcome: TuneOutcome) -> None:
    out = sys.stdout
    counts = ", ".join(f"{n} {state}" for state, n in sorted(outcome.counts().items()))
    print(f"tuning study {outcome.spec.name} ({outcome.spec.strategy}): {counts}", file=out)
    if outcome.spec.multi_objective:
        print(
            "Pareto front (validation accuracy against trial energy), "
            f"{len(outcome.pareto)} trial(s):",
            file=out,
        )
        for t in outcome.pareto:
            print(f"  {_trial_line(t)}", file=out)
    elif outcome.best is not None:
        print(f"best trial by {outcome.spec.objectives[0]}: {_trial_line(outcome.best)}", file=out)
    else:
        print("no trial completed yet", file=out)
    print(
        f"energy spent on tuning: {fmt_energy(outcome.total_energy_j)} {outcome.energy_kind} "
        f"({fmt_energy(outcome.trial_energy_j)} in trials and sampling, pruned and failed "
        "trials included; "
        f"{fmt_energy(outcome.overhead_energy_j)} calibration incl. warm-up), "
        f"{outcome.co2_g:.3g} gCO2e, {outcome.duration_s:.1f} s",
        file=out,
    )
    print(f"stopped: {outcome.stop_reason}", file=out)
    for note in outcome.notes:
        print(f"note: {note}", file=out)
    files = [str(outcome.storage_path), str(outcome.out_dir / "study.db")]
    files += [str(p) for p in (outcome.plot_path, outcome.csv_path) if p is not None]
    print(f"files: {', '.join(files)}", file=out)


def _tune(args: argparse.Namespace, path: str) -> int:
    from frugalml.tune import Tuner

    spec = _load(args, path)
    if args.validate:
        print(_describe(spec))
        return 0
    _quiet_optuna(args.debug)
    out_dir = args.out or Path("runs") / spec.name
    tuner = Tuner(
        spec,
        out_dir,
        threads=args.threads,
        parallel=args.parallel,
        executor=args.executor,
        address=args.address,
    )
    view = _ProgressView(not args.no_progress and not args.quiet, spec.name, lines=not args.quiet)
    tuner.on_event = view.on_event
    with view:
        outcome = tuner.run()
    _print_outcome(outcome)
    if outcome.interrupted:
        print("frugalml: interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    return 0


def _compare(args: argparse.Namespace, path: str) -> int:
    from frugalml.tune import compare_strategies, parse_strategies
    from frugalml.tune._compare import check_first_seed
    from frugalml.tune._compare_tables import check_threshold

    spec = _load(args, path)
    if args.strategies is None:
        raise ConfigError(
            "'tune compare' needs --strategies", fix="e.g. --strategies grid,random,tpe"
        )
    if args.strategy is not None:
        raise ConfigError("--strategy does not apply to 'tune compare'", fix="use --strategies")
    if args.parallel is not None or args.executor is not None or args.address is not None:
        raise ConfigError(
            "'tune compare' runs its trials one at a time",
            fix="drop --parallel, --executor and --address (they are for 'frugalml tune SPEC')",
        )
    if args.repeats < 1:  # compare_strategies refuses it too, but only after --validate
        raise ConfigError(
            f"--repeats must be 1 or more, got {args.repeats}", fix="e.g. --repeats 3"
        )
    if args.target is not None and args.threshold is not None:
        raise ConfigError(
            "--target and --threshold both say when a run reached the target",
            fix="give one: --threshold 0.96 (a fixed accuracy) or --target 0.01 (below the best)",
        )
    check_threshold(args.threshold)
    if args.target_accuracy is not None:
        raise ConfigError(
            "--target-accuracy is for 'frugalml tune SPEC'",
            fix="in 'tune compare' give --threshold ACC --stop-at-threshold",
        )
    if args.stop_at_threshold and args.threshold is None:
        raise ConfigError(
            "--stop-at-threshold needs --threshold ACC (a run stops once it reaches it)",
            fix="e.g. --threshold 0.96 --stop-at-threshold",
        )
    target = 0.01 if args.target is None else args.target
    plan = parse_strategies(args.strategies, spec)
    first_seed = 0 if args.seed is None else args.seed
    try:
        check_first_seed(first_seed, args.repeats)
    except ConfigError as exc:  # the library names its keyword; here it is --seed
        raise ConfigError(
            f"--seed {first_seed} with --repeats {args.repeats} leaves the sampler seeds' range",
            fix="give a smaller --seed (repeat r uses sampler seed SEED + r)",
        ) from exc
    if args.validate:
        print(_describe(spec))
        runs = ", ".join(label for label, _, _ in plan)
        print(
            f"  compare: {runs}; {args.repeats} repeat(s) each "
            f"(sampler seeds {first_seed}..{first_seed + args.repeats - 1})"
        )
        return 0
    _quiet_optuna(args.debug)
    out_dir = args.out or Path("runs") / f"{spec.name}-compare"
    view = _ProgressView(not args.no_progress and not args.quiet, spec.name, lines=not args.quiet)

    def relay(label: str, repeat: int, event: TuneEvent) -> None:
        view.on_event(event, prefix=f"{label} r{repeat}")

    with view:
        comparison = compare_strategies(
            spec,
            out_dir,
            args.strategies,
            args.repeats,
            target=target,
            threshold=args.threshold,
            on_event=relay,
            threads=args.threads,
            stop_at_threshold=args.stop_at_threshold,
            first_seed=first_seed,
        )
    print(comparison.markdown, end="")
    print(
        f"files: {comparison.plot_path}, {comparison.csv_path}, {comparison.markdown_path}, "
        f"{comparison.curves_path}"
    )
    print(f"report: {comparison.html_path}")
    if comparison.interrupted:
        print("frugalml: interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    return 0

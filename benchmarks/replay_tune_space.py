"""Sweep a tuning spec's whole search space once, then replay strategies on it in seconds.

Two steps:

    python benchmarks/replay_tune_space.py sweep [--spec examples/compare_digits.yaml]
        [--float-points 16] [--workers 2] --out SWEEP.jsonl
    python benchmarks/replay_tune_space.py replay SWEEP.jsonl [--strategies random,tpe,frugal]
        [--repeats 100] [--budget-j 404] [--j-per-cpu-s 16] [--trial-overhead-j 1.0]
        [--thresholds 0.96,0.9665] [--sides 10,20] [--no-sampler-cpu]
        [--frugal candidates=24,startup_candidates=3,startup=3]

``sweep`` trains every point of the space (categorical choices, every integer, and
``--float-points`` values of each float, log-spaced where the spec says log) for the spec's
epochs with the spec's seed, one torch thread a worker, and writes one JSON line per point:
its parameters, validation and test accuracy after each epoch and the CPU seconds of each
epoch (``time.process_time``: training and evaluation). The model is built after seeding
torch with the spec's seed, as a tuning trial does, so a point is the trial a tuner would
run. It resumes: points already in the file are skipped.

``replay`` runs each strategy ``--repeats`` times (sampler seed r) against the sweep instead
of training: a sampled float snaps to the nearest swept value, a trial costs
``--trial-overhead-j`` plus ``--j-per-cpu-s`` x the CPU seconds of the epochs it ran, the
strategy's pruner sees the swept validation accuracy after each epoch, and a run stops when
the mean cost of an epoch so far x the epochs of a trial (plus the overhead) exceeds what is
left of ``--budget-j`` (the tuner's rule). ``frugal`` is frugalml's sampler and pruner
(:mod:`frugalml.tune._frugal`, ``FrugalSettings`` with ``--frugal`` overrides) given the
sweep's own cost of each candidate: an oracle, so better than the cost model a real run has.
It prints, per threshold, the share of runs that reached it, the Kaplan-Meier median energy
to it, and how often issue 15's goal against random (``frugalml.tune._compare_tables.goal_check``'s
three conditions) holds in 300 comparisons of ``--sides`` runs a side (default 10 and 20)
resampled from the replays: an estimate of the power of a real comparison, not a measurement.

Energies here are replayed CPU seconds x a factor, not metered: use them to choose what to
measure with ``bench_tune_strategies.py``, never as results.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def space_points(spec: Any, float_points: int) -> list[dict[str, Any]]:
    """Every point of ``spec``'s search space, floats on a ``float_points`` grid."""
    import numpy as np

    axes: dict[str, list[Any]] = {}
    for param in spec.search_space:
        if param.type == "categorical":
            axes[param.name] = list(param.choices)
        elif param.type == "int":
            step = int(param.step or 1)
            axes[param.name] = list(range(int(param.low), int(param.high) + 1, step))
        elif param.log:
            grid = np.logspace(math.log10(param.low), math.log10(param.high), float_points)
            axes[param.name] = [float(v) for v in grid]
        else:
            axes[param.name] = [float(v) for v in np.linspace(param.low, param.high, float_points)]
    names = list(axes)
    return [dict(zip(names, values, strict=True)) for values in itertools.product(*axes.values())]


def _sweep_part(job: tuple[str, str, int, int, int]) -> None:
    spec_path, out, float_points, index, workers = job
    import torch

    from frugalml.data import load_dataset
    from frugalml.models import create_model
    from frugalml.train import train
    from frugalml.tune import TuneSpec
    from frugalml.tune._space import apply_params

    torch.set_num_threads(1)
    spec = TuneSpec.from_yaml(spec_path)
    dataset = load_dataset(spec.dataset)
    part = Path(f"{out}.part{index}")
    done = set()
    if part.exists():
        lines = part.read_text("utf-8").splitlines()
        done = {json.dumps(json.loads(line)["params"], sort_keys=True) for line in lines}
    points = space_points(spec, float_points)
    # one untimed epoch first, so the first point does not pay for first-call initialisation
    config, name, args = apply_params(points[0], spec.training, spec.model, spec.model_args)
    warm = create_model(name, num_classes=dataset.num_classes, in_chans=dataset.channels, **args)
    train(warm, dataset, config.replace(epochs=1))
    with part.open("a", encoding="utf-8") as handle:
        for k, params in enumerate(points):
            key = json.dumps(params, sort_keys=True)
            if k % workers != index or key in done:
                continue
            config, name, args = apply_params(params, spec.training, spec.model, spec.model_args)
            torch.manual_seed(config.seed)  # as a tuning trial seeds before building its model
            model = create_model(
                name, num_classes=dataset.num_classes, in_chans=dataset.channels, **args
            )
            marks: list[tuple[float, float, float]] = []

            def mark(record: Any, marks: list[tuple[float, float, float]] = marks) -> None:
                marks.append((time.process_time(), record.val["accuracy"], record.test["accuracy"]))

            started = time.process_time()
            train(model, dataset, config, on_epoch=mark)
            ends = [started] + [m[0] for m in marks]
            row = {
                "params": params,
                "epoch_cpu_s": [b - a for a, b in itertools.pairwise(ends)],
                "val": [m[1] for m in marks],
                "test": [m[2] for m in marks],
            }
            handle.write(json.dumps(row) + "\n")
            handle.flush()


def sweep(spec_path: Path, out: Path, float_points: int, workers: int) -> int:
    """Train every point (resumable) and gather the parts into ``out``; returns the count."""
    import multiprocessing

    jobs = [(str(spec_path), str(out), float_points, i, workers) for i in range(workers)]
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        pool.map(_sweep_part, jobs)
    rows = [
        line
        for i in range(workers)
        for line in Path(f"{out}.part{i}").read_text("utf-8").splitlines(keepends=True)
    ]
    out.write_text("".join(rows), encoding="utf-8")
    return len(rows)


class Sweep:
    """A sweep's points, looked up by a sampled configuration (floats snapped)."""

    def __init__(self, path: Path) -> None:
        rows = [json.loads(line) for line in path.read_text("utf-8").splitlines()]
        self.rows = {self._key(r["params"]): r for r in rows}
        names = list(rows[0]["params"])
        self.floats = {
            n: sorted({r["params"][n] for r in rows})
            for n in names
            if isinstance(rows[0]["params"][n], float)
        }

    @staticmethod
    def _key(params: dict[str, Any]) -> str:
        return json.dumps(params, sort_keys=True)

    def lookup(self, params: dict[str, Any]) -> dict[str, Any]:
        snapped = dict(params)
        for name, grid in self.floats.items():
            value = math.log(params[name]) if grid[0] > 0 else params[name]
            snapped[name] = min(
                grid, key=lambda g: abs((math.log(g) if grid[0] > 0 else g) - value)
            )
        row: dict[str, Any] = self.rows[self._key(snapped)]
        return row


def startup_of(spec: Any, name: str, affordable: float, overrides: dict[str, Any]) -> int:
    """The start-up trials a real comparison run of ``name`` gets (the tuner's rule,
    :func:`frugalml.tune._strategies.startup_trials`, on the run's spec: tpe takes the
    spec's ``n_startup_trials``, frugal a share of the ``affordable`` trials), unless the
    overrides name ``startup``."""
    from frugalml.tune._compare import run_spec
    from frugalml.tune._strategies import startup_trials

    if "startup" in overrides:
        return int(overrides["startup"])
    n, _ = startup_trials(run_spec(spec, name, "none", 0), affordable)
    return int(n or 0)


def _strategy(
    name: str,
    seed: int,
    spec: Any,
    costs: Any,
    left: Any,
    overrides: dict[str, Any],
    affordable: float,
) -> tuple[Any, Any]:
    import optuna

    from frugalml.tune._frugal import FrugalSettings, _cost_aware_tpe, best_curve_pruner

    nop = optuna.pruners.NopPruner()  # a study given pruner=None gets Optuna's MedianPruner
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed), nop
    startup = startup_of(spec, name, affordable, overrides if name == "frugal" else {})
    if name == "tpe":
        return optuna.samplers.TPESampler(
            seed=seed, n_startup_trials=startup, constant_liar=False
        ), nop
    if name == "gp":
        return optuna.samplers.GPSampler(seed=seed, n_startup_trials=startup), nop
    if name == "frugal":
        rules = FrugalSettings(**{k: v for k, v in overrides.items() if k != "startup"})
        # one trial at a time, as a tuner runs them: no constant liar (the same proposals)
        sampler = _cost_aware_tpe(seed, startup, costs, left, rules, constant_liar=False)
        epochs = spec.training.epochs
        pruner = best_curve_pruner(rules.prune_ratio, epochs) if rules.prune_ratio else nop
        return sampler, pruner
    raise SystemExit(f"replay knows random, tpe, gp and frugal, not {name!r}")


def _base_value(param: Any, spec: Any) -> Any:
    """The base configuration's value of ``param`` (the spec's training or model value, else
    the first choice or the low end)."""
    if param.name.startswith("model."):
        value = spec.model_args.get(param.name[len("model.") :])
    else:
        value = getattr(spec.training, param.name, None)
    if value is not None:
        return value
    return param.choices[0] if param.type == "categorical" else param.low


def replay_run(
    space: Sweep, spec: Any, name: str, seed: int, args: argparse.Namespace
) -> list[tuple[float, float]]:
    """One replayed run: (cumulative J, best completed validation accuracy) per trial."""
    import optuna

    state = {"spent": 0.0}
    epochs = spec.training.epochs

    def cost(params: dict[str, Any]) -> float:
        cpu_s = float(sum(space.lookup(params)["epoch_cpu_s"]))
        return float(args.trial_overhead_j + args.j_per_cpu_s * cpu_s)

    base = {p.name: _base_value(p, spec) for p in spec.search_space}
    sampler, pruner = _strategy(
        name,
        seed,
        spec,
        lambda cands: [cost(c) for c in cands],
        lambda: args.budget_j - state["spent"],
        args.frugal,
        args.budget_j / cost(base),  # the tuner's estimate: the base configuration's cost
    )
    study = optuna.create_study(direction="maximize", sampler=sampler, pruner=pruner)
    curve: list[tuple[float, float]] = []
    best = -math.inf
    epoch_j: list[float] = []
    while len(curve) < spec.budget.max_trials:
        if epoch_j and args.trial_overhead_j + epochs * sum(epoch_j) / len(epoch_j) > (
            args.budget_j - state["spent"]
        ):
            break
        started = time.process_time()  # the sampler's and pruner's own work, as a run pays it
        trial = study.ask()
        params = spec.search_space.suggest(trial)
        row = space.lookup(params)
        spent, pruned = args.trial_overhead_j, False
        for e in range(epochs):
            epoch_j.append(args.j_per_cpu_s * row["epoch_cpu_s"][e])
            spent += epoch_j[-1]
            if e < epochs - 1:
                trial.report(row["val"][e], e + 1)
                if trial.should_prune():
                    pruned = True
                    break
        if pruned:
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        else:
            study.tell(trial, row["val"][-1])
            best = max(best, row["val"][-1])
        if args.sampler_cpu:
            spent += args.j_per_cpu_s * (time.process_time() - started)
        state["spent"] += spent
        curve.append((state["spent"], best))
    return curve


def _outcome(curve: list[tuple[float, float]], threshold: float) -> Any:
    from frugalml.tune._stats import Outcome

    for spent, best in curve:
        if best >= threshold - 1e-12:
            return Outcome(spent, True)
    return Outcome(curve[-1][0], False)


def goal_power(runs: list[Any], base: list[Any], n: int, seed: int = 0) -> float:
    """Share of 300 resampled comparisons (``n`` runs a side) meeting the goal's conditions."""
    import numpy as np

    from frugalml.tune._compare_tables import GOAL_ALPHA, GOAL_MEDIAN_FRACTION, GOAL_REACHED_SHARE
    from frugalml.tune._stats import km_median, logrank_test, median_at_most

    rng = np.random.default_rng(seed)
    met = 0
    for _ in range(300):
        a = [runs[i] for i in rng.integers(0, len(runs), n)]
        b = [base[i] for i in rng.integers(0, len(base), n)]
        share = sum(o.reached for o in a) >= GOAL_REACHED_SHARE * n - 1e-9
        half = median_at_most(a, b, GOAL_MEDIAN_FRACTION, names=("a", "b")).holds is True
        p = logrank_test(a, b).p_value < GOAL_ALPHA and km_median(a) <= km_median(b)
        met += share and half and p
    return met / 300


def replay(args: argparse.Namespace) -> None:
    import optuna

    from frugalml.tune import TuneSpec
    from frugalml.tune._stats import km_median

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    spec = TuneSpec.from_yaml(args.spec)
    space = Sweep(args.sweep)
    names = args.strategies.split(",")
    curves = {n: [replay_run(space, spec, n, r, args) for r in range(args.repeats)] for n in names}
    print(
        f"replay of {args.sweep.name} ({len(space.rows)} points), {args.repeats} runs a strategy, "
        f"budget {args.budget_j:g} J, {args.j_per_cpu_s:g} J per CPU s + "
        f"{args.trial_overhead_j:g} J a trial; frugal overrides {args.frugal or 'none'}"
    )
    for threshold in args.thresholds:
        print(f"\nthreshold {threshold:.4f}:\n")
        sides = " | ".join(f"goal, {n} a side" for n in args.sides)
        print(f"| strategy | trials, median | reached | KM median J | {sides} |")
        print("|---|---|---|---|" + "---|" * len(args.sides))
        base = [_outcome(c, threshold) for c in curves.get("random", [])]
        for name in names:
            outs = [_outcome(c, threshold) for c in curves[name]]
            trials = sorted(len(c) for c in curves[name])[len(curves[name]) // 2]
            power = ["-"] * len(args.sides)
            if base and name != "random":
                power = [f"{goal_power(outs, base, n):.0%}" for n in args.sides]
            print(
                f"| {name} | {trials} | {sum(o.reached for o in outs)}/{len(outs)} | "
                f"{km_median(outs):.0f} | " + " | ".join(power) + " |"
            )


def _overrides(text: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in filter(None, text.split(",")):
        key, _, value = item.partition("=")
        try:
            out[key] = None if value == "None" else json.loads(value.lower())
        except json.JSONDecodeError:  # a word: acquisition=ei_per_joule
            out[key] = value
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("sweep")
    s.add_argument("--spec", type=Path, default=ROOT / "examples" / "compare_digits.yaml")
    s.add_argument("--float-points", type=int, default=16)
    s.add_argument("--workers", type=int, default=2)
    s.add_argument("--out", type=Path, required=True)
    r = sub.add_parser("replay")
    r.add_argument("sweep", type=Path)
    r.add_argument("--spec", type=Path, default=ROOT / "examples" / "compare_digits.yaml")
    r.add_argument("--strategies", default="random,tpe,frugal")
    r.add_argument("--repeats", type=int, default=100)
    r.add_argument("--budget-j", type=float, default=404.0)
    r.add_argument("--j-per-cpu-s", type=float, default=16.0)
    r.add_argument("--trial-overhead-j", type=float, default=1.0)
    r.add_argument(
        "--thresholds", type=lambda t: [float(v) for v in t.split(",")], default=[0.96, 0.9665]
    )
    r.add_argument(
        "--sides",
        type=lambda t: [int(v) for v in t.split(",")],
        default=[10, 20],
        help="runs a side of the resampled comparisons that estimate the goal's power",
    )
    r.add_argument("--frugal", type=_overrides, default={})
    r.add_argument(
        "--no-sampler-cpu",
        dest="sampler_cpu",
        action="store_false",
        help="leave out the sampler's own CPU seconds (counted by default, as a run pays them)",
    )
    args = parser.parse_args()
    if args.command == "sweep":
        count = sweep(args.spec, args.out, args.float_points, args.workers)
        print(f"{count} points in {args.out}")
    else:
        replay(args)


if __name__ == "__main__":
    main()

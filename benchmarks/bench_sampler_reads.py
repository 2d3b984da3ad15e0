"""TPE's asks with and without Optuna's constant liar, on a real tuning run's storage.

Optuna 5's TPESampler counts running trials as bad ones by default (``constant_liar=True``),
and to see them it reads every trial from the storage afresh for each parameter it samples
(univariate) or once more per ask (multivariate). A tuner that runs one trial at a time has
no running trial to lie about, so frugalml turns the liar off there (``make_sampler(...,
in_flight=1)``): every parameter is then sampled from the ask's one read, with the same
proposals.

This runs a real frugal tuning of ``examples/compare_digits.yaml`` (the replicated frugal
strategy: 5 start-up trials, one density per parameter) into a temporary directory, then
times asks of the frugal sampler on copies of its SQLite storage, liar on against liar off
(and Optuna's random sampler, for scale),
``--rounds`` times in alternating order (so the load of the machine hits both alike): each
round opens a fresh copy and asks ``--asks`` trials (each suggested, then told failed).
It checks that both proposed the same configurations and counts the storage's reads of
every trial. CPU time (``time.process_time``).

    python benchmarks/bench_sampler_reads.py [--trials 30] [--rounds 6] [--asks 10]

Prints Markdown for ``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import platform
import shutil
import statistics
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent


def ask_round(
    out_dir: Path, copy_dir: Path, spec: Any, constant_liar: bool | None, asks: int
) -> tuple[list[float], list[int], list[dict[str, Any]]]:
    """CPU s and storage reads of each of ``asks`` asks on a fresh copy of ``out_dir``
    (``constant_liar=None``: Optuna's random sampler, for scale)."""
    import optuna

    from frugalml.tune._frugal import FrugalSettings, _cost_aware_tpe
    from frugalml.tune._storage import load_study

    shutil.rmtree(copy_dir, ignore_errors=True)
    shutil.copytree(out_dir, copy_dir)
    study = load_study(copy_dir)
    rules = FrugalSettings(multivariate=False)
    study.sampler = (
        optuna.samplers.RandomSampler(seed=1)
        if constant_liar is None
        else _cost_aware_tpe(
            1, 5, lambda c: [None] * len(c), lambda: None, rules, constant_liar=constant_liar
        )
    )
    storage = study._storage
    get_all = storage.get_all_trials
    reads = [0]

    def counted(*args: Any, **kwargs: Any) -> Any:
        reads[0] += 1
        return get_all(*args, **kwargs)

    storage.get_all_trials = counted
    cpu_s, n_reads, chosen = [], [], []
    for _ in range(asks):
        reads[0] = 0
        started = time.process_time()
        trial = study.ask()
        params = spec.search_space.suggest(trial)
        cpu_s.append(time.process_time() - started)
        n_reads.append(reads[0])
        chosen.append(params)
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
    return cpu_s, n_reads, chosen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=30, help="trials of the tuning run")
    parser.add_argument("--rounds", type=int, default=6, help="rounds of each variant")
    parser.add_argument("--asks", type=int, default=10, help="asks a round")
    args = parser.parse_args()

    import optuna

    from frugalml.tune import Tuner, TuneSpec

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    data = yaml.safe_load((ROOT / "examples" / "compare_digits.yaml").read_text())
    data["strategy"] = {"name": "frugal", "n_startup_trials": 5, "multivariate": False}
    data["budget"]["max_trials"] = args.trials
    spec = TuneSpec.from_mapping(data)

    variants: tuple[bool | None, ...] = (True, False, None)
    times: dict[bool | None, list[float]] = {v: [] for v in variants}
    reads: dict[bool | None, list[int]] = {v: [] for v in variants}
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run"
        outcome = Tuner(spec, out, plot=False, threads=1).run()
        n = len(outcome.trials)
        sampler_j = statistics.median(t.sampler_energy_j for t in outcome.trials)
        proposals: dict[bool | None, list[dict[str, Any]]] = {}
        for r in range(args.rounds):
            order = variants if r % 2 == 0 else variants[::-1]
            for liar in order:
                cpu_s, n_reads, chosen = ask_round(out, Path(tmp) / "copy", spec, liar, args.asks)
                times[liar].extend(cpu_s)
                reads[liar].extend(n_reads)
                assert proposals.setdefault(liar, chosen) == chosen  # a copy asks alike
        same = proposals[True] == proposals[False]

    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    print(
        f"{stamp}, {platform.machine()}, `python benchmarks/bench_sampler_reads.py "
        f"--trials {args.trials} --rounds {args.rounds} --asks {args.asks}`"
    )
    print()
    print(
        f"a real frugal run of {n} trials (its sampler booked a median {sampler_j:.3f} J a "
        f"trial, liar off); then {args.rounds} x {args.asks} asks a variant on copies of its "
        f"storage (and Optuna's random sampler, for scale); the same proposals with and "
        f"without the liar: {'yes' if same else 'NO'}"
    )
    print()
    print(
        "| sampler | reads of every trial an ask | CPU ms an ask, median | mean | ratio (median) |"
    )
    print("|---|---:|---:|---:|---:|")
    on_ms = 1000 * statistics.median(times[True])
    labels = {True: "constant liar on (Optuna 5's default)", False: "liar off", None: "random"}
    for liar, label in labels.items():
        ms = 1000 * statistics.median(times[liar])
        mean = 1000 * statistics.fmean(times[liar])
        ratio = "1" if liar else f"{ms / on_ms:.2f}"
        print(f"| {label} | {statistics.median(reads[liar]):g} | {ms:.2f} | {mean:.2f} | {ratio} |")


if __name__ == "__main__":
    main()

"""The offline replay of benchmarks/replay_tune_space.py: start-up trials as a real run's,
and a replay end to end on a small hand-made sweep (no training)."""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent
SPEC = ROOT / "examples" / "compare_digits.yaml"


def _replay_module() -> ModuleType:
    path = ROOT / "benchmarks" / "replay_tune_space.py"
    spec = importlib.util.spec_from_file_location("replay_tune_space", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_startup_trials_are_a_real_runs() -> None:
    from frugalml.tune import TuneSpec

    replay = _replay_module()
    spec = TuneSpec.from_yaml(SPEC)
    # frugal gets none of the spec's tpe options: a fifth of the affordable trials, capped
    assert replay.startup_of(spec, "frugal", 50.0, {}) == 10
    assert replay.startup_of(spec, "frugal", 15.0, {}) == 3
    assert replay.startup_of(spec, "tpe", 50.0, {}) == 5  # the spec's n_startup_trials
    assert replay.startup_of(spec, "frugal", 50.0, {"startup": 3}) == 3
    base = {p.name: replay._base_value(p, spec) for p in spec.search_space}
    assert base == {"lr": 0.0005, "batch_size": 32, "model.conv_layers": 2, "model.width": 8}


def _write_sweep(path: Path, replay: ModuleType) -> None:
    from frugalml.tune import TuneSpec

    spec = TuneSpec.from_yaml(SPEC)
    lines = []
    for params in replay.space_points(spec, 4):
        # best near lr 1e-2, deeper and wider; a cost growing with width and depth
        score = (
            1.0
            - 0.1 * abs(math.log10(params["lr"]) + 2.0)
            - 0.01 * (3 - params["model.conv_layers"])
        )
        score -= 0.002 * (16 - params["model.width"])
        val = [max(0.1, score - 0.1 * (3 - e)) for e in range(4)]
        cpu = 0.01 * params["model.width"] * params["model.conv_layers"] * 32 / params["batch_size"]
        lines.append(
            json.dumps({"params": params, "epoch_cpu_s": [cpu] * 4, "val": val, "test": val})
        )
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def test_replay_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    replay = _replay_module()
    sweep = tmp_path / "sweep.jsonl"
    _write_sweep(sweep, replay)
    args = argparse.Namespace(
        sweep=sweep,
        spec=SPEC,
        strategies="random,frugal",
        repeats=3,
        budget_j=60.0,
        j_per_cpu_s=7.0,
        trial_overhead_j=1.0,
        thresholds=[0.9, 2.0],
        frugal={"startup": 2},
        sides=[3],
        sampler_cpu=True,
    )
    replay.replay(args)
    out = capsys.readouterr().out
    assert "threshold 0.9000" in out and "goal, 3 a side" in out
    rows = [line for line in out.splitlines() if line.startswith("| frugal")]
    assert len(rows) == 2
    assert "| 0/3 | inf |" in rows[1]  # 2.0 cannot be reached: censored, not a number
    from frugalml.tune import TuneSpec

    curve = replay.replay_run(replay.Sweep(sweep), TuneSpec.from_yaml(SPEC), "random", 0, args)
    spent = [c[0] for c in curve]
    costs = [b - a for a, b in zip([0.0, *spent[:-1]], spent, strict=True)]
    assert all(c > 0 for c in costs)
    assert spent[-1] <= args.budget_j + max(costs)  # the budget is passed by one trial at most

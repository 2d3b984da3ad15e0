"""Strategy comparison: energy to target on hand-made curves, and one tiny real comparison."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from frugalml.errors import ConfigError
from frugalml.tune import (
    RunCurve,
    TuneSpec,
    best_at,
    compare_strategies,
    comparison_table,
    energy_to_target,
    load_comparison,
    pairwise_tests,
    parse_strategies,
    table_markdown,
)

NAN = math.nan


def _curve(strategy: str, repeat: int, energy: list[float], best: list[float]) -> RunCurve:
    return RunCurve(strategy, repeat, tuple(energy), tuple(best))


def test_best_at_and_energy_to_target_on_a_hand_made_curve() -> None:
    curve = _curve("tpe", 0, [10, 25, 40, 70], [NAN, 0.80, 0.80, 0.95])
    assert math.isnan(best_at(curve, 5))
    assert math.isnan(best_at(curve, 10))  # the first trial was pruned or failed
    assert best_at(curve, 30) == 0.80
    assert best_at(curve, 1000) == 0.95
    assert energy_to_target(curve, 0.80) == (25, 2)
    assert energy_to_target(curve, 0.90) == (70, 4)
    assert energy_to_target(curve, 0.96) is None


def test_comparison_table_median_min_max_and_not_reached() -> None:
    curves = [
        # tpe reaches 0.94 (= best 0.95 - 0.01) at 30, 50 and 20 J
        _curve("tpe", 0, [10, 30, 60], [0.90, 0.95, 0.95]),
        _curve("tpe", 1, [20, 50], [0.80, 0.94]),
        _curve("tpe", 2, [20, 40], [0.945, 0.945]),
        # random reaches it once (90 J); two runs never do
        _curve("random", 0, [30, 60, 90], [0.70, 0.90, 0.94]),
        _curve("random", 1, [30, 60, 90], [0.70, 0.90, 0.93]),
        _curve("random", 2, [30, 60], [NAN, 0.50]),
        # grid reaches it in two of three runs
        _curve("grid", 0, [40, 80], [0.94, 0.94]),
        _curve("grid", 1, [40, 80, 120], [0.60, 0.90, 0.95]),
        _curve("grid", 2, [40], [0.10]),
    ]
    table = comparison_table(curves, target=0.01).set_index("strategy")
    assert list(table.index) == ["tpe", "random", "grid"]
    assert table["threshold"].iloc[0] == pytest.approx(0.94)
    tpe, rnd, grid = table.loc["tpe"], table.loc["random"], table.loc["grid"]
    assert (tpe["reached"], tpe["not_reached"]) == (3, 0)
    assert tpe["median_energy_to_target_j"] == 30
    assert (tpe["min_energy_to_target_j"], tpe["max_energy_to_target_j"]) == (20, 50)
    assert tpe["median_trials_to_target"] == 2
    assert (rnd["reached"], rnd["not_reached"]) == (1, 2)
    assert rnd["reached_share"] == pytest.approx(1 / 3)
    # Kaplan-Meier: the run censored at 60 J drops out; at 90 J one of the two runs still
    # short of the target reaches it (the other is censored there): S(90) = 1/2.
    assert rnd["median_energy_to_target_j"] == 90
    assert rnd["min_energy_to_target_j"] == 90 and rnd["max_energy_to_target_j"] == 90
    assert (grid["reached"], grid["not_reached"]) == (2, 1)
    assert grid["median_energy_to_target_j"] == 120  # S(40) = 2/3 (3 at risk), S(120) = 0
    assert tpe["median_best_val_accuracy"] == pytest.approx(0.945)
    assert (tpe["min_best_val_accuracy"], tpe["max_best_val_accuracy"]) == (0.94, 0.95)
    assert tpe["median_total_energy_j"] == 50
    # bootstrap interval of tpe's median over 20, 30, 50: within the sample's range
    assert 20 <= tpe["ci_low_energy_to_target_j"] <= 30 <= tpe["ci_high_energy_to_target_j"]
    assert tpe["ci_high_energy_to_target_j"] <= 50
    # two of three random runs censored: many resamples never reach the median
    assert math.isinf(rnd["ci_high_energy_to_target_j"])
    tests = pairwise_tests(curves, target=0.01).set_index(["strategy_a", "strategy_b"])
    assert list(tests.index) == [("tpe", "random"), ("tpe", "grid"), ("random", "grid")]
    assert tests.loc[("tpe", "random"), "less_energy"] == "tpe"
    assert 0 < tests.loc[("tpe", "random"), "logrank_p"] < 1
    markdown = table_markdown(
        comparison_table(curves, target=0.01), target=0.01, tests=pairwise_tests(curves)
    )
    assert "| random | 1/3 (33%) | 90.0 | " in markdown
    assert "| tpe vs random | " in markdown
    assert ">= 0.9400" in markdown


def test_comparison_table_edge_cases() -> None:
    assert comparison_table([]).empty
    nothing = comparison_table([_curve("tpe", 0, [5, 10], [NAN, NAN])])
    assert nothing.loc[0, "reached"] == 0 and math.isnan(nothing.loc[0, "threshold"])
    with pytest.raises(ConfigError, match="target must be"):
        comparison_table([_curve("tpe", 0, [1], [0.5])], target=-0.1)
    ref = comparison_table([_curve("tpe", 0, [1, 2], [0.5, 0.7])], target=0.0, best_accuracy=0.6)
    assert ref.loc[0, "median_energy_to_target_j"] == 2
    assert pairwise_tests([_curve("tpe", 0, [1], [0.5])]).empty


def _spec_data(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": "c",
        "fraction": 0.2,
        "model": {"name": "frugal_cnn", "args": {"conv_layers": 1, "width": 4}},
        "training": {"epochs": 1, "batch_size": 32},
        "search_space": {
            "lr": {"type": "float", "low": 1e-3, "high": 3e-2, "log": True, "grid": [1e-3, 3e-2]}
        },
        "pruner": "none",
        "budget": {"max_trials": 2},
    }
    data.update(changes)
    return data


def test_parse_strategies() -> None:
    spec = TuneSpec.from_mapping(_spec_data(pruner="median"))
    assert parse_strategies("grid, random,tpe+none", spec) == [
        ("grid+median", "grid", "median"),
        ("random+median", "random", "median"),
        ("tpe", "tpe", "none"),
    ]
    for bad, needle in [
        ("", "no strategies"),
        ("bayes", "unknown strategy"),
        ("tpe+hyperband", "unknown pruner"),
        ("tpe,tpe", "listed twice"),
    ]:
        with pytest.raises(ConfigError, match=needle):
            parse_strategies(bad, spec)


def test_compare_runs_each_strategy_with_the_same_seeds(tmp_path: Path) -> None:
    spec = TuneSpec.from_mapping(_spec_data())
    comparison = compare_strategies(
        spec, tmp_path, "grid,random", repeats=2, target=0.05, threads=1
    )
    assert len(comparison.curves) == 4
    assert {(c.strategy, c.repeat) for c in comparison.curves} == {
        (s, r) for s in ("grid", "random") for r in (0, 1)
    }
    assert all(len(c.energy_j) == 2 and c.total_energy_j > 0 for c in comparison.curves)
    table = comparison.table
    assert list(table["strategy"]) == ["grid", "random"]
    assert (table["runs"] == 2).all()
    for path in (
        comparison.plot_path,
        comparison.csv_path,
        comparison.markdown_path,
        comparison.curves_path,
        comparison.html_path,
    ):
        assert path is not None and path.exists()
    page = (tmp_path / "comparison.html").read_text()
    assert page.count("data:image/png;base64,") == 1 and "<script" not in page
    assert "<td>grid</td>" in page and "<td>random</td>" in page
    assert pd.read_csv(tmp_path / "comparison.csv")["strategy"].tolist() == ["grid", "random"]
    # repeat r used sampler seed r for every strategy
    from frugalml.tune import load_study

    for r in (0, 1):
        assert load_study(tmp_path / "random" / f"repeat{r}").user_attrs["spec"]["seed"] == r
    # the comparison can be rebuilt from the run directories (for the report)
    again = load_comparison(tmp_path, target=0.05)
    pd.testing.assert_frame_equal(
        again.table.set_index("strategy").sort_index(), table.set_index("strategy").sort_index()
    )
    # a rerun continues: nothing left to run, the same curves
    rerun = compare_strategies(spec, tmp_path, "grid,random", repeats=2, target=0.05, threads=1)
    assert [c.energy_j for c in rerun.curves] == [c.energy_j for c in comparison.curves]


_KILLER = """
import os, signal, sys
from frugalml.tune import TuneSpec, compare_strategies

spec = TuneSpec.from_mapping({data!r})

def on_event(label, repeat, event):
    if (label, repeat) == ("random", 1) and event.kind == "epoch":
        os.kill(os.getpid(), signal.SIGKILL)  # kill -9 in the middle of a trial

compare_strategies(spec, sys.argv[1], "grid,random", repeats=3, target=0.05, threads=1,
                   on_event=on_event)
"""


@pytest.mark.slow
def test_a_comparison_killed_with_sigkill_resumes_interleaved(tmp_path: Path) -> None:
    """2 strategies x 3 repeats: killed (-9) during random's repeat 1, then rerun."""
    import subprocess
    import sys

    from frugalml.tune import load_study
    from frugalml.tune._compare import read_loads, run_dir

    script = tmp_path / "killer.py"
    script.write_text(_KILLER.format(data=_spec_data()), encoding="utf-8")
    out = tmp_path / "cmp"
    killed = subprocess.run([sys.executable, str(script), str(out)], check=False, timeout=300)
    assert killed.returncode == -9
    # interleaved: repeat 0 of both strategies and grid's repeat 1 ran before random's repeat 1
    loads = read_loads(out)
    assert list(loads) == [("grid", 0), ("random", 0), ("grid", 1)]
    assert not (out / "grid" / "repeat2").exists()
    before = {key: [t.value for t in load_study(run_dir(out, *key)).trials] for key in loads}
    comparison = compare_strategies(
        TuneSpec.from_mapping(_spec_data()), out, "grid,random", repeats=3, target=0.05, threads=1
    )
    assert len(comparison.curves) == 6
    for key, values in before.items():  # finished runs were not run again
        assert [t.value for t in load_study(run_dir(out, *key)).trials] == values
    killed_run = load_study(run_dir(out, "random", 1))
    assert sum(t.state.name == "COMPLETE" for t in killed_run.trials) == 2
    assert list(read_loads(out))[3:] == [("random", 1), ("grid", 2), ("random", 2)]
    assert len(comparison.tests) == 1 and comparison.tests.loc[0, "strategy_a"] == "grid"
    assert (out / "comparison_tests.csv").exists() and (out / "comparison_load.csv").exists()
    assert any("Load average (1 min) around the 6 runs" in n for n in comparison.notes)
    assert "Pairwise tests on energy to target" in (out / "comparison.md").read_text()


def test_load_notes_warn_when_the_load_exceeds_the_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    from frugalml.tune._compare import load_notes

    monkeypatch.setattr("os.cpu_count", lambda: 2)
    quiet = load_notes({("tpe", 0): (0.5, 1.0), ("random", 0): (1.0, 1.5)})
    assert quiet == [
        "Load average (1 min) around the 2 runs: median 1.00, max 1.50, on 2 logical CPU(s)."
    ]
    busy = load_notes({("tpe", 0): (0.5, 1.0), ("random", 0): (1.0, 2.5)})
    assert busy[1].startswith("Warning: the load average exceeded the 2 CPU(s) around 1 of 2")
    assert load_notes({("tpe", 0): (math.nan, math.nan)}) == []


def test_goal_check_states_the_bound_on_random_s_median() -> None:
    from frugalml.tune._compare_tables import goal_check

    # threshold 0.95 - 0.01 = 0.94. random: 1 of 3 reaches it (at 30 J), the others end at
    # 144 and 150 J: its median > 144 J (2 runs known above it, floor(3/2) + 1 = 2).
    random = [
        _curve("random", 0, [30, 144], [0.95, 0.95]),
        _curve("random", 1, [72, 144], [0.50, 0.90]),
        _curve("random", 2, [75, 150], [0.50, 0.90]),
    ]
    frugal = [_curve("frugal", r, [20, 60], [0.90, 0.94]) for r in range(3)]
    slow = [_curve("slow", r, [40, 80], [0.90, 0.94]) for r in range(3)]
    lines = goal_check([*random, *frugal, *slow], target=0.01)
    assert len(lines) == 2
    assert lines[0].startswith("Goal for frugal against random (threshold 0.9400): reached in 3/3")
    assert (
        "random's median > 144.0 J (not reached: 1 of 3 runs reached the target); "
        "frugal's 60.0 J is at most half of it" in lines[0]
    )
    # frugal's 60 J against random's bound 144 J: a ratio of at most 0.42, its interval across
    # 0.5; 3 runs a side cannot tell, and at that ratio and spread more would
    assert (
        "(it holds 0.5: 3 runs a side cannot tell on which side of it the ratio is; at " in lines[0]
    )
    # interval 0.40 to 2.00 (resamples of 3 runs): 3 x (ln(2 / 0.4167) / ln(0.5 / 0.4167))^2
    # = 3 x (1.5686 / 0.1823)^2 = 222.1, so 223
    assert "95% bootstrap interval 0.40 to 2.00" in lines[0]
    assert "ratio and spread, roughly 223 would)" in lines[0]
    # 3 runs a side cannot be significant at 5% here
    assert lines[0].endswith("not significant at 5%): goal not met.")
    assert "slow's 80.0 J is above 0.5 x 144.0 J = 72.0 J" in lines[1]
    assert goal_check(frugal + slow, target=0.01) == []  # no random: nothing to check against
    # 12 runs a side, every frugal run at 10 J, every random one censored at 144 J: p < 0.001
    fast = [_curve("frugal", r, [10, 20], [0.95, 0.95]) for r in range(12)]
    never = [_curve("random", r, [72, 144], [0.5, 0.9]) for r in range(12)]
    line = goal_check([*never, *fast], target=0.0, best_accuracy=0.95)[0]
    assert "log-rank p < 0.001 (significant at 5%): goal met." in line, line
    # every random run censored at 144 J: the ratio is at most 10 / 144 in every resample
    assert (
        "ratio of the medians, 95% bootstrap interval 0.07 to 0.07 (at most 0.5 throughout);"
        in line
    ), line


def test_a_fixed_threshold_does_not_move_with_the_best_run(tmp_path: Path) -> None:
    from frugalml.tune._compare import summarize_comparison

    # best of all runs 0.99: --target 0.02 asks 0.97, which b reaches only in its best run;
    # a threshold of 0.95 fixed before the runs is reached by both b runs at 10 J
    curves = [
        _curve("a", 0, [10, 20], [0.90, 0.96]),
        _curve("a", 1, [10, 20], [0.90, 0.99]),
        _curve("b", 0, [10, 20], [0.95, 0.95]),
        _curve("b", 1, [10, 20], [0.95, 0.95]),
    ]
    moving = summarize_comparison(curves, tmp_path / "moving", target=0.02)
    assert moving.threshold == pytest.approx(0.97)
    assert moving.table.set_index("strategy")["reached"].to_dict() == {"a": 1, "b": 0}
    fixed = summarize_comparison(curves, tmp_path / "fixed", target=0.02, threshold=0.95)
    assert fixed.threshold == pytest.approx(0.95) and fixed.fixed_threshold
    table = fixed.table.set_index("strategy")
    assert table["reached"].to_dict() == {"a": 2, "b": 2}
    assert table["median_energy_to_target_j"].to_dict() == {"a": 20.0, "b": 10.0}
    # a's median energy to target is twice b's; every resample of a's two runs at 20 J and
    # b's at 10 J gives 2 too
    pair = fixed.tests.iloc[0]
    assert (pair["strategy_a"], pair["strategy_b"]) == ("a", "b")
    assert (pair["median_ratio"], pair["ratio_ci_low"], pair["ratio_ci_high"]) == (2.0, 2.0, 2.0)
    assert "| 2.00 (2.00 to 2.00) |" in fixed.markdown
    assert "validation accuracy >= 0.9500 (fixed before the runs)" in fixed.markdown
    assert "best of all runs minus 0.02" in moving.markdown
    page = (tmp_path / "fixed" / "comparison.html").read_text()
    assert "fixed before the runs" in page
    for bad in (0.0, 1.5, math.nan, True):
        with pytest.raises(ConfigError, match=r"threshold must be a validation accuracy"):
            summarize_comparison(curves, tmp_path / "bad", target=0.02, threshold=bad)
    assert not (tmp_path / "bad").exists()  # refused before anything was written


def test_a_comparison_can_stop_each_run_at_the_threshold(tmp_path: Path) -> None:
    # the grid's first point (lr 1e-3) is not good, its second (3e-2) is; at threshold 0.05
    # every trial reaches it, so a stopped run ends after its first trial
    spec = TuneSpec.from_mapping(_spec_data(budget={"max_trials": 3}))
    with pytest.raises(ConfigError, match="needs a threshold"):
        compare_strategies(spec, tmp_path / "no", "random", repeats=1, stop_at_threshold=True)
    assert not (tmp_path / "no").exists()
    stopped = compare_strategies(
        spec, tmp_path / "stop", "grid,random", repeats=2, threshold=0.05, threads=1,
        stop_at_threshold=True,
    )  # fmt: skip
    assert all(len(c.energy_j) == 1 for c in stopped.curves)
    assert (stopped.table["reached"] == 2).all()
    assert any("Each run stopped once a trial reached validation accuracy 0.05" in n
               for n in stopped.notes)  # fmt: skip
    from frugalml.tune import load_study

    budget = load_study(tmp_path / "stop" / "grid" / "repeat0").user_attrs["spec"]["budget"]
    assert budget["target_accuracy"] == 0.05 and budget["max_trials"] == 3
    again = load_comparison(tmp_path / "stop", threshold=0.05)  # the note survives a rebuild
    assert any(n.startswith("Each run stopped") for n in again.notes)
    # without the stop the run goes on past the threshold
    full = compare_strategies(spec, tmp_path / "full", "grid", repeats=1, threshold=0.05,
                              threads=1)  # fmt: skip
    assert len(full.curves[0].energy_j) == 2  # the whole grid
    assert not any(n.startswith("Each run stopped") for n in full.notes)

"""``frugalml tune``: exit codes and one-line messages for bad input, and a tiny real run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from frugalml.cli import main
from frugalml.study import StudyStore


def _write(tmp_path: Path, **changes: Any) -> Path:
    data: dict[str, Any] = {
        "name": "cli",
        "fraction": 0.2,
        "model": {"name": "frugal_cnn", "args": {"conv_layers": 1, "width": 4}},
        "training": {"epochs": 1, "batch_size": 32},
        "search_space": {
            "lr": {"type": "float", "low": 1.0e-3, "high": 3.0e-2, "log": True},
            "batch_size": {"type": "categorical", "choices": [16, 32]},
        },
        "strategy": "random",
        "budget": {"max_trials": 2},
    }
    data.update(changes)
    path = tmp_path / "tune.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("frugalml: error:")]
    assert len(errors) == 1, err
    assert "Traceback" not in err
    return errors[0]


@pytest.mark.parametrize(
    ("changes", "needle"),
    [
        ({"strategy": "bayes"}, "unknown strategy 'bayes'"),
        ({"search_space": {}}, "search space is empty"),
        ({"search_space": {"lr": {"type": "float", "low": 0.1, "high": 0.01}}}, "greater than"),
        ({"search_space": {"lr": {"type": "float", "low": 0, "high": 1, "log": True}}}, "low > 0"),
        ({"search_space": {"batch_size": {"type": "categorical", "choices": []}}}, "non-empty"),
        ({"search_space": {"momentum": {"type": "float", "low": 0, "high": 1}}}, "unknown search"),
        ({"strategy": "grid"}, "grid search needs a finite grid"),
        ({"objective": ["accuracy", "energy"], "pruner": "median"}, "multi-objective"),
    ],
)
def test_bad_specs_exit_2_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], changes: dict[str, Any], needle: str
) -> None:
    spec = _write(tmp_path, **changes)
    assert main(["-q", "tune", str(spec), "--out", str(tmp_path / "out")]) == 2
    line = _error_line(capsys)
    assert needle in line and "(fix:" in line
    assert not (tmp_path / "out").exists()  # refused before anything was created


def test_bad_command_lines_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = _write(tmp_path)
    cases = [
        (["tune", str(tmp_path / "missing.yaml")], "does not exist"),
        (["tune", str(spec), "--strategy", "annealing"], "unknown strategy"),
        (["tune", "compare"], "needs a spec"),
        (["tune", "compare", str(spec)], "needs --strategies"),
        (["tune", "compare", str(spec), "--strategies", "tpe+hyperband"], "unknown pruner"),
        (["tune", str(spec), "--strategies", "tpe"], "belongs to 'frugalml tune compare'"),
        (["tune", str(spec), "extra"], "unexpected argument"),
        (["tune", str(spec), "--max-trials", "0"], "max_trials"),
    ]
    for argv, needle in cases:
        assert main(["-q", *argv, "--out", str(tmp_path / "out")]) == 2, argv
        assert needle in _error_line(capsys), argv


def test_budget_too_small_is_refused_before_training(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = _write(tmp_path, budget={"max_trials": 3, "energy_kwh": 1e-9})
    out = tmp_path / "out"
    assert main(["-q", "tune", str(spec), "--out", str(out), "--no-progress"]) == 2
    assert "too small for even one trial" in _error_line(capsys)
    with StudyStore(out, create=False) as store:
        assert store.trials() == []


def test_validate_shows_the_search_space(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = _write(tmp_path)
    assert main(["tune", str(spec), "--validate"]) == 0
    out = capsys.readouterr().out
    assert "lr: float in [0.001, 0.03] (log)" in out and "batch_size: one of [16, 32]" in out


def test_a_tiny_run_then_corrupt_storage(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = _write(tmp_path)
    out = tmp_path / "out"
    argv = ["tune", str(spec), "--out", str(out), "--threads", "1", "--no-progress"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "best trial by accuracy: #" in printed and "energy spent on tuning:" in printed
    assert "estimated" in printed or "measured" in printed
    assert (out / "tuning.png").exists() and (out / "study.db").exists()
    # the study store works with the study commands
    assert main(["study", "export", str(out), "--csv", str(tmp_path / "r.csv")]) == 0
    assert len((tmp_path / "r.csv").read_text().splitlines()) == 3
    capsys.readouterr()
    # a damaged Optuna storage: one line, exit 2, the recorded trials kept
    (out / "optuna.db").write_bytes(b"\x00garbage" * 200)
    assert main(["-q", *argv]) == 2
    assert "not a readable Optuna storage" in _error_line(capsys)
    with StudyStore(out, create=False) as store:
        assert len(store.trials()) == 2


def test_compare_with_a_fixed_threshold_end_to_end(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = _write(tmp_path, budget={"max_trials": 2})
    out = tmp_path / "cmp"
    argv = ["-q", "tune", "compare", str(spec), "--strategies", "random,tpe", "--repeats", "2"]
    assert main([*argv, "--threshold", "0.05", "--out", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "validation accuracy >= 0.0500 (fixed before the runs)" in printed
    assert "Goal for tpe against random (threshold 0.0500)" in printed
    table = (out / "comparison.csv").read_text()
    assert table.count("\n") == 3 and ",0.05," in table  # header + random + tpe, threshold
    assert "fixed before the runs" in (out / "comparison.html").read_text()


def test_target_accuracy_stops_a_run_once_a_trial_reaches_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = _write(tmp_path, budget={"max_trials": 4, "target_accuracy": 0.05})
    out = tmp_path / "run"
    assert main(["tune", str(spec), "--out", str(out), "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "target_accuracy reached: trial 0 has validation accuracy" in text
    assert len(StudyStore(out).trials()) == 1
    # a rerun has nothing left to do: the target is reached, nothing is calibrated or run
    assert main(["tune", str(spec), "--out", str(out), "--no-progress",
                 "--target-accuracy", "0.06"]) == 0  # fmt: skip
    assert len(StudyStore(out).trials()) == 1


@pytest.mark.parametrize(
    ("budget", "extra", "needle"),
    [
        ({"max_trials": 2, "target_accuracy": 96}, [], "target_accuracy must be a validation"),
        ({"max_trials": 2}, ["--target-accuracy", "0"], "target_accuracy must be a validation"),
        ({"max_trials": 2}, ["--stop-at-threshold"], "belongs to 'frugalml tune compare'"),
    ],
)
def test_bad_target_accuracy_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], budget: Any, extra: list[str], needle: str
) -> None:
    spec = _write(tmp_path, budget=budget)
    assert main(["tune", str(spec), "--out", str(tmp_path / "o"), *extra]) != 0
    assert needle in _error_line(capsys)
    assert not (tmp_path / "o").exists()


def test_compare_refuses_stop_at_threshold_without_a_threshold(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = _write(tmp_path)
    args = ["tune", "compare", str(spec), "--strategies", "random", "--out", str(tmp_path / "o")]
    assert main([*args, "--stop-at-threshold"]) != 0
    assert "--stop-at-threshold needs --threshold" in _error_line(capsys)
    assert main([*args, "--threshold", "0.9", "--target-accuracy", "0.9"]) != 0
    assert "--target-accuracy is for 'frugalml tune SPEC'" in _error_line(capsys)
    assert not (tmp_path / "o").exists()


def test_compare_seed_sets_the_first_repeat_s_sampler_seed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from frugalml.tune import load_study

    spec = _write(tmp_path, budget={"max_trials": 1})
    out = tmp_path / "cmp"
    base = ["-q", "tune", "compare", str(spec), "--strategies", "random", "--repeats", "2"]
    base += ["--no-progress", "--threads", "1"]
    argv = [*base, "--out", str(out)]
    assert main([*argv, "--seed", "100"]) == 0
    capsys.readouterr()
    seeds = [load_study(out / "random" / f"repeat{r}").user_attrs["spec"]["seed"] for r in (0, 1)]
    assert seeds == [100, 101]
    before = (out / "comparison.csv").read_text()
    # the same directory with other seeds: refused before anything runs, nothing rewritten
    assert main(argv) != 0
    line = _error_line(capsys)
    assert "was run with sampler seed 100; this comparison gives it 0" in line
    assert (out / "comparison.csv").read_text() == before
    assert len(StudyStore(out / "random" / "repeat0").trials()) == 1
    # the seeds' range is checked before anything runs
    assert main([*base, "--out", str(tmp_path / "o"), "--seed", str(2**32 - 1)]) != 0
    assert "leaves the sampler seeds' range" in _error_line(capsys)
    assert not (tmp_path / "o").exists()

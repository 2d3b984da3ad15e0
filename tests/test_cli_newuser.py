"""What a new user meets on the command line: quiet output, plain progress without a
terminal, one budget-stop line, renamed models named once, the models command, help that
states defaults, -o/--out everywhere, and the tuning example doing what it shows."""

from __future__ import annotations

import argparse
import fnmatch
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from frugalml.cli import build_parser, main
from frugalml.cli._format import HelpFormatter, progress_line, time_left
from study_specs import TINY, write_spec

ROOT = Path(__file__).resolve().parents[1]


def _study_spec(tmp_path: Path, **changes: Any) -> Path:
    return write_spec(tmp_path, **{"fractions": [0.2, 0.1], **changes})


def test_quiet_measure_prints_no_summary(capsys: Any) -> None:
    assert main(["-q", "measure", "--", sys.executable, "-c", "pass"]) == 0
    assert "frugalml measure:" not in capsys.readouterr().err
    assert main(["measure", "--", sys.executable, "-c", "pass"]) == 0
    assert "frugalml measure:" in capsys.readouterr().err


@pytest.mark.slow  # a real trial in a worker process
def test_study_progress_without_a_terminal_is_one_line_per_trial_and_one_budget_stop(
    tmp_path: Path, capsys: Any
) -> None:
    """capsys is not a terminal: no bar, each finished trial one unwrapped line with its
    count; a budget stop is said once."""
    spec = _study_spec(tmp_path, budget={"duration_s": 0.001}, models=[TINY, "frugal_mlp"])
    out = tmp_path / "out"
    assert main(["study", "run", str(spec), "-o", str(out), "--no-report"]) == 0
    err = capsys.readouterr().err
    done = [line for line in err.splitlines() if "done " in line]
    assert len(done) == 1 and done[0].startswith("[1/4] done ")
    assert "accuracy" in done[0] and " J " in done[0]  # the whole record on its one line
    assert "━" not in err  # no progress bar drawn into a log
    # said once, whichever way the budget rule puts it ("spent" once the finished trials
    # used it up, "would be exceeded" when the next trial's prediction goes over)
    assert err.count("stopped launching trials") == 1
    assert "budget of 0.001 s" in err or "would be exceeded" in err


def test_time_left_and_plain_lines() -> None:
    # 2 of 6 done in 60 s: 30 s each, 4 left -> 120 s
    assert time_left(2, 6, 60.0) == "2.0 min"
    assert time_left(0, 6, 60.0) == "?"
    assert time_left(6, 6, 60.0) == "0 s"
    assert progress_line(3, 8, "done x", "1.2 min") == "[3/8] done x (~1.2 min left)"
    assert progress_line(3, None, "done x", "?") == "done x"


def test_renamed_preset_models_are_named_once(tmp_path: Path, capsys: Any) -> None:
    spec = _study_spec(tmp_path, models=["pepr131"])
    assert main(["study", "validate", str(spec), "--no-calibrate"]) == 0
    err = capsys.readouterr().err
    renamed = [line for line in err.splitlines() if "gluon_resnet34_v1b" in line]
    assert len(renamed) == 1, renamed
    left_out = [line for line in err.splitlines() if "gluon_xception65" in line]
    assert len(left_out) == 1, left_out


def test_models_lists_the_registries(capsys: Any) -> None:
    import timm

    from frugalml.models import get_preset, list_builtin_models, list_presets

    assert main(["models"]) == 0
    out = capsys.readouterr().out
    for name in list_builtin_models():
        assert f"  {name}: " in out
    for name in list_presets():
        assert f"  {name} ({len(get_preset(name))} models)" in out
    assert main(["models", "resnet1*"]) == 0
    out = capsys.readouterr().out
    names = timm.list_models("resnet1*")
    assert names and all(f"\n  {n}\n" in out + "\n" for n in names)
    assert "frugal_cnn" not in out  # the pattern filters the built-ins too
    assert main(["models", "frugal_*"]) == 0
    out = capsys.readouterr().out
    assert [n for n in list_builtin_models() if fnmatch.fnmatch(n, "frugal_*")]
    assert "frugal_mlp: " in out
    assert main(["models", "zz_no_such_model*"]) == 2
    assert "no model name matches" in capsys.readouterr().err


def _parsers(parser: argparse.ArgumentParser, path: str = "frugalml") -> list[tuple[str, Any]]:
    found = [(path, parser)]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found += _parsers(sub, f"{path} {name}")
    return found


def test_every_help_states_its_defaults_and_every_study_subcommand_is_described() -> None:
    missing = []
    for path, parser in _parsers(build_parser()):
        assert issubclass(parser.formatter_class, HelpFormatter), path
        formatter = parser.formatter_class(prog=path)
        for action in parser._actions:
            default = action.default
            if not action.option_strings or action.help == argparse.SUPPRESS:
                continue
            if default is None or default is False or default == argparse.SUPPRESS:
                continue
            if "default" not in formatter._get_help_string(action):
                missing.append(f"{path} {action.option_strings[0]}")
        if path.startswith("frugalml study "):
            assert parser.description, path
    assert not missing, missing
    text = build_parser().parse_args(["factorial"])  # parses with its stated defaults
    assert text.out == Path("runs/factorial")


@pytest.mark.parametrize(
    "argv",
    [
        ["study", "run", "s.yaml", "-o", "X"],
        ["study", "run", "s.yaml", "--out", "X"],
        ["study", "export", "d", "-o", "X"],
        ["study", "export", "d", "--out", "X"],
        ["study", "export", "d", "--csv", "X"],
        ["report", "d", "--out", "X"],
        ["report", "d", "-o", "X"],
        ["tune", "s.yaml", "-o", "X"],
        ["factorial", "-o", "X"],
        ["pepr", "t.csv", "--performance", "a", "--resource", "b", "--out", "X"],
    ],
)
def test_outputs_take_both_o_and_out(argv: list[str]) -> None:
    args = build_parser().parse_args(argv)
    named = {k: v for k, v in vars(args).items() if v in ("X", Path("X"))}
    assert len(named) == 1, named


def test_csv_says_output_in_export_and_input_in_report() -> None:
    helps = {}
    for path, parser in _parsers(build_parser()):
        for action in parser._actions:
            if "--csv" in action.option_strings:
                helps[path] = action.help or ""
    assert "output" in helps["frugalml study export"]
    assert "input" in helps["frugalml report"]
    args = build_parser().parse_args(["report", "--from-csv", "r.csv"])
    assert args.csv == Path("r.csv")
    args = build_parser().parse_args(["profile", "frugal_cnn", "--batch-size", "8"])
    assert args.batch == 8


@pytest.mark.slow
def test_the_tuning_example_runs_tpe_past_start_up_prunes_and_a_spent_rerun_costs_nothing(
    tmp_path: Path,
) -> None:
    """examples/tune_digits.yaml as shipped (only --out set): every trial of its budget
    runs, TPE samples past its start-up trials, the median pruner stops some, and a rerun
    with the budget spent starts nothing and calibrates nothing."""
    from frugalml.tune import TuneSpec, run_tune

    spec = TuneSpec.from_yaml(ROOT / "examples" / "tune_digits.yaml")
    data = yaml.safe_load((ROOT / "examples" / "tune_digits.yaml").read_text())
    max_trials = data["budget"]["max_trials"]
    from frugalml.tune._strategies import startup_trials

    startup, _ = startup_trials(spec, max_trials)  # scaled to the budget (at most this)
    first = run_tune(spec, tmp_path / "tune")
    counts = first.counts()
    assert sum(counts.values()) == max_trials > startup
    assert counts.get("pruned", 0) >= 1 and counts.get("complete", 0) >= 1
    assert "max_trials reached" in first.stop_reason
    events: list[str] = []
    again = run_tune(spec, tmp_path / "tune", on_event=lambda e: events.append(e.kind))
    assert "calibrated" not in events
    assert again.overhead_energy_j == pytest.approx(first.overhead_energy_j)
    assert again.trial_energy_j == pytest.approx(first.trial_energy_j)
    assert sum(again.counts().values()) == max_trials


@pytest.mark.slow  # two tuning runs
def test_tune_says_its_budget_stop_once(tmp_path: Path, capsys: Any) -> None:
    spec = {
        "name": "t",
        "dataset": "digits",
        "fraction": 0.2,
        "model": TINY,
        "training": {"epochs": 1, "batch_size": 32},
        "search_space": {"lr": {"type": "float", "low": 1e-3, "high": 3e-2, "log": True}},
        "strategy": "random",
        "budget": {"max_trials": 1},
    }
    path = tmp_path / "tune.yaml"
    path.write_text(yaml.safe_dump(spec))
    argv = ["tune", str(path), "-o", str(tmp_path / "out"), "--threads", "1"]
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert (captured.out + captured.err).count("max_trials reached") == 1
    assert main(argv) == 0  # spent: starts nothing, says so once
    captured = capsys.readouterr()
    assert (captured.out + captured.err).count("max_trials reached") == 1
    assert "calibration:" not in captured.err

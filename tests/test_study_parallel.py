"""A study spec's ``parallel:`` section: checked with one-line errors, and a trial trained
by 2 spawned gloo ranks inside the one trial runner (run_metered_trial) with a complete row:
nproc, shares, which rank read what, the host counted once."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from frugalml.cli import main
from frugalml.study import StudySpec, load_results
from frugalml.study._trial import TrialPlan, run_metered_trial
from study_specs import write_spec

MLP = {"name": "frugal_mlp", "args": {"hidden": 32}}
TRAINING = {"epochs": 2, "batch_size": 64, "lr": 5e-3}


def _spec(tmp_path: Path, parallel: Any, **changes: Any) -> Path:
    return write_spec(
        tmp_path,
        models=[MLP],
        fractions=[0.5],
        training=changes.pop("training", TRAINING),
        parallel=parallel,
        **changes,
    )


@pytest.mark.parametrize(
    ("parallel", "training", "message"),
    [
        ({"nproc": 0}, TRAINING, "parallel.nproc must be an integer >= 1, not 0"),
        ({"nproc": "two"}, TRAINING, "parallel.nproc must be an integer >= 1"),
        ({"nproc": 2, "shares": [3, 1, 1]}, TRAINING, "parallel.shares has 3 value(s) for 2"),
        ({"nproc": 2, "slowdown": [1]}, TRAINING, "parallel.slowdown needs 2 numbers >= 1"),
        ({"nproc": 2, "split": [3, 1]}, TRAINING, "unknown parallel option(s): split"),
        ({"nproc": 2, "backend": "mpi"}, TRAINING, "parallel.backend must be one of"),
        ([2], TRAINING, "parallel must be a mapping"),
        (
            {"nproc": 2, "shares": [9, 1]},
            {"epochs": 1, "batch_size": 4},
            "a rank would get no samples",
        ),
        (
            {"nproc": 2},
            {"epochs": 1, "bf16": True},
            "training.bf16: True is not implemented by parallel training",
        ),
    ],
)
def test_a_bad_parallel_section_is_one_line(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    parallel: Any,
    training: Any,
    message: str,
) -> None:
    code = main(["study", "validate", str(_spec(tmp_path, parallel, training=training))])
    err = capsys.readouterr().err
    assert code == 2
    assert message in err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_nccl_without_cuda_names_the_fix(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    spec = _spec(tmp_path, {"nproc": 2, "backend": "nccl"})
    assert main(["study", "validate", str(spec)]) == 2
    err = capsys.readouterr().err
    assert "parallel.backend nccl needs CUDA GPUs" in err and "backend: gloo" in err
    assert "Traceback" not in err


def test_validate_accepts_a_parallel_study(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = _spec(tmp_path, {"nproc": 2, "shares": "auto", "backend": "gloo"})
    assert main(["study", "validate", str(spec)]) == 0
    out = capsys.readouterr().out
    assert "1 trial" in out
    # the prediction (calibrated by default) says what it leaves out for ranked trials
    assert "with a parallel: section are predicted as one process" in out


def test_parallel_is_in_the_definition_only_when_given(tmp_path: Path) -> None:
    plain = StudySpec.from_yaml(write_spec(tmp_path, fractions=[1.0])).trials()[0]
    assert "parallel" not in plain.definition()  # existing trials keep their ids
    spec = StudySpec.from_yaml(_spec(tmp_path, {"nproc": 2, "shares": [3, 1]}))
    trial = spec.trials()[0]
    assert trial.definition()["parallel"]["shares"] == [0.75, 0.25]
    assert spec.to_dict()["parallel"]["nproc"] == 2
    assert trial.trial_id != StudySpec.from_yaml(_spec(tmp_path, None)).trials()[0].trial_id


@pytest.mark.slow
def test_a_parallel_trial_runs_in_two_gloo_ranks_with_a_complete_row(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    parallel = {"nproc": 2, "shares": [3, 1], "backend": "gloo", "threads": [1, 1]}
    out = tmp_path / "out"
    code = main(["study", "run", str(_spec(tmp_path, parallel)), "--out", str(out), "--no-report"])
    assert code == 0, capsys.readouterr().err
    frame = load_results(out)
    assert len(frame) == 1
    row = frame.iloc[0]
    assert row["status"] == "complete" and row["epochs"] == 2
    assert row["nproc"] == 2 and json.loads(row["shares"]) == [0.75, 0.25]
    assert row["shares_source"] == "given" and row["parallel_backend"] == "gloo"
    steps = json.loads(row["parallel_steps"])
    assert steps[0] == steps[1] > 0
    energy = json.loads(row["parallel_energy"])
    ranks = {r["rank"]: r for r in energy["ranks"]}
    assert ranks[0]["reads_host"] and not ranks[1]["reads_host"]
    assert ranks[1]["components"] == []  # the host is counted once, by local rank 0
    assert energy["energy_j"] == pytest.approx(ranks[0]["energy_j"])
    parts = row["train_energy_j"] + row["eval_energy_j"] + row["setup_energy_j"]
    assert parts == pytest.approx(row["energy_j"])
    assert row["train_energy_j"] > 0 and row["train_energy_kind"] in {"measured", "estimated"}
    # the same training as one process on the whole batch: the same test accuracy
    (tmp_path / "one").mkdir()
    single = StudySpec.from_yaml(_spec(tmp_path / "one", None))
    trial = single.trials()[0]
    alone = run_metered_trial(TrialPlan(trial.trial_id, trial.to_dict()))
    assert alone.result is not None
    assert row["accuracy"] == pytest.approx(alone.result["accuracy"], abs=1.5 / row["test_samples"])
    assert row["accuracy"] > 0.5  # it learned (the comparison is not vacuous)

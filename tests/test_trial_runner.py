"""The one trial runner, frugalml.study.run_metered_trial: real training on digits under the
real meter; its failure, interrupt and stopping policies; it writes no store."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import pytest

from frugalml.study import StudySpec
from frugalml.study._trial import BudgetStop, TrialPlan, classify_failure, run_metered_trial

TINY = {"name": "frugal_cnn", "args": {"conv_layers": 1, "width": 4}}


def _plan(epochs: int = 2, **training: Any) -> TrialPlan:
    spec = StudySpec.from_mapping(
        {
            "name": "runner",
            "datasets": ["digits"],
            "models": [TINY],
            "fractions": [0.5],
            "training": {"epochs": epochs, "batch_size": 32, **training},
        }
    )
    trial = spec.trials()[0]
    return TrialPlan(trial_id=trial.trial_id, definition=trial.to_dict())


def test_a_trial_runs_metered_and_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    seen: list[int] = []
    outcome = run_metered_trial(_plan(), on_epoch=lambda r: seen.append(int(r["epoch"])))
    assert outcome.status == "complete" and outcome.error is None
    assert seen == [0, 1, 2]  # the set-up window first, then each epoch as it ends
    assert [e["epoch"] for e in outcome.epochs] == [0, 1, 2]
    assert outcome.epochs[0]["measurement"]["name"] == "trial setup"
    row = outcome.result
    assert row is not None and row["epochs"] == 2 and row["threads"] == 1
    parts = row["train_energy_j"] + row["eval_energy_j"] + row["setup_energy_j"]
    assert parts == pytest.approx(row["energy_j"])
    assert row["setup_energy_j"] > 0 and row["concurrent_workers"] == 1
    assert list(tmp_path.iterdir()) == []  # no store, no file
    pickle.loads(pickle.dumps(outcome))  # plain data: it can travel back from a remote worker


def test_any_exception_fails_the_trial_alone_with_the_energy_spent() -> None:
    def broken(record: dict[str, Any]) -> None:
        if record["epoch"] == 1:
            raise TypeError("a caller's bug")  # the factorial used to abort on this

    outcome = run_metered_trial(_plan(), on_epoch=broken)
    assert outcome.status == "failed"
    assert outcome.error == "TypeError: a caller's bug"
    assert outcome.traceback is not None and "TypeError" in outcome.traceback
    assert outcome.result is not None and outcome.result["energy_j"] > 0
    assert [e["epoch"] for e in outcome.epochs] == [0, 1]


def test_a_bad_definition_is_a_failed_trial_with_its_message() -> None:
    plan = _plan()
    bad = TrialPlan(plan.trial_id, {**plan.definition, "model": "no_such_model"})
    outcome = run_metered_trial(bad)
    assert outcome.status == "failed" and "no_such_model" in (outcome.error or "")
    assert outcome.result is not None and outcome.result.get("accuracy") is None


def test_an_interrupt_is_given_back() -> None:
    def interrupt(record: dict[str, Any]) -> None:
        if record["epoch"] == 1:
            raise KeyboardInterrupt

    outcome = run_metered_trial(_plan(), on_epoch=interrupt)
    assert outcome.status == "interrupted" and isinstance(outcome.cause, KeyboardInterrupt)


def test_should_stop_ends_training_with_the_partial_result() -> None:
    asked: list[int] = []

    def prune(record: dict[str, Any]) -> str | None:
        asked.append(int(record["epoch"]))
        return "pruned at epoch 2" if record["epoch"] == 2 else None

    outcome = run_metered_trial(_plan(epochs=4), should_stop=prune)
    assert asked == [1, 2]  # never asked after the last epoch
    assert outcome.status == "pruned" and outcome.stop_reason == "pruned at epoch 2"
    row = outcome.result
    assert row is not None and row["epochs"] == 2 and row["epochs_planned"] == 4
    assert row["stopped_early"] is True and row["stop_reason"] == "pruned at epoch 2"
    assert row["accuracy"] is not None

    budget = run_metered_trial(_plan(epochs=3), should_stop=lambda r: BudgetStop("budget"))
    assert budget.status == "complete" and budget.stop_reason == "budget"
    assert budget.result is not None and budget.result["epochs"] == 1


def test_failures_are_classified_once() -> None:
    from frugalml.errors import ConfigError, StoreError

    assert classify_failure(KeyboardInterrupt())[:2] == ("interrupted", "interrupted")
    assert classify_failure(StoreError("disk full"))[:2] == ("interrupted", "disk full")
    assert classify_failure(ConfigError("bad", fix="x"))[:2] == ("failed", "bad (fix: x)")
    assert classify_failure(ValueError("v"))[:2] == ("failed", "ValueError: v")


def test_the_estimate_times_the_step_the_study_trains_with() -> None:
    import torch

    from frugalml.models import create_model
    from frugalml.study._estimate import _time_steps
    from frugalml.train import TrainConfig

    seen: list[tuple[bool, bool, str]] = []

    def look(module: Any, args: Any) -> None:
        x = args[0]
        layout = x.is_contiguous(memory_format=torch.channels_last)
        seen.append((layout, torch.is_autocast_enabled("cpu"), x.device.type))

    model = create_model("frugal_cnn", num_classes=3, in_chans=3, conv_layers=1, width=4)
    model.register_forward_pre_hook(look)
    training = TrainConfig(device="cpu", bf16=True, channels_last=True)
    step_s = _time_steps(model, (3, 8, 8), 3, 4, 2, training)
    assert step_s > 0
    assert seen == [(True, True, "cpu")] * 3  # warm-up + 2 timed steps, as the trials train
    seen.clear()
    model = create_model("frugal_cnn", num_classes=3, in_chans=3, conv_layers=1, width=4)
    model.register_forward_pre_hook(look)
    _time_steps(model, (3, 8, 8), 3, 4, 1, TrainConfig(device="cpu"))
    assert seen == [(False, False, "cpu")] * 2  # fp32, contiguous: the default training

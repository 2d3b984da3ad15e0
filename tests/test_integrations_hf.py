"""Hugging Face Trainer: a tiny ViT built from a config (no hub) trained on digits with the
frugalml callback; the logs carry energy and provenance, one Measurement file is written."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mlflow
import pytest
import torch
import transformers
from sklearn.datasets import load_digits

from frugalml.integrations import FrugalTrainerCallback
from frugalml.meter import Measurement, MeterConfig


def _digits(n: int) -> list[dict[str, Any]]:
    digits = load_digits()
    images = torch.tensor(digits.images[:n] / 16.0, dtype=torch.float32).unsqueeze(1)
    return [{"pixel_values": images[i], "labels": int(digits.target[i])} for i in range(n)]


def _trainer(out: Path, report_to: list[str], callbacks: list[Any] | None = None) -> Any:
    config = transformers.ViTConfig(
        image_size=8,
        patch_size=4,
        num_channels=1,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        num_labels=10,
    )
    torch.manual_seed(0)
    args = transformers.TrainingArguments(
        output_dir=str(out),
        num_train_epochs=2,
        per_device_train_batch_size=32,
        per_device_eval_batch_size=32,
        eval_strategy="epoch",
        save_strategy="no",
        report_to=report_to,  # transformers 5 reports to nothing unless told
        use_cpu=True,
        disable_tqdm=True,
        dataloader_num_workers=0,
    )
    return transformers.Trainer(
        model=transformers.ViTForImageClassification(config),
        args=args,
        train_dataset=_digits(96),
        eval_dataset=_digits(32),
        callbacks=callbacks,
    )


def test_trainer_logs_energy_per_epoch_and_evaluation(
    tmp_path: Path, meter_no_powercap: Path
) -> None:
    callback = FrugalTrainerCallback(MeterConfig(gpus="none"))
    trainer = _trainer(tmp_path / "out", [], [callback])
    trainer.train()
    history = trainer.state.log_history
    epochs = [h for h in history if "epoch_energy_j" in h]
    evals = [h for h in history if "eval_loss" in h]
    (summary,) = [h for h in history if "train_runtime" in h]
    assert len(epochs) == 2 and len(evals) == 2
    assert all(h["epoch_energy_j"] > 0 and h["energy_provenance"] == "estimated" for h in epochs)
    assert all(h["eval_energy_j"] > 0 for h in evals)
    assert summary["train_energy_j"] > 0 and "estimate" in summary["energy_source"]
    names = [m.name for m in callback.measurements]
    assert names.count("evaluation") == 2 and names[-1] == "train"
    assert {"epoch 0", "epoch 1"} <= set(names)
    files = list((tmp_path / "out").rglob("frugalml_measurement*.json"))
    assert files == [tmp_path / "out" / "frugalml_measurement.json"]
    total = Measurement.from_json(files[0].read_text())
    assert total == callback.total and total.energy_j == summary["train_energy_j"]
    # the epochs and evaluations happen inside the training window, never more than it
    parts = sum(h["epoch_energy_j"] for h in epochs) + sum(h["eval_energy_j"] for h in evals)
    assert parts <= total.energy_j + 1e-9


def test_reporters_see_the_fields_when_added_before_them(
    tmp_path: Path, meter_no_powercap: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", (tmp_path / "mlruns").as_uri())
    monkeypatch.setenv("HF_MLFLOW_LOG_ARTIFACTS", "0")
    trainer = _trainer(tmp_path / "out", ["mlflow"])
    callback = FrugalTrainerCallback(MeterConfig(gpus="none")).add_to(trainer)
    names = [type(c).__name__ for c in trainer.callback_handler.callbacks]
    assert names.index("FrugalTrainerCallback") < names.index("MLflowCallback")
    trainer.train()
    mlflow.set_tracking_uri((tmp_path / "mlruns").as_uri())
    (run,) = mlflow.search_runs(search_all_experiments=True, output_format="list")
    assert run.data.metrics["train_energy_j"] == pytest.approx(callback.total.energy_j)
    assert run.data.metrics["epoch_energy_j"] > 0
    mlflow.set_tracking_uri(None)

"""The training loop: both data paths agree, seeds repeat, metrics are right, windows exist."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from frugalml.data import ImageDataset, Split
from frugalml.errors import ConfigError
from frugalml.train import (
    TrainConfig,
    TrainingDiverged,
    classification_metrics,
    train,
)


def _blobs(n: int, seed: int, classes: int = 3, size: int = 6) -> Split:
    """Images whose mean brightness depends on the class: learnable in a few epochs."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % classes
    base = (labels[:, None, None, None] * 80 + 20).astype(np.float64)
    images = np.clip(base + rng.normal(0, 25, size=(n, 1, size, size)), 0, 255).astype(np.uint8)
    return Split(images=images, labels=labels.astype(np.int64))


@pytest.fixture
def dataset() -> ImageDataset:
    return ImageDataset(
        name="blobs",
        num_classes=3,
        channels=1,
        image_size=(6, 6),
        class_names=("a", "b", "c"),
        train=_blobs(90, 0),
        val=_blobs(30, 1),
        test=_blobs(30, 2),
    )


def _model(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3, padding=1),
        torch.nn.BatchNorm2d(4),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(4, 3),
    )


def test_tensor_and_loader_paths_give_the_same_training(dataset: ImageDataset) -> None:
    config = TrainConfig(epochs=3, batch_size=16, lr=1e-2, device="cpu")
    fast = train(_model(), dataset, config.replace(data_path="tensors"))
    plain = train(_model(), dataset, config.replace(data_path="loader"))
    assert fast.data_path == "tensors" and plain.data_path == "loader"
    assert [e.train_loss for e in fast.epochs] == [e.train_loss for e in plain.epochs]
    assert fast.final_test == plain.final_test


def test_same_seed_repeats_and_another_seed_differs(dataset: ImageDataset) -> None:
    config = TrainConfig(epochs=2, batch_size=16, lr=1e-2, device="cpu")
    a = train(_model(), dataset, config)
    b = train(_model(), dataset, config)
    c = train(_model(), dataset, config.replace(seed=1))
    assert [e.train_loss for e in a.epochs] == [e.train_loss for e in b.epochs]
    assert [e.train_loss for e in a.epochs] != [e.train_loss for e in c.epochs]


def test_training_learns_and_reports_every_epoch(dataset: ImageDataset) -> None:
    result = train(_model(), dataset, TrainConfig(epochs=8, batch_size=16, lr=2e-2, device="cpu"))
    assert len(result.epochs) == 8
    assert all(e.val and e.test for e in result.epochs)
    assert result.epochs[-1].train_loss < result.epochs[0].train_loss
    assert result.accuracy > 0.8  # chance is 1/3
    assert result.final_test == result.epochs[-1].test
    best = max(result.epochs, key=lambda e: (e.val["accuracy"], -e.epoch))
    assert result.best_val_epoch == best.epoch and result.best_val_test == best.test


def test_a_final_batch_of_one_is_dropped(dataset: ImageDataset) -> None:
    # 90 samples at batch 89 leave one sample over: BatchNorm cannot train on it.
    result = train(_model(), dataset, TrainConfig(epochs=1, batch_size=89, device="cpu"))
    assert result.epochs[0].train_samples == 89


def test_metrics_match_hand_computed_values() -> None:
    labels = np.array([0, 0, 1, 1, 2, 2])
    probabilities = np.array(
        [
            [0.8, 0.1, 0.1],
            [0.4, 0.5, 0.1],
            [0.1, 0.8, 0.1],
            [0.2, 0.7, 0.1],
            [0.1, 0.1, 0.8],
            [0.5, 0.2, 0.3],
        ]
    )
    m = classification_metrics(labels, probabilities, 3)
    # predictions 0,1,1,1,2,0: 4 of 6 right; recalls 1/2, 1, 1/2 -> balanced 2/3
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["balanced_accuracy"] == pytest.approx(2 / 3)
    # F1 per class: c0 p=1/2 r=1/2 -> 1/2; c1 p=2/3 r=1 -> 0.8; c2 p=1 r=1/2 -> 2/3
    assert m["f1"] == pytest.approx((0.5 + 0.8 + 2 / 3) / 3)
    assert 0.5 < m["auc"] <= 1.0


def test_auc_is_nan_not_an_error_when_a_class_is_missing() -> None:
    m = classification_metrics(
        np.array([0, 0, 1]), np.array([[0.9, 0.1, 0], [0.6, 0.4, 0], [0.2, 0.8, 0]]), 3
    )
    assert math.isnan(m["auc"]) and m["accuracy"] == 1.0


def test_divergence_is_an_error_not_a_result(dataset: ImageDataset) -> None:
    bad = ImageDataset(
        name="blobs",
        num_classes=3,
        channels=1,
        image_size=(6, 6),
        class_names=("a", "b", "c"),
        train=dataset.train,
        val=dataset.val,
        test=dataset.test,
    )
    model = _model()
    with torch.no_grad():
        model[-1].weight.fill_(float("nan"))
    with pytest.raises(TrainingDiverged, match=r"NaN|nan"):
        train(model, bad, TrainConfig(epochs=1, device="cpu"))


@pytest.mark.parametrize(
    "changes",
    [{"epochs": 0}, {"batch_size": -1}, {"lr": 0}, {"betas": (0.9, 1.5)}, {"device": "tpu"}],
)
def test_bad_training_options_are_named(changes: dict[str, object]) -> None:
    with pytest.raises(ConfigError) as info:
        TrainConfig(**changes)  # type: ignore[arg-type]
    assert next(iter(changes)) in str(info.value)


def test_unknown_training_key_is_named() -> None:
    with pytest.raises(ConfigError, match="epoch_count"):
        TrainConfig.from_mapping({"epoch_count": 3})


def test_meter_gets_a_window_per_epoch_with_train_and_eval(dataset: ImageDataset) -> None:
    from frugalml.meter import Meter

    with Meter() as meter:
        result = train(
            _model(), dataset, TrainConfig(epochs=2, batch_size=16, device="cpu"), meter=meter
        )
    names = [m.name for m in meter.measurements]
    for epoch in (1, 2):
        assert f"epoch {epoch}" in names
        assert f"epoch {epoch} train" in names and f"epoch {epoch} eval" in names
    for record in result.epochs:
        assert record.measurement is not None and record.train_measurement is not None
        assert record.measurement.energy_j >= record.train_measurement.energy_j > 0
        assert record.measurement.provenance in ("measured", "estimated", "mixed")


def test_budget_guard_stops_training_early(dataset: ImageDataset) -> None:
    from frugalml.meter import Budget, BudgetGuard, Meter

    guard = BudgetGuard(Budget(duration_s=1e-6), planned_epochs=5)
    with Meter() as meter:
        result = train(
            _model(),
            dataset,
            TrainConfig(epochs=5, batch_size=16, device="cpu"),
            meter=meter,
            guard=guard,
        )
    assert result.stopped_early and result.stop_reason
    assert len(result.epochs) < 5

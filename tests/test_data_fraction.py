"""Stratified training fractions and stratified train/val/test splits."""

from __future__ import annotations

import math

import numpy as np
import pytest

from frugalml.data import (
    ImageDataset,
    Split,
    load_dataset,
    stratified_fraction_indices,
    stratified_split_indices,
)
from frugalml.errors import ConfigError


@pytest.fixture(scope="module")
def digits() -> ImageDataset:
    return load_dataset("digits")


def test_fraction_is_stratified(digits: ImageDataset) -> None:
    small = digits.with_fraction(0.1, seed=0)
    full_counts = digits.train.class_counts(10)
    small_counts = small.train.class_counts(10)
    for cls in range(10):
        assert small_counts[cls] == max(1, math.floor(0.1 * full_counts[cls] + 0.5))
    assert small.train_fraction == pytest.approx(0.1)
    assert small.train.images.shape[1:] == digits.train.images.shape[1:]


@pytest.mark.parametrize("fraction", [0.01, 0.001, 1e-9])
def test_every_class_kept_at_tiny_fractions(digits: ImageDataset, fraction: float) -> None:
    small = digits.with_fraction(fraction, seed=3)
    counts = small.train.class_counts(10)
    assert (counts >= 1).all()
    assert len(small.train) < len(digits.train) // 4


def test_val_and_test_untouched(digits: ImageDataset) -> None:
    small = digits.with_fraction(0.2, seed=0)
    assert small.val is digits.val
    assert small.test is digits.test


def test_fraction_subset_is_part_of_train(digits: ImageDataset) -> None:
    indices = stratified_fraction_indices(digits.train.labels, 0.3, seed=5)
    assert indices.dtype == np.int64
    assert (np.diff(indices) > 0).all()  # sorted, no repeats
    assert indices.min() >= 0 and indices.max() < len(digits.train)
    small = digits.with_fraction(0.3, seed=5)
    np.testing.assert_array_equal(small.train.images, digits.train.images[indices])
    np.testing.assert_array_equal(small.train.labels, digits.train.labels[indices])


def test_seeded_and_deterministic(digits: ImageDataset) -> None:
    a = digits.with_fraction(0.1, seed=7)
    b = digits.with_fraction(0.1, seed=7)
    c = digits.with_fraction(0.1, seed=8)
    np.testing.assert_array_equal(a.train.images, b.train.images)
    np.testing.assert_array_equal(a.train.labels, b.train.labels)
    assert not np.array_equal(a.train.images, c.train.images)


def test_fraction_one_keeps_everything(digits: ImageDataset) -> None:
    assert digits.with_fraction(1.0, seed=0) is digits
    indices = stratified_fraction_indices(digits.train.labels, 1, seed=0)
    np.testing.assert_array_equal(indices, np.arange(len(digits.train)))


def test_fractions_compose(digits: ImageDataset) -> None:
    twice = digits.with_fraction(0.5, seed=0).with_fraction(0.5, seed=0)
    assert twice.train_fraction == pytest.approx(0.25)


@pytest.mark.parametrize("bad", [0, 0.0, 1.5, -1, float("nan"), True, "0.5", None])
def test_bad_fraction_rejected(digits: ImageDataset, bad: object) -> None:
    with pytest.raises(ConfigError, match="fraction"):
        digits.with_fraction(bad, seed=0)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="fraction"):
        stratified_fraction_indices(digits.train.labels, bad, seed=0)  # type: ignore[arg-type]


def test_bad_seed_rejected(digits: ImageDataset) -> None:
    with pytest.raises(ConfigError, match="seed"):
        digits.with_fraction(0.5, seed=-1)


def test_singleton_class_survives_imbalance() -> None:
    labels = np.array([0] * 500 + [1] * 3 + [2])
    indices = stratified_fraction_indices(labels, 0.05, seed=0)
    counts = np.bincount(labels[indices], minlength=3)
    assert counts.tolist() == [25, 1, 1]


def test_split_indices_partition_and_stratify() -> None:
    labels = np.repeat(np.arange(4), [100, 50, 20, 10])
    train, val, test = stratified_split_indices(labels, (0.7, 0.1, 0.2), seed=0)
    joined = np.concatenate([train, val, test])
    np.testing.assert_array_equal(np.sort(joined), np.arange(labels.size))
    assert np.bincount(labels[test], minlength=4).tolist() == [20, 10, 4, 2]
    assert np.bincount(labels[val], minlength=4).tolist() == [10, 5, 2, 1]
    again = stratified_split_indices(labels, (0.7, 0.1, 0.2), seed=0)
    np.testing.assert_array_equal(again[2], test)


def test_split_indices_keep_a_training_sample_per_class() -> None:
    labels = np.array([0] * 20 + [1, 2, 2])
    train, _, _ = stratified_split_indices(labels, (0.7, 0.1, 0.2), seed=1)
    assert set(np.unique(labels[train]).tolist()) == {0, 1, 2}


@pytest.mark.parametrize("fractions", [(0.5, 0.5, 0.5), (0.8, -0.1, 0.3), (0.7, 0.3)])
def test_split_indices_reject_bad_fractions(fractions: tuple[float, ...]) -> None:
    with pytest.raises(ConfigError, match="fractions"):
        stratified_split_indices(np.zeros(10, dtype=np.int64), fractions, seed=0)  # type: ignore[arg-type]


def test_fraction_works_on_a_hand_made_dataset() -> None:
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), 40)
    images = rng.integers(0, 256, size=(120, 3, 4, 4), dtype=np.uint8)
    split = Split(images, labels)
    dataset = ImageDataset(
        name="toy",
        num_classes=3,
        channels=3,
        image_size=(4, 4),
        class_names=("a", "b", "c"),
        train=split,
        val=split,
        test=split,
    )
    assert dataset.with_fraction(0.25, seed=0).train.class_counts(3).tolist() == [10, 10, 10]

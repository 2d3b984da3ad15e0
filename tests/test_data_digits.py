"""The ``digits`` dataset, through the real scikit-learn data."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest
from sklearn.datasets import load_digits

from frugalml.data import load_dataset


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def test_shapes_dtypes_and_metadata(digits) -> None:
    assert digits.name == "digits"
    assert digits.num_classes == 10
    assert digits.channels == 1
    assert digits.image_size == (8, 8)
    assert digits.input_shape == (1, 8, 8)
    assert digits.class_names == tuple(str(d) for d in range(10))
    assert digits.source == "scikit-learn load_digits"
    assert "split_seed=0" in digits.split_method
    total = 0
    for split in (digits.train, digits.val, digits.test):
        assert split.images.dtype == np.uint8
        assert split.labels.dtype == np.int64
        assert split.images.shape[1:] == (1, 8, 8)
        assert split.images.shape[0] == split.labels.shape[0]
        total += len(split)
    assert total == 1797
    assert len(digits.train) > 5 * len(digits.val)
    assert len(digits.test) > len(digits.val)


def test_values_rescaled_from_0_16_to_0_255(digits) -> None:
    raw = load_digits()
    expected = np.floor(raw.images * 255.0 / 16.0 + 0.5).astype(np.uint8)
    got = np.concatenate([digits.train.images, digits.val.images, digits.test.images])[:, 0]
    assert got.min() == 0 and got.max() == 255
    # The three splits together hold exactly the original images, none lost or duplicated.
    assert Counter(img.tobytes() for img in got) == Counter(img.tobytes() for img in expected)
    labels = np.concatenate([digits.train.labels, digits.val.labels, digits.test.labels])
    assert Counter(labels.tolist()) == Counter(raw.target.tolist())


def test_split_is_stratified(digits) -> None:
    per_class = np.bincount(load_digits().target, minlength=10)
    test_counts = digits.test.class_counts(10)
    val_counts = digits.val.class_counts(10)
    for cls in range(10):
        assert test_counts[cls] == math.floor(0.2 * per_class[cls] + 0.5)
        assert val_counts[cls] == math.floor(0.1 * per_class[cls] + 0.5)
    assert (digits.train.class_counts(10) > 100).all()


def test_same_seed_same_split_other_seed_other_split(digits) -> None:
    again = load_dataset("digits", split_seed=0)
    other = load_dataset("digits", split_seed=1)
    np.testing.assert_array_equal(again.train.images, digits.train.images)
    np.testing.assert_array_equal(again.test.labels, digits.test.labels)
    assert len(other.test) == len(digits.test)  # same stratified sizes...
    assert not np.array_equal(other.test.images, digits.test.images)  # ...other samples


def test_image_size_resizes_for_timm_models() -> None:
    big = load_dataset("digits", image_size=32)
    assert big.image_size == (32, 32)
    assert big.train.images.shape[1:] == (1, 32, 32)
    assert big.train.images.dtype == np.uint8


def test_summary_counts(digits) -> None:
    summary = digits.summary()
    assert summary["num_classes"] == 10
    assert summary["image_size"] == [8, 8]
    for name, split in digits.splits().items():
        assert summary["splits"][name]["n"] == len(split)
        assert sum(summary["splits"][name]["per_class"].values()) == len(split)

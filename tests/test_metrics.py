"""classification_metrics against scikit-learn's own functions, the reference it replaces."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from frugalml.train import classification_metrics
from frugalml.train._metrics import sklearn_reference_metrics as reference


def softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def assert_same(got: dict[str, float], want: dict[str, float]) -> None:
    for name, value in want.items():
        if math.isnan(value):
            assert math.isnan(got[name]), (name, got[name])
        else:
            assert got[name] == pytest.approx(value, abs=1e-12), name


@pytest.mark.parametrize("seed", range(40))
def test_equals_sklearn_on_random_splits(seed: int) -> None:
    rng = np.random.default_rng(seed)
    k = int(rng.integers(2, 12))
    n = int(rng.integers(1, 400))
    labels = rng.integers(0, k, n)
    logits = rng.normal(size=(n, k)) + 2.0 * np.eye(k)[labels] * rng.uniform(0, 2)
    probabilities = softmax(logits)
    if seed % 3 == 0:  # coarse scores: many ties, within and across classes
        probabilities = softmax(np.round(logits))
        probabilities = np.round(probabilities, 1)
        probabilities /= probabilities.sum(axis=1, keepdims=True)
    if seed % 5 == 0 and k > 2:  # a class nobody has: AUC undefined, F1 0 for it
        labels = np.where(labels == k - 1, 0, labels)
    got = classification_metrics(labels, probabilities, k)
    assert_same(got, reference(labels, probabilities, k))


def test_equals_sklearn_where_auc_is_undefined() -> None:
    labels = np.array([0, 1, 2, 1])
    good = softmax(np.eye(3)[labels] * 3.0)
    cases = {
        "NaN score": np.where(np.arange(12).reshape(4, 3) == 4, np.nan, good),
        "rows not summing to 1": good * 1.5,
        "one class only": good,
    }
    for name, probabilities in cases.items():
        lab = np.zeros(4, np.int64) if name == "one class only" else labels
        got = classification_metrics(lab, probabilities, 3)
        want = reference(lab, probabilities, 3)
        assert math.isnan(got["auc"]) and math.isnan(want["auc"]), name
        assert_same(got, want)


def test_binary_auc_with_ties_is_the_mann_whitney_statistic() -> None:
    # positives scored 0.9, 0.5, 0.5; negatives 0.5, 0.1: pairs won 2 + 0.5 + 0.5 + 1 + 1 of 6
    labels = np.array([1, 1, 1, 0, 0])
    p1 = np.array([0.9, 0.5, 0.5, 0.5, 0.1])
    probabilities = np.stack([1 - p1, p1], axis=1)
    m = classification_metrics(labels, probabilities, 2)
    assert m["auc"] == pytest.approx(5 / 6)
    assert m["auc"] == pytest.approx(roc_auc_score(labels, p1))


def test_a_label_outside_the_classes_is_no_auc() -> None:
    probabilities = softmax(np.eye(3)[[0, 1, 2, 0]])
    m = classification_metrics(np.array([0, 1, 2, 5]), probabilities, 3)
    assert math.isnan(m["auc"]) and m["accuracy"] == pytest.approx(0.75)


def test_a_class_neither_present_nor_predicted_counts_as_f1_zero() -> None:
    labels = np.array([0, 1, 2, 1, 0])
    probabilities = softmax(np.eye(4)[labels] * 3.0 - 9.0 * np.eye(4)[[3] * 5])
    got = classification_metrics(labels, probabilities, 4)
    assert got["f1"] == pytest.approx(3 / 4)  # three perfect classes and the empty one
    assert_same(got, reference(labels, probabilities, 4))

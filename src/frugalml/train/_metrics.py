"""Classification metrics of the PePR protocol: accuracy, balanced accuracy, macro AUC, macro F1.

Computed with numpy from the confusion counts and the ranks of the scores. They are the
figures scikit-learn's ``balanced_accuracy_score``, ``f1_score(average="macro",
zero_division=0)`` and ``roc_auc_score(multi_class="ovr", average="macro")`` give (the
tests hold them to it on random and tied cases). scikit-learn's own functions validate
their arguments on every call: about 14 CPU ms for a 179-image split on this project's
machine, more than the forward pass of a small model over it, paid after every epoch for
every split. A 4-epoch digits trial of the tuning example took 0.76x the energy with these
(``benchmarks/bench_metrics.py``).
"""

from __future__ import annotations

import math
import warnings

import numpy as np

METRIC_NAMES: tuple[str, ...] = ("accuracy", "balanced_accuracy", "auc", "f1")


def classification_metrics(
    labels: np.ndarray, probabilities: np.ndarray, num_classes: int
) -> dict[str, float]:
    """Metrics of predicted class ``probabilities`` (N x K) against integer ``labels`` (N,).

    ``auc`` is the macro one-vs-rest ROC AUC (the positive-class AUC for two classes); it is
    NaN when the labels do not contain every class, since one-vs-rest AUC is undefined for a
    class without positives, and NaN when a label lies outside the K classes, a score is not
    finite, or (for more than two classes) a row of probabilities does not sum to 1.
    """
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    probabilities = np.asarray(probabilities, dtype=np.float64)
    if labels.size == 0:
        return dict.fromkeys(METRIC_NAMES, math.nan)
    predictions = probabilities.argmax(axis=1)
    accuracy = float((predictions == labels).mean())
    return {
        "accuracy": accuracy,
        "balanced_accuracy": _balanced_accuracy(labels, predictions),
        "auc": _macro_auc(labels, probabilities, num_classes),
        "f1": _macro_f1(labels, predictions, num_classes),
    }


def _balanced_accuracy(labels: np.ndarray, predictions: np.ndarray) -> float:
    """The mean recall over the classes present in ``labels``."""
    classes, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    hits = np.bincount(inverse, weights=(predictions == labels), minlength=classes.size)
    return float(np.mean(hits / counts))


def _macro_f1(labels: np.ndarray, predictions: np.ndarray, num_classes: int) -> float:
    """The mean over classes ``0..num_classes-1`` of ``2 tp / (2 tp + fp + fn)``, 0 for a class
    neither present nor predicted (scikit-learn's ``zero_division=0``)."""
    if num_classes < 1:
        return math.nan
    inside = (labels >= 0) & (labels < num_classes)
    predicted_inside = (predictions >= 0) & (predictions < num_classes)
    tp = np.bincount(labels[inside & (predictions == labels)], minlength=num_classes)
    true_count = np.bincount(labels[inside], minlength=num_classes)
    predicted_count = np.bincount(predictions[predicted_inside], minlength=num_classes)
    denominator = (true_count + predicted_count)[:num_classes].astype(np.float64)  # 2tp+fp+fn
    hits = 2.0 * tp[:num_classes]
    f1 = np.divide(hits, denominator, out=np.zeros(num_classes), where=denominator > 0)
    return float(f1.mean())


def _macro_auc(labels: np.ndarray, probabilities: np.ndarray, num_classes: int) -> float:
    """Macro one-vs-rest ROC AUC (the positive class's AUC for two classes), NaN where it is
    undefined (see :func:`classification_metrics`)."""
    if probabilities.ndim != 2 or probabilities.shape[1] != num_classes or num_classes < 2:
        return math.nan
    if not np.isfinite(probabilities).all():
        return math.nan
    if labels.min() < 0 or labels.max() >= num_classes:
        return math.nan
    if num_classes == 2:
        return _binary_auc(labels == 1, probabilities[:, 1])
    if not np.allclose(1.0, probabilities.sum(axis=1)):
        return math.nan
    scores = [_binary_auc(labels == k, probabilities[:, k]) for k in range(num_classes)]
    return math.nan if any(math.isnan(s) for s in scores) else float(np.mean(scores))


def _binary_auc(positive: np.ndarray, scores: np.ndarray) -> float:
    """ROC AUC of ``scores`` for the ``positive`` mask: the Mann-Whitney statistic with tied
    scores given their mean rank, over positives x negatives (NaN without both)."""
    n_pos = int(positive.sum())
    n_neg = positive.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return math.nan
    return float((_mean_ranks(scores)[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _mean_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks of ``values``, ties sharing the mean of their ranks."""
    order = np.argsort(values, kind="mergesort")
    ordered = values[order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    ends = np.r_[starts[1:], ordered.size]  # one past each run of ties
    run_rank = (starts + ends + 1) / 2.0  # mean of the 1-based ranks starts+1 .. ends
    ranks = np.empty(values.size, dtype=np.float64)
    ranks[order] = np.repeat(run_rank, ends - starts)
    return ranks


def sklearn_reference_metrics(
    labels: np.ndarray, probabilities: np.ndarray, num_classes: int
) -> dict[str, float]:
    """The same metrics from scikit-learn's functions (the computation
    :func:`classification_metrics` replaced): the reference its tests and
    ``benchmarks/bench_metrics.py`` hold it to."""
    from sklearn.metrics import balanced_accuracy_score, f1_score, roc_auc_score

    labels = np.asarray(labels, dtype=np.int64)
    probabilities = np.asarray(probabilities, dtype=np.float64)
    if labels.size == 0:
        return dict.fromkeys(METRIC_NAMES, math.nan)
    predictions = probabilities.argmax(axis=1)
    ids = list(range(num_classes))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = {
            "accuracy": float((predictions == labels).mean()),
            "balanced_accuracy": float(balanced_accuracy_score(labels, predictions)),
            "f1": float(
                f1_score(labels, predictions, labels=ids, average="macro", zero_division=0)
            ),
        }
        try:
            if num_classes == 2:
                auc = roc_auc_score(labels, probabilities[:, 1])
            else:
                auc = roc_auc_score(
                    labels, probabilities, multi_class="ovr", average="macro", labels=ids
                )
            out["auc"] = float(auc)
        except ValueError:
            out["auc"] = math.nan
    return {name: out[name] for name in METRIC_NAMES}

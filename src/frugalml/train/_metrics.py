"""Classification metrics of the PePR protocol: accuracy, balanced accuracy, macro AUC, macro F1."""

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
    class without positives.
    """
    from sklearn.metrics import balanced_accuracy_score, f1_score, roc_auc_score

    labels = np.asarray(labels, dtype=np.int64)
    probabilities = np.asarray(probabilities, dtype=np.float64)
    if labels.size == 0:
        return dict.fromkeys(METRIC_NAMES, math.nan)
    predictions = probabilities.argmax(axis=1)
    class_ids = list(range(num_classes))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        accuracy = float((predictions == labels).mean())
        balanced = float(balanced_accuracy_score(labels, predictions))
        f1 = float(
            f1_score(labels, predictions, labels=class_ids, average="macro", zero_division=0)
        )
        try:
            if num_classes == 2:
                auc = float(roc_auc_score(labels, probabilities[:, 1]))
            else:
                auc = float(
                    roc_auc_score(
                        labels, probabilities, multi_class="ovr", average="macro", labels=class_ids
                    )
                )
        except ValueError:
            auc = math.nan
    return {"accuracy": accuracy, "balanced_accuracy": balanced, "auc": auc, "f1": f1}

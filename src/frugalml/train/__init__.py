"""One metered training loop.

- :mod:`._config`: :class:`TrainConfig`, the PePR paper's protocol by default.
- :mod:`._loop`: :func:`train`, a window per epoch (train and eval nested), two data paths
  (tensors on the device, or a DataLoader) that draw the same batches; the one threads
  rule (:data:`DEFAULT_THREADS`, :func:`apply_threads`, :func:`using_threads`).
- :mod:`._metrics`: accuracy, balanced accuracy, macro one-vs-rest AUC, macro F1.
"""

from __future__ import annotations

from frugalml.train._config import TrainConfig
from frugalml.train._loop import (
    DEFAULT_THREADS,
    EpochRecord,
    TrainingDiverged,
    TrainResult,
    apply_threads,
    check_threads,
    evaluate,
    resolve_device,
    train,
    using_threads,
)
from frugalml.train._metrics import METRIC_NAMES, classification_metrics

__all__ = [
    "DEFAULT_THREADS",
    "METRIC_NAMES",
    "EpochRecord",
    "TrainConfig",
    "TrainResult",
    "TrainingDiverged",
    "apply_threads",
    "check_threads",
    "classification_metrics",
    "evaluate",
    "resolve_device",
    "train",
    "using_threads",
]

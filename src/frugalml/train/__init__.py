"""One metered training loop.

- :mod:`._config`: :class:`TrainConfig`, the PePR paper's protocol by default.
- :mod:`._loop`: :func:`train`, a window per epoch (train and eval nested), two data paths
  (tensors on the device, or a DataLoader) that draw the same batches.
- :mod:`._metrics`: accuracy, balanced accuracy, macro one-vs-rest AUC, macro F1.
"""

from __future__ import annotations

from frugalml.train._config import TrainConfig
from frugalml.train._loop import (
    EpochRecord,
    TrainingDiverged,
    TrainResult,
    evaluate,
    resolve_device,
    train,
)
from frugalml.train._metrics import METRIC_NAMES, classification_metrics

__all__ = [
    "METRIC_NAMES",
    "EpochRecord",
    "TrainConfig",
    "TrainResult",
    "TrainingDiverged",
    "classification_metrics",
    "evaluate",
    "resolve_device",
    "train",
]

"""``digits``: scikit-learn's bundled 8 x 8 handwritten digits, offline, the default dataset.

1,797 grayscale images of the digits 0-9 with 4-bit intensities (0..16), rescaled here to
uint8 0..255 and split 70/10/20 (stratified, seeded): small enough to train on a laptop CPU
in seconds, which makes it the dataset for tests, examples and smoke runs.
"""

from __future__ import annotations

import logging

import numpy as np

from frugalml.data._dataset import ImageDataset, Split
from frugalml.data._split import DEFAULT_SPLIT_FRACTIONS, stratified_split_indices
from frugalml.errors import DataError

__all__ = ["DIGITS_SOURCE", "load_digits_dataset"]

logger = logging.getLogger(__name__)

DIGITS_SOURCE = "scikit-learn load_digits"

#: The digits' intensities are 4-bit: 0..16.
_DIGITS_MAX_VALUE = 16


def load_digits_dataset(*, name: str = "digits", split_seed: int = 0) -> ImageDataset:
    """Load scikit-learn's digits as a 1-channel, 10-class, 8 x 8 :class:`ImageDataset`.

    Args:
        name: the name to record on the dataset.
        split_seed: seed of the stratified 70/10/20 train/val/test split.

    Raises:
        DataError: scikit-learn cannot be imported or returns unexpected data.
    """
    try:
        from sklearn.datasets import load_digits
    except ImportError as exc:  # a core dependency, but say what to do if it is broken
        raise DataError(
            "the digits dataset needs scikit-learn, which cannot be imported",
            fix="pip install scikit-learn",
        ) from exc

    bunch = load_digits()
    raw = np.asarray(bunch.images, dtype=np.float64)
    targets = np.asarray(bunch.target)
    if raw.ndim != 3 or raw.shape[0] != targets.shape[0]:
        raise DataError(f"scikit-learn load_digits returned unexpected shapes {raw.shape}")
    if raw.min() < 0 or raw.max() > _DIGITS_MAX_VALUE:
        raise DataError(
            f"scikit-learn load_digits values span {raw.min()}..{raw.max()}, expected 0..16"
        )
    images = np.floor(raw * (255.0 / _DIGITS_MAX_VALUE) + 0.5).astype(np.uint8)[:, None, :, :]
    labels = targets.astype(np.int64)
    train_idx, val_idx, test_idx = stratified_split_indices(
        labels, DEFAULT_SPLIT_FRACTIONS, split_seed
    )
    shares = "/".join(f"{round(100 * f)}" for f in DEFAULT_SPLIT_FRACTIONS)
    dataset = ImageDataset(
        name=name,
        num_classes=10,
        channels=1,
        image_size=(int(raw.shape[1]), int(raw.shape[2])),
        class_names=tuple(str(d) for d in range(10)),
        train=Split(images[train_idx], labels[train_idx]),
        val=Split(images[val_idx], labels[val_idx]),
        test=Split(images[test_idx], labels[test_idx]),
        source=DIGITS_SOURCE,
        split_method=f"stratified {shares} train/val/test split, split_seed={split_seed}",
    )
    logger.debug(
        "loaded digits: %d/%d/%d train/val/test",
        len(dataset.train),
        len(dataset.val),
        len(dataset.test),
    )
    return dataset

"""The in-memory dataset every loader returns: :class:`Split` and :class:`ImageDataset`.

Images are uint8 arrays laid out N x C x H x W (the layout torch models take), labels int64
class indices. Both classes are frozen; the transforms (:meth:`ImageDataset.with_fraction`,
:meth:`ImageDataset.resized`, :meth:`ImageDataset.with_channels`) return new datasets.
"""

from __future__ import annotations

import dataclasses
import logging
import numbers
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from frugalml.data._split import check_fraction, stratified_fraction_indices
from frugalml.errors import ConfigError, DataError

__all__ = ["ImageDataset", "Split", "check_split_counts", "resize_images"]

logger = logging.getLogger(__name__)

SPLIT_NAMES: tuple[str, str, str] = ("train", "val", "test")

#: Images per class a class-per-folder tree needs so a 70/10/20 split gives every class a
#: validation and a test image (5 x 0.1 rounds up to 1).
MIN_IMAGES_PER_CLASS = 5


def check_split_counts(
    name: str, class_names: tuple[str, ...], counts: dict[str, NDArray[np.int64]]
) -> None:
    """Refuse splits no study can learn from or score, before any training.

    ``counts`` maps ``train``/``val``/``test`` to the number of samples of each class. A
    classifier needs two classes and the training split two of them present; the test split
    must not be empty (a trial's accuracy would be undefined); an empty validation split
    only draws a warning (the trainer then reports no best epoch). Shared by
    :meth:`ImageDataset.check_usable` (at load time) and the cheap checks of a spec's
    datasets (at validate time).

    Raises:
        DataError: naming the split and the fix.
    """
    enough = (
        f"give every class at least {MIN_IMAGES_PER_CLASS} images (a 70/10/20 split then "
        "puts one of each in validation and test), or give train/, val/ and test/ folders"
    )
    if len(class_names) < 2:
        found = f"one class ({class_names[0]})" if class_names else "no class"
        raise DataError(
            f"{name} has {found}; a classifier needs at least two (its accuracy would be "
            "1.000 whatever it learns)",
            fix="add a folder of images for each further class",
        )
    present = int(np.count_nonzero(counts["train"]))
    if present < 2:
        raise DataError(
            f"{name}: the training split holds {present} of {len(class_names)} classes",
            fix=enough,
        )
    if int(counts["test"].sum()) == 0:
        raise DataError(f"{name}: the test split is empty (no trial could be scored)", fix=enough)
    if int(counts["val"].sum()) == 0:
        logger.warning("%s: the validation split is empty (best-epoch figures are undefined)", name)


@dataclass(frozen=True, eq=False)
class Split:
    """One part of a dataset (train, val or test).

    Attributes:
        images: uint8 array, N x C x H x W.
        labels: int64 class indices, shape (N,). Other integer dtypes are converted.
    """

    images: NDArray[np.uint8]
    labels: NDArray[np.int64]

    def __post_init__(self) -> None:
        images = np.asarray(self.images)
        labels = np.asarray(self.labels)
        if images.dtype != np.uint8:
            raise DataError(
                f"split images must be uint8, got dtype {images.dtype}",
                fix="scale the images to 0..255 and cast with .astype(np.uint8)",
            )
        if images.ndim != 4:
            raise DataError(
                f"split images must be N x C x H x W (4 dims), got shape {images.shape}"
            )
        if labels.ndim != 1:
            raise DataError(f"split labels must have shape (N,), got {labels.shape}")
        if labels.size and not np.issubdtype(labels.dtype, np.integer):
            raise DataError(f"split labels must be integer class indices, got {labels.dtype}")
        if images.shape[0] != labels.shape[0]:
            raise DataError(
                f"split has {images.shape[0]} images but {labels.shape[0]} labels",
                fix="give exactly one label per image",
            )
        object.__setattr__(self, "images", images)
        object.__setattr__(self, "labels", labels.astype(np.int64, copy=False))

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def __repr__(self) -> str:
        return f"Split(n={len(self)}, image_shape={tuple(self.images.shape[1:])})"

    def subset(self, indices: NDArray[np.integer]) -> Split:
        """The samples at ``indices`` (in that order), as a new split."""
        return Split(self.images[indices], self.labels[indices])

    def class_counts(self, num_classes: int) -> NDArray[np.int64]:
        """Number of samples of each class ``0..num_classes-1``."""
        return np.bincount(self.labels, minlength=num_classes).astype(np.int64)[:num_classes]


@dataclass(frozen=True, eq=False)
class ImageDataset:
    """An image classification dataset held in memory, split into train, val and test.

    Attributes:
        name: the name it was loaded by (``digits``, ``medmnist:dermamnist_64``, ...).
        num_classes: number of classes; labels lie in ``0..num_classes-1``.
        channels: C of the N x C x H x W images (1 or 3).
        image_size: (H, W) of every image.
        class_names: one name per class index.
        train, val, test: the three splits.
        source: where the data came from (a file or folder path, ``scikit-learn
            load_digits``).
        split_method: how train/val/test were made (the file's own split, or a stratified
            split and its seed).
        train_fraction: share of the original training split kept by
            :meth:`with_fraction` (1.0 when untouched).
    """

    name: str
    num_classes: int
    channels: int
    image_size: tuple[int, int]
    class_names: tuple[str, ...]
    train: Split
    val: Split
    test: Split
    source: str = "in-memory arrays"
    split_method: str = ""
    train_fraction: float = 1.0

    def __post_init__(self) -> None:
        if (
            isinstance(self.num_classes, bool)
            or not isinstance(self.num_classes, numbers.Integral)
            or self.num_classes < 1
        ):
            raise DataError(f"num_classes must be a positive integer, got {self.num_classes!r}")
        object.__setattr__(self, "image_size", (int(self.image_size[0]), int(self.image_size[1])))
        object.__setattr__(self, "class_names", tuple(str(c) for c in self.class_names))
        if len(self.class_names) != self.num_classes:
            raise DataError(
                f"{self.name}: {len(self.class_names)} class names for {self.num_classes} classes"
            )
        expected = (self.channels, *self.image_size)
        for split_name, split in self.splits().items():
            shape = tuple(split.images.shape[1:])
            if shape != expected:
                raise DataError(
                    f"{self.name}: {split_name} images are {shape} (C, H, W) but the dataset "
                    f"declares {expected}"
                )
            if len(split) and (split.labels.min() < 0 or split.labels.max() >= self.num_classes):
                raise DataError(
                    f"{self.name}: {split_name} labels span {split.labels.min()}.."
                    f"{split.labels.max()}, outside 0..{self.num_classes - 1}"
                )

    def check_usable(self) -> None:
        """Refuse a dataset no trial can learn from or be scored on (see
        :func:`check_split_counts`); :func:`frugalml.data.load_dataset` calls it."""
        check_split_counts(
            self.name,
            self.class_names,
            {k: split.class_counts(self.num_classes) for k, split in self.splits().items()},
        )

    def splits(self) -> dict[str, Split]:
        """The splits by name: ``{"train": ..., "val": ..., "test": ...}``."""
        return {"train": self.train, "val": self.val, "test": self.test}

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one sample, as models and cost counters take it."""
        return (self.channels, self.image_size[0], self.image_size[1])

    def with_fraction(self, fraction: float, seed: int) -> ImageDataset:
        """A copy whose training split keeps a stratified ``fraction`` of its samples.

        Validation and test are untouched so results stay comparable across fractions. Every
        class keeps at least one training sample. The same fraction and seed give the same
        subset. ``fraction=1.0`` returns the dataset unchanged.

        Raises:
            ConfigError: ``fraction`` outside (0, 1] or a negative seed.
        """
        value = check_fraction(fraction)
        indices = stratified_fraction_indices(self.train.labels, value, seed)
        if value == 1.0:
            return self
        logger.debug(
            "%s: kept %d of %d training samples (fraction %.4g, seed %d)",
            self.name,
            indices.size,
            len(self.train),
            value,
            seed,
        )
        return dataclasses.replace(
            self,
            train=self.train.subset(indices),
            train_fraction=self.train_fraction * value,
        )

    def resized(self, size: int | tuple[int, int]) -> ImageDataset:
        """A copy with every image resized to ``size`` (an int for square, or (H, W)).

        Bilinear interpolation with antialiasing when shrinking (Pillow's resampling), uint8
        out. Returns the dataset unchanged when it already has that size.

        Raises:
            ConfigError: a size that is not a positive int or a pair of them.
        """
        target = _check_size(size)
        if target == self.image_size:
            return self
        logger.debug("%s: resizing %s -> %s", self.name, self.image_size, target)
        return dataclasses.replace(
            self,
            image_size=target,
            train=Split(resize_images(self.train.images, target), self.train.labels),
            val=Split(resize_images(self.val.images, target), self.val.labels),
            test=Split(resize_images(self.test.images, target), self.test.labels),
        )

    def with_channels(self, channels: int) -> ImageDataset:
        """A copy with 1 or 3 channels: gray is repeated to RGB, RGB becomes luminance.

        Luminance uses ITU-R 601-2 weights (0.299 R + 0.587 G + 0.114 B), as Pillow's
        ``convert("L")`` does. Returns the dataset unchanged when it already has ``channels``.

        Raises:
            ConfigError: ``channels`` other than 1 or 3.
        """
        if channels not in (1, 3) or isinstance(channels, bool):
            raise ConfigError(f"channels must be 1 or 3, got {channels!r}")
        if channels == self.channels:
            return self
        if (self.channels, channels) == (1, 3):
            convert = _gray_to_rgb
        elif (self.channels, channels) == (3, 1):
            convert = _rgb_to_gray
        else:
            raise ConfigError(
                f"{self.name} has {self.channels} channels; only 1 <-> 3 conversions exist"
            )
        return dataclasses.replace(
            self,
            channels=channels,
            train=Split(convert(self.train.images), self.train.labels),
            val=Split(convert(self.val.images), self.val.labels),
            test=Split(convert(self.test.images), self.test.labels),
        )

    def summary(self) -> dict[str, Any]:
        """Counts per split and per class, plus the metadata, as JSON-friendly values."""
        splits: dict[str, Any] = {}
        for split_name, split in self.splits().items():
            counts = split.class_counts(self.num_classes)
            splits[split_name] = {
                "n": len(split),
                "per_class": {
                    name: int(count) for name, count in zip(self.class_names, counts, strict=True)
                },
            }
        return {
            "name": self.name,
            "num_classes": self.num_classes,
            "channels": self.channels,
            "image_size": list(self.image_size),
            "class_names": list(self.class_names),
            "source": self.source,
            "split_method": self.split_method,
            "train_fraction": self.train_fraction,
            "splits": splits,
        }


def _gray_to_rgb(images: NDArray[np.uint8]) -> NDArray[np.uint8]:
    return np.repeat(images, 3, axis=1)


def _rgb_to_gray(images: NDArray[np.uint8]) -> NDArray[np.uint8]:
    weights = np.array([299, 587, 114], dtype=np.uint32).reshape(1, 3, 1, 1)
    gray = (images.astype(np.uint32) * weights).sum(axis=1, keepdims=True)
    out: NDArray[np.uint8] = ((gray + 500) // 1000).astype(np.uint8)
    return out


def _check_size(size: int | tuple[int, int]) -> tuple[int, int]:
    if isinstance(size, numbers.Integral) and not isinstance(size, bool):
        pair: tuple[Any, ...] = (size, size)
    elif isinstance(size, tuple | list) and len(size) == 2:
        pair = tuple(size)
    else:
        raise ConfigError(f"image size must be an int or an (H, W) pair, got {size!r}")
    if any(isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 1 for v in pair):
        raise ConfigError(f"image size must be positive integers, got {size!r}")
    return (int(pair[0]), int(pair[1]))


def resize_images(images: NDArray[np.uint8], size: int | tuple[int, int]) -> NDArray[np.uint8]:
    """Resize N x C x H x W uint8 images to ``size`` with Pillow's bilinear filter.

    Pillow widens the filter when shrinking, so downscaling is antialiased. Each channel is
    resampled on its own, which is what Pillow does for RGB images too.
    """
    from PIL import Image

    height, width = _check_size(size)
    array = np.asarray(images)
    if array.dtype != np.uint8 or array.ndim != 4:
        raise DataError(f"resize needs uint8 N x C x H x W images, got {array.dtype} {array.shape}")
    n, c = array.shape[:2]
    if array.shape[2:] == (height, width):
        return array.copy()
    out = np.empty((n, c, height, width), dtype=np.uint8)
    for i in range(n):
        for ch in range(c):
            plane = Image.fromarray(np.ascontiguousarray(array[i, ch]))
            out[i, ch] = np.asarray(plane.resize((width, height), Image.Resampling.BILINEAR))
    return out

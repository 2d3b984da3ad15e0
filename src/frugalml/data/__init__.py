"""Datasets: a registry of names that load image classification data into memory.

A dataset name is ``digits`` (scikit-learn's bundled 8x8 digits, offline, the default),
``medmnist:<flag>[_<size>]`` (a MedMNIST 2D npz file from a local data root, downloaded only
when allowed) or ``folder:<path>`` (a class-per-folder image tree). :func:`load_dataset`
returns an :class:`ImageDataset`: uint8 N x C x H x W images and int64 labels in
train/val/test :class:`Split` s, with stratified training fractions
(:meth:`ImageDataset.with_fraction`) and resizing (:meth:`ImageDataset.resized`).

Modules:

- ``_registry``: name schemes (:func:`register_dataset_scheme` adds one: a loader, an
  optional cheap check and argument-syntax check), :func:`check_dataset_name`,
  :func:`check_dataset` (the cheap checks a spec's validation runs), :func:`load_dataset`
  (which refuses splits no trial can use).
- ``_dataset``: :class:`ImageDataset`, :class:`Split`, :func:`resize_images`.
- ``_split``: stratified, seeded train/val/test splits and training fractions.
- ``_digits``: the ``digits`` loader.
- ``_medmnist``: the ``medmnist:`` loader, :func:`dataset_root`, file-name rules.
- ``_folder``: the ``folder:`` loader.

Importing this package loads numpy only; Pillow, scikit-learn and the optional medmnist
package are imported when a loader needs them.
"""

from __future__ import annotations

from frugalml.data._dataset import ImageDataset, Split, resize_images
from frugalml.data._folder import IMAGE_EXTENSIONS
from frugalml.data._medmnist import (
    MEDMNIST_FLAGS,
    MEDMNIST_ROOT_ENV,
    MEDMNIST_SIZES,
    dataset_root,
    medmnist_file_name,
)
from frugalml.data._registry import (
    DEFAULT_DATASET,
    DatasetCheck,
    DatasetLoader,
    DatasetScheme,
    LoadOptions,
    check_dataset,
    check_dataset_name,
    dataset_name_forms,
    list_dataset_schemes,
    load_dataset,
    register_dataset_scheme,
)
from frugalml.data._split import (
    DEFAULT_SPLIT_FRACTIONS,
    stratified_fraction_indices,
    stratified_split_indices,
)

__all__ = [
    "DEFAULT_DATASET",
    "DEFAULT_SPLIT_FRACTIONS",
    "IMAGE_EXTENSIONS",
    "MEDMNIST_FLAGS",
    "MEDMNIST_ROOT_ENV",
    "MEDMNIST_SIZES",
    "DatasetCheck",
    "DatasetLoader",
    "DatasetScheme",
    "ImageDataset",
    "LoadOptions",
    "Split",
    "check_dataset",
    "check_dataset_name",
    "dataset_name_forms",
    "dataset_root",
    "list_dataset_schemes",
    "load_dataset",
    "medmnist_file_name",
    "register_dataset_scheme",
    "resize_images",
    "stratified_fraction_indices",
    "stratified_split_indices",
]

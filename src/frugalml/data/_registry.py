"""The dataset registry: names (``scheme`` or ``scheme:argument``) to loaders.

Each scheme is one :class:`DatasetScheme` with its usage, a one-line description (for help
texts) and a loader, registered once with :func:`register_dataset_scheme` (the built-ins
below use it too). :func:`check_dataset_name` validates a name without loading anything,
so a study spec can be checked before any trial starts; :func:`check_dataset` runs a
scheme's cheap machine-dependent check; :func:`load_dataset` loads it. The specs' hints, the
errors and the contract tests (:class:`frugalml.testing.DatasetSchemeContract`) all read
:func:`list_dataset_schemes`, so a new scheme is one call and appears everywhere.
"""

from __future__ import annotations

import logging
import numbers
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from frugalml.data._dataset import ImageDataset, check_split_counts
from frugalml.data._digits import load_digits_dataset
from frugalml.data._folder import folder_image_sizes_agree, folder_split_counts, load_folder
from frugalml.data._medmnist import (
    MEDMNIST_ROOT_ENV,
    check_medmnist,
    load_medmnist,
    parse_medmnist_name,
)
from frugalml.errors import ConfigError

__all__ = [
    "DatasetCheck",
    "DatasetLoader",
    "DatasetScheme",
    "LoadOptions",
    "check_dataset",
    "check_dataset_name",
    "dataset_name_forms",
    "list_dataset_schemes",
    "load_dataset",
    "register_dataset_scheme",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoadOptions:
    """What :func:`load_dataset` and :func:`check_dataset` pass a scheme's loader and check.

    Attributes:
        root: a data root (MedMNIST's), or a base for relative paths; None when not given.
        image_size: the side length the caller will resize to, or None (load_dataset
            resizes after the loader; a loader may use it to read mixed-size files).
        download: False never downloads; None/True allow a download where a scheme has one.
        split_seed: seed of a stratified train/val/test split for data without one.
    """

    root: str | os.PathLike[str] | None
    image_size: int | None
    download: bool | None
    split_seed: int


_LoadOptions = LoadOptions

#: ``loader(name, argument, options)``: the whole name, the part after ``:`` ("" for a
#: scheme without argument) and the options; returns the dataset named ``name``.
DatasetLoader = Callable[[str, str, LoadOptions], ImageDataset]
#: ``check(name, argument, options)``: what can be checked without loading the images
#: (files present, layout); raises ConfigError/DataError naming the fix.
DatasetCheck = Callable[[str, str, LoadOptions], None]
_Loader = DatasetLoader


@dataclass(frozen=True)
class DatasetScheme:
    """One kind of dataset name.

    Attributes:
        scheme: the part before ``:`` (or the whole name for argument-less schemes).
        usage: how to write a name, e.g. ``medmnist:<flag>[_<size>]``.
        description: one line for help texts.
        example: a valid name.
    """

    scheme: str
    usage: str
    description: str
    example: str
    takes_argument: bool


def _load_digits(name: str, argument: str, options: _LoadOptions) -> ImageDataset:
    if options.root is not None:
        logger.debug("digits ships with scikit-learn; ignoring root=%s", options.root)
    return load_digits_dataset(name=name, split_seed=options.split_seed)


def _load_medmnist(name: str, argument: str, options: _LoadOptions) -> ImageDataset:
    return load_medmnist(argument, name=name, root=options.root, download=options.download)


def _folder_path(argument: str, root: str | os.PathLike[str] | None) -> Path:
    path = Path(argument).expanduser()
    if root is not None and not path.is_absolute():
        path = Path(root).expanduser() / path
    return path


def _load_folder(name: str, argument: str, options: _LoadOptions) -> ImageDataset:
    path = _folder_path(argument, options.root)
    return load_folder(
        path, name=name, image_size=options.image_size, split_seed=options.split_seed
    )


@dataclass(frozen=True)
class _Entry:
    info: DatasetScheme
    loader: DatasetLoader
    check: DatasetCheck | None
    check_name: Callable[[str], None] | None


_SCHEMES: dict[str, _Entry] = {}


def register_dataset_scheme(
    scheme: DatasetScheme,
    loader: DatasetLoader,
    check: DatasetCheck | None = None,
    *,
    check_name: Callable[[str], None] | None = None,
) -> None:
    """Make names of ``scheme`` (``scheme.scheme`` or ``scheme.scheme:<argument>``) loadable.

    Args:
        scheme: the scheme's name, usage, one-line description, example and whether it
            takes an argument (help texts, spec hints and errors list it from here).
        loader: ``loader(name, argument, options)`` returns the :class:`ImageDataset`;
            :func:`load_dataset` then resizes it to ``options.image_size`` and checks its
            splits are usable.
        check: ``check(name, argument, options)``, the cheap checks :func:`check_dataset`
            (``study validate``, ``tune --validate``) runs before any trial: files present,
            a layout that can be split. None: nothing beyond the name.
        check_name: ``check_name(argument)`` validates the argument's syntax without
            looking at this machine (run by :func:`check_dataset_name` when a spec is
            parsed). None: any non-empty argument.

    Raises:
        ConfigError: a scheme name that is empty, holds ``:`` or is already registered.
    """
    name = scheme.scheme
    if not isinstance(name, str) or not name or ":" in name:
        raise ConfigError(
            f"a dataset scheme name must be non-empty text without ':', got {name!r}",
            fix="name the scheme like 'digits' or 'medmnist'",
        )
    if name in _SCHEMES:
        raise ConfigError(
            f"dataset scheme {name!r} is already registered",
            fix="register it once (at import of the module that defines it), or pick "
            "another scheme name",
        )
    _SCHEMES[name] = _Entry(info=scheme, loader=loader, check=check, check_name=check_name)


def _check_medmnist(name: str, argument: str, options: LoadOptions) -> None:
    check_medmnist(argument, root=options.root, download=options.download)


def _check_folder(name: str, argument: str, options: LoadOptions) -> None:
    folder = _folder_path(argument, options.root)
    classes, counts = folder_split_counts(folder, split_seed=options.split_seed)
    check_split_counts(name, classes, counts)
    if options.image_size is None:
        folder_image_sizes_agree(folder)


def _check_medmnist_name(argument: str) -> None:
    parse_medmnist_name(argument)


register_dataset_scheme(
    DatasetScheme(
        scheme="digits",
        usage="digits",
        description="scikit-learn's 1,797 handwritten 8x8 digits, 10 classes, offline "
        "(the default)",
        example="digits",
        takes_argument=False,
    ),
    _load_digits,
)
register_dataset_scheme(
    DatasetScheme(
        scheme="medmnist",
        usage="medmnist:<flag>[_<size>]",
        description="a MedMNIST 2D npz file (size 28, 64, 128 or 224) from the data root "
        f"(root=, ${MEDMNIST_ROOT_ENV} or ~/.medmnist); downloads only if allowed",
        example="medmnist:dermamnist_64",
        takes_argument=True,
    ),
    _load_medmnist,
    _check_medmnist,
    check_name=_check_medmnist_name,
)
register_dataset_scheme(
    DatasetScheme(
        scheme="folder",
        usage="folder:<path>",
        description="a class-per-folder image tree (optionally under train/, val/, "
        "test/), read with Pillow",
        example="folder:~/data/xrays",
        takes_argument=True,
    ),
    _load_folder,
    _check_folder,
)

#: The name used when none is given.
DEFAULT_DATASET = "digits"


def list_dataset_schemes() -> tuple[DatasetScheme, ...]:
    """The dataset name schemes frugalml understands, for help texts and validation."""
    return tuple(entry.info for entry in _SCHEMES.values())


def dataset_name_forms(sep: str = ", ") -> str:
    """How dataset names are written, every registered scheme's usage joined by ``sep``
    (``digits, medmnist:<flag>[_<size>], folder:<path>`` with the built-ins)."""
    return sep.join(scheme.usage for scheme in list_dataset_schemes())


def _valid_forms() -> str:
    return dataset_name_forms()


def _examples() -> str:
    return ", ".join(scheme.example for scheme in list_dataset_schemes())


def _split_name(name: str) -> tuple[str, str]:
    if not isinstance(name, str):
        raise ConfigError(
            f"a dataset name must be a string, got {type(name).__name__}",
            fix=f"use one of: {_valid_forms()}",
        )
    scheme, sep, argument = name.partition(":")
    entry = _SCHEMES.get(scheme)
    if entry is None:
        raise ConfigError(
            f"unknown dataset {name!r}",
            fix=f"use one of: {_valid_forms()} (e.g. {_examples()})",
        )
    info = entry.info
    if info.takes_argument and not argument.strip():
        raise ConfigError(
            f"dataset name {name!r} lacks its argument",
            fix=f"write it as {info.usage}, e.g. {info.example}",
        )
    if not info.takes_argument and sep:
        raise ConfigError(
            f"dataset {scheme!r} takes no argument, got {name!r}",
            fix=f"write it as {info.usage}",
        )
    return scheme, argument


def check_dataset_name(name: str) -> None:
    """Check a dataset name's syntax without loading anything.

    Checks the scheme, that an argument is given where one is needed, and for MedMNIST the
    flag and size. Does not look for files or folders (a spec may be checked on another
    machine than the one that runs it).

    Raises:
        ConfigError: naming the problem and listing the valid forms.
    """
    scheme, argument = _split_name(name)
    check_argument = _SCHEMES[scheme].check_name
    if check_argument is not None:
        check_argument(argument)


def _check_options(image_size: int | None, download: bool | None, split_seed: int) -> None:
    if image_size is not None and (
        isinstance(image_size, bool)
        or not isinstance(image_size, numbers.Integral)
        or image_size < 1
    ):
        raise ConfigError(f"image_size must be a positive integer or None, got {image_size!r}")
    if download is not None and not isinstance(download, bool):
        raise ConfigError(f"download must be True, False or None, got {download!r}")
    if (
        isinstance(split_seed, bool)
        or not isinstance(split_seed, numbers.Integral)
        or split_seed < 0
    ):
        raise ConfigError(f"split_seed must be a non-negative integer, got {split_seed!r}")


def load_dataset(
    name: str = DEFAULT_DATASET,
    *,
    root: str | os.PathLike[str] | None = None,
    image_size: int | None = None,
    download: bool | None = None,
    split_seed: int = 0,
) -> ImageDataset:
    """Load a dataset by name into memory.

    Args:
        name: ``digits``, ``medmnist:<flag>[_<size>]`` or ``folder:<path>``; see
            :func:`list_dataset_schemes`.
        root: MedMNIST's data root (see :func:`frugalml.data.dataset_root`); for
            ``folder:`` a base for a relative path; ignored by ``digits``.
        image_size: if given, every image is resized to ``image_size`` x ``image_size``
            (bilinear, antialiased when shrinking). For MedMNIST the name still picks the
            file; this resizes what it holds.
        download: MedMNIST only: ``False`` never downloads; ``None``/``True`` download a
            missing file through the optional medmnist package.
        split_seed: seed of the stratified train/val/test split of datasets without one
            (``digits``, class-per-folder trees); MedMNIST keeps its official split.

    Raises:
        ConfigError: an unknown or malformed name, or invalid options.
        DataError: data that cannot be found, read or validated; the message says how to fix
            it.
    """
    _check_options(image_size, download, split_seed)
    check_dataset_name(name)
    scheme, argument = _split_name(name)
    options = _LoadOptions(
        root=root, image_size=image_size, download=download, split_seed=int(split_seed)
    )
    dataset = _SCHEMES[scheme].loader(name, argument, options)
    if image_size is not None and dataset.image_size != (image_size, image_size):
        logger.info(
            "%s: resizing %s images to %dx%d", name, dataset.image_size, image_size, image_size
        )
        dataset = dataset.resized(image_size)
    dataset.check_usable()
    return dataset


def check_dataset(
    name: str,
    *,
    root: str | os.PathLike[str] | None = None,
    download: bool | None = None,
    image_size: int | None = None,
    split_seed: int = 0,
) -> None:
    """What can be checked about a dataset without loading its images.

    The name's syntax always; for ``medmnist:`` that it is single-label and its file is
    there unless ``download`` allows fetching it; for ``folder:`` the tree's layout, classes
    and the split it would make, from the file names (so one image per class, a single
    class or an empty split are refused before any trial starts) and, without
    ``image_size``, that the images share one size (from their headers). :func:`load_dataset`
    makes the same checks (the medmnist ones by the same function, the splits on the
    loaded data).

    Raises:
        ConfigError: a malformed name.
        DataError: a tree that cannot give usable train, validation and test splits.
    """
    scheme, argument = _split_name(name)
    check = _SCHEMES[scheme].check
    if check is not None:
        options = LoadOptions(
            root=root, image_size=image_size, download=download, split_seed=split_seed
        )
        check(name, argument, options)

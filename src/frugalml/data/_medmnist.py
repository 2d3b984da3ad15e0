"""``medmnist:<flag>[_<size>]``: MedMNIST's 2D datasets, read from their npz files.

MedMNIST (Yang et al., Scientific Data 2023) ships each dataset as one npz file per image
size: ``<flag>.npz`` for 28 x 28 and ``<flag>_<size>.npz`` for 64, 128 and 224, holding
``train_images``/``val_images``/``test_images`` (N x H x W gray or N x H x W x 3 RGB, uint8)
and ``train_labels``/``val_labels``/``test_labels`` (N x 1). The files are looked up in a data
root (argument, else ``$FRUGALML_MEDMNIST_ROOT``, else ``~/.medmnist`` like the medmnist
package). A missing file is downloaded through the optional ``medmnist`` package only when
allowed; everything else works offline. Every array is checked before training starts.
"""

from __future__ import annotations

import difflib
import importlib
import logging
import os
import re
import zipfile
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from frugalml.data._dataset import SPLIT_NAMES, ImageDataset, Split
from frugalml.errors import ConfigError, DataError

__all__ = [
    "MEDMNIST_FLAGS",
    "MEDMNIST_ROOT_ENV",
    "MEDMNIST_SIZES",
    "dataset_root",
    "load_medmnist",
    "medmnist_file_name",
    "parse_medmnist_name",
]

logger = logging.getLogger(__name__)

#: Environment variable naming the folder that holds MedMNIST npz files.
MEDMNIST_ROOT_ENV = "FRUGALML_MEDMNIST_ROOT"

#: Image sizes MedMNIST publishes for its 2D datasets.
MEDMNIST_SIZES: tuple[int, ...] = (28, 64, 128, 224)


@dataclass(frozen=True)
class _FlagInfo:
    task: str
    num_classes: int
    channels: int


# MedMNIST v2's 2D datasets (task, classes, channels), so names, class counts and channels
# can be checked offline without the optional package.
_FLAGS_2D: dict[str, _FlagInfo] = {
    "pathmnist": _FlagInfo("multi-class", 9, 3),
    "chestmnist": _FlagInfo("multi-label", 14, 1),
    "dermamnist": _FlagInfo("multi-class", 7, 3),
    "octmnist": _FlagInfo("multi-class", 4, 1),
    "pneumoniamnist": _FlagInfo("binary-class", 2, 1),
    "retinamnist": _FlagInfo("ordinal-regression", 5, 3),
    "breastmnist": _FlagInfo("binary-class", 2, 1),
    "bloodmnist": _FlagInfo("multi-class", 8, 3),
    "tissuemnist": _FlagInfo("multi-class", 8, 1),
    "organamnist": _FlagInfo("multi-class", 11, 1),
    "organcmnist": _FlagInfo("multi-class", 11, 1),
    "organsmnist": _FlagInfo("multi-class", 11, 1),
}
_FLAGS_3D = frozenset(
    {
        "organmnist3d",
        "nodulemnist3d",
        "adrenalmnist3d",
        "fracturemnist3d",
        "vesselmnist3d",
        "synapsemnist3d",
    }
)

#: The MedMNIST 2D flags known without the medmnist package (chestmnist is multi-label).
MEDMNIST_FLAGS: tuple[str, ...] = tuple(sorted(_FLAGS_2D))

_NAME_RE = re.compile(r"^(?P<flag>[a-z0-9]+?)(?:_(?P<size>\d+))?$")
_INSTALL_HINT = "pip install 'frugalml[medmnist]'"


def dataset_root(root: str | os.PathLike[str] | None = None) -> Path:
    """The folder MedMNIST npz files are read from (and downloaded into).

    ``root`` if given, else ``$FRUGALML_MEDMNIST_ROOT`` if set and non-empty, else
    ``~/.medmnist`` (the medmnist package's default). ``~`` is expanded; nothing is created.
    """
    if root is not None:
        chosen: str | os.PathLike[str] = root
    else:
        chosen = os.environ.get(MEDMNIST_ROOT_ENV, "").strip() or "~/.medmnist"
    return Path(chosen).expanduser()


def medmnist_file_name(flag: str, size: int = 28) -> str:
    """MedMNIST's file name for ``flag`` at ``size``: ``<flag>.npz`` or ``<flag>_<size>.npz``."""
    return f"{flag}.npz" if size == 28 else f"{flag}_{size}.npz"


def _package_info() -> Mapping[str, Mapping[str, Any]] | None:
    """The medmnist package's INFO table, or None when the package cannot be imported."""
    try:
        module = importlib.import_module("medmnist")
    except Exception as exc:  # optional: any failure = absent
        logger.debug("medmnist package not usable: %s", exc)
        return None
    info = getattr(module, "INFO", None)
    return info if isinstance(info, Mapping) else None


def parse_medmnist_name(spec: str) -> tuple[str, int]:
    """Split ``<flag>`` or ``<flag>_<size>`` into (flag, size) and check both.

    Raises:
        ConfigError: malformed text, a size MedMNIST does not publish, a 3D dataset, or a flag
            neither frugalml nor the installed medmnist package knows.
    """
    match = _NAME_RE.match(spec)
    if match is None:
        raise ConfigError(
            f"malformed MedMNIST name {spec!r}",
            fix="use medmnist:<flag> or medmnist:<flag>_<size> with a lower-case flag, e.g. "
            "medmnist:dermamnist or medmnist:dermamnist_64",
        )
    flag = match["flag"]
    size = int(match["size"]) if match["size"] else 28
    if size not in MEDMNIST_SIZES:
        raise ConfigError(
            f"MedMNIST has no image size {size} (in {spec!r})",
            fix=f"use one of {', '.join(str(s) for s in MEDMNIST_SIZES)}, e.g. medmnist:{flag}_64",
        )
    if flag in _FLAGS_3D:
        raise ConfigError(
            f"{flag} is a 3D MedMNIST dataset; frugalml handles 2D images only",
            fix=f"use a 2D flag: {', '.join(MEDMNIST_FLAGS)}",
        )
    if flag not in _FLAGS_2D:
        info = _package_info()
        if info is None or flag not in info:
            known = sorted(set(MEDMNIST_FLAGS) | set(info or ()))
            close = difflib.get_close_matches(flag, known, n=1)
            hint = f"did you mean {close[0]}? " if close else ""
            raise ConfigError(
                f"unknown MedMNIST flag {flag!r}",
                fix=f"{hint}known 2D flags: {', '.join(MEDMNIST_FLAGS)}",
            )
        if flag.endswith("3d"):
            raise ConfigError(f"{flag} is a 3D MedMNIST dataset; frugalml handles 2D images only")
    return flag, size


def _flag_info(flag: str, package: Mapping[str, Mapping[str, Any]] | None) -> _FlagInfo | None:
    if package is not None and flag in package:
        entry = package[flag]
        try:
            return _FlagInfo(
                task=str(entry["task"]),
                num_classes=len(entry["label"]),
                channels=int(entry["n_channels"]),
            )
        except (KeyError, TypeError, ValueError):
            logger.debug("medmnist INFO entry for %s is incomplete; using built-in facts", flag)
    return _FLAGS_2D.get(flag)


def _class_names(
    flag: str, num_classes: int, package: Mapping[str, Mapping[str, Any]] | None
) -> tuple[str, ...]:
    fallback = tuple(str(i) for i in range(num_classes))
    if package is None or flag not in package:
        return fallback
    labels = package[flag].get("label")
    if not isinstance(labels, Mapping) or len(labels) != num_classes:
        return fallback
    try:
        return tuple(str(labels[str(i)]) for i in range(num_classes))
    except KeyError:
        return fallback


def _manual_fix(file_name: str, root: Path, package: Mapping[str, Any] | None, flag: str) -> str:
    where = f"copy {file_name} into {root} (or pass root= / set ${MEDMNIST_ROOT_ENV} to the folder"
    where += " that holds it)"
    url = ""
    if package is not None and flag in package:
        size_key = file_name.removesuffix(".npz").removeprefix(flag)  # "" or "_64"
        url_value = package[flag].get(f"url{size_key}")
        url = f"; the file is published at {url_value}" if url_value else ""
    return (
        f"{where}, or let frugalml download it: {_INSTALL_HINT} and run with network access "
        f"and download not disabled{url}"
    )


def _download(flag: str, size: int, root: Path, file_name: str) -> None:
    """Fetch the npz file through the medmnist package, or raise a DataError saying how."""
    try:
        module = importlib.import_module("medmnist")
    except Exception as exc:  # optional: any failure = absent
        raise DataError(
            f"MedMNIST file {file_name} is not in {root}, and it cannot be downloaded because "
            f"the optional medmnist package is not installed ({exc})",
            fix=_manual_fix(file_name, root, None, flag),
        ) from exc
    info = getattr(module, "INFO", None)
    info = info if isinstance(info, Mapping) else None
    entry = info.get(flag) if info is not None else None
    dataset_class = getattr(module, str(entry.get("python_class", "")), None) if entry else None
    if dataset_class is None:
        raise DataError(
            f"MedMNIST file {file_name} is not in {root}, and the installed medmnist package "
            f"does not know how to download {flag!r}",
            fix=_manual_fix(file_name, root, info, flag),
        )
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(
            f"cannot create the MedMNIST root {root} to download {file_name} into: {exc}",
            fix=f"pass root= or set ${MEDMNIST_ROOT_ENV} to a writable folder",
        ) from exc
    logger.info("downloading %s into %s through the medmnist package", file_name, root)
    try:
        dataset_class(split="train", download=True, root=str(root), size=size)
    except Exception as exc:  # network, HTTP, checksum, package
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise DataError(
            f"MedMNIST file {file_name} is not in {root} and downloading it failed: {reason}",
            fix=_manual_fix(file_name, root, info, flag),
        ) from exc


def _read_npz(path: Path) -> dict[str, NDArray[Any]]:
    expected = [f"{split}_{kind}" for split in SPLIT_NAMES for kind in ("images", "labels")]
    unreadable = (zipfile.BadZipFile, ValueError, EOFError, OSError, zlib.error, KeyError)
    fix = f"the file is truncated or corrupt: delete {path} and download or copy it again"
    try:
        archive = np.load(path, allow_pickle=False)
    except unreadable as exc:
        raise DataError(f"cannot read MedMNIST file {path}: {exc}", fix=fix) from exc
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise DataError(
            f"{path} holds a single array, not an npz archive with the MedMNIST keys",
            fix=f"provide an npz file with the keys {', '.join(expected)}",
        )
    with archive:
        missing = [key for key in expected if key not in archive.files]
        if missing:
            raise DataError(
                f"MedMNIST file {path} lacks the keys {', '.join(missing)} "
                f"(it has: {', '.join(sorted(archive.files)) or 'none'})",
                fix=f"provide an npz file with the keys {', '.join(expected)}",
            )
        try:
            return {key: np.asarray(archive[key]) for key in expected}
        except unreadable as exc:
            raise DataError(f"cannot read MedMNIST file {path}: {exc}", fix=fix) from exc


def _images_nchw(
    array: NDArray[Any], key: str, path: Path, flag: str, size: int
) -> NDArray[np.uint8]:
    if array.dtype != np.uint8:
        raise DataError(
            f"{path}: {key} has dtype {array.dtype}, expected uint8 (0..255)",
            fix="store the images as uint8, as MedMNIST does",
        )
    if array.ndim == 3:
        array = array[:, None, :, :]
    elif array.ndim == 4 and array.shape[3] in (1, 3):
        array = np.ascontiguousarray(array.transpose(0, 3, 1, 2))
    else:
        volume = array.ndim == 4 and array.shape[1] == array.shape[2] == array.shape[3]
        raise DataError(
            f"{path}: {key} has shape {array.shape}, expected N x H x W (gray) or "
            f"N x H x W x 3 (RGB)" + ("; 3D volumes are not supported" if volume else ""),
        )
    height, width = array.shape[2:]
    if (height, width) != (size, size):
        raise DataError(
            f"{path}: {key} are {height}x{width} but the name asks for {size}x{size} images",
            fix=f"put the {size}x{size} data in {medmnist_file_name(flag, size)}"
            + (f", or load medmnist:{flag}_{height}" if height in MEDMNIST_SIZES else ""),
        )
    return array


def _labels_1d(array: NDArray[Any], key: str, path: Path, n_images: int) -> NDArray[np.int64]:
    if array.ndim == 2 and array.shape[1] > 1:
        raise DataError(
            f"{path}: {key} has shape {array.shape}: a multi-label dataset "
            f"({array.shape[1]} labels per image); multi-label classification is not "
            "supported yet",
            fix="use a single-label MedMNIST dataset such as dermamnist or pathmnist",
        )
    if array.ndim == 2:
        array = array[:, 0]
    if array.ndim != 1:
        raise DataError(f"{path}: {key} has shape {array.shape}, expected N x 1 class indices")
    if array.size and not np.issubdtype(array.dtype, np.integer):
        raise DataError(f"{path}: {key} has dtype {array.dtype}, expected integer class indices")
    if array.shape[0] != n_images:
        raise DataError(
            f"{path}: {key} has {array.shape[0]} labels for {n_images} images",
            fix="the file is inconsistent: download or copy it again",
        )
    return array.astype(np.int64)


def check_medmnist(
    spec: str, *, root: str | os.PathLike[str] | None = None, download: bool | None = None
) -> Path:
    """What can be known about ``medmnist:<spec>`` without reading it: a single-label
    dataset, and its file present unless a download is allowed. Returns the file's path.
    :func:`load_medmnist` and a spec's validation share it.

    Raises:
        ConfigError: a malformed or unknown name.
        DataError: a multi-label dataset, or a missing file with downloads disabled.
    """
    flag, size = parse_medmnist_name(spec)
    package = _package_info()
    info = _flag_info(flag, package)
    if info is not None and info.task.startswith("multi-label"):
        raise DataError(
            f"{flag} is a multi-label dataset ({info.num_classes} labels per image); "
            "multi-label classification is not supported yet",
            fix="use a single-label MedMNIST dataset such as dermamnist or pathmnist",
        )
    folder = dataset_root(root)
    file_name = medmnist_file_name(flag, size)
    path = folder / file_name
    if not path.is_file() and download is False:
        raise DataError(
            f"MedMNIST file {file_name} not found in {folder} (download disabled)",
            fix=_manual_fix(file_name, folder, package, flag),
        )
    return path


_RawSplits = dict[str, tuple[NDArray[np.uint8], NDArray[np.int64]]]


def _ensure_file(
    path: Path, flag: str, size: int, package: Mapping[str, Mapping[str, Any]] | None
) -> None:
    """Download the npz file when it is missing; refuse when the download left no file."""
    folder, file_name = path.parent, path.name
    if not path.is_file():
        _download(flag, size, folder, file_name)
        if not path.is_file():
            raise DataError(
                f"the medmnist package reported success but {file_name} is not in {folder}",
                fix=_manual_fix(file_name, folder, package, flag),
            )


def _read_splits(path: Path, flag: str, size: int) -> _RawSplits:
    """Each official split's NCHW images and 1-d labels, checked; an empty split is refused."""
    arrays = _read_npz(path)
    splits_raw: _RawSplits = {}
    for split in SPLIT_NAMES:
        images = _images_nchw(arrays[f"{split}_images"], f"{split}_images", path, flag, size)
        labels = _labels_1d(arrays[f"{split}_labels"], f"{split}_labels", path, images.shape[0])
        if images.shape[0] == 0:
            raise DataError(f"{path}: the {split} split is empty", fix="use a complete file")
        splits_raw[split] = (images, labels)
    return splits_raw


def _check_channels(splits_raw: _RawSplits, path: Path, flag: str, info: _FlagInfo | None) -> int:
    """The splits' one channel count, which must be the flag's when the package knows it."""
    channels = {split: images.shape[1] for split, (images, _) in splits_raw.items()}
    if len(set(channels.values())) != 1:
        raise DataError(f"{path}: the splits have different channel counts {channels}")
    n_channels = channels["train"]
    if info is not None and info.channels != n_channels:
        raise DataError(
            f"{path}: images have {n_channels} channel(s) but {flag} has {info.channels}",
            fix=f"check that {path.name} really holds {flag}",
        )
    return int(n_channels)


def _check_labels(splits_raw: _RawSplits, path: Path, flag: str, info: _FlagInfo | None) -> int:
    """The class count (the flag's, else the largest label + 1); a label outside it is
    refused."""
    all_labels = np.concatenate([labels for _, labels in splits_raw.values()])
    num_classes = info.num_classes if info is not None else int(all_labels.max()) + 1
    for split, (_, labels) in splits_raw.items():
        low, high = int(labels.min()), int(labels.max())
        if low < 0 or high >= num_classes:
            raise DataError(
                f"{path}: {split}_labels span {low}..{high}, outside 0..{num_classes - 1} "
                f"for {flag} ({num_classes} classes)",
                fix=f"check that {path.name} really holds {flag}",
            )
    return num_classes


def load_medmnist(
    spec: str,
    *,
    name: str,
    root: str | os.PathLike[str] | None = None,
    download: bool | None = None,
) -> ImageDataset:
    """Load ``medmnist:<spec>`` from its npz file, downloading it only if allowed.

    Args:
        spec: ``<flag>`` or ``<flag>_<size>``, e.g. ``dermamnist_64``.
        name: the name to record on the dataset.
        root: data root; see :func:`dataset_root`.
        download: ``False`` never downloads; ``None`` or ``True`` download a missing file
            through the optional medmnist package.

    Raises:
        ConfigError: a malformed or unknown name.
        DataError: a missing file that cannot be downloaded (the message names the file and
            folder), an unreadable file, or contents that fail validation.
    """
    path = check_medmnist(spec, root=root, download=download)
    flag, size = parse_medmnist_name(spec)
    package = _package_info()
    info = _flag_info(flag, package)
    _ensure_file(path, flag, size, package)
    splits_raw = _read_splits(path, flag, size)
    n_channels = _check_channels(splits_raw, path, flag, info)
    num_classes = _check_labels(splits_raw, path, flag, info)

    dataset = ImageDataset(
        name=name,
        num_classes=num_classes,
        channels=n_channels,
        image_size=(size, size),
        class_names=_class_names(flag, num_classes, package),
        train=Split(*splits_raw["train"]),
        val=Split(*splits_raw["val"]),
        test=Split(*splits_raw["test"]),
        source=str(path),
        split_method="MedMNIST's official train/val/test split",
    )
    logger.debug(
        "loaded %s from %s: %d/%d/%d train/val/test",
        flag,
        path,
        len(dataset.train),
        len(dataset.val),
        len(dataset.test),
    )
    return dataset

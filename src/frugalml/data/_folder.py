"""``folder:<path>``: a class-per-folder image tree, read with Pillow.

Two layouts::

    root/train/<class>/*.png  (+ optional root/val/<class>/..., root/test/<class>/...)
    root/<class>/*.png        (split 70/10/20 here, stratified, seeded)

Class names are the sorted sub-folder names and must be the same in every split folder. A
split folder that is missing is carved out of ``train/`` (stratified, seeded), keeping the
70:10:20 proportions. Images are searched recursively inside each class folder (a class
folder may be a symbolic link; links to folders further down are not followed, so a link
cycle cannot loop); hidden files and folders (a leading dot) and files without an image
extension are skipped. All images
are converted to one mode: grayscale when every image is gray, else RGB.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from frugalml.data._dataset import SPLIT_NAMES, ImageDataset, Split
from frugalml.data._split import DEFAULT_SPLIT_FRACTIONS, stratified_split_indices
from frugalml.errors import DataError

__all__ = ["IMAGE_EXTENSIONS", "folder_image_sizes_agree", "folder_split_counts", "load_folder"]

logger = logging.getLogger(__name__)

#: File extensions read as images (lower-case; matching ignores case).
IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}
)

_GRAY_MODES = frozenset({"1", "L", "LA"})
_SIXTEEN_BIT_MODES = frozenset({"I", "I;16", "I;16L", "I;16B", "I;16N"})


@dataclass(frozen=True)
class _Decoded:
    array: NDArray[np.uint8]  # H x W (gray) or H x W x 3 (RGB)
    scaled_from_16_bit: bool

    @property
    def gray(self) -> bool:
        return self.array.ndim == 2


def _visible(path: Path) -> bool:
    return not path.name.startswith(".")


def _class_dirs(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.is_dir() and _visible(p))


def _image_files(class_dir: Path) -> list[Path]:
    files: list[Path] = []
    skipped = 0
    for dirpath, dirnames, filenames in os.walk(class_dir):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for filename in sorted(filenames):
            if filename.startswith("."):
                continue
            if Path(filename).suffix.lower() in IMAGE_EXTENSIONS:
                files.append(Path(dirpath) / filename)
            else:
                skipped += 1
    if skipped:
        logger.debug("%s: skipped %d file(s) without an image extension", class_dir, skipped)
    return files


def _is_gray_palette(image: Any) -> bool:
    palette = image.getpalette()
    if not palette:
        return False
    triples = np.asarray(palette, dtype=np.int64).reshape(-1, 3)
    return bool(np.all(triples[:, 0] == triples[:, 1]) and np.all(triples[:, 1] == triples[:, 2]))


def _decode(path: Path, image_size: int | None) -> _Decoded:
    """Read one image as uint8 gray (H x W) or RGB (H x W x 3), resized if asked."""
    from PIL import Image

    fix = f"delete or replace {path}, or move it out of the dataset folder"
    try:
        with Image.open(path) as image:
            image.load()
            mode = image.mode
            scaled = False
            if mode in _GRAY_MODES:
                converted = image.convert("L")
            elif mode in ("P", "PA"):
                converted = image.convert("L" if _is_gray_palette(image) else "RGB")
            elif mode in _SIXTEEN_BIT_MODES:
                values = np.asarray(image, dtype=np.int64)
                if values.size and (values.min() < 0 or values.max() > 65535):
                    raise DataError(
                        f"image {path} has integer values outside 0..65535 (mode {mode})",
                        fix="save it as 8-bit grayscale or RGB",
                    )
                # Full 16-bit range onto 0..255 (65535 / 257 = 255).
                gray = ((values * 255 + 32767) // 65535).astype(np.uint8)
                converted = Image.fromarray(gray)
                scaled = True
            elif mode == "F":
                raise DataError(
                    f"image {path} holds floating-point pixels (mode F), which have no fixed "
                    "range to map onto 0..255",
                    fix="save it as 8-bit grayscale or RGB",
                )
            else:
                converted = image.convert("RGB")
            if image_size is not None and converted.size != (image_size, image_size):
                converted = converted.resize((image_size, image_size), Image.Resampling.BILINEAR)
            array = np.asarray(converted, dtype=np.uint8).copy()
    except DataError:
        raise
    except Image.DecompressionBombError as exc:
        raise DataError(f"image {path} is too large to read safely: {exc}", fix=fix) from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise DataError(f"cannot read image {path}: {exc}", fix=fix) from exc
    return _Decoded(array=array, scaled_from_16_bit=scaled)


def _scan_split(folder: Path, classes: list[str]) -> tuple[list[Path], list[int]]:
    paths: list[Path] = []
    labels: list[int] = []
    for index, class_name in enumerate(classes):
        class_dir = folder / class_name
        files = _image_files(class_dir) if class_dir.is_dir() else []
        paths.extend(files)
        labels.extend([index] * len(files))
    return paths, labels


def _check_same_classes(root: Path, split_dirs: dict[str, Path]) -> list[str]:
    classes = {split: _class_dirs(folder) for split, folder in split_dirs.items()}
    reference = classes["train"]
    if not reference:
        raise DataError(
            f"{root / 'train'} has no class sub-folders",
            fix=f"put the images in {root / 'train'}/<class name>/",
        )
    for split, names in classes.items():
        if names != reference:
            missing = sorted(set(reference) - set(names))
            extra = sorted(set(names) - set(reference))
            details = "; ".join(
                part
                for part in (
                    f"missing there: {', '.join(missing)}" if missing else "",
                    f"not in train/: {', '.join(extra)}" if extra else "",
                )
                if part
            )
            raise DataError(
                f"the class folders of {split_dirs[split]} differ from those of "
                f"{split_dirs['train']} ({details})",
                fix="give every split folder the same class sub-folders (an empty one is fine)",
            )
    return reference


def _refuse_mixed_sizes(sizes: dict[tuple[int, int], Path], root: Path) -> None:
    """``sizes``: (H, W) -> one file of that size."""
    if len(sizes) > 1:
        examples = ", ".join(f"{h}x{w} ({p})" for (h, w), p in list(sizes.items())[:3])
        raise DataError(
            f"the images under {root} have {len(sizes)} different sizes, e.g. {examples}",
            fix="set image_size to resize every image to N x N while loading (spec key "
            "image_size: N, or image_size=N in Python)",
        )


#: A validation reads the headers of at most this many images to find mixed sizes.
MAX_HEADER_CHECKS = 20_000


def folder_image_sizes_agree(path: str | os.PathLike[str]) -> None:
    """Refuse a tree whose images differ in size (it loads only with ``image_size``), from
    the image headers alone (no pixel is decoded). A tree of more than
    :data:`MAX_HEADER_CHECKS` images is left to the load, which checks the same way."""
    from PIL import Image

    tree = _read_tree(path)
    paths = [p for paths, _ in tree.scanned.values() for p in paths]
    if len(paths) > MAX_HEADER_CHECKS:
        logger.debug("%s: %d images, sizes checked at load time", tree.root, len(paths))
        return
    sizes: dict[tuple[int, int], Path] = {}
    for file in paths:
        try:
            with Image.open(file) as image:
                width, height = image.size
        except (OSError, SyntaxError, ValueError) as exc:
            raise DataError(
                f"cannot read image {file}: {exc}",
                fix=f"delete or replace {file}, or move it out of the dataset folder",
            ) from exc
        sizes.setdefault((height, width), file)
    _refuse_mixed_sizes(sizes, tree.root)


def _to_nchw(
    decoded: list[_Decoded], paths: list[Path], rgb: bool, root: Path
) -> NDArray[np.uint8]:
    sizes: dict[tuple[int, int], Path] = {}
    for item, path in zip(decoded, paths, strict=True):
        sizes.setdefault((int(item.array.shape[0]), int(item.array.shape[1])), path)
    _refuse_mixed_sizes(sizes, root)
    stacked: list[NDArray[np.uint8]] = []
    for item in decoded:
        if rgb:
            array = item.array if not item.gray else np.repeat(item.array[:, :, None], 3, axis=2)
            stacked.append(array.transpose(2, 0, 1))
        else:
            stacked.append(item.array[None, :, :])
    return np.ascontiguousarray(np.stack(stacked))


@dataclass(frozen=True)
class _Tree:
    """A scanned class-per-folder tree: its layout, classes and image files per split."""

    root: Path
    split_dirs: dict[str, Path]
    classes: list[str]
    layout: str
    scanned: dict[str, tuple[list[Path], list[int]]]


def _read_tree(path: str | os.PathLike[str]) -> _Tree:
    root = Path(path).expanduser()
    if not root.is_dir():
        what = "is not a folder" if root.exists() else "does not exist"
        raise DataError(
            f"dataset folder {root} {what}",
            fix="point folder:<path> at a folder holding one sub-folder of images per class "
            "(or train/, val/, test/ folders of those)",
        )

    top = _class_dirs(root)
    if "train" in top:
        split_dirs = {split: root / split for split in SPLIT_NAMES if split in top}
        ignored = sorted(set(top) - set(SPLIT_NAMES))
        if ignored:
            logger.warning(
                "%s has a train/ folder; ignoring its other folders: %s", root, ", ".join(ignored)
            )
        classes = _check_same_classes(root, split_dirs)
        layout = "split folders"
    elif "val" in top or "test" in top:
        raise DataError(
            f"{root} has val/ or test/ but no train/ folder",
            fix=f"add {root / 'train'}/<class name>/ with the training images, or use one "
            "class-per-folder tree without split folders",
        )
    else:
        if not top:
            raise DataError(
                f"dataset folder {root} has no class sub-folders",
                fix=f"put the images in {root}/<class name>/",
            )
        split_dirs = {"train": root}
        classes = top
        layout = "class folders"

    scanned = {split: _scan_split(folder, classes) for split, folder in split_dirs.items()}
    train_counts = np.bincount(
        np.asarray(scanned["train"][1], dtype=np.int64), minlength=len(classes)
    )
    empty = [classes[i] for i in np.flatnonzero(train_counts == 0)]
    for split in ("val", "test"):
        if split in scanned:
            counts = np.bincount(
                np.asarray(scanned[split][1], dtype=np.int64), minlength=len(classes)
            )
            for i in np.flatnonzero(counts == 0):
                logger.warning("%s has no images of class %s", split_dirs[split], classes[i])
    if empty:
        raise DataError(
            f"no training images for class(es) {', '.join(empty)} under {split_dirs['train']}",
            fix=f"add image files ({', '.join(sorted(IMAGE_EXTENSIONS))}) to those class "
            "folders, or remove the empty folders",
        )
    return _Tree(root, split_dirs, classes, layout, scanned)


def _carve_fractions(missing: list[str]) -> tuple[float, float, float]:
    """The (train, val, test) shares that carve the ``missing`` splits out of train."""
    shares = dict(zip(SPLIT_NAMES, DEFAULT_SPLIT_FRACTIONS, strict=True))
    total = shares["train"] + sum(shares[s] for s in missing)
    return (
        shares["train"] / total,
        shares["val"] / total if "val" in missing else 0.0,
        shares["test"] / total if "test" in missing else 0.0,
    )


def folder_split_counts(
    path: str | os.PathLike[str], *, split_seed: int = 0
) -> tuple[tuple[str, ...], dict[str, NDArray[np.int64]]]:
    """The class names and per-class sample counts of each split :func:`load_folder` would
    make, from the file names alone (no image is decoded): a cheap check for validation."""
    tree = _read_tree(path)
    n = len(tree.classes)
    labels = {s: np.asarray(lab, dtype=np.int64) for s, (_, lab) in tree.scanned.items()}
    missing = [s for s in SPLIT_NAMES if s not in labels]
    if missing:
        parts = stratified_split_indices(
            labels["train"], _carve_fractions(missing), split_seed, warn=False
        )
        source = labels["train"]
        for split, idx in zip(SPLIT_NAMES, parts, strict=True):
            if split == "train" or split in missing:
                labels[split] = source[idx]
    counts = {s: np.bincount(labels[s], minlength=n).astype(np.int64) for s in SPLIT_NAMES}
    return tuple(tree.classes), counts


def _decode_splits(tree: _Tree, image_size: int | None) -> tuple[dict[str, Split], tuple[int, ...]]:
    """Every image of the tree decoded into one NCHW array (RGB unless all are gray), cut
    back into the tree's splits; also the array's shape."""
    decoded = {
        split: [_decode(p, image_size) for p in paths] for split, (paths, _) in tree.scanned.items()
    }
    flat = [item for items in decoded.values() for item in items]
    rgb = not all(item.gray for item in flat)
    if any(item.scaled_from_16_bit for item in flat):
        logger.warning(
            "%s: 16-bit images were scaled from the full 0..65535 range to 0..255", tree.root
        )
    all_paths = [p for paths, _ in tree.scanned.values() for p in paths]
    arrays = _to_nchw(flat, all_paths, rgb, tree.root)
    splits: dict[str, Split] = {}
    offset = 0
    for split, (paths, labels) in tree.scanned.items():
        images = arrays[offset : offset + len(paths)]
        offset += len(paths)
        splits[split] = Split(images, np.asarray(labels, dtype=np.int64))
    return splits, arrays.shape


def _carve_missing(splits: dict[str, Split], tree: _Tree, split_seed: int) -> str:
    """Carve the splits the tree lacks out of train (stratified, in place in ``splits``);
    returns the dataset's ``split_method``, which says what came from where."""
    missing = [s for s in SPLIT_NAMES if s not in splits]
    if not missing:
        return "train/, val/, test/ folders"
    fractions = _carve_fractions(missing)
    source_split = splits["train"]
    train_idx, val_idx, test_idx = stratified_split_indices(
        source_split.labels, fractions, split_seed
    )
    splits["train"] = source_split.subset(train_idx)
    if "val" in missing:
        splits["val"] = source_split.subset(val_idx)
    if "test" in missing:
        splits["test"] = source_split.subset(test_idx)
    carved = " and ".join(
        f"{s} ({100 * f:.1f}%)"
        for s, f in zip(SPLIT_NAMES[1:], fractions[1:], strict=True)
        if s in missing
    )
    origin = "the class folders" if tree.layout == "class folders" else "train/"
    split_method = f"{carved} carved out of {origin}, stratified, split_seed={split_seed}"
    if tree.layout == "split folders":
        given = ", ".join(f"{s}/" for s in SPLIT_NAMES if s in tree.split_dirs)
        split_method = f"{given} folders; {split_method}"
    return split_method


def load_folder(
    path: str | os.PathLike[str],
    *,
    name: str,
    image_size: int | None = None,
    split_seed: int = 0,
) -> ImageDataset:
    """Load a class-per-folder image tree.

    Args:
        path: the tree's root folder (``~`` expanded).
        name: the name to record on the dataset.
        image_size: resize every image to ``image_size`` x ``image_size`` (bilinear) while
            reading, so a tree of mixed sizes loads; without it all images must share one
            size.
        split_seed: seed of the stratified split of whatever the tree does not split itself.

    Raises:
        DataError: a missing folder, no classes or images, mismatched class folders across
            splits, an unreadable image (named by path), or mixed sizes without
            ``image_size``.
    """
    tree = _read_tree(path)
    splits, first = _decode_splits(tree, image_size)
    split_method = _carve_missing(splits, tree, split_seed)
    dataset = ImageDataset(
        name=name,
        num_classes=len(tree.classes),
        channels=int(first[1]),
        image_size=(int(first[2]), int(first[3])),
        class_names=tuple(tree.classes),
        train=splits["train"],
        val=splits["val"],
        test=splits["test"],
        source=str(tree.root.resolve()),
        split_method=split_method,
    )
    logger.debug(
        "loaded %s: %d classes, %d/%d/%d train/val/test, %s",
        tree.root,
        dataset.num_classes,
        len(dataset.train),
        len(dataset.val),
        len(dataset.test),
        split_method,
    )
    return dataset

"""``folder:<path>``: real PNG/JPEG files written with Pillow into tmp_path."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from frugalml.data import load_dataset
from frugalml.errors import DataError


def save_gray(path: Path, value: int, size: tuple[int, int] = (16, 16)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full(size, value, dtype=np.uint8)).save(path)


def save_rgb(path: Path, rgb: tuple[int, int, int], size: tuple[int, int] = (16, 16)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    array = np.empty((*size, 3), dtype=np.uint8)
    array[...] = rgb
    Image.fromarray(array).save(path)


def gray_tree(root: Path, classes: tuple[str, ...] = ("cat", "dog", "eel"), per_class: int = 10):
    """Class-per-folder tree; every image is one unique constant gray value."""
    value = 0
    for name in classes:
        for i in range(per_class):
            save_gray(root / name / f"img{i:02d}.png", value)
            value += 1
    return value


def test_flat_gray_tree_split_stratified(tmp_path: Path) -> None:
    gray_tree(tmp_path)
    ds = load_dataset(f"folder:{tmp_path}")
    assert ds.class_names == ("cat", "dog", "eel")
    assert (ds.num_classes, ds.channels, ds.image_size) == (3, 1, (16, 16))
    assert ds.source == str(tmp_path.resolve())
    assert "split_seed=0" in ds.split_method
    assert [len(ds.train), len(ds.val), len(ds.test)] == [21, 3, 6]
    assert ds.test.class_counts(3).tolist() == [2, 2, 2]
    assert ds.val.class_counts(3).tolist() == [1, 1, 1]
    # Every written image arrives once, with its label: value v belongs to class v // 10.
    values, labels = [], []
    for split in ds.splits().values():
        assert split.images.dtype == np.uint8
        for image, label in zip(split.images, split.labels, strict=True):
            assert image.min() == image.max()
            values.append(int(image[0, 0, 0]))
            labels.append(int(label))
    assert sorted(values) == list(range(30))
    assert all(v // 10 == label for v, label in zip(values, labels, strict=True))


def test_flat_tree_split_seed(tmp_path: Path) -> None:
    gray_tree(tmp_path)
    a = load_dataset(f"folder:{tmp_path}", split_seed=4)
    b = load_dataset(f"folder:{tmp_path}", split_seed=4)
    c = load_dataset(f"folder:{tmp_path}", split_seed=5)
    np.testing.assert_array_equal(a.test.images, b.test.images)
    assert not np.array_equal(a.test.images, c.test.images)


def test_split_folders_rgb_with_a_gray_image(tmp_path: Path) -> None:
    colours = {"blue": (0, 0, 200), "red": (200, 0, 0)}
    for split, n in (("train", 4), ("val", 2), ("test", 3)):
        for name, rgb in colours.items():
            for i in range(n):
                save_rgb(tmp_path / split / name / f"{i}.png", rgb)
    save_gray(tmp_path / "train" / "red" / "gray.png", 90)
    save_rgb(tmp_path / "test" / "blue" / "photo.jpg", (0, 0, 200))
    ds = load_dataset(f"folder:{tmp_path}")
    assert ds.class_names == ("blue", "red")
    assert ds.channels == 3
    assert [len(ds.train), len(ds.val), len(ds.test)] == [9, 4, 7]
    assert ds.split_method == "train/, val/, test/ folders"
    red = ds.train.images[ds.train.labels == 1]
    # The gray image became RGB with equal channels; colour images kept their colour.
    assert any(
        (img[0] == 90).all() and (img[1] == 90).all() and (img[2] == 90).all() for img in red
    )
    assert sum(int((img[0] == 200).all() and (img[1] == 0).all()) for img in red) == 4
    blue_test = ds.test.images[ds.test.labels == 0]
    assert len(blue_test) == 4
    assert np.abs(blue_test[:, 2].astype(int) - 200).max() <= 3  # JPEG is lossy


def test_train_and_test_folders_only_carves_val(tmp_path: Path) -> None:
    for split, n in (("train", 16), ("test", 4)):
        for cls in ("a", "b"):
            for i in range(n):
                save_gray(tmp_path / split / cls / f"{i}.png", i)
    ds = load_dataset(f"folder:{tmp_path}", split_seed=1)
    assert len(ds.test) == 8
    assert len(ds.val) == 4  # 1/8 of train/ per class (70:10)
    assert len(ds.train) == 28
    assert ds.val.class_counts(2).tolist() == [2, 2]
    assert "val (12.5%) carved out of train/" in ds.split_method


def test_hidden_and_non_image_files_ignored(tmp_path: Path) -> None:
    gray_tree(tmp_path, per_class=5)
    (tmp_path / "cat" / ".hidden.png").write_bytes(b"not an image")
    (tmp_path / "cat" / "notes.txt").write_text("ignore me")
    (tmp_path / ".cache").mkdir()
    save_gray(tmp_path / ".cache" / "x.png", 1)
    ds = load_dataset(f"folder:{tmp_path}")
    assert ds.class_names == ("cat", "dog", "eel")
    assert len(ds.train) + len(ds.val) + len(ds.test) == 15


def test_corrupt_image_reported_by_path(tmp_path: Path) -> None:
    gray_tree(tmp_path, per_class=3)
    bad = tmp_path / "dog" / "broken.png"
    bad.write_bytes(np.random.default_rng(0).bytes(300))
    with pytest.raises(DataError) as info:
        load_dataset(f"folder:{tmp_path}")
    assert str(bad) in str(info.value)


def test_truncated_image_reported_by_path(tmp_path: Path) -> None:
    gray_tree(tmp_path, per_class=3)
    bad = tmp_path / "eel" / "cut.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64), dtype=np.uint8)).save(bad)
    content = bad.read_bytes()
    bad.write_bytes(content[: len(content) // 2])
    with pytest.raises(DataError) as info:
        load_dataset(f"folder:{tmp_path}")
    assert str(bad) in str(info.value)


def test_mismatched_classes_across_splits(tmp_path: Path) -> None:
    gray_tree(tmp_path / "train", classes=("a", "b", "c"), per_class=2)
    gray_tree(tmp_path / "test", classes=("a", "b"), per_class=2)
    with pytest.raises(DataError) as info:
        load_dataset(f"folder:{tmp_path}")
    assert "missing there: c" in str(info.value)
    assert str(tmp_path / "test") in str(info.value)


def test_mixed_sizes_need_image_size(tmp_path: Path) -> None:
    gray_tree(tmp_path, per_class=4)
    save_gray(tmp_path / "cat" / "big.png", 7, size=(24, 30))
    with pytest.raises(DataError) as info:
        load_dataset(f"folder:{tmp_path}")
    assert "image_size" in str(info.value)
    assert "24x30" in str(info.value)
    ds = load_dataset(f"folder:{tmp_path}", image_size=12)
    assert ds.image_size == (12, 12)
    assert ds.train.images.shape[1:] == (1, 12, 12)
    # A constant image stays constant through the resize.
    everything = np.concatenate([s.images for s in ds.splits().values()])
    assert all(img.min() == img.max() for img in everything)


def test_palette_gray_and_16_bit_images_are_gray(tmp_path: Path) -> None:
    gray_tree(tmp_path, classes=("a", "b"), per_class=3)
    Image.fromarray(np.full((16, 16), 77, dtype=np.uint8)).convert("P").save(
        tmp_path / "a" / "p.png"
    )
    Image.fromarray(np.full((16, 16), 65535, dtype=np.uint16)).save(tmp_path / "b" / "deep.png")
    ds = load_dataset(f"folder:{tmp_path}")
    assert ds.channels == 1
    values = {int(img[0, 0, 0]) for s in ds.splits().values() for img in s.images}
    assert 77 in values and 255 in values


def test_relative_path_under_root(tmp_path: Path) -> None:
    gray_tree(tmp_path / "data" / "shapes", classes=("x", "y"), per_class=5)
    ds = load_dataset("folder:data/shapes", root=tmp_path)
    assert ds.source == str((tmp_path / "data" / "shapes").resolve())


@pytest.mark.parametrize(
    ("layout", "pattern"),
    [
        ("missing", "does not exist"),
        ("empty", "no class sub-folders"),
        ("val-only", "no train/ folder"),
        ("empty-class", "no training images for class"),
    ],
)
def test_bad_trees(tmp_path: Path, layout: str, pattern: str) -> None:
    root = tmp_path / "tree"
    if layout == "empty":
        root.mkdir()
    elif layout == "val-only":
        gray_tree(root / "val", per_class=2)
    elif layout == "empty-class":
        gray_tree(root, classes=("a", "b"), per_class=2)
        (root / "c").mkdir()
    with pytest.raises(DataError, match=pattern):
        load_dataset(f"folder:{root}")

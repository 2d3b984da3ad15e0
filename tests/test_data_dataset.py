"""ImageDataset/Split contracts, resizing, channels and the name registry."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from frugalml.data import (
    ImageDataset,
    Split,
    check_dataset_name,
    list_dataset_schemes,
    load_dataset,
    resize_images,
)
from frugalml.errors import ConfigError, DataError


def make_dataset(images: np.ndarray, num_classes: int = 2) -> ImageDataset:
    labels = np.arange(images.shape[0]) % num_classes
    split = Split(images, labels)
    return ImageDataset(
        name="toy",
        num_classes=num_classes,
        channels=images.shape[1],
        image_size=images.shape[2:],
        class_names=tuple(str(i) for i in range(num_classes)),
        train=split,
        val=split,
        test=split,
    )


def test_resized_shape_dtype_and_no_op() -> None:
    rng = np.random.default_rng(0)
    ds = make_dataset(rng.integers(0, 256, (6, 3, 8, 8), dtype=np.uint8))
    big = ds.resized(32)
    assert big.image_size == (32, 32)
    assert big.input_shape == (3, 32, 32)
    for split in big.splits().values():
        assert split.images.shape == (6, 3, 32, 32)
        assert split.images.dtype == np.uint8
    np.testing.assert_array_equal(big.train.labels, ds.train.labels)
    assert ds.resized(8) is ds
    assert ds.resized((8, 8)) is ds
    wide = ds.resized((10, 20))
    assert wide.image_size == (10, 20)
    assert wide.train.images.shape == (6, 3, 10, 20)


def test_resized_values() -> None:
    constant = np.full((2, 1, 8, 8), 123, dtype=np.uint8)
    assert (resize_images(constant, 32) == 123).all()
    gradient = np.tile(np.arange(0, 256, 32, dtype=np.uint8), (8, 1))[None, None]
    up = resize_images(gradient, (8, 32))[0, 0]
    assert (np.diff(up.astype(int), axis=1) >= 0).all()  # bilinear keeps the ramp monotonic
    assert abs(float(up.mean()) - float(gradient.mean())) < 4


def test_shrinking_is_antialiased() -> None:
    checker = (np.indices((32, 32)).sum(axis=0) % 2 * 255).astype(np.uint8)[None, None]
    small = resize_images(checker, 8)
    # Averaged neighbourhoods, not sampled pixels (which would be 0 or 255).
    assert small.min() > 100 and small.max() < 155


@pytest.mark.parametrize("bad", [0, -3, (8,), (8, 0), 2.5, True, "32"])
def test_resized_rejects_bad_sizes(bad: object) -> None:
    ds = make_dataset(np.zeros((2, 1, 4, 4), dtype=np.uint8))
    with pytest.raises(ConfigError, match="size"):
        ds.resized(bad)  # type: ignore[arg-type]


def test_with_channels_round_trip() -> None:
    rng = np.random.default_rng(1)
    gray = make_dataset(rng.integers(0, 256, (4, 1, 5, 5), dtype=np.uint8))
    rgb = gray.with_channels(3)
    assert rgb.channels == 3 and rgb.train.images.shape == (4, 3, 5, 5)
    back = rgb.with_channels(1)
    np.testing.assert_array_equal(back.train.images, gray.train.images)
    assert gray.with_channels(1) is gray
    pure_red = np.zeros((1, 3, 2, 2), dtype=np.uint8)
    pure_red[:, 0] = 255
    assert (make_dataset(pure_red, 1).with_channels(1).train.images == 76).all()
    with pytest.raises(ConfigError):
        gray.with_channels(2)


def test_split_validation() -> None:
    with pytest.raises(DataError, match="uint8"):
        Split(np.zeros((2, 1, 4, 4), dtype=np.float32), np.zeros(2, dtype=np.int64))
    with pytest.raises(DataError, match="4 dims"):
        Split(np.zeros((2, 4, 4), dtype=np.uint8), np.zeros(2, dtype=np.int64))
    with pytest.raises(DataError, match="2 images but 3 labels"):
        Split(np.zeros((2, 1, 4, 4), dtype=np.uint8), np.zeros(3, dtype=np.int64))
    split = Split(np.zeros((2, 1, 4, 4), dtype=np.uint8), np.array([0, 1], dtype=np.uint8))
    assert split.labels.dtype == np.int64
    assert len(split) == 2


def test_dataset_validation() -> None:
    images = np.zeros((3, 1, 4, 4), dtype=np.uint8)
    with pytest.raises(DataError, match=r"outside 0\.\.1"):
        ImageDataset(
            name="x",
            num_classes=2,
            channels=1,
            image_size=(4, 4),
            class_names=("a", "b"),
            train=Split(images, np.array([0, 1, 2])),
            val=Split(images, np.array([0, 1, 1])),
            test=Split(images, np.array([0, 1, 1])),
        )
    with pytest.raises(DataError, match="declares"):
        ImageDataset(
            name="x",
            num_classes=2,
            channels=3,
            image_size=(4, 4),
            class_names=("a", "b"),
            train=Split(images, np.array([0, 1, 1])),
            val=Split(images, np.array([0, 1, 1])),
            test=Split(images, np.array([0, 1, 1])),
        )


@pytest.mark.parametrize(
    "name", ["digits", "medmnist:dermamnist", "medmnist:pathmnist_224", "folder:/tmp/x"]
)
def test_valid_names(name: str) -> None:
    check_dataset_name(name)


@pytest.mark.parametrize(
    ("name", "pattern"),
    [
        ("cifar10", "unknown dataset"),
        ("", "unknown dataset"),
        ("digits:extra", "takes no argument"),
        ("folder:", "lacks its argument"),
        ("medmnist:bloodmnist_100", "no image size 100"),
        (42, "must be a string"),
    ],
)
def test_invalid_names_list_valid_forms(name: object, pattern: str) -> None:
    with pytest.raises(ConfigError, match=pattern) as info:
        check_dataset_name(name)  # type: ignore[arg-type]
    if "unknown dataset" in pattern:
        assert "medmnist:<flag>[_<size>]" in str(info.value)
        assert "folder:<path>" in str(info.value)


def test_schemes_listing() -> None:
    # The built-ins come first, in this order; a registered scheme may follow
    # (tests/test_data_registry.py), so the listing is not pinned to exactly these.
    schemes = list_dataset_schemes()
    assert [s.scheme for s in schemes][:3] == ["digits", "medmnist", "folder"]
    for scheme in schemes:
        assert scheme.description and "\n" not in scheme.description
        check_dataset_name(scheme.example)


@pytest.mark.parametrize(
    "options", [{"image_size": 0}, {"image_size": 2.5}, {"download": "yes"}, {"split_seed": -1}]
)
def test_load_options_validated(options: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        load_dataset("digits", **options)  # type: ignore[arg-type]


def test_import_is_light() -> None:
    code = (
        "import sys, frugalml.data; "
        "heavy = [m for m in ('torch', 'PIL', 'sklearn', 'medmnist') if m in sys.modules]; "
        "print(heavy); sys.exit(1 if heavy else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr

"""``medmnist:<flag>[_<size>]``: real npz files in tmp_path; the medmnist package mocked."""

from __future__ import annotations

import sys
import types
import urllib.error
from pathlib import Path
from typing import Any, ClassVar
from unittest import mock

import numpy as np
import pytest

from frugalml.data import dataset_root, load_dataset, medmnist_file_name
from frugalml.errors import ConfigError, DataError

SPLIT_SIZES = {"train": 30, "val": 8, "test": 12}


@pytest.fixture(autouse=True)
def _no_medmnist_package(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Each test starts as if the optional package were absent and no root were configured."""
    monkeypatch.setitem(sys.modules, "medmnist", None)  # makes `import medmnist` fail
    monkeypatch.delenv("FRUGALML_MEDMNIST_ROOT", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))


def make_arrays(
    *, size: int = 28, rgb: bool = False, num_classes: int = 7, seed: int = 0
) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    arrays: dict[str, np.ndarray] = {}
    for split, n in SPLIT_SIZES.items():
        shape = (n, size, size, 3) if rgb else (n, size, size)
        arrays[f"{split}_images"] = rng.integers(0, 256, size=shape, dtype=np.uint8)
        labels = np.arange(n) % num_classes  # every class present
        arrays[f"{split}_labels"] = labels.astype(np.uint8).reshape(n, 1)
    return arrays


def write_npz(path: Path, arrays: dict[str, np.ndarray]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **arrays)
    return path


def test_grayscale_28_through_the_real_path(tmp_path: Path) -> None:
    arrays = make_arrays(num_classes=11)
    path = write_npz(tmp_path / "organamnist.npz", arrays)
    ds = load_dataset("medmnist:organamnist", root=tmp_path, download=False)
    assert ds.name == "medmnist:organamnist"
    assert (ds.num_classes, ds.channels, ds.image_size) == (11, 1, (28, 28))
    assert ds.class_names == tuple(str(i) for i in range(11))
    assert ds.source == str(path)
    for split, n in SPLIT_SIZES.items():
        part = ds.splits()[split]
        assert part.images.shape == (n, 1, 28, 28)
        assert part.images.dtype == np.uint8
        assert part.labels.dtype == np.int64
        np.testing.assert_array_equal(part.images[:, 0], arrays[f"{split}_images"])
        np.testing.assert_array_equal(part.labels, arrays[f"{split}_labels"][:, 0])


def test_rgb_64_file_with_size_suffix(tmp_path: Path) -> None:
    arrays = make_arrays(size=64, rgb=True, num_classes=7)
    write_npz(tmp_path / "dermamnist_64.npz", arrays)
    ds = load_dataset("medmnist:dermamnist_64", root=tmp_path, download=False)
    assert (ds.channels, ds.image_size, ds.num_classes) == (3, (64, 64), 7)
    raw = arrays["train_images"]
    assert ds.train.images.shape == (30, 3, 64, 64)
    # N x H x W x C became N x C x H x W without mixing pixels up.
    np.testing.assert_array_equal(ds.train.images[4, :, 10, 20], raw[4, 10, 20, :])
    np.testing.assert_array_equal(ds.train.images.transpose(0, 2, 3, 1), raw)


def test_size_28_suffix_reads_the_plain_file(tmp_path: Path) -> None:
    write_npz(tmp_path / "dermamnist.npz", make_arrays(rgb=True))
    assert medmnist_file_name("dermamnist", 28) == "dermamnist.npz"
    assert medmnist_file_name("dermamnist", 128) == "dermamnist_128.npz"
    ds = load_dataset("medmnist:dermamnist_28", root=tmp_path, download=False)
    assert ds.image_size == (28, 28)


def test_image_size_resizes_the_loaded_file(tmp_path: Path) -> None:
    write_npz(tmp_path / "dermamnist.npz", make_arrays(rgb=True))
    ds = load_dataset("medmnist:dermamnist", root=tmp_path, image_size=32, download=False)
    assert ds.image_size == (32, 32)
    assert ds.test.images.shape == (12, 3, 32, 32)


def test_root_from_environment_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = tmp_path / "medmnist-data"
    write_npz(data / "pneumoniamnist.npz", make_arrays(num_classes=2))
    monkeypatch.setenv("FRUGALML_MEDMNIST_ROOT", str(data))
    assert dataset_root() == data
    ds = load_dataset("medmnist:pneumoniamnist", download=False)
    assert ds.num_classes == 2
    assert ds.source == str(data / "pneumoniamnist.npz")


def test_dataset_root_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert dataset_root() == tmp_path / "home" / ".medmnist"
    monkeypatch.setenv("FRUGALML_MEDMNIST_ROOT", str(tmp_path / "env"))
    assert dataset_root() == tmp_path / "env"
    assert dataset_root(tmp_path / "arg") == tmp_path / "arg"
    assert dataset_root("~/x") == tmp_path / "home" / "x"


def test_missing_file_without_download(tmp_path: Path) -> None:
    with pytest.raises(DataError) as info:
        load_dataset("medmnist:dermamnist_64", root=tmp_path, download=False)
    message = str(info.value)
    assert "dermamnist_64.npz" in message
    assert str(tmp_path) in message
    assert "frugalml[medmnist]" in message


def test_missing_file_without_the_package(tmp_path: Path) -> None:
    with pytest.raises(DataError) as info:
        load_dataset("medmnist:bloodmnist", root=tmp_path)
    message = str(info.value)
    assert "bloodmnist.npz" in message and str(tmp_path) in message
    assert "not installed" in message and "pip install" in message


class _FakeDataset:
    """Stands in for a medmnist dataset class; records how it was called."""

    calls: ClassVar[list[dict[str, Any]]] = []
    behaviour: ClassVar[Any] = None

    def __init__(self, **kwargs: Any) -> None:
        type(self).calls.append(kwargs)
        type(self).behaviour(**kwargs)


def _fake_package(behaviour: Any) -> types.ModuleType:
    module = types.ModuleType("medmnist")
    labels = {str(i): f"lesion type {i}" for i in range(7)}
    module.INFO = {  # type: ignore[attr-defined]
        "dermamnist": {
            "python_class": "DermaMNIST",
            "task": "multi-class",
            "label": labels,
            "n_channels": 3,
            "url_64": "https://example.org/dermamnist_64.npz",
        }
    }
    cls = type("DermaMNIST", (_FakeDataset,), {"calls": [], "behaviour": staticmethod(behaviour)})
    module.DermaMNIST = cls  # type: ignore[attr-defined]
    return module


def test_download_failure_is_a_clear_data_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def network_down(**kwargs: Any) -> None:
        raise RuntimeError("Automatic download failed! [Errno -3] name resolution failed")

    package = _fake_package(network_down)
    monkeypatch.setitem(sys.modules, "medmnist", package)
    root = tmp_path / "fresh-root"
    with pytest.raises(DataError) as info:
        load_dataset("medmnist:dermamnist_64", root=root)
    message = str(info.value)
    assert "dermamnist_64.npz" in message and str(root) in message
    assert "Automatic download failed" in message
    assert "https://example.org/dermamnist_64.npz" in message  # where to get it by hand
    assert package.DermaMNIST.calls == [
        {"split": "train", "download": True, "root": str(root), "size": 64}
    ]


def test_download_success_then_class_names_from_info(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fetch(*, root: str, size: int, **_: Any) -> None:
        write_npz(Path(root) / "dermamnist_64.npz", make_arrays(size=size, rgb=True))

    package = _fake_package(fetch)
    monkeypatch.setitem(sys.modules, "medmnist", package)
    ds = load_dataset("medmnist:dermamnist_64", root=tmp_path / "r")
    assert ds.class_names == tuple(f"lesion type {i}" for i in range(7))
    assert ds.train.images.shape == (30, 3, 64, 64)
    # Present now: no second download.
    load_dataset("medmnist:dermamnist_64", root=tmp_path / "r")
    assert len(package.DermaMNIST.calls) == 1


def test_download_false_never_calls_the_package(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    package = _fake_package(lambda **_: None)
    monkeypatch.setitem(sys.modules, "medmnist", package)
    with pytest.raises(DataError, match="download disabled"):
        load_dataset("medmnist:dermamnist", root=tmp_path, download=False)
    assert package.DermaMNIST.calls == []


def test_real_medmnist_package_with_network_down(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delitem(sys.modules, "medmnist")
    pytest.importorskip("medmnist")
    tv_utils = pytest.importorskip("torchvision.datasets.utils")
    error = urllib.error.URLError("[Errno -3] Temporary failure in name resolution")
    with (
        mock.patch.object(tv_utils, "download_url", side_effect=error) as download_url,
        pytest.raises(DataError) as info,
    ):
        load_dataset("medmnist:breastmnist", root=tmp_path)
    assert download_url.call_count == 1
    assert download_url.call_args.kwargs["filename"] == "breastmnist.npz"
    assert "breastmnist.npz" in str(info.value) and str(tmp_path) in str(info.value)


def test_missing_keys(tmp_path: Path) -> None:
    arrays = make_arrays()
    del arrays["val_labels"], arrays["test_images"]
    write_npz(tmp_path / "dermamnist.npz", arrays)
    with pytest.raises(DataError, match="lacks the keys val_labels, test_images"):
        load_dataset("medmnist:dermamnist", root=tmp_path, download=False)


def test_mismatched_lengths(tmp_path: Path) -> None:
    arrays = make_arrays(rgb=True)
    arrays["train_labels"] = arrays["train_labels"][:-3]
    write_npz(tmp_path / "dermamnist.npz", arrays)
    with pytest.raises(DataError, match="27 labels for 30 images"):
        load_dataset("medmnist:dermamnist", root=tmp_path, download=False)


@pytest.mark.parametrize("bad_label", [7, 200])
def test_label_out_of_range(tmp_path: Path, bad_label: int) -> None:
    arrays = make_arrays(rgb=True)
    arrays["test_labels"][5, 0] = bad_label
    write_npz(tmp_path / "dermamnist.npz", arrays)
    with pytest.raises(DataError, match=r"test_labels span 0\.\.\d+, outside 0\.\.6"):
        load_dataset("medmnist:dermamnist", root=tmp_path, download=False)


def test_negative_label(tmp_path: Path) -> None:
    arrays = make_arrays(rgb=True)
    arrays["val_labels"] = arrays["val_labels"].astype(np.int64)
    arrays["val_labels"][0, 0] = -1
    write_npz(tmp_path / "dermamnist.npz", arrays)
    with pytest.raises(DataError, match=r"outside 0\.\.6"):
        load_dataset("medmnist:dermamnist", root=tmp_path, download=False)


def test_wrong_image_size_for_the_name(tmp_path: Path) -> None:
    write_npz(tmp_path / "dermamnist.npz", make_arrays(size=64, rgb=True))
    with pytest.raises(DataError) as info:
        load_dataset("medmnist:dermamnist", root=tmp_path, download=False)
    assert "64x64" in str(info.value) and "medmnist:dermamnist_64" in str(info.value)


def test_wrong_channel_count_for_the_flag(tmp_path: Path) -> None:
    write_npz(tmp_path / "dermamnist.npz", make_arrays(rgb=False))
    with pytest.raises(DataError, match=r"1 channel\(s\) but dermamnist has 3"):
        load_dataset("medmnist:dermamnist", root=tmp_path, download=False)


def test_float_images_rejected(tmp_path: Path) -> None:
    arrays = make_arrays(rgb=True)
    arrays["train_images"] = arrays["train_images"].astype(np.float32) / 255
    write_npz(tmp_path / "dermamnist.npz", arrays)
    with pytest.raises(DataError, match="float32, expected uint8"):
        load_dataset("medmnist:dermamnist", root=tmp_path, download=False)


def test_volume_shaped_images_rejected(tmp_path: Path) -> None:
    arrays = make_arrays()
    arrays["train_images"] = np.zeros((30, 28, 28, 28), dtype=np.uint8)
    write_npz(tmp_path / "organamnist.npz", arrays)
    with pytest.raises(DataError, match="3D volumes are not supported"):
        load_dataset("medmnist:organamnist", root=tmp_path, download=False)


def test_truncated_file_named_in_the_error(tmp_path: Path) -> None:
    path = write_npz(tmp_path / "dermamnist.npz", make_arrays(rgb=True))
    content = path.read_bytes()
    path.write_bytes(content[: len(content) // 2])
    with pytest.raises(DataError) as info:
        load_dataset("medmnist:dermamnist", root=tmp_path, download=False)
    assert str(path) in str(info.value)
    assert "truncated or corrupt" in str(info.value)


def test_random_bytes_file(tmp_path: Path) -> None:
    path = tmp_path / "dermamnist.npz"
    path.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(DataError, match=r"dermamnist\.npz"):
        load_dataset("medmnist:dermamnist", root=tmp_path, download=False)


def test_npy_instead_of_npz(tmp_path: Path) -> None:
    path = tmp_path / "dermamnist.npz"
    with path.open("wb") as handle:
        np.save(handle, np.zeros((3, 28, 28), dtype=np.uint8))
    with pytest.raises(DataError, match="not an npz archive"):
        load_dataset("medmnist:dermamnist", root=tmp_path, download=False)


def test_multi_label_file_rejected(tmp_path: Path) -> None:
    arrays = make_arrays(rgb=True)
    arrays["train_labels"] = np.zeros((30, 7), dtype=np.uint8)
    write_npz(tmp_path / "dermamnist.npz", arrays)
    with pytest.raises(DataError, match="multi-label classification is not supported yet"):
        load_dataset("medmnist:dermamnist", root=tmp_path, download=False)


def test_chestmnist_rejected_before_touching_files(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="multi-label classification is not supported yet"):
        load_dataset("medmnist:chestmnist_64", root=tmp_path)
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize(
    ("name", "pattern"),
    [
        ("medmnist:dermamnist_32", "no image size 32"),
        ("medmnist:dermamnsit", "did you mean dermamnist"),
        ("medmnist:organmnist3d", "3D"),
        ("medmnist:DermaMNIST", "malformed"),
        ("medmnist:", "lacks its argument"),
    ],
)
def test_bad_names(name: str, pattern: str) -> None:
    with pytest.raises(ConfigError, match=pattern):
        load_dataset(name, download=False)

"""register_dataset_scheme: a new scheme is one call, and the specs, errors and the contract
see it. The scheme here is real (a loader that draws class-coded stripes), registered into
a copy of the registry so no other test sees it."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

import frugalml.data._registry as registry
from frugalml.data import (
    DatasetScheme,
    ImageDataset,
    LoadOptions,
    Split,
    check_dataset,
    check_dataset_name,
    dataset_name_forms,
    list_dataset_schemes,
    load_dataset,
    register_dataset_scheme,
)
from frugalml.errors import ConfigError
from frugalml.testing import DatasetSchemeContract

STRIPES = DatasetScheme(
    scheme="stripes",
    usage="stripes:<classes>",
    description="class k is a bright row at height k on an 8x8 dark image (tests only)",
    example="stripes:3",
    takes_argument=True,
)


def _check_stripes_name(argument: str) -> None:
    if not argument.isdigit() or not 2 <= int(argument) <= 8:
        raise ConfigError(
            f"stripes takes a class count in [2, 8], got {argument!r}", fix="e.g. stripes:3"
        )


def _load_stripes(name: str, argument: str, options: LoadOptions) -> ImageDataset:
    classes = int(argument)
    per_class = 4
    labels = np.repeat(np.arange(classes, dtype=np.int64), per_class)
    images = np.zeros((len(labels), 1, 8, 8), dtype=np.uint8)
    images[np.arange(len(labels)), 0, labels, :] = 255
    split = Split(images, labels)
    return ImageDataset(
        name=name,
        num_classes=classes,
        channels=1,
        image_size=(8, 8),
        class_names=tuple(f"row{k}" for k in range(classes)),
        train=split,
        val=split,
        test=split,
        source="drawn stripes",
        split_method=f"every image in every split, split_seed={options.split_seed}",
    )


checked_calls: list[tuple[str, str, LoadOptions]] = []


def _check_stripes(name: str, argument: str, options: LoadOptions) -> None:
    checked_calls.append((name, argument, options))


@pytest.fixture
def stripes(monkeypatch: pytest.MonkeyPatch) -> Iterator[DatasetScheme]:
    monkeypatch.setattr(registry, "_SCHEMES", dict(registry._SCHEMES))
    register_dataset_scheme(STRIPES, _load_stripes, _check_stripes, check_name=_check_stripes_name)
    checked_calls.clear()
    yield STRIPES


def test_a_registered_scheme_loads_and_is_listed(stripes: DatasetScheme) -> None:
    assert stripes in list_dataset_schemes()
    assert "stripes:<classes>" in dataset_name_forms()
    dataset = load_dataset("stripes:3", image_size=16, split_seed=2)
    assert dataset.name == "stripes:3" and dataset.num_classes == 3
    assert dataset.image_size == (16, 16)  # load_dataset resizes after the loader
    assert dataset.split_method.endswith("split_seed=2")


def test_its_checks_run_where_the_builtins_do(stripes: DatasetScheme) -> None:
    with pytest.raises(ConfigError, match="class count"):
        check_dataset_name("stripes:many")
    with pytest.raises(ConfigError) as caught:
        check_dataset_name("stripes:")
    assert caught.value.fix and "stripes:<classes>" in caught.value.fix
    with pytest.raises(ConfigError) as caught:
        check_dataset_name("nosuch")
    assert caught.value.fix and "stripes:<classes>" in caught.value.fix
    check_dataset("stripes:4", root="/data", split_seed=5)
    assert checked_calls == [
        ("stripes:4", "4", LoadOptions(root="/data", image_size=None, download=None, split_seed=5))
    ]


def test_specs_accept_it(stripes: DatasetScheme) -> None:
    from frugalml.study import StudySpec
    from frugalml.tune import TuneSpec

    study = StudySpec.from_mapping(
        {"name": "s", "datasets": ["stripes:3", "digits"], "models": ["frugal_mlp"]}
    )
    assert study.datasets == ("stripes:3", "digits")
    space = {"lr": {"type": "float", "low": 1e-4, "high": 1e-2}}
    tune = TuneSpec.from_mapping({"name": "t", "dataset": "stripes:3", "search_space": space})
    assert tune.dataset == "stripes:3"
    with pytest.raises(ConfigError, match="class count"):
        StudySpec.from_mapping({"name": "s", "datasets": ["stripes:9"], "models": ["frugal_mlp"]})


def test_without_registration_the_name_is_unknown() -> None:
    with pytest.raises(ConfigError, match="unknown dataset"):
        check_dataset_name("stripes:3")


@pytest.mark.parametrize(
    ("scheme", "message"),
    [
        (STRIPES, "already registered"),
        (DatasetScheme("a:b", "a:b", "x", "a:b", False), "without ':'"),
        (DatasetScheme("", "", "x", "", False), "without ':'"),
    ],
)
def test_bad_registrations_refused(
    stripes: DatasetScheme, scheme: DatasetScheme, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        register_dataset_scheme(scheme, _load_stripes)


class TestStripesContract(DatasetSchemeContract):
    """The registered scheme passes the same contract as the built-ins."""

    @pytest.fixture(autouse=True)
    def _registered(self, stripes: DatasetScheme) -> None:
        return None

    def schemes(self) -> tuple[DatasetScheme, ...]:
        return (STRIPES,)

    def loadable_name(self, scheme: DatasetScheme, request: pytest.FixtureRequest) -> str | None:
        return "stripes:3"

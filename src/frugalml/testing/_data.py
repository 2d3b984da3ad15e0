"""The contract every registered dataset scheme passes (:class:`DatasetSchemeContract`)."""

from __future__ import annotations

import pytest

from frugalml.data import (
    DatasetScheme,
    ImageDataset,
    check_dataset_name,
    list_dataset_schemes,
    load_dataset,
)
from frugalml.errors import ConfigError

__all__ = ["DatasetSchemeContract"]


class DatasetSchemeContract:
    """Contract tests run once per registered dataset scheme (``scheme`` parameter).

    Every scheme states its usage, a one-line description and an example that passes
    :func:`~frugalml.data.check_dataset_name`; a name without the argument it needs (or
    with one it does not take) is refused with a :class:`ConfigError` saying how to write
    it; an unknown scheme's error lists every scheme's usage. Where :meth:`loadable_name`
    gives a name that loads on this machine, it loads into a usable
    :class:`~frugalml.data.ImageDataset` with train, validation and test images.

    Subclass it (the name starting with ``Test``); override :meth:`schemes` to test only
    some, and :meth:`loadable_name` for the schemes whose data a test can provide.
    """

    def schemes(self) -> tuple[DatasetScheme, ...]:
        """The schemes under test (default: every registered one, read at collection)."""
        return list_dataset_schemes()

    def loadable_name(self, scheme: DatasetScheme, request: pytest.FixtureRequest) -> str | None:
        """A name of ``scheme`` that loads here (making its files under ``tmp_path`` if
        needed), or None to skip loading it."""
        return None

    def pytest_generate_tests(self, metafunc: pytest.Metafunc) -> None:
        if "scheme" in metafunc.fixturenames:
            found = self.schemes()
            metafunc.parametrize("scheme", found, ids=[s.scheme for s in found])

    def test_scheme_is_described(self, scheme: DatasetScheme) -> None:
        assert scheme.scheme and ":" not in scheme.scheme
        assert scheme.usage.startswith(scheme.scheme)
        assert scheme.description and "\n" not in scheme.description
        assert scheme.example.partition(":")[0] == scheme.scheme
        assert [s.scheme for s in list_dataset_schemes()].count(scheme.scheme) == 1

    def test_example_is_a_valid_name(self, scheme: DatasetScheme) -> None:
        check_dataset_name(scheme.example)

    def test_argument_rules_have_clear_errors(self, scheme: DatasetScheme) -> None:
        wrong = f"{scheme.scheme}:" if scheme.takes_argument else f"{scheme.scheme}:extra"
        with pytest.raises(ConfigError) as caught:
            check_dataset_name(wrong)
        assert repr(wrong) in str(caught.value)
        assert caught.value.fix and scheme.usage in caught.value.fix

    def test_unknown_scheme_lists_this_one(self, scheme: DatasetScheme) -> None:
        with pytest.raises(ConfigError) as caught:
            check_dataset_name(f"no-such-scheme-{scheme.scheme}")
        assert caught.value.fix and scheme.usage in caught.value.fix

    def test_example_loads_where_it_can(
        self, scheme: DatasetScheme, request: pytest.FixtureRequest
    ) -> None:
        name = self.loadable_name(scheme, request)
        if name is None:
            pytest.skip(f"no data for {scheme.scheme!r} on this machine (loadable_name)")
        dataset = load_dataset(name)
        assert isinstance(dataset, ImageDataset)
        assert dataset.name == name
        assert dataset.num_classes >= 2 and len(dataset.class_names) == dataset.num_classes
        for split in (dataset.train, dataset.val, dataset.test):
            assert len(split) > 0
            assert split.images.shape[1:] == dataset.input_shape
            assert split.labels.min() >= 0 and split.labels.max() < dataset.num_classes

"""Stratified, seeded index selection: train/val/test splits and training-data fractions.

Both helpers work per class, so every class keeps its share, and draw from one
``numpy.random.default_rng(seed)`` in sorted class order, so the same labels and seed always
give the same indices. Returned indices are sorted, keeping the original sample order.
"""

from __future__ import annotations

import logging
import math
import numbers

import numpy as np
from numpy.typing import NDArray

from frugalml.errors import ConfigError

__all__ = ["DEFAULT_SPLIT_FRACTIONS", "stratified_fraction_indices", "stratified_split_indices"]

logger = logging.getLogger(__name__)

#: Train, validation and test shares used when a dataset ships without its own split.
DEFAULT_SPLIT_FRACTIONS: tuple[float, float, float] = (0.7, 0.1, 0.2)


def _round_half_up(value: float) -> int:
    return math.floor(value + 0.5)


def _as_labels(labels: NDArray[np.integer] | list[int]) -> NDArray[np.int64]:
    array = np.asarray(labels)
    if array.ndim != 1:
        raise ConfigError(f"labels must be a 1-D array, got shape {array.shape}")
    if array.size and not np.issubdtype(array.dtype, np.integer):
        raise ConfigError(f"labels must be integers, got dtype {array.dtype}")
    return array.astype(np.int64, copy=False)


def check_fraction(fraction: float) -> float:
    """Return ``fraction`` as a float if it lies in (0, 1], else raise :class:`ConfigError`."""
    if isinstance(fraction, bool) or not isinstance(fraction, numbers.Real):
        raise ConfigError(
            f"fraction must be a number in (0, 1], got {fraction!r}",
            fix="use e.g. 0.1 for 10% of the training data or 1.0 for all of it",
        )
    value = float(fraction)
    if not (0.0 < value <= 1.0):  # also rejects NaN
        raise ConfigError(
            f"fraction must be in (0, 1], got {value!r}",
            fix="use e.g. 0.1 for 10% of the training data or 1.0 for all of it",
        )
    return value


def _check_seed(seed: int) -> int:
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or int(seed) < 0:
        raise ConfigError(f"seed must be a non-negative integer, got {seed!r}")
    return int(seed)


def stratified_fraction_indices(
    labels: NDArray[np.integer] | list[int], fraction: float, seed: int
) -> NDArray[np.int64]:
    """Indices of a stratified, seeded subset holding about ``fraction`` of each class.

    Each class with ``n`` samples contributes ``round(fraction * n)`` of them, but never fewer
    than one, so every class present in ``labels`` stays present even at tiny fractions.

    Args:
        labels: 1-D integer class labels.
        fraction: share to keep, in (0, 1]; 1.0 keeps everything.
        seed: seed of the draw; the same labels and seed give the same indices.

    Returns:
        Sorted int64 indices into ``labels``.

    Raises:
        ConfigError: ``fraction`` outside (0, 1], a negative seed or malformed labels.
    """
    value = check_fraction(fraction)
    seed = _check_seed(seed)
    array = _as_labels(labels)
    if value == 1.0:
        return np.arange(array.size, dtype=np.int64)
    rng = np.random.default_rng(seed)
    chosen: list[NDArray[np.int64]] = []
    for cls in np.unique(array):
        members = np.flatnonzero(array == cls)
        keep = max(1, _round_half_up(value * members.size))
        chosen.append(rng.permutation(members)[:keep])
    if not chosen:
        return np.empty(0, dtype=np.int64)
    return np.sort(np.concatenate(chosen)).astype(np.int64, copy=False)


def stratified_split_indices(
    labels: NDArray[np.integer] | list[int],
    fractions: tuple[float, float, float] = DEFAULT_SPLIT_FRACTIONS,
    seed: int = 0,
    *,
    warn: bool = True,
) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.int64]]:
    """Split sample indices into stratified train, validation and test parts.

    Per class with ``n`` samples, ``round(n * val)`` go to validation and ``round(n * test)``
    to test, the rest to train; a class always keeps at least one training sample (its
    validation and test shares shrink first). A share of 0 gives an empty part.

    Args:
        labels: 1-D integer class labels.
        fractions: (train, val, test) shares; non-negative, summing to 1.
        seed: seed of the shuffle within each class.
        warn: log a warning for each class missing from validation or test (a check that
            only counts the split passes False).

    Returns:
        Sorted int64 index arrays ``(train, val, test)`` that partition ``range(len(labels))``.

    Raises:
        ConfigError: shares that are negative or do not sum to 1, a negative seed or
            malformed labels.
    """
    seed = _check_seed(seed)
    array = _as_labels(labels)
    if len(fractions) != 3 or any(
        isinstance(f, bool) or not isinstance(f, numbers.Real) or not f >= 0 for f in fractions
    ):
        raise ConfigError(
            f"split fractions must be three non-negative numbers, got {fractions!r}",
            fix="use e.g. (0.7, 0.1, 0.2) for train, validation and test",
        )
    if not math.isclose(sum(float(f) for f in fractions), 1.0, abs_tol=1e-6):
        raise ConfigError(
            f"split fractions must sum to 1, got {fractions!r} (sum {sum(fractions):.4f})",
            fix="use e.g. (0.7, 0.1, 0.2) for train, validation and test",
        )
    _, val_share, test_share = (float(f) for f in fractions)
    rng = np.random.default_rng(seed)
    parts: tuple[list[NDArray[np.int64]], list[NDArray[np.int64]], list[NDArray[np.int64]]] = (
        [],
        [],
        [],
    )
    for cls in np.unique(array):
        members = rng.permutation(np.flatnonzero(array == cls))
        n = members.size
        n_test = _round_half_up(n * test_share)
        n_val = _round_half_up(n * val_share)
        while n - n_test - n_val < 1 and (n_test or n_val):
            if n_test >= n_val and n_test:
                n_test -= 1
            else:
                n_val -= 1
        missing = [
            part
            for part, count, share in (
                ("validation", n_val, val_share),
                ("test", n_test, test_share),
            )
            if count == 0 and share > 0
        ]
        if missing and warn:
            logger.warning(
                "class %d has only %d sample(s): it is missing from the %s split",
                int(cls),
                n,
                " and ".join(missing),
            )
        parts[2].append(members[:n_test])
        parts[1].append(members[n_test : n_test + n_val])
        parts[0].append(members[n_test + n_val :])
    result = tuple(
        np.sort(np.concatenate(p)).astype(np.int64, copy=False) if p else np.empty(0, np.int64)
        for p in parts
    )
    return result[0], result[1], result[2]

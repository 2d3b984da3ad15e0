"""How one global batch is split over ranks that are not equally fast."""

from __future__ import annotations

import math
from collections.abc import Sequence

from frugalml.errors import ConfigError

__all__ = ["normalise_shares", "shares_from_throughput", "split_counts"]


def normalise_shares(shares: Sequence[float], nproc: int | None = None) -> tuple[float, ...]:
    """``shares`` (any positive weights, e.g. ``3, 1``) scaled to sum to 1."""
    values = tuple(float(s) for s in shares)
    if nproc is not None and len(values) != nproc:
        raise ConfigError(
            f"parallel.shares has {len(values)} value(s) for {nproc} processes",
            fix="give one share per process, e.g. shares: [3, 1] for nproc: 2",
        )
    if not values or not all(math.isfinite(v) and v > 0 for v in values):
        raise ConfigError(
            f"parallel.shares must be numbers > 0, not {list(shares)!r}",
            fix="e.g. shares: [3, 1] gives the first process three quarters of each batch",
        )
    total = sum(values)
    return tuple(v / total for v in values)


def shares_from_throughput(samples_per_s: Sequence[float]) -> tuple[float, ...]:
    """Shares proportional to measured throughput, so all ranks finish a step together."""
    return normalise_shares(samples_per_s)


def split_counts(total: int, shares: Sequence[float]) -> list[int]:
    """Integer sample counts per rank summing to ``total``, by largest remainder (ties go
    to the lower rank). A rank may get 0 samples of a small final batch."""
    if total < 0:
        raise ConfigError(f"cannot split {total} samples")
    exact = [total * s for s in shares]
    counts = [math.floor(x) for x in exact]
    left = total - sum(counts)
    order = sorted(range(len(shares)), key=lambda i: (-(exact[i] - counts[i]), i))
    for i in order[:left]:
        counts[i] += 1
    return counts

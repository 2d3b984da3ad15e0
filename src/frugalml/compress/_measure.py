"""Measured inference cost: latency from interleaved repeats, energy per 1,000 inferences.

Latency: every repeat times each model once, in a rotating order (so a slow spell of a
loaded machine falls on every model, not on one), as ``calls`` back-to-back forward passes
on one batch; a repeat's figure is milliseconds per call. The median of the repeats has a
distribution-free confidence interval from order statistics (binomial ranks). A model's
change against the baseline is the median of the per-repeat ratios, with the same kind of
interval: it counts as real only when that interval excludes 1 (no change).

Energy: one meter window per model and repeat, again interleaved, each running enough
inferences to last ``min_window_s``; ``energy_per_1k_j`` is the window's energy over the
samples it processed, times 1,000, with the window's provenance (measured / estimated) and
counters.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from frugalml.errors import ConfigError

if TYPE_CHECKING:
    import torch

    from frugalml.meter import Meter

__all__ = [
    "EnergyResult",
    "Interval",
    "LatencyResult",
    "measure_energy",
    "measure_latency",
    "median_interval",
    "ratio_interval",
]

Clock = Callable[[], float]


@dataclass(frozen=True)
class Interval:
    """A median with a confidence interval (``low``, ``high``) from ``n`` samples;
    ``confidence`` is the interval's actual coverage (order statistics give discrete
    levels: 5 samples cover 93.75 %, 3 only 75 %)."""

    median: float
    low: float
    high: float
    n: int
    confidence: float

    def excludes(self, value: float, *, min_confidence: float = 0.9) -> bool:
        """True when the interval lies wholly above or below ``value`` and covers at least
        ``min_confidence`` (too few samples never exclude anything)."""
        if self.confidence < min_confidence:
            return False
        return self.high < value or self.low > value


def median_interval(values: Sequence[float], confidence: float = 0.95) -> Interval:
    """Median and order-statistic interval of ``values``: ranks ``k`` and ``n - k + 1``
    where ``k`` is the binomial(n, 1/2) quantile at ``(1 - confidence) / 2`` (at least 1,
    so 5 samples give min..max, 93.75 % coverage)."""
    import numpy as np
    from scipy.stats import binom

    xs = sorted(float(v) for v in values if math.isfinite(float(v)))
    n = len(xs)
    if n == 0:
        return Interval(math.nan, math.nan, math.nan, 0, confidence)
    k = max(int(binom.ppf((1 - confidence) / 2, n, 0.5)), 1)
    coverage = float(1 - 2 * binom.cdf(k - 1, n, 0.5))
    return Interval(float(np.median(xs)), xs[k - 1], xs[n - k], n, coverage)


def ratio_interval(
    values: Sequence[float], baseline: Sequence[float], confidence: float = 0.95
) -> Interval:
    """Interval of the median per-repeat ratio ``values[i] / baseline[i]`` (paired)."""
    if len(values) != len(baseline):
        raise ConfigError("paired samples differ in length", fix="measure them interleaved")
    ratios = [v / b for v, b in zip(values, baseline, strict=True) if b > 0]
    return median_interval(ratios, confidence)


@dataclass(frozen=True)
class LatencyResult:
    batch_size: int
    samples_ms: dict[str, list[float]]
    calls: dict[str, int]

    def interval(self, name: str) -> Interval:
        return median_interval(self.samples_ms[name])

    def ratio(self, name: str, baseline: str) -> Interval:
        return ratio_interval(self.samples_ms[name], self.samples_ms[baseline])


def _sync(device: Any) -> None:
    import torch

    if getattr(device, "type", str(device)) == "cuda":
        torch.cuda.synchronize(device)


def _check(models: Mapping[str, Any], repeats: int) -> None:
    if not models:
        raise ConfigError("no model to measure", fix="pass at least one model")
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise ConfigError(f"repeats must be >= 1, got {repeats!r}", fix="e.g. repeats: 15")


def _calibrate(model: Any, x: Any, min_time_s: float, clock: Clock, device: Any) -> int:
    model(x)  # warm-up
    _sync(device)
    t0 = clock()
    model(x)
    _sync(device)
    one = max(clock() - t0, 1e-6)
    return max(1, min(10_000, math.ceil(min_time_s / one)))


def measure_latency(
    models: Mapping[str, torch.nn.Module],
    example: torch.Tensor,
    *,
    repeats: int = 15,
    min_time_s: float = 0.02,
    calls: Mapping[str, int] | None = None,
    clock: Clock = time.perf_counter,
) -> LatencyResult:
    """Milliseconds per forward pass of each model on ``example``, interleaved repeats.

    ``calls`` fixes the passes per timing (else each model is calibrated to ``min_time_s``);
    ``clock`` is for tests.
    """
    import torch

    _check(models, repeats)
    names = list(models)
    device = example.device
    counts: dict[str, int] = {}
    samples: dict[str, list[float]] = {n: [] for n in names}
    with torch.inference_mode():
        for name in names:
            models[name].eval()
            counts[name] = (
                int(calls[name])
                if calls is not None and name in calls
                else _calibrate(models[name], example, min_time_s, clock, device)
            )
        for r in range(repeats):
            shift = r % len(names)
            for name in names[shift:] + names[:shift]:
                model, n = models[name], counts[name]
                _sync(device)
                t0 = clock()
                for _ in range(n):
                    model(example)
                _sync(device)
                samples[name].append((clock() - t0) / n * 1000.0)
    return LatencyResult(batch_size=int(example.shape[0]), samples_ms=samples, calls=counts)


@dataclass(frozen=True)
class EnergyResult:
    """Energy per 1,000 inferences of each model: samples per repeat, provenance, sources."""

    samples_j: dict[str, list[float]]
    provenance: dict[str, str]
    source: dict[str, str]

    def interval(self, name: str) -> Interval:
        return median_interval(self.samples_j[name])

    def ratio(self, name: str, baseline: str) -> Interval:
        return ratio_interval(self.samples_j[name], self.samples_j[baseline])


def measure_energy(
    models: Mapping[str, torch.nn.Module],
    example: torch.Tensor,
    meter: Meter,
    *,
    repeats: int = 5,
    min_window_s: float = 1.0,
    clock: Clock = time.perf_counter,
) -> EnergyResult:
    """Energy per 1,000 inferences of each model, one meter window per model and repeat."""
    import torch

    _check(models, repeats)
    names = list(models)
    device = example.device
    batch = int(example.shape[0])
    samples: dict[str, list[float]] = {n: [] for n in names}
    kinds: dict[str, set[str]] = {n: set() for n in names}
    sources: dict[str, str] = {}
    with torch.inference_mode():
        counts = {
            n: _calibrate(models[n].eval(), example, min_window_s, clock, device) for n in names
        }
        for r in range(repeats):
            shift = r % len(names)
            for name in names[shift:] + names[:shift]:
                with meter.window(f"inference {name} {r + 1}") as window:
                    for _ in range(counts[name]):
                        models[name](example)
                    _sync(device)
                m = window.measurement
                if m is None:
                    continue
                samples[name].append(m.energy_j / (counts[name] * batch) * 1000.0)
                kinds[name].add(m.provenance)
                sources[name] = m.energy_source
    from frugalml.meter import combine_provenance

    provenance: dict[str, str] = {n: combine_provenance(k) for n, k in kinds.items()}
    return EnergyResult(samples_j=samples, provenance=provenance, source=sources)

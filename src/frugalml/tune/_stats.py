"""Statistics of a strategy comparison: energy to target as a time-to-event with censoring.

A run either reaches the target accuracy after spending ``energy_j`` (an *event*) or ends
its budget without reaching it (*censored* at the energy it spent: all we know is that its
energy to target is more than that). Censored runs are never put into a median as
infinities; they enter through the estimators made for them:

- :func:`km_median` -- the Kaplan-Meier median: the smallest energy at which the estimated
  share of runs still short of the target drops to 0.5 or below; ``inf`` ("not reached")
  when fewer than half of the runs are known to have reached it.
- :func:`bootstrap_median_ci` -- a percentile bootstrap interval of that median (resampling
  runs with replacement, a fixed seed; an upper bound of ``inf`` means the median is not
  reached in more than ``(1 - confidence) / 2`` of the resamples).
- :func:`bootstrap_ratio_ci` -- the same for the ratio of two strategies' medians
  (:func:`median_ratio`), each strategy's runs resampled on their own.
- :func:`logrank_test` -- the two-sample log-rank test on energy to target (events and
  censoring as above; chi-square with 1 degree of freedom).
- :func:`mann_whitney_censored` -- the Mann-Whitney U test with censored runs ranked last
  (tied with each other), valid when every run had the same budget, so a censored run spent
  at least as much as any run that reached the target (up to the one trial by which a budget
  may be overshot).

:func:`median_lower_bound` bounds a median that is not reached (the median energy to target
exceeds it), and :func:`median_at_most` says whether one strategy's median is at most a
fraction of another's, by that bound when the other's is not reached. :func:`p_in_words`
states a p-value in words.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from frugalml.errors import ConfigError

#: Resamples of :func:`bootstrap_median_ci` unless told.
BOOTSTRAP_RESAMPLES = 2000


@dataclass(frozen=True)
class Outcome:
    """One run: ``energy_j`` spent to reach the target (``reached``) or, if not, in all."""

    energy_j: float
    reached: bool


def _check(outcomes: Sequence[Outcome], where: str) -> None:
    for o in outcomes:
        if not (math.isfinite(o.energy_j) and o.energy_j >= 0):
            raise ConfigError(
                f"{where}: energy must be a finite number >= 0, got {o.energy_j!r}",
                fix="give the energy spent to the target, or in all for a censored run",
            )


def km_median(outcomes: Sequence[Outcome]) -> float:
    """Kaplan-Meier median energy to target (``inf`` when not reached; NaN for no runs).

    At each energy ``t`` where runs reach the target, the share still short is multiplied
    by ``1 - d / n`` (``d`` reaching at ``t``, ``n`` neither reached nor censored before
    ``t``; runs censored at ``t`` count in ``n``). Without censoring this is the lower median.
    """
    _check(outcomes, "km_median")
    if not outcomes:
        return math.nan
    survival = 1.0
    times = sorted({o.energy_j for o in outcomes if o.reached})
    for t in times:
        at_risk = sum(1 for o in outcomes if o.energy_j >= t)
        events = sum(1 for o in outcomes if o.reached and o.energy_j == t)
        survival *= 1.0 - events / at_risk
        if survival <= 0.5 + 1e-12:
            return t
    return math.inf


def _check_bootstrap(confidence: float, resamples: int) -> None:
    if not 0 < confidence < 1:
        raise ConfigError(f"confidence must be in (0, 1), got {confidence!r}", fix="e.g. 0.95")
    if resamples < 1:
        raise ConfigError(f"resamples must be >= 1, got {resamples!r}", fix="e.g. 2000")


def _resamples(outcomes: Sequence[Outcome], resamples: int, rng: Any) -> list[list[Outcome]]:
    n = len(outcomes)
    return [[outcomes[i] for i in rng.integers(0, n, size=n)] for _ in range(resamples)]


def _percentiles(values: Sequence[float], confidence: float) -> tuple[float, float]:
    import numpy as np

    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(np.array(values), [alpha, 1.0 - alpha], method="inverted_cdf")
    return (float(low), float(high))


def bootstrap_median_ci(
    outcomes: Sequence[Outcome],
    *,
    confidence: float = 0.95,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap interval of :func:`km_median` (``inf`` bounds: not reached).

    Resample ``i`` draws ``len(outcomes)`` runs with replacement from
    ``numpy.random.default_rng(seed)``; the bounds are the ``(1 - confidence) / 2`` and
    ``(1 + confidence) / 2`` quantiles (``numpy.quantile``'s "inverted_cdf" rule) of the
    resampled medians.
    """
    import numpy as np

    _check(outcomes, "bootstrap_median_ci")
    _check_bootstrap(confidence, resamples)
    if not outcomes:
        return (math.nan, math.nan)
    rng = np.random.default_rng(seed)
    medians = [km_median(r) for r in _resamples(outcomes, resamples, rng)]
    return _percentiles(medians, confidence)


def median_ratio(candidate: Sequence[Outcome], reference: Sequence[Outcome]) -> float:
    """``km_median(candidate) / km_median(reference)``, or an upper bound of it when the
    reference's median is not reached: the candidate's median over
    :func:`median_lower_bound` of the reference's. ``inf`` when the candidate's median is
    not reached, or the reference's is not and has no bound: nothing smaller can be said.
    """
    m = km_median(candidate)
    ref = km_median(reference)
    if not math.isfinite(m) or math.isnan(ref):
        return math.inf if not math.isnan(m) else math.nan
    if not math.isfinite(ref):
        bound = median_lower_bound(reference)
        ref = bound if bound is not None else 0.0
    if ref <= 0:
        return 0.0 if m == 0 else math.inf
    return m / ref


def bootstrap_ratio_ci(
    candidate: Sequence[Outcome],
    reference: Sequence[Outcome],
    *,
    confidence: float = 0.95,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap interval of :func:`median_ratio`: how many times the
    reference's median energy to target the candidate's is.

    The two samples are independent, so each is resampled on its own: ``resamples`` draws of
    the candidate's runs, then as many of the reference's, from one
    ``numpy.random.default_rng(seed)``; resample ``i`` of each gives ratio ``i``. A resample
    whose reference median is not reached counts at the bound :func:`median_ratio` gives
    (the ratio can only be smaller), so the upper end errs high, never low. Bounds as in
    :func:`bootstrap_median_ci`; NaN for an empty side.
    """
    import numpy as np

    _check(candidate, "bootstrap_ratio_ci")
    _check(reference, "bootstrap_ratio_ci")
    _check_bootstrap(confidence, resamples)
    if not candidate or not reference:
        return (math.nan, math.nan)
    rng = np.random.default_rng(seed)
    ours = _resamples(candidate, resamples, rng)
    theirs = _resamples(reference, resamples, rng)
    ratios = [median_ratio(a, b) for a, b in zip(ours, theirs, strict=True)]
    return _percentiles(ratios, confidence)


@dataclass(frozen=True)
class TestResult:
    """A two-sample test: its name, statistic and two-sided p-value."""

    test: str
    statistic: float
    p_value: float


def logrank_test(a: Sequence[Outcome], b: Sequence[Outcome]) -> TestResult:
    """Two-sample log-rank test on energy to target, censored runs at the energy they spent.

    At each distinct energy where a run of either group reaches the target: ``O - E`` for
    group ``a`` adds ``d_a - d * n_a / n`` and the variance adds
    ``d * (n_a / n) * (1 - n_a / n) * (n - d) / (n - 1)``; the statistic ``(O - E)^2 / V``
    is chi-square with 1 degree of freedom. With no event, or no variance, p is 1.
    """
    from scipy.stats import chi2

    _check(a, "logrank_test")
    _check(b, "logrank_test")
    times = sorted({o.energy_j for o in (*a, *b) if o.reached})
    o_minus_e = 0.0
    variance = 0.0
    for t in times:
        n_a = sum(1 for o in a if o.energy_j >= t)
        n_b = sum(1 for o in b if o.energy_j >= t)
        d_a = sum(1 for o in a if o.reached and o.energy_j == t)
        d_b = sum(1 for o in b if o.reached and o.energy_j == t)
        n, d = n_a + n_b, d_a + d_b
        o_minus_e += d_a - d * n_a / n
        if n > 1:
            variance += d * (n_a / n) * (1 - n_a / n) * (n - d) / (n - 1)
    if variance <= 0:
        return TestResult("log-rank", 0.0, 1.0)
    statistic = o_minus_e**2 / variance
    return TestResult("log-rank", statistic, float(chi2.sf(statistic, 1)))


def mann_whitney_censored(a: Sequence[Outcome], b: Sequence[Outcome]) -> TestResult:
    """Two-sided Mann-Whitney U test on energy to target, censored runs ranked last (tied).

    The statistic is U of group ``a`` (scipy's ``mannwhitneyu``, asymptotic with tie
    correction); a low U means ``a`` reached the target for less energy.
    """
    from scipy.stats import mannwhitneyu

    _check(a, "mann_whitney_censored")
    _check(b, "mann_whitney_censored")
    if not a or not b:
        return TestResult("Mann-Whitney (censored last)", math.nan, 1.0)
    last = max(o.energy_j for o in (*a, *b)) + 1.0

    def ranked(outcomes: Sequence[Outcome]) -> list[float]:
        return [o.energy_j if o.reached else last for o in outcomes]

    xs, ys = ranked(a), ranked(b)
    if len(set(xs + ys)) == 1:
        return TestResult("Mann-Whitney (censored last)", len(xs) * len(ys) / 2, 1.0)
    result = mannwhitneyu(xs, ys, alternative="two-sided", method="asymptotic")
    return TestResult("Mann-Whitney (censored last)", float(result.statistic), float(result.pvalue))


def p_in_words(p_value: float, *, better: str | None = None, worse: str | None = None) -> str:
    """A p-value in words; with ``better``/``worse``, which one needed less energy."""
    if not math.isfinite(p_value):
        return "no test (too few runs)"
    shown = "p < 0.001" if p_value < 0.001 else f"p = {p_value:.3f}"
    who = f"{better} needs less energy than {worse}" if better and worse else "a difference"
    if p_value < 0.01:
        return f"strong evidence that {who} ({shown}; significant at 1%)"
    if p_value < 0.05:
        return f"evidence that {who} ({shown}; significant at 5%)"
    if p_value < 0.1:
        return f"weak evidence that {who} ({shown}; not significant at 5%)"
    return f"no significant difference ({shown})"


def median_lower_bound(outcomes: Sequence[Outcome]) -> float | None:
    """When :func:`km_median` is not reached, a bound the median energy to target exceeds.

    The median is the ``ceil(n / 2)``-th smallest energy to target. A run that reached the
    target at ``e`` has energy ``e``; one censored at ``c`` more than ``c``. So the median
    exceeds ``t`` whenever at least ``floor(n / 2) + 1`` runs are known to exceed it (reached
    above ``t``, or censored at ``t`` or above): the bound is the largest observed energy
    ``t`` for which that holds. Under one budget for every run (censored runs spent about
    the budget) it is the least energy a censored run spent. None when the median is
    reached (finite) or no such ``t`` exists.
    """
    _check(outcomes, "median_lower_bound")
    if not outcomes or math.isfinite(km_median(outcomes)):
        return None
    need = len(outcomes) // 2 + 1
    bounds = [
        t
        for t in sorted({o.energy_j for o in outcomes})
        if sum(1 for o in outcomes if (o.energy_j > t) or (not o.reached and o.energy_j >= t))
        >= need
    ]
    return max(bounds) if bounds else None


@dataclass(frozen=True)
class MedianComparison:
    """Whether ``candidate``'s median energy to target is at most ``fraction`` of
    ``reference``'s: ``holds`` is True or False when it can be decided, None when not."""

    holds: bool | None
    in_words: str


def _j(value: float) -> str:
    return f"{value:,.1f} J"


def median_at_most(
    candidate: Sequence[Outcome],
    reference: Sequence[Outcome],
    fraction: float = 0.5,
    *,
    names: tuple[str, str] = ("candidate", "reference"),
) -> MedianComparison:
    """Is the candidate's Kaplan-Meier median at most ``fraction`` of the reference's?

    When the reference's median is not reached, its median exceeds
    :func:`median_lower_bound` ``L``; a candidate median ``m <= fraction x L`` is then at
    most ``fraction`` of it (a bound, stated as such); a larger ``m`` cannot be decided. A
    candidate whose median is not reached is not at most any finite share of it.
    """
    ours, theirs = names
    m = km_median(candidate)
    ref = km_median(reference)
    share = f"{fraction:g} of it" if fraction != 0.5 else "half of it"
    if not math.isfinite(m):
        return MedianComparison(False, f"{ours}'s median is not reached either")
    if math.isfinite(ref):
        holds = m <= fraction * ref
        ratio = m / ref if ref > 0 else math.inf
        verdict = "at most" if holds else "more than"
        return MedianComparison(
            holds,
            f"{theirs}'s median {_j(ref)}; {ours}'s {_j(m)} is {ratio:.2f} of it "
            f"({verdict} {share})",
        )
    bound = median_lower_bound(reference)
    if bound is None:
        return MedianComparison(None, f"{theirs}'s median is not reached and has no bound")
    reached = sum(o.reached for o in reference)
    head = (
        f"{theirs}'s median > {_j(bound)} (not reached: {reached} of {len(reference)} runs "
        f"reached the target)"
    )
    if m <= fraction * bound:
        return MedianComparison(True, f"{head}; {ours}'s {_j(m)} is at most {share}")
    return MedianComparison(
        None,
        f"{head}; {ours}'s {_j(m)} is above {fraction:g} x {_j(bound)} = "
        f"{_j(fraction * bound)}, so whether it is at most {share} cannot be told",
    )

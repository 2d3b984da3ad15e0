"""Statistics of the strategy comparison against hand-computed cases."""

from __future__ import annotations

import math

import pytest

from frugalml.errors import ConfigError
from frugalml.tune._stats import (
    Outcome,
    bootstrap_median_ci,
    bootstrap_ratio_ci,
    km_median,
    logrank_test,
    mann_whitney_censored,
    median_ratio,
    p_in_words,
)


def _runs(*items: tuple[float, bool]) -> list[Outcome]:
    return [Outcome(e, r) for e, r in items]


# a reaches the target at 10 and 20 J, one run censored at 30 J;
# b reaches it at 15 J, two runs censored at 25 and 30 J.
A = _runs((10, True), (20, True), (30, False))
B = _runs((15, True), (25, False), (30, False))


def test_km_median_by_hand() -> None:
    assert km_median(A) == 20  # S: 10 -> 2/3, 20 -> 1/3
    assert math.isinf(km_median(B))  # S: 15 -> 2/3 and no further event
    assert km_median(_runs((3, True), (1, True), (2, True))) == 2  # no censoring: the median
    assert km_median(_runs((10, True), (20, True), (30, False), (40, False))) == 20  # 3/4, 1/2
    assert math.isnan(km_median([]))


def test_logrank_by_hand() -> None:
    # t=10: n=(3,3) d_a=1: O-E = 1 - 1/2, V = 1/4
    # t=15: n=(2,3) d_b=1: O-E += -2/5, V += 2/5 * 3/5
    # t=20: n=(2,2) d_a=1: O-E += 1/2, V += 1/4          -> O-E = 0.6, V = 0.74
    result = logrank_test(A, B)
    assert result.statistic == pytest.approx(0.36 / 0.74)
    assert result.p_value == pytest.approx(math.erfc(math.sqrt(0.36 / 0.74 / 2)))
    from scipy.stats import CensoredData, logrank

    def data(runs: list[Outcome]) -> CensoredData:
        return CensoredData(
            uncensored=[o.energy_j for o in runs if o.reached],
            right=[o.energy_j for o in runs if not o.reached],
        )

    assert result.p_value == pytest.approx(logrank(data(A), data(B)).pvalue)
    assert logrank_test(_runs((1, False)), _runs((2, False))).p_value == 1.0


def test_mann_whitney_with_censored_runs_ranked_last_by_hand() -> None:
    # ranked values: a = 10, 20, last; b = 15, last, last. Pairs where a is larger:
    # 20 > 15, last > 15, and last against two lasts counts 2 x 0.5: U_a = 3 of 9.
    # Tie-corrected variance 9/12 * (7 - (27 - 3) / 30) = 4.65; continuity correction 0.5.
    result = mann_whitney_censored(A, B)
    assert result.statistic == 3
    z = (abs(3 - 4.5) - 0.5) / math.sqrt(4.65)
    assert result.p_value == pytest.approx(math.erfc(z / math.sqrt(2)))
    assert mann_whitney_censored(_runs((1, False)), _runs((1, False))).p_value == 1.0


def test_bootstrap_interval_on_a_fixed_sample_with_a_fixed_seed() -> None:
    # Resampling 1, 2, 3: the median is 1 with probability 7/27, 3 with 7/27, 2 with 13/27,
    # so the 2.5% and 97.5% quantiles of 2000 resampled medians are 1 and 3.
    sample = _runs((1, True), (2, True), (3, True))
    assert bootstrap_median_ci(sample, seed=0) == (1.0, 3.0)
    assert bootstrap_median_ci(sample, seed=0) == bootstrap_median_ci(sample, seed=0)
    # at 40% confidence (quantiles 0.3 and 0.7 of a 7/27, 13/27, 7/27 law): both 2
    assert bootstrap_median_ci(sample, confidence=0.4, seed=0) == (2.0, 2.0)
    # half the runs censored: many resamples never reach the median, the bound is inf
    half = _runs((10, True), (20, True), (30, False), (40, False))
    low, high = bootstrap_median_ci(half, seed=1)
    assert low == 10 and math.isinf(high)
    assert all(math.isnan(v) for v in bootstrap_median_ci([]))
    with pytest.raises(ConfigError, match="confidence"):
        bootstrap_median_ci(sample, confidence=1.0)
    with pytest.raises(ConfigError, match="finite"):
        km_median([Outcome(math.inf, False)])


def test_ratio_of_medians_and_its_bootstrap_interval_by_hand() -> None:
    # the candidate always 2 J; the reference 4 or 8 J. Resampling the reference's two runs:
    # {4, 4} and {4, 8} give the (lower) median 4, probability 3/4; {8, 8} gives 8, 1/4. So
    # the ratio is 0.5 with probability 3/4 and 0.25 with 1/4: its 2.5% quantile 0.25 and
    # its 97.5% one 0.5; at 40% confidence (quantiles 0.3 and 0.7) both 0.5.
    two = _runs((2, True))
    ref = _runs((4, True), (8, True))
    assert median_ratio(two, ref) == 0.5
    assert bootstrap_ratio_ci(two, ref, seed=0) == (0.25, 0.5)
    assert bootstrap_ratio_ci(two, ref, confidence=0.4, seed=0) == (0.5, 0.5)
    assert bootstrap_ratio_ci(two, ref, seed=3) == bootstrap_ratio_ci(two, ref, seed=3)
    # a reference whose median is not reached (1 of 3 at 30 J, the others censored at 144
    # and 150 J: its median > 144 J): the ratio is at most 60 / 144, and said as that bound
    censored = _runs((30, True), (144, False), (150, False))
    assert median_ratio(_runs((60, True)), censored) == pytest.approx(60 / 144)
    # a candidate that never gets there is not any finite share of anything
    assert math.isinf(median_ratio(_runs((60, False)), ref))
    low, high = bootstrap_ratio_ci(_runs((60, False)), ref)
    assert math.isinf(low) and math.isinf(high)
    assert all(math.isnan(v) for v in bootstrap_ratio_ci([], ref))
    with pytest.raises(ConfigError, match="resamples"):
        bootstrap_ratio_ci(two, ref, resamples=0)


def test_p_in_words() -> None:
    assert p_in_words(0.0004, better="tpe", worse="random") == (
        "strong evidence that tpe needs less energy than random (p < 0.001; significant at 1%)"
    )
    assert "significant at 5%" in p_in_words(0.03)
    assert "not significant at 5%" in p_in_words(0.07)
    assert p_in_words(0.5) == "no significant difference (p = 0.500)"
    assert p_in_words(math.nan) == "no test (too few runs)"


def test_median_lower_bound_by_hand() -> None:
    from frugalml.tune._stats import median_lower_bound

    # 10 runs under one budget: 4 reached (20, 30, 40, 50 J), 6 censored at 140-145 J.
    # The median (5th smallest) exceeds t when >= 6 runs are known to exceed t: the six
    # censored runs exceed 140 (censored at >= 140); at 141 only five are known to.
    runs = _runs(
        (20, True), (30, True), (40, True), (50, True),
        (140, False), (141, False), (142, False), (143, False), (144, False), (145, False),
    )  # fmt: skip
    assert math.isinf(km_median(runs))
    assert median_lower_bound(runs) == 140
    assert median_lower_bound(A) is None  # A's median (20 J) is reached
    # B: 1 of 3 reached; the 2nd smallest exceeds t when >= 2 runs exceed t: at 25 the runs
    # censored at 25 and 30 do; at 30 only one.
    assert median_lower_bound(B) == 25


def test_median_at_most_states_the_bound() -> None:
    from frugalml.tune._stats import median_at_most

    random = _runs(
        (20, True), (30, True), (40, True), (50, True),
        (144, False), (144, False), (144, False), (144, False), (144, False), (144, False),
    )  # fmt: skip
    frugal = _runs(*[(60.0, True)] * 9, (144, False))
    verdict = median_at_most(frugal, random, names=("frugal", "random"))
    assert verdict.holds is True
    assert verdict.in_words == (
        "random's median > 144.0 J (not reached: 4 of 10 runs reached the target); "
        "frugal's 60.0 J is at most half of it"
    )
    slow = _runs(*[(80.0, True)] * 10)
    undecided = median_at_most(slow, random, names=("slow", "random"))
    assert undecided.holds is None  # 80 > 72: the bound cannot tell
    assert "above 0.5 x 144.0 J = 72.0 J" in undecided.in_words
    # both medians reached: a plain ratio (60 / 130 = 0.46)
    reached = _runs((130, True), (130, True), (150, False))
    both = median_at_most(frugal, reached, names=("frugal", "random"))
    assert both.holds is True
    assert "0.46 of it (at most half of it)" in both.in_words
    assert median_at_most(reached, frugal).holds is False  # 130 > 30
    assert median_at_most(random, frugal).holds is False  # not reached

"""Significance tests compared with SciPy called directly on hand-split data."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from frugalml.analysis import (
    MANN_WHITNEY,
    PAPER_SIZE_THRESHOLD,
    WILCOXON,
    comparison_table,
    describe_test,
    paired_comparison,
    small_vs_large,
)
from frugalml.errors import ConfigError, DataError

NAN = math.nan


def sizes_table() -> pd.DataFrame:
    # setting s1: params 1, 2, 3 (M) are small at a 3.5M split; 10, 20, 40 large.
    # setting s2: one small model only (too few to test).
    return pd.DataFrame(
        {
            "model": ["a", "b", "c", "d", "e", "f", "a", "d", "e", "g"],
            "dataset": ["s1"] * 6 + ["s2"] * 4,
            "params": [1e6, 2e6, 3e6, 10e6, 20e6, 40e6, 1e6, 10e6, 20e6, 50e6],
            "score": [0.70, 0.66, 0.72, 0.55, 0.60, 0.50, 0.65, 0.58, NAN, 0.40],
        }
    )


def test_small_vs_large_matches_scipy() -> None:
    results = small_vs_large(
        sizes_table(), score="score", size="params", threshold=3.5e6, group="dataset"
    )
    overall, s1, s2 = results
    # All scorable rows: small = a, b, c (s1) and a (s2); large = d, e, f (s1), d, g (s2).
    small = [0.70, 0.66, 0.72, 0.65]
    large = [0.55, 0.60, 0.50, 0.58, 0.40]
    expected = stats.mannwhitneyu(small, large, alternative="two-sided")
    assert overall.setting == {}
    assert (overall.n_small, overall.n_large, overall.n_dropped) == (4, 5, 1)
    assert overall.statistic == float(expected.statistic)
    assert overall.p_value == float(expected.pvalue)
    assert overall.median_small == pytest.approx((0.66 + 0.70) / 2, abs=1e-12)
    assert overall.median_large == pytest.approx(0.55, abs=1e-12)
    assert overall.test == MANN_WHITNEY
    # Every small model beats every large one: U for the small sample is 4 * 5 = 20.
    assert overall.statistic == 20.0

    expected_s1 = stats.mannwhitneyu([0.70, 0.66, 0.72], [0.55, 0.60, 0.50])
    assert s1.setting == {"dataset": "s1"}
    assert s1.p_value == float(expected_s1.pvalue)
    assert s1.median_small == 0.70

    assert s2.setting == {"dataset": "s2"}
    assert (s2.n_small, s2.n_large) == (1, 2)
    assert math.isnan(s2.p_value)
    assert math.isnan(s2.statistic)
    assert s2.reason is not None and "too few" in s2.reason


def test_default_threshold_is_the_median() -> None:
    (result,) = small_vs_large(sizes_table(), score="score", size="params")
    # params of the 9 scorable rows sorted: 1, 1, 2, 3, 10, 10, 40, 50 (M) plus e's 20M
    # in s1: 1, 1, 2, 3, 10, 10, 20, 40, 50 -> median 10M; small = <= 10M (6 rows).
    assert result.threshold == 10e6
    assert (result.n_small, result.n_large) == (6, 3)


def test_average_by_model_counts_each_model_once() -> None:
    (result,) = small_vs_large(
        sizes_table(), score="score", size="params", threshold=3.5e6, average_by="model"
    )
    # Per-model means: a (0.70 + 0.65) / 2 = 0.675, b 0.66, c 0.72 (small);
    # d (0.55 + 0.58) / 2 = 0.565, e 0.60, f 0.50, g 0.40 (large).
    expected = stats.mannwhitneyu([0.675, 0.66, 0.72], [0.565, 0.60, 0.50, 0.40])
    assert (result.n_small, result.n_large) == (3, 4)
    assert result.p_value == float(expected.pvalue)
    assert result.median_small == pytest.approx(0.675, abs=1e-12)


def test_describe_size_test() -> None:
    (result,) = small_vs_large(
        sizes_table().rename(columns={"score": "pepr_energy_j"}),
        threshold=PAPER_SIZE_THRESHOLD,
    )
    text = describe_test(result)
    # <= 24.6M: a, b, c, d, e(NaN, dropped), a, d, e(s2): 0.70 0.66 0.72 0.55 0.60 0.65 0.58
    # sorted: 0.55 0.58 0.60 0.65 0.66 0.70 0.72 -> median 0.65; large: 0.50, 0.40 -> 0.45
    assert text.startswith("small models (<= 24.6M params, n=7): median PePR-E 0.65 vs 0.45")
    assert "for large (n=2); two-sided Mann-Whitney U = " in text
    assert ", p = " in text


def test_small_vs_large_errors() -> None:
    with pytest.raises(DataError, match="no row has both"):
        small_vs_large(pd.DataFrame({"score": [NAN], "params": [1.0]}), score="score")
    with pytest.raises(ConfigError, match="finite"):
        small_vs_large(sizes_table(), score="score", threshold=math.nan)


def paired_table() -> pd.DataFrame:
    # Four models on dataset A, pretrained and from scratch; model 'e' has no scratch run.
    rows = [
        ("a", "A", True, 0.90),
        ("b", "A", True, 0.85),
        ("c", "A", True, 0.80),
        ("d", "A", True, 0.70),
        ("e", "A", True, 0.60),
        ("a", "A", False, 0.70),
        ("b", "A", False, 0.80),
        ("c", "A", False, 0.81),
        ("d", "A", False, 0.50),
        ("a", "B", True, 0.50),
        ("a", "B", False, 0.50),
    ]
    return pd.DataFrame(rows, columns=["model", "dataset", "pretrained", "accuracy"])


def test_paired_comparison_matches_scipy() -> None:
    results = paired_comparison(paired_table(), group="dataset")
    overall, on_a, on_b = results
    # Pairs (pretrained, scratch) on (model, dataset); 'e' has no partner.
    x = [0.90, 0.85, 0.80, 0.70, 0.50]
    y = [0.70, 0.80, 0.81, 0.50, 0.50]
    expected = stats.wilcoxon(x, y, alternative="two-sided")
    assert overall.test == WILCOXON
    assert overall.pair_on == ("model", "dataset")
    assert (overall.n_pairs, overall.n_unpaired) == (5, 1)
    assert overall.statistic == float(expected.statistic)
    assert overall.p_value == float(expected.pvalue)
    # differences 0.20, 0.05, -0.01, 0.20, 0.00 -> sorted -0.01, 0, 0.05, 0.2, 0.2 -> 0.05
    assert overall.median_difference == pytest.approx(0.05, abs=1e-12)

    expected_a = stats.wilcoxon(x[:4], y[:4])
    assert on_a.setting == {"dataset": "A"}
    assert on_a.n_pairs == 4
    assert on_a.p_value == float(expected_a.pvalue)

    # Dataset B has one pair: too few.
    assert on_b.n_pairs == 1
    assert math.isnan(on_b.p_value)
    assert on_b.reason is not None and "too few pairs" in on_b.reason


def test_paired_with_nullable_factor_column() -> None:
    table = paired_table()
    table["pretrained"] = table["pretrained"].astype("boolean")
    table.loc[len(table)] = ["z", "A", pd.NA, 0.3]  # no level: ignored
    (result,) = paired_comparison(table)
    assert result.n_pairs == 5


def test_paired_all_zero_differences() -> None:
    table = pd.DataFrame(
        {
            "model": ["a", "b", "a", "b"],
            "fraction": [1.0, 1.0, 0.1, 0.1],
            "accuracy": [0.5, 0.6, 0.5, 0.6],
        }
    )
    (result,) = paired_comparison(table, factor="fraction", levels=(1.0, 0.1))
    assert result.n_pairs == 2
    assert result.median_difference == 0.0
    assert math.isnan(result.p_value)
    assert result.reason is not None and "all differences are zero" in result.reason
    assert "no test: all differences are zero" in describe_test(result)


def test_describe_paired_test() -> None:
    (result,) = paired_comparison(paired_table(), pair_on=("model", "dataset"))
    text = describe_test(result)
    assert text.startswith(
        "accuracy with pretrained=True vs pretrained=False (5 pairs matched on model, dataset): "
        "median difference +0.05; two-sided Wilcoxon signed-rank W = "
    )


def test_paired_errors() -> None:
    with pytest.raises(ConfigError, match="level 'yes' of 'pretrained' does not occur"):
        paired_comparison(paired_table(), levels=("yes", False))
    duplicated = pd.concat([paired_table(), paired_table().iloc[[0]]])
    with pytest.raises(DataError, match=r"share model='a', dataset='A'.*seed"):
        paired_comparison(duplicated)
    with pytest.raises(ConfigError, match="cannot also be a pair"):
        paired_comparison(paired_table(), pair_on=("model", "pretrained"))


def test_comparison_table() -> None:
    results = small_vs_large(
        sizes_table(), score="score", size="params", threshold=3.5e6, group="dataset"
    )
    frame = comparison_table(results)
    assert list(frame["setting"]) == ["all", "dataset=s1", "dataset=s2"]
    assert frame["dataset"].tolist()[1:] == ["s1", "s2"]
    assert frame["n_small"].tolist() == [4, 3, 1]
    assert frame["p_value"].isna().tolist() == [False, False, True]
    assert all(isinstance(d, str) and d for d in frame["description"])
    assert np.isnan(frame["statistic"].iloc[2])

"""Factor effects: medians, % change, Kruskal-Wallis as scipy computes it, epsilon-squared."""

from __future__ import annotations

import math

import pytest
from scipy import stats

from frugalml.errors import ConfigError
from frugalml.profile import Factor, epsilon_squared, factor_effects, kruskal_test


def test_epsilon_squared_by_hand() -> None:
    # E^2_R = H / ((n^2 - 1) / (n + 1)): n = 11 gives a denominator of 120 / 12 = 10
    assert epsilon_squared(5.0, 11) == pytest.approx(0.5)
    assert epsilon_squared(2.4, 5) == pytest.approx(2.4 / (24 / 6))
    assert math.isnan(epsilon_squared(1.0, 1))


def test_kruskal_equals_scipy_and_a_hand_computation() -> None:
    a, b = [1.0, 2.0, 3.0], [4.0, 5.0, 6.0, 7.0]
    result = kruskal_test([a, b])
    expected = stats.kruskal(a, b)
    assert result.h == pytest.approx(float(expected.statistic))
    assert result.p == pytest.approx(float(expected.pvalue))
    # by hand: ranks 1..3 and 4..7, n = 7; H = 12 / (n (n + 1)) sum R_i^2 / n_i - 3 (n + 1)
    n = 7
    h = 12 / (n * (n + 1)) * (6**2 / 3 + 22**2 / 4) - 3 * (n + 1)
    assert result.h == pytest.approx(h)
    assert result.epsilon_squared == pytest.approx(h / ((n**2 - 1) / (n + 1)))
    assert (result.n, result.k) == (7, 2)


def test_kruskal_cannot_rank_identical_values() -> None:
    result = kruskal_test([[0.5, 0.5], [0.5, 0.5]])
    assert math.isnan(result.h) and math.isnan(result.p) and "same" in result.note
    assert "too few" in kruskal_test([[1.0], []]).note


def _rows() -> list[dict[str, object]]:
    rows = []
    for conv, energy, accuracy in ((4, 10.0, 0.9), (4, 12.0, 0.8), (1, 5.0, 0.7), (1, 6.0, 0.6)):
        for relu in (True, False):
            rows.append(
                {"conv": conv, "relu": relu, "energy_j": energy + (1 if relu else 0),
                 "accuracy": accuracy}
            )  # fmt: skip
    return rows


def test_factor_effects_medians_and_changes() -> None:
    rows = _rows()
    rows.append({"conv": 1, "relu": True, "energy_j": float("nan"), "accuracy": 0.1})  # dropped
    conv, relu = factor_effects(
        rows, [Factor("conv", 4, 1, "conv layers"), Factor("relu", True, False, "ReLU")]
    )
    # conv 4: energies 11, 10, 13, 12 -> median 11.5; conv 1: 6, 5, 7, 6 -> median 6
    assert (conv.n_from, conv.n_to) == (4, 4)
    assert conv.median_energy_from_j == pytest.approx(11.5)
    assert conv.median_energy_to_j == pytest.approx(6.0)
    assert conv.energy_change_pct == pytest.approx(100 * (6.0 / 11.5 - 1))
    assert conv.accuracy_change_pp == pytest.approx(100 * (0.65 - 0.85))
    expected = stats.kruskal([11, 10, 13, 12], [6, 5, 7, 6])
    assert conv.energy_test.h == pytest.approx(float(expected.statistic))
    assert conv.energy_test.p == pytest.approx(float(expected.pvalue))
    # ReLU on adds 1 J to every cell
    assert relu.median_energy_from_j - relu.median_energy_to_j == pytest.approx(1.0)
    assert conv.factor.describe(1) == "1 conv layer" and relu.factor.describe(False) == "ReLU off"


def test_factor_effects_names_a_missing_column() -> None:
    with pytest.raises(ConfigError, match="linear_layers"):
        factor_effects(_rows(), [Factor("linear_layers", 7, 3, "linear layers")])

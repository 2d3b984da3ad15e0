"""Factor effects of a factorial experiment: medians, % change, Kruskal-Wallis, effect size.

For each factor the trials are grouped by its level (the other factors pooled, as Yarally
et al. did); the change is the median at the smaller level against the median at the
larger one, and the Kruskal-Wallis H test (``scipy.stats.kruskal``) says whether the groups
differ. The effect size is **epsilon-squared**,

    epsilon^2 = H / ((n^2 - 1) / (n + 1))    (= H / (n - 1))

with ``n`` the number of observations over all groups (Tomczak & Tomczak, "The need to
report effect size estimates revisited", Trends in Sport Sciences 21(1), 2014, eq. for
E^2_R). It runs from 0 (no effect) to 1 (the groups do not overlap at all).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from statistics import median
from typing import Any

from frugalml.errors import ConfigError

__all__ = [
    "Factor",
    "FactorEffect",
    "KruskalResult",
    "epsilon_squared",
    "factor_effects",
    "kruskal_test",
]


def epsilon_squared(h: float, n: int) -> float:
    """Epsilon-squared effect size of a Kruskal-Wallis ``h`` over ``n`` observations:
    ``h / ((n**2 - 1) / (n + 1))`` (Tomczak & Tomczak 2014). NaN for ``n < 2``."""
    if n < 2 or not math.isfinite(h):
        return math.nan
    return h / ((n * n - 1) / (n + 1))


@dataclass(frozen=True)
class KruskalResult:
    """A Kruskal-Wallis H test over ``k`` groups with ``n`` observations in all.

    ``h`` and ``p`` are scipy's; ``epsilon_squared`` is the effect size (see the module
    docstring). All three are NaN when the test cannot be run (fewer than two observations
    in a group, or every value identical); ``note`` then says why.
    """

    h: float
    p: float
    epsilon_squared: float
    n: int
    k: int
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "h": self.h,
            "p": self.p,
            "epsilon_squared": self.epsilon_squared,
            "n": self.n,
            "k": self.k,
            "note": self.note,
        }


def kruskal_test(groups: Sequence[Sequence[float]]) -> KruskalResult:
    """``scipy.stats.kruskal`` on ``groups`` plus epsilon-squared."""
    from scipy import stats

    values = [[float(v) for v in group] for group in groups]
    n = sum(len(group) for group in values)
    k = len(values)
    if k < 2 or any(len(group) < 1 for group in values) or n < 3:
        return KruskalResult(math.nan, math.nan, math.nan, n, k, "too few observations")
    flat = [v for group in values for v in group]
    if all(v == flat[0] for v in flat):
        return KruskalResult(math.nan, math.nan, math.nan, n, k, "every value is the same")
    result = stats.kruskal(*values)
    h = float(result.statistic)
    return KruskalResult(h, float(result.pvalue), epsilon_squared(h, n), n, k)


@dataclass(frozen=True)
class Factor:
    """A two-level factor: the ``key`` of its column in the rows, the level the change is
    measured ``from`` and the level it goes ``to``, and a ``label`` for tables."""

    key: str
    level_from: Any
    level_to: Any
    label: str

    def describe(self, level: Any) -> str:
        if isinstance(level, bool):
            return f"{self.label} {'on' if level else 'off'}"
        label = self.label[:-1] if level == 1 and self.label.endswith("s") else self.label
        return f"{level} {label}"


@dataclass(frozen=True)
class FactorEffect:
    """What changing one factor from ``level_from`` to ``level_to`` did.

    ``energy_change_pct`` is ``100 * (median_to / median_from - 1)`` of the energy
    (negative: a cut); ``accuracy_change_pp`` the change of the median accuracy in
    percentage points. ``energy_test`` / ``accuracy_test`` compare the two groups.
    """

    factor: Factor
    n_from: int
    n_to: int
    median_energy_from_j: float
    median_energy_to_j: float
    energy_change_pct: float
    median_accuracy_from: float
    median_accuracy_to: float
    accuracy_change_pp: float
    energy_test: KruskalResult
    accuracy_test: KruskalResult

    def to_dict(self) -> dict[str, Any]:
        return {
            "factor": self.factor.key,
            "level_from": self.factor.level_from,
            "level_to": self.factor.level_to,
            "n_from": self.n_from,
            "n_to": self.n_to,
            "median_energy_from_j": self.median_energy_from_j,
            "median_energy_to_j": self.median_energy_to_j,
            "energy_change_pct": self.energy_change_pct,
            "median_accuracy_from": self.median_accuracy_from,
            "median_accuracy_to": self.median_accuracy_to,
            "accuracy_change_pp": self.accuracy_change_pp,
            "energy_kw_h": self.energy_test.h,
            "energy_kw_p": self.energy_test.p,
            "energy_epsilon_squared": self.energy_test.epsilon_squared,
            "accuracy_kw_h": self.accuracy_test.h,
            "accuracy_kw_p": self.accuracy_test.p,
            "accuracy_epsilon_squared": self.accuracy_test.epsilon_squared,
        }


def _median(values: Sequence[float]) -> float:
    return float(median(values)) if values else math.nan


def factor_effects(
    rows: Sequence[Mapping[str, Any]],
    factors: Sequence[Factor],
    *,
    energy_key: str = "energy_j",
    accuracy_key: str = "accuracy",
) -> list[FactorEffect]:
    """The effect of each factor on energy and accuracy over ``rows`` (one per trial).

    Rows whose energy or accuracy is missing or not finite are left out.

    Raises:
        ConfigError: a factor's column is missing from a row.
    """
    effects = []
    for factor in factors:
        groups: dict[Any, tuple[list[float], list[float]]] = {
            factor.level_from: ([], []),
            factor.level_to: ([], []),
        }
        for row in rows:
            if factor.key not in row:
                raise ConfigError(
                    f"a trial row has no column {factor.key!r}",
                    fix="pass rows with one column per factor",
                )
            level = row[factor.key]
            if level not in groups:
                continue
            energy, accuracy = _finite(row.get(energy_key)), _finite(row.get(accuracy_key))
            if energy is None or accuracy is None:
                continue
            groups[level][0].append(energy)
            groups[level][1].append(accuracy)
        energy_from, accuracy_from = groups[factor.level_from]
        energy_to, accuracy_to = groups[factor.level_to]
        e_from, e_to = _median(energy_from), _median(energy_to)
        a_from, a_to = _median(accuracy_from), _median(accuracy_to)
        effects.append(
            FactorEffect(
                factor=factor,
                n_from=len(energy_from),
                n_to=len(energy_to),
                median_energy_from_j=e_from,
                median_energy_to_j=e_to,
                energy_change_pct=100.0 * (e_to / e_from - 1.0) if e_from > 0 else math.nan,
                median_accuracy_from=a_from,
                median_accuracy_to=a_to,
                accuracy_change_pp=100.0 * (a_to - a_from),
                energy_test=kruskal_test([energy_from, energy_to]),
                accuracy_test=kruskal_test([accuracy_from, accuracy_to]),
            )
        )
    return effects


def _finite(value: Any) -> float | None:
    """``value`` as a float when it is a finite number, else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    number = float(value)
    return number if math.isfinite(number) else None

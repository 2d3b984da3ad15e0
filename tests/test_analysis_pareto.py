"""Pareto fronts on hand-made tables."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from frugalml.analysis import pareto_front
from frugalml.errors import ConfigError

NAN = math.nan


def table() -> pd.DataFrame:
    # name  P     R    on front?  why
    # h     0.60  1    yes        cheapest scorable row
    # b     0.80  5    yes        nothing cheaper is as good
    # e     0.70  5    no         b: same cost, better
    # i     0.80  7    no         b: as good, cheaper
    # a     0.90  10   yes
    # d     0.90  10   yes        identical to a: neither dominates the other
    # c     0.85  12   no         a: better and cheaper
    # f     0.95  50   yes        the best performance
    # g     NaN   0.5  no         no performance: never on the front, dominates nothing
    # k     0.99  NaN  no         no resource
    return pd.DataFrame(
        {
            "name": ["a", "b", "c", "d", "e", "f", "g", "h", "i", "k"],
            "p": [0.90, 0.80, 0.85, 0.90, 0.70, 0.95, NAN, 0.60, 0.80, 0.99],
            "r": [10.0, 5.0, 12.0, 10.0, 5.0, 50.0, 0.5, 1.0, 7.0, NAN],
        }
    ).set_index("name")


def test_front_on_hand_table() -> None:
    front = pareto_front(table(), "p", "r")
    assert front.dtype == bool
    assert front.name == "pareto_r"
    assert sorted(front[front].index) == ["a", "b", "d", "f", "h"]
    assert list(front.index) == list(table().index)


def test_front_does_not_depend_on_row_order() -> None:
    shuffled = table().sample(frac=1.0, random_state=3)
    front = pareto_front(shuffled, "p", "r")
    assert sorted(front[front].index) == ["a", "b", "d", "f", "h"]


def test_front_per_group() -> None:
    df = pd.DataFrame(
        {
            "setting": ["x", "x", "x", "y", "y"],
            "p": [0.5, 0.6, 0.4, 0.1, 0.2],
            "r": [1.0, 2.0, 3.0, 100.0, 200.0],
        }
    )
    # x: (0.5, 1) and (0.6, 2) are on the front, (0.4, 3) is dominated by both.
    # y: both are on the front within y, though x's rows beat them outright.
    assert pareto_front(df, "p", "r", group="setting").tolist() == [True, True, False, True, True]
    assert pareto_front(df, "p", "r").tolist() == [True, True, False, False, False]


def test_front_matches_brute_force() -> None:
    rng = np.random.default_rng(0)
    # Few distinct values, so that ties on either axis are common.
    df = pd.DataFrame({"p": rng.integers(0, 6, 200) / 5, "r": rng.integers(1, 8, 200) * 10.0})
    p, r = df["p"].to_numpy(), df["r"].to_numpy()
    dominated = [
        bool(np.any((p >= p[i]) & (r <= r[i]) & ((p > p[i]) | (r < r[i])))) for i in range(len(p))
    ]
    assert pareto_front(df, "p", "r").tolist() == [not d for d in dominated]


def test_missing_column() -> None:
    with pytest.raises(ConfigError, match="'energy_j' not in the table"):
        pareto_front(table(), "p", "energy_j")

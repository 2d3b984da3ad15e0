"""Pareto fronts: the rows no other row beats on both performance and resource."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from frugalml.analysis._table import (
    BoolArray,
    FloatArray,
    as_columns,
    check_table,
    group_codes,
    numeric_column,
    require_columns,
)

__all__ = ["pareto_front"]


def pareto_front(
    df: pd.DataFrame,
    performance: str,
    resource: str,
    group: str | Sequence[str] | None = None,
) -> pd.Series[bool]:
    """Which rows are on the Pareto front (maximise performance, minimise resource).

    A row is dominated when another row of its group has performance at least as high and
    resource at most as high, and is strictly better on one of them. The front is the set
    of rows that are not dominated. Rows with identical performance and resource do not
    dominate each other, so they are on the front together or not at all: the answer does
    not depend on row order. Rows missing either value are never on the front and dominate
    nothing.

    Returns:
        A boolean Series aligned with ``df.index``, named ``pareto_<resource>``.
    """
    table = check_table(df)
    groups = as_columns(group, role="group")
    require_columns(table, [performance], role="performance")
    require_columns(table, [resource], role="resource")
    require_columns(table, groups, role="group")
    p = numeric_column(table, performance, role="performance")
    r = numeric_column(table, resource, role="resource")
    codes = group_codes(table, groups)
    valid = ~np.isnan(p) & ~np.isnan(r)
    on_front = np.zeros(len(p), dtype=bool)
    for code in np.unique(codes[valid]):
        members = np.flatnonzero(valid & (codes == code))
        on_front[members] = _front(p[members], r[members])
    return pd.Series(on_front, index=table.index, name=f"pareto_{resource}", dtype=bool)


def _front(p: FloatArray, r: FloatArray) -> BoolArray:
    """Non-dominated mask for one group, all values finite (a sweep in O(n log n))."""
    result = np.zeros(len(p), dtype=bool)
    order = np.lexsort((-p, r))  # cheapest first; at equal cost, best first
    best_cheaper = -np.inf  # the best performance among strictly cheaper rows
    start = 0
    while start < len(order):
        stop = start
        cost = r[order[start]]
        while stop < len(order) and r[order[stop]] == cost:
            stop += 1
        block = order[start:stop]
        top = p[block[0]]
        if top > best_cheaper:
            result[block[p[block] == top]] = True
            best_cheaper = top
        start = stop
    return result

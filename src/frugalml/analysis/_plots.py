"""PNG plots of the PePR analyses: the PePR profile, Pareto fronts, score against size.

Figures are drawn on matplotlib's Agg canvas directly (no pyplot), so plotting neither
needs a display nor changes the backend of an interactive session. matplotlib is imported
when a plot is drawn.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from frugalml.analysis._pareto import pareto_front
from frugalml.analysis._pepr import score_label
from frugalml.analysis._table import (
    BoolArray,
    FloatArray,
    check_table,
    human_count,
    numeric_column,
    require_columns,
)
from frugalml.errors import DataError

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["axis_label", "pareto_plot", "pepr_profile_plot", "size_plot"]

_KNOWN_LABELS = {
    "accuracy": "accuracy (fraction correct, 0-1)",
    "balanced_accuracy": "balanced accuracy (0-1)",
    "auc": "AUC (0-1)",
    "f1": "F1 score (0-1)",
    "energy_j": "training energy (J)",
    "co2_g": "CO$_2$ emitted (g)",
    "duration_s": "training time (s)",
    "peak_mem_bytes": "peak memory (bytes)",
    "peak_gpu_mem_bytes": "peak GPU memory (bytes)",
    "peak_rss_bytes": "peak host memory, RSS (bytes)",
    "params": "parameters (count)",
    "trainable_params": "trainable parameters (count)",
    "flops_per_sample": "FLOPs per sample",
    "weight_bytes": "weights (bytes)",
}
_UNIT_SUFFIXES = (
    ("_bytes", "bytes"),
    ("_kwh", "kWh"),
    ("_j", "J"),
    ("_g", "g"),
    ("_s", "s"),
)


def axis_label(column: str) -> str:
    """An axis label with units for a column name, e.g. ``energy_j`` -> ``training energy (J)``."""
    if column in _KNOWN_LABELS:
        return _KNOWN_LABELS[column]
    if column.startswith("pepr_"):
        return f"{score_label(column)} score (0-1)"
    if column.endswith("_norm"):
        base = column[: -len("_norm")]
        return f"normalised {base}, R$_n$ (0 = cheapest, 1 = dearest)"
    for suffix, unit in _UNIT_SUFFIXES:
        if column.endswith(suffix) and len(column) > len(suffix):
            return f"{column[: -len(suffix)].replace('_', ' ')} ({unit})"
    return column.replace("_", " ")


def pepr_profile_plot(
    df: pd.DataFrame,
    performance: str,
    resource_norm: str,
    path: str | Path,
    labels: Sequence[Hashable] | None = None,
    *,
    label_column: str = "model",
    max_labels: int = 6,
    title: str | None = None,
) -> Path:
    """The PePR profile: contours of P / (1 + R_n) with the models placed on it.

    Args:
        df: a scored table (see :func:`frugalml.analysis.pepr`).
        performance: the performance column (y, in [0, 1]).
        resource_norm: a normalised resource column such as ``energy_j_norm`` (x, in [0, 1]).
        path: the PNG to write (parent folders are created).
        labels: values of ``label_column`` to label; ``None`` labels the ``max_labels``
            rows with the best PePR.
        label_column: column holding the names shown (the row index if it is absent).
        max_labels: how many rows to label when ``labels`` is None.
        title: the figure title; a default names the two columns.

    Returns:
        The path written.
    """
    _, p, r, shown, names = _plot_inputs(df, performance, resource_norm, label_column)

    fig, ax = _figure((7.0, 5.5))
    grid = np.linspace(0.0, 1.0, 201)
    gr, gp = np.meshgrid(grid, grid)
    levels = np.linspace(0.0, 1.0, 11)
    filled = ax.contourf(gr, gp, gp / (1.0 + gr), levels=levels, cmap="viridis", alpha=0.85)
    lines = ax.contour(gr, gp, gp / (1.0 + gr), levels=levels[1:-1], colors="white", linewidths=0.6)
    ax.clabel(lines, fmt="%.1f", fontsize=8)
    fig.colorbar(filled, ax=ax, label="PePR score = P / (1 + R$_n$)")
    ax.scatter(r[shown], p[shown], s=36, c="white", edgecolors="black", linewidths=0.8, zorder=3)

    ax.set_xlim(-0.02, 1.02)
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel(axis_label(resource_norm))
    ax.set_ylabel(axis_label(performance))
    ax.set_title(title or f"PePR profile: {performance} vs normalised {_base(resource_norm)}")
    score = np.where(shown, p / (1.0 + r), -np.inf)
    if labels is None:
        chosen = np.argsort(-score, kind="stable")[: max(0, min(max_labels, int(shown.sum())))]
    else:
        wanted = {str(v) for v in labels}
        chosen = np.flatnonzero(shown & np.array([n in wanted for n in names], dtype=bool))
    _annotate(ax, r, p, names, chosen)
    return _save(fig, path)


def pareto_plot(
    df: pd.DataFrame,
    performance: str,
    resource: str,
    path: str | Path,
    *,
    label_column: str = "model",
    max_labels: int = 8,
    log_x: bool | None = None,
    title: str | None = None,
) -> Path:
    """Performance against a resource with the Pareto front marked.

    Pass the rows of one setting: the front is computed over all rows given. The x axis is
    logarithmic when ``log_x`` is True, or, by default, when every resource is positive and
    the largest is at least 100 times the smallest. The front's rows are labelled (at most
    ``max_labels`` of them, the best performing).

    Returns:
        The path written.
    """
    table, p, r, shown, names = _plot_inputs(df, performance, resource, label_column)
    front = pareto_front(table, performance, resource).to_numpy(dtype=bool)

    fig, ax = _figure((7.0, 5.0))
    rest = shown & ~front
    ax.scatter(r[rest], p[rest], s=28, c="tab:gray", alpha=0.7, label="dominated")
    order = np.flatnonzero(front)[np.argsort(r[front], kind="stable")]
    ax.step(r[order], p[order], where="post", color="tab:red", linewidth=1.2, zorder=2)
    ax.scatter(r[front], p[front], s=44, c="tab:red", zorder=3, label="Pareto front")
    positive = r[shown] > 0
    wide = bool(positive.all()) and float(r[shown].max()) >= 100.0 * float(r[shown].min())
    if log_x if log_x is not None else wide:
        ax.set_xscale("log")
    ax.set_xlabel(axis_label(resource) + (", log scale" if ax.get_xscale() == "log" else ""))
    ax.set_ylabel(axis_label(performance))
    ax.set_title(title or f"{performance} vs {_base(resource)}: Pareto front")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="best", framealpha=0.8)
    best = order[np.argsort(-p[order], kind="stable")][:max_labels]
    _annotate(ax, r, p, names, best)
    return _save(fig, path)


def size_plot(
    df: pd.DataFrame,
    score: str,
    size: str,
    path: str | Path,
    *,
    threshold: float | None = None,
    hue: str | None = None,
    title: str | None = None,
) -> Path:
    """A score against model size (log x), as in the PePR paper's Figure 5d.

    With ``threshold`` a dashed line marks the small/large split and a short horizontal
    line each side's median score. ``hue`` colours the points by a column (e.g.
    ``dataset``) with a legend, for up to ten distinct values.

    Returns:
        The path written.
    """
    table = check_table(df)
    require_columns(table, [score, size] + ([hue] if hue else []), role="plot")
    values = numeric_column(table, score, role="score")
    sizes = numeric_column(table, size, role="size")
    shown = _finite_rows(values, sizes, score, size)

    fig, ax = _figure((7.0, 5.0))
    categories = table[hue].astype(str).to_numpy() if hue else None
    if categories is not None and len(set(categories[shown])) <= 10:
        for category in dict.fromkeys(categories[shown]):
            pick = shown & (categories == category)
            ax.scatter(sizes[pick], values[pick], s=30, alpha=0.8, label=f"{hue}={category}")
    else:
        ax.scatter(sizes[shown], values[shown], s=30, alpha=0.8, c="tab:blue")
    if bool((sizes[shown] > 0).all()):
        ax.set_xscale("log")
    if threshold is not None and math.isfinite(threshold):
        ax.axvline(threshold, color="black", linestyle="--", linewidth=1.0)
        ymin, ymax = ax.get_ylim()
        to_axes = ax.transData + ax.transAxes.inverted()
        at = float(to_axes.transform((threshold, ymax))[0])
        ax.text(
            threshold,
            ymax,
            f" small: <= {human_count(threshold)} {size} ",
            va="top",
            ha="right" if at > 0.5 else "left",
            fontsize=8,
        )
        x_lo, x_hi = float(sizes[shown].min()), float(sizes[shown].max())
        label = "median of each side"
        for side, lo, hi in (
            (shown & (sizes <= threshold), x_lo, threshold),
            (shown & (sizes > threshold), threshold, x_hi),
        ):
            if side.any():
                median = float(np.median(values[side]))
                ax.hlines(median, lo, hi, colors="tab:red", linewidth=1.5, label=label)
                label = "_nolegend_"
        ax.set_ylim(ymin, ymax)
    ax.set_xlabel(axis_label(size) + (", log scale" if ax.get_xscale() == "log" else ""))
    ax.set_ylabel(axis_label(score))
    ax.set_title(title or f"{score_label(score)} against model size")
    ax.grid(True, alpha=0.3)
    if ax.get_legend_handles_labels()[1]:
        ax.legend(loc="best", fontsize=8)
    return _save(fig, path)


def _figure(size: tuple[float, float]) -> tuple[Figure, Axes]:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot()


def _save(fig: Figure, path: str | Path) -> Path:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, format="png")
    return out


def _plot_inputs(
    df: pd.DataFrame, performance: str, resource: str, label_column: str
) -> tuple[pd.DataFrame, FloatArray, FloatArray, BoolArray, list[str]]:
    """The checked table, performance and resource values, the rows that can be drawn (both
    finite) and the row names, for a plot of ``performance`` against ``resource``."""
    table = check_table(df)
    require_columns(table, [performance, resource], role="plot")
    p = numeric_column(table, performance, role="performance")
    r = numeric_column(table, resource, role="resource")
    return table, p, r, _finite_rows(p, r, performance, resource), _names(table, label_column)


def _finite_rows(x: FloatArray, y: FloatArray, x_name: str, y_name: str) -> BoolArray:
    shown: BoolArray = ~np.isnan(x) & ~np.isnan(y)
    if not shown.any():
        raise DataError(
            f"nothing to plot: no row has both {x_name!r} and {y_name!r}",
            fix="score the table first and check that the columns have values",
        )
    return shown


def _names(table: pd.DataFrame, label_column: str) -> list[str]:
    if label_column in table.columns:
        return [str(v) for v in table[label_column].tolist()]
    return [str(v) for v in table.index.tolist()]


def _base(column: str) -> str:
    return column[: -len("_norm")] if column.endswith("_norm") else column


_LABEL_GAP = 0.045  # the least vertical distance between two labels, in axes fraction


def _annotate(
    ax: Axes, x: FloatArray, y: FloatArray, names: list[str], rows: Sequence[int] | Any
) -> None:
    """Label a handful of points without overlap.

    Call after the axes' scales and limits are final. Labels sit beside their point (to
    the left for points in the right quarter), spread apart vertically and kept inside the
    axes, with a thin line to the point when they had to move.
    """
    picked = [int(i) for i in rows]
    if not picked:
        return
    to_axes = ax.transData + ax.transAxes.inverted()
    points = to_axes.transform(np.column_stack([x[picked], y[picked]]))
    order = np.argsort(points[:, 1], kind="stable")
    label_y = points[order, 1].copy()
    for k in range(1, len(label_y)):
        label_y[k] = max(label_y[k], label_y[k - 1] + _LABEL_GAP)
    overflow = label_y[-1] - 0.97
    if overflow > 0:
        label_y -= overflow
    for k in range(len(label_y) - 2, -1, -1):  # pushing down may have crowded the bottom
        label_y[k] = min(label_y[k], label_y[k + 1] - _LABEL_GAP)
    for slot, k in enumerate(order):
        i = picked[int(k)]
        px = float(points[int(k), 0])
        right = px < 0.75
        ax.annotate(
            names[i],
            (float(x[i]), float(y[i])),
            xytext=(px + (0.03 if right else -0.03), float(label_y[slot])),
            textcoords="axes fraction",
            ha="left" if right else "right",
            va="center",
            fontsize=8,
            bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.8},
            arrowprops={"arrowstyle": "-", "color": "0.3", "linewidth": 0.6},
            zorder=4,
        )

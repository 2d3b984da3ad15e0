"""PNG plots of the PePR analyses: the PePR profile, Pareto fronts, score against size.

Figures are drawn on matplotlib's Agg canvas directly (no pyplot), so plotting neither
needs a display nor changes the backend of an interactive session. matplotlib is imported
when a plot is drawn.
"""

from __future__ import annotations

import itertools
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
    "train_energy_j": "training energy (J)",
    "eval_energy_j": "evaluation energy (J)",
    "setup_energy_j": "setup energy (J)",
    "energy_j": "whole-trial energy (J)",
    "train_co2_g": "CO$_2$ of the training (g)",
    "co2_g": "CO$_2$ emitted (g)",
    "train_duration_s": "training time (s)",
    "duration_s": "trial time (s)",
    "peak_mem_bytes": "peak memory (bytes)",
    "peak_gpu_mem_bytes": "peak GPU memory (bytes)",
    "peak_rss_bytes": "peak host memory, RSS (bytes)",
    "train_peak_rss_bytes": "training's peak host memory, RSS (bytes)",
    "train_peak_gpu_mem_bytes": "training's peak GPU memory (bytes)",
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
    _annotate(ax, r, p, names, chosen, points=(r[shown], p[shown]))
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
    label_all: bool = False,
) -> Path:
    """Performance against a resource with the Pareto front marked.

    Pass the rows of one setting: the front is computed over all rows given. The x axis is
    logarithmic when ``log_x`` is True, or, by default, when every resource is positive and
    the largest is at least 100 times the smallest. The front's rows are labelled (at most
    ``max_labels`` of them, the best performing); with ``label_all`` every point is, the
    front first. Labels never overlap each other, a point or the legend; a label that
    finds no free place is left out.

    Returns:
        The path written.
    """
    fig = _pareto_figure(
        df, performance, resource, label_column, max_labels, log_x, title, label_all
    )
    return _save(fig, path)


def _pareto_figure(
    df: pd.DataFrame,
    performance: str,
    resource: str,
    label_column: str,
    max_labels: int,
    log_x: bool | None,
    title: str | None,
    label_all: bool,
) -> Figure:
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
    best = [int(i) for i in order[np.argsort(-p[order], kind="stable")][:max_labels]]
    if label_all:
        others = np.flatnonzero(rest)
        best += [int(i) for i in others[np.argsort(-p[others], kind="stable")]]
    _annotate(ax, r, p, names, best, points=(r[shown], p[shown]))
    return fig


def size_plot(
    df: pd.DataFrame,
    score: str,
    size: str,
    path: str | Path,
    *,
    threshold: float | None = None,
    hue: str | None = None,
    title: str | None = None,
    label_column: str | None = None,
) -> Path:
    """A score against model size (log x), as in the PePR paper's Figure 5d.

    With ``threshold`` a dashed line marks the small/large split (named in the legend) and
    a short horizontal line each side's median score. ``hue`` colours the points by a
    column (e.g. ``dataset``) with a legend, for up to ten distinct values. With
    ``label_column`` every point is labelled with its name, best score first, without
    overlaps (a label with no free place is left out).

    Returns:
        The path written.
    """
    fig = _size_figure(df, score, size, threshold, hue, title, label_column)
    return _save(fig, path)


def _size_figure(
    df: pd.DataFrame,
    score: str,
    size: str,
    threshold: float | None,
    hue: str | None,
    title: str | None,
    label_column: str | None,
) -> Figure:
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
        ymin, ymax = ax.get_ylim()
        # Named in the legend, not written on the plot: a text at the edge was clipped.
        ax.axvline(
            threshold,
            color="black",
            linestyle="--",
            linewidth=1.0,
            label=f"small/large split: small <= {human_count(threshold)} {size}",
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
        ax.legend(loc="best", fontsize=8, framealpha=0.8)
    if label_column is not None:
        names = _names(table, label_column)
        order = np.flatnonzero(shown)[np.argsort(-values[shown], kind="stable")]
        _annotate(ax, sizes, values, names, order, points=(sizes[shown], values[shown]))
    return fig


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


_LABEL_FONT = 7.5
_MARKER_PX = 5.0  # half the side of the square a point's marker is kept clear in, pixels
_LABEL_PAD_PX = 2.0
#: Offsets tried for a label, in points from its point, nearest first; each with the
#: alignment that puts the text on that side of the point.
_OFFSETS: tuple[tuple[float, float, str, str], ...] = tuple(
    (dx * radius, dy * radius, ha, va)
    for radius in (6.0, 12.0, 20.0, 30.0, 42.0, 56.0, 72.0)
    for dx, dy, ha, va in (
        (1.0, 0.0, "left", "center"),
        (-1.0, 0.0, "right", "center"),
        (0.0, 1.0, "center", "bottom"),
        (0.0, -1.0, "center", "top"),
        (0.7, 0.7, "left", "bottom"),
        (-0.7, 0.7, "right", "bottom"),
        (0.7, -0.7, "left", "top"),
        (-0.7, -0.7, "right", "top"),
    )
)


def _annotate(
    ax: Axes,
    x: FloatArray,
    y: FloatArray,
    names: list[str],
    rows: Sequence[int] | Any,
    *,
    points: tuple[FloatArray, FloatArray] | None = None,
) -> list[int]:
    """Label points with their names so that no two labels overlap.

    Greedy placement, in the order of ``rows`` (most important first): each label takes
    the nearest of :data:`_OFFSETS` where its box lies inside the axes and clear of every
    label placed before, every point of ``points`` (default: the labelled ones) and the
    legend, preferring a place that also leaves the drawn lines (a front, a median, a
    threshold) uncovered; a thin line joins a label to its point when it sits further out.
    A label with no free place is left out. Call after the axes' scales, limits, lines
    and legend are final.

    Returns:
        The rows left without a label.
    """
    picked = [int(i) for i in rows]
    if not picked:
        return []
    root = ax.get_figure(root=True)
    if root is None:  # axes made by _figure always have one
        return picked
    canvas = root.canvas
    canvas.draw()  # settles the constrained layout, so pixel positions stay valid
    renderer = canvas.get_renderer()  # type: ignore[attr-defined]
    frame = ax.get_window_extent(renderer)
    px, py = points if points is not None else (x[picked], y[picked])
    blocked = _blocked_boxes(ax, renderer, px, py)
    drawn = _line_samples(ax)
    left_out: list[int] = []
    for i in picked:
        at = (float(x[i]), float(y[i]))
        chosen = _free_offset(ax, root, renderer, frame, blocked, drawn, at, names[i])
        if chosen is None:
            left_out.append(i)
            continue
        blocked.append(_place_label(ax, root, renderer, at, names[i], chosen))
    return left_out


def _blocked_boxes(ax: Axes, renderer: Any, px: FloatArray, py: FloatArray) -> list[Any]:
    """The display boxes no label may cover: a marker's box around each point, the legend."""
    from matplotlib.transforms import Bbox

    centres = ax.transData.transform(np.column_stack([px, py]))
    blocked: list[Any] = [
        Bbox.from_extents(cx - _MARKER_PX, cy - _MARKER_PX, cx + _MARKER_PX, cy + _MARKER_PX)
        for cx, cy in centres
    ]
    legend = ax.get_legend()
    if legend is not None:
        blocked.append(legend.get_window_extent(renderer))
    return blocked


def _free_offset(
    ax: Axes,
    root: Any,
    renderer: Any,
    frame: Any,
    blocked: list[Any],
    drawn: FloatArray,
    at: tuple[float, float],
    name: str,
) -> tuple[float, float, str, str] | None:
    """The nearest of :data:`_OFFSETS` where the label's box lies inside ``frame`` and clear
    of ``blocked``, preferring one that leaves the ``drawn`` lines uncovered; None if none."""
    fallback: tuple[float, float, str, str] | None = None
    for candidate in _OFFSETS:
        text = _label(ax, root, at[0], at[1], name, candidate)
        box = text.get_window_extent(renderer).padded(_LABEL_PAD_PX)
        text.remove()
        inside = (
            box.x0 >= frame.x0 and box.x1 <= frame.x1 and box.y0 >= frame.y0 and box.y1 <= frame.y1
        )
        if not inside or any(_overlap(box, other) for other in blocked):
            continue
        if not _covers(box, drawn):
            return candidate
        if fallback is None:
            fallback = candidate
    return fallback


def _place_label(
    ax: Axes,
    root: Any,
    renderer: Any,
    at: tuple[float, float],
    name: str,
    where: tuple[float, float, str, str],
) -> Any:
    """Draw the label at offset ``where``, with a thin leader line when it sits further out
    than 12 points; returns its padded box (which later labels must keep clear of)."""
    text = _label(ax, root, at[0], at[1], name, where)
    box = text.get_window_extent(renderer).padded(_LABEL_PAD_PX)
    dx, dy = where[0], where[1]
    if math.hypot(dx, dy) > 12.0:
        leader = ax.annotate(
            "",
            at,
            xytext=(dx, dy),
            textcoords="offset points",
            arrowprops={"arrowstyle": "-", "color": "0.35", "linewidth": 0.6},
            zorder=4,
        )
        leader.set_in_layout(False)
    return box


def _label(
    ax: Axes, root: Any, x: float, y: float, name: str, where: tuple[float, float, str, str]
) -> Any:
    """A label ``where`` = (dx, dy points, ha, va) from the point (x, y), outside layout."""
    from matplotlib.transforms import ScaledTranslation

    dx, dy, ha, va = where
    offset = ScaledTranslation(dx / 72.0, dy / 72.0, root.dpi_scale_trans)
    text = ax.text(
        x,
        y,
        name,
        transform=ax.transData + offset,
        ha=ha,
        va=va,
        fontsize=_LABEL_FONT,
        zorder=5,
        bbox={"boxstyle": "square,pad=0.1", "fc": "white", "ec": "none", "alpha": 0.85},
    )
    text.set_in_layout(False)
    return text


def _line_samples(ax: Axes) -> FloatArray:
    """Points every few pixels along the lines drawn in ``ax`` (display coordinates)."""
    from matplotlib.cbook import STEP_LOOKUP_MAP
    from matplotlib.collections import LineCollection

    paths: list[FloatArray] = []
    for line in ax.get_lines():
        xy = np.asarray(line.get_xydata(), dtype=np.float64)
        style = line.get_drawstyle()
        if style in STEP_LOOKUP_MAP and style != "default" and len(xy) > 1:
            xs, ys = STEP_LOOKUP_MAP[style](xy[:, 0], xy[:, 1])
            xy = np.column_stack([xs, ys])
        paths.append(np.asarray(line.get_transform().transform(xy), dtype=np.float64))
    for collection in ax.collections:
        if isinstance(collection, LineCollection):
            transform = collection.get_transform()
            for segment in collection.get_segments():
                paths.append(np.asarray(transform.transform(segment), dtype=np.float64))
    samples: list[FloatArray] = []
    for path in paths:
        path = path[np.isfinite(path).all(axis=1)]
        for (x0, y0), (x1, y1) in itertools.pairwise(path):
            n = int(min(2000, max(2, math.hypot(x1 - x0, y1 - y0) / 3.0)))
            samples.append(np.column_stack([np.linspace(x0, x1, n), np.linspace(y0, y1, n)]))
    return np.concatenate(samples) if samples else np.zeros((0, 2))


def _covers(box: Any, points: FloatArray) -> bool:
    """Whether any of ``points`` (display coordinates) lies inside ``box``."""
    if not len(points):
        return False
    inside = (
        (points[:, 0] > box.x0)
        & (points[:, 0] < box.x1)
        & (points[:, 1] > box.y0)
        & (points[:, 1] < box.y1)
    )
    return bool(inside.any())


def _overlap(a: Any, b: Any) -> bool:
    """Whether two boxes share any area (touching edges do not count)."""
    return bool(a.x0 < b.x1 and b.x0 < a.x1 and a.y0 < b.y1 and b.y0 < a.y1)

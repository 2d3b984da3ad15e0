"""PNG plots of tuning runs (matplotlib's Agg backend, chosen here, never at import)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from frugalml.meter import J_PER_KWH
from frugalml.tune._compare_tables import RunCurve, best_at, energy_to_target
from frugalml.tune._results import TrialSummary, TuningHistory, front

_STATE_STYLE = {
    "complete": ("o", "tab:blue"),
    "pruned": ("v", "tab:orange"),
    "failed": ("x", "tab:red"),
    "interrupted": ("x", "tab:gray"),
}


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _energy_unit(max_j: float) -> tuple[float, str]:
    if max_j >= 0.1 * J_PER_KWH:
        return J_PER_KWH, "kWh"
    if max_j >= 3600:
        return 3600.0, "Wh"
    if max_j >= 1e4:
        return 1e3, "kJ"
    return 1.0, "J"


def _accuracy_panel(ax: Any, history: TuningHistory, title: str) -> None:
    """Each trial's validation accuracy, marked by state, and the best so far as a step."""
    from matplotlib.ticker import MaxNLocator

    ran = history.trials
    for state, (marker, color) in _STATE_STYLE.items():
        xs = [t.number for t in ran if t.state == state and math.isfinite(t.val_accuracy)]
        ys = [t.val_accuracy for t in ran if t.state == state and math.isfinite(t.val_accuracy)]
        if xs:
            label = state if state == "complete" else f"{state} (last epoch run)"
            ax.scatter(xs, ys, marker=marker, color=color, label=label, zorder=3)
    if any(math.isfinite(b) for b in history.best_so_far):
        ax.step(
            [t.number for t in ran],
            history.best_so_far,
            where="post",
            color="black",
            lw=1.2,
            label="best so far (complete trials)",
        )
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("validation accuracy")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    if ran:
        ax.legend(fontsize="small", loc="best")


def _energy_panel(ax: Any, history: TuningHistory, energy_kind: str, overhead_j: float) -> None:
    """The cumulative energy of the trials; the calibration's ``overhead_j`` is named in a
    line of text, not added to the curve."""
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    total = history.cumulative_energy_j[-1] if history.cumulative_energy_j else 0.0
    scale, unit = _energy_unit(total)
    ax.plot(
        [t.number for t in history.trials],
        [e / scale for e in history.cumulative_energy_j],
        "o-",
        color="tab:green",
        ms=3,
    )
    ax.set_ylim(bottom=0)
    if overhead_j > 0:
        ax.text(
            0.01,
            0.97,
            f"trials and sampling only; calibration (with warm-up) {overhead_j / scale:.3g} {unit} "
            "more",
            transform=ax.transAxes,
            va="top",
            fontsize="small",
        )
    ax.set_xlabel("trial index (Optuna trial number)")
    ax.set_ylabel(f"cumulative energy ({unit}, {energy_kind})")
    ax.grid(alpha=0.3)


def _pareto_panel(ax: Any, ran: Sequence[TrialSummary], energy_kind: str) -> None:
    """Accuracy against energy of the complete trials, with their Pareto front."""
    done = [t for t in ran if t.state == "complete" and math.isfinite(t.energy_j)]
    ax.scatter(
        [t.energy_j for t in done],
        [t.val_accuracy for t in done],
        color="tab:blue",
        alpha=0.6,
        label="complete trials",
    )
    on = front(done)
    if on:
        ax.step(
            [t.energy_j for t in on],
            [t.val_accuracy for t in on],
            where="post",
            color="black",
            marker="o",
            label="Pareto front",
        )
    ax.set_xlabel(f"trial energy (J, {energy_kind})")
    ax.set_ylabel("validation accuracy")
    ax.grid(alpha=0.3)
    if done:
        ax.legend(fontsize="small", loc="lower right")


def plot_tuning(
    trials: Sequence[TrialSummary],
    path: Path,
    *,
    title: str = "tuning",
    energy_kind: str = "estimated",
    pareto: bool = False,
    overhead_j: float = 0.0,
) -> Path:
    """Validation accuracy per trial (best so far as a line) and cumulative energy against the
    trial index; with ``pareto``, a third panel of accuracy against energy with the front.
    ``overhead_j`` (calibration) is named in the energy panel, not added to the line."""
    plt = _pyplot()
    history = TuningHistory.from_trials(trials)
    panels = 3 if pareto else 2
    fig, axes = plt.subplots(panels, 1, figsize=(7.5, 3.2 * panels), constrained_layout=True)
    _accuracy_panel(axes[0], history, title)
    _energy_panel(axes[1], history, energy_kind, overhead_j)
    if pareto:
        _pareto_panel(axes[2], history.trials, energy_kind)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _spread(values: Any) -> tuple[Any, Any, Any, Any, Any, Any]:
    """Per grid point over a strategy's runs (rows of ``values``, NaN before a run's first
    complete trial): the median, where any run has a value, the min, max, and quartiles.

    A run without a complete trial yet counts as below everything for the median and the
    quartiles; the min-max band spans the runs that have one.
    """
    import numpy as np

    ranked = np.where(np.isnan(values), -np.inf, values)
    median = np.median(ranked, axis=0)
    median = np.where(np.isfinite(median), median, np.nan)
    some = ~np.all(np.isnan(values), axis=0)
    low = np.full(values.shape[1:], np.nan)
    high = np.full(values.shape[1:], np.nan)
    low[some] = np.nanmin(values[:, some], axis=0)
    high[some] = np.nanmax(values[:, some], axis=0)
    q1 = np.quantile(ranked, 0.25, axis=0, method="inverted_cdf")
    q3 = np.quantile(ranked, 0.75, axis=0, method="inverted_cdf")
    q1 = np.where(np.isfinite(q1), q1, np.nan)
    q3 = np.where(np.isfinite(q3), q3, np.nan)
    return median, some, low, high, q1, q3


def _reached_share(runs: Sequence[RunCurve], threshold: float, grid: Any) -> list[float]:
    """At each energy of ``grid``, the share of ``runs`` that had reached ``threshold``."""

    hits = [energy_to_target(run, threshold) for run in runs]
    reached = [h[0] for h in hits if h is not None]
    return [sum(1 for e in reached if e <= x) / len(runs) for x in grid]


def _target_panels(axes: Any, threshold: float, top: float, unit: str, energy_kind: str) -> None:
    """The zoom near the target (second panel) and the share of runs at it (third)."""
    zoom = axes[1, 0]
    zoom.set_ylim(threshold - 0.06, max(top, threshold) + 0.01)
    zoom.set_title("near the target", fontsize="medium")
    reach = axes[2, 0]
    reach.set_ylim(-0.02, 1.02)
    reach.set_xlabel(f"cumulative tuning energy ({unit}, {energy_kind})")
    reach.set_ylabel("share of runs at the target")
    reach.set_title("runs that had reached the target", fontsize="medium")
    reach.grid(alpha=0.3)
    reach.legend(fontsize="small", loc="lower right")


def plot_comparison(
    curves: Sequence[RunCurve],
    path: Path,
    *,
    threshold: float | None = None,
    energy_kind: str = "estimated",
    title: str = "best validation accuracy against tuning energy",
    grid_points: int = 400,
) -> Path:
    """One line per strategy (median over repeats) with the interquartile range (dark) and
    the min-max spread (light) shaded; best validation accuracy so far against cumulative
    energy; the target as a dashed line. With a target, a zoom near it and a last panel: the
    share of a strategy's runs that had reached the target against the energy spent."""
    import numpy as np

    plt = _pyplot()
    by_strategy: dict[str, list[RunCurve]] = {}
    for curve in curves:
        by_strategy.setdefault(curve.strategy, []).append(curve)
    max_j = max((c.energy_j[-1] for c in curves if c.energy_j), default=1.0)
    scale, unit = _energy_unit(max_j)
    grid = np.linspace(0.0, max_j, grid_points)
    has_target = threshold is not None and math.isfinite(threshold)
    panels = 3 if has_target else 1
    fig, axes = plt.subplots(
        panels, 1, figsize=(7.5, 3.6 * panels), constrained_layout=True, squeeze=False
    )
    cycle = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    top = -math.inf
    for index, (strategy, runs) in enumerate(by_strategy.items()):
        color = cycle[index % len(cycle)]
        values = np.array([[best_at(run, e) for e in grid] for run in runs], dtype=float)
        median, some, low, high, q1, q3 = _spread(values)
        if some.any():
            top = max(top, float(np.nanmax(high)))
        for ax in axes[:2, 0]:
            ax.plot(
                grid / scale,
                median,
                color=color,
                lw=1.8,
                label=f"{strategy} (median of {len(runs)})",
            )
            ax.fill_between(grid / scale, low, high, where=some, color=color, alpha=0.12, lw=0)
            ax.fill_between(grid / scale, q1, q3, color=color, alpha=0.3, lw=0)
        if has_target and threshold is not None:
            share = _reached_share(runs, threshold, grid)
            axes[2, 0].step(grid / scale, share, where="post", color=color, lw=1.8, label=strategy)
    for ax in axes[:2, 0]:
        if has_target:
            ax.axhline(threshold, color="black", ls="--", lw=1, label=f"target {threshold:.4f}")
        ax.set_xlabel(f"cumulative tuning energy ({unit}, {energy_kind})")
        ax.set_ylabel("best validation accuracy so far")
        ax.grid(alpha=0.3)
    axes[0, 0].set_title(
        f"{title}\n(line: median over repeats; dark band: interquartile range; light: min-max)"
    )
    axes[0, 0].legend(fontsize="small", loc="lower right")
    if has_target and threshold is not None:
        _target_panels(axes, threshold, top, unit, energy_kind)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path

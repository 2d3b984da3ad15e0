"""PNG plots of tuning runs (matplotlib's Agg backend, chosen here, never at import)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from frugalml.meter import J_PER_KWH
from frugalml.tune._results import TrialSummary, TuningHistory, front

if TYPE_CHECKING:
    from frugalml.tune._compare import RunCurve

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
    ran = history.trials
    panels = 3 if pareto else 2
    fig, axes = plt.subplots(panels, 1, figsize=(7.5, 3.2 * panels), constrained_layout=True)
    ax_acc, ax_energy = axes[0], axes[1]
    for state, (marker, color) in _STATE_STYLE.items():
        xs = [t.number for t in ran if t.state == state and math.isfinite(t.val_accuracy)]
        ys = [t.val_accuracy for t in ran if t.state == state and math.isfinite(t.val_accuracy)]
        if xs:
            label = state if state == "complete" else f"{state} (last epoch run)"
            ax_acc.scatter(xs, ys, marker=marker, color=color, label=label, zorder=3)
    xs = [t.number for t in ran]
    if any(math.isfinite(b) for b in history.best_so_far):
        ax_acc.step(
            xs,
            history.best_so_far,
            where="post",
            color="black",
            lw=1.2,
            label="best so far (complete trials)",
        )
    from matplotlib.ticker import MaxNLocator

    for ax in (ax_acc, ax_energy):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax_acc.set_ylabel("validation accuracy")
    ax_acc.set_title(title)
    ax_acc.grid(alpha=0.3)
    if ran:
        ax_acc.legend(fontsize="small", loc="best")
    total = history.cumulative_energy_j[-1] if history.cumulative_energy_j else 0.0
    scale, unit = _energy_unit(total)
    ax_energy.plot(
        xs, [e / scale for e in history.cumulative_energy_j], "o-", color="tab:green", ms=3
    )
    ax_energy.set_ylim(bottom=0)
    if overhead_j > 0:
        ax_energy.text(
            0.01,
            0.97,
            f"trials and sampling only; calibration (with warm-up) {overhead_j / scale:.3g} {unit} "
            "more",
            transform=ax_energy.transAxes,
            va="top",
            fontsize="small",
        )
    ax_energy.set_xlabel("trial index (Optuna trial number)")
    ax_energy.set_ylabel(f"cumulative energy ({unit}, {energy_kind})")
    ax_energy.grid(alpha=0.3)
    if pareto:
        ax = axes[2]
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
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_comparison(
    curves: Sequence[RunCurve],
    path: Path,
    *,
    threshold: float | None = None,
    energy_kind: str = "estimated",
    title: str = "best validation accuracy against tuning energy",
    grid_points: int = 400,
) -> Path:
    """One line per strategy (median over repeats) with the min-max spread shaded; best
    validation accuracy so far against cumulative energy; the target as a dashed line."""
    import numpy as np

    from frugalml.tune._compare import best_at

    plt = _pyplot()
    by_strategy: dict[str, list[RunCurve]] = {}
    for curve in curves:
        by_strategy.setdefault(curve.strategy, []).append(curve)
    max_j = max((c.energy_j[-1] for c in curves if c.energy_j), default=1.0)
    scale, unit = _energy_unit(max_j)
    grid = np.linspace(0.0, max_j, grid_points)
    has_target = threshold is not None and math.isfinite(threshold)
    panels = 2 if has_target else 1
    fig, axes = plt.subplots(
        panels, 1, figsize=(7.5, 3.6 * panels), constrained_layout=True, squeeze=False
    )
    cycle = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    top = -math.inf
    for index, (strategy, runs) in enumerate(by_strategy.items()):
        color = cycle[index % len(cycle)]
        values = np.array([[best_at(run, e) for e in grid] for run in runs], dtype=float)
        # A run without a complete trial yet counts as below everything for the median;
        # the band spans the runs that have one.
        median = np.median(np.where(np.isnan(values), -np.inf, values), axis=0)
        median = np.where(np.isfinite(median), median, np.nan)
        some = ~np.all(np.isnan(values), axis=0)
        low = np.full(grid.shape, np.nan)
        high = np.full(grid.shape, np.nan)
        low[some] = np.nanmin(values[:, some], axis=0)
        high[some] = np.nanmax(values[:, some], axis=0)
        if some.any():
            top = max(top, float(np.nanmax(high)))
        for ax in axes[:, 0]:
            ax.plot(
                grid / scale,
                median,
                color=color,
                lw=1.8,
                label=f"{strategy} (median of {len(runs)})",
            )
            ax.fill_between(grid / scale, low, high, where=some, color=color, alpha=0.15, lw=0)
    for ax in axes[:, 0]:
        if has_target:
            ax.axhline(threshold, color="black", ls="--", lw=1, label=f"target {threshold:.4f}")
        ax.set_xlabel(f"cumulative tuning energy ({unit}, {energy_kind})")
        ax.set_ylabel("best validation accuracy so far")
        ax.grid(alpha=0.3)
    axes[0, 0].set_title(f"{title}\n(line: median over repeats; band: min to max)")
    axes[0, 0].legend(fontsize="small", loc="lower right")
    if has_target and threshold is not None:
        zoom = axes[1, 0]
        zoom.set_ylim(threshold - 0.06, max(top, threshold) + 0.01)
        zoom.set_title("near the target", fontsize="medium")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path

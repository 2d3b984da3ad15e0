"""PNG plots of a layer profile and of the factorial experiment.

Figures are drawn on matplotlib's Agg canvas directly (no pyplot), so plotting needs no
display and leaves an interactive session's backend alone. matplotlib loads when a plot is
drawn.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from frugalml.profile._classify import LAYER_TYPES, OUTSIDE_MODEL

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from frugalml.profile._factorial import FactorialResult
    from frugalml.profile._profile import NetworkProfile

__all__ = ["plot_factorial", "plot_profile"]

_TYPE_COLOURS = {
    "convolution": "#1f77b4",
    "linear": "#ff7f0e",
    "activation": "#2ca02c",
    "normalisation": "#9467bd",
    "pooling": "#8c564b",
    "attention": "#d62728",
    "other": "#7f7f7f",
    OUTSIDE_MODEL: "#bcbd22",
}


def _figure(width_in: float, height_in: float) -> Figure:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width_in, height_in), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, path: str | Path) -> Path:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, format="png")
    return out


def _energy_unit(values: list[float]) -> tuple[float, str]:
    top = max(values, default=0.0)
    if top >= 3600:
        return 3600.0, "Wh"
    if 0 < top < 0.1:
        return 1e-3, "mJ"
    return 1.0, "J"


def plot_profile(profile: NetworkProfile, path: str | Path, *, top_k: int = 12) -> Path:
    """Bar charts of the attributed energy: by layer type (left) and the ``top_k`` layers
    (right), each bar labelled with its share. Returns the PNG's path."""
    types = profile.by_type()
    top = profile.top_layers(top_k)
    scale, unit = _energy_unit([layer.energy_j for layer in profile.layers])
    fig = _figure(12.5, max(4.0, 0.32 * max(len(top), len(types) + 2) + 2.2))
    left, right = fig.subplots(1, 2, width_ratios=(1, 1.4))

    # The layer types, then each part outside the model on its own bar.
    entries = [
        (t.layer_type, t.energy_j, t.time_share, _TYPE_COLOURS[t.layer_type])
        for t in types
        if t.layer_type != OUTSIDE_MODEL
    ] + [
        (layer.name, layer.energy_j, layer.time_share, _TYPE_COLOURS[OUTSIDE_MODEL])
        for layer in profile.layers
        if layer.layer_type == OUTSIDE_MODEL
    ]
    entries = entries[::-1]
    bars = left.barh(
        [e[0] for e in entries], [e[1] / scale for e in entries], color=[e[3] for e in entries]
    )
    left.bar_label(bars, labels=[f"{e[2]:.1%}" for e in entries], padding=3, fontsize=8)
    left.set_xlabel(f"attributed energy ({unit}) of {profile.steps} steps")
    left.set_title("by layer type, and outside the model (olive)")
    left.margins(x=0.2)

    labels = [f"{layer.name}{' *' if layer.own_ops else ''}" for layer in top][::-1]
    values = [layer.energy_j / scale for layer in top][::-1]
    colours = [_TYPE_COLOURS[layer.layer_type] for layer in top][::-1]
    bars = right.barh(labels, values, color=colours)
    right.bar_label(
        bars, labels=[f"{layer.time_share:.1%}" for layer in top][::-1], padding=3, fontsize=8
    )
    right.set_xlabel(f"attributed energy ({unit}) of {profile.steps} steps")
    right.set_title(f"top {len(top)} layers (* = a container's own operators)")
    right.tick_params(axis="y", labelsize=8)
    right.margins(x=0.2)
    present = [t for t in (*LAYER_TYPES, OUTSIDE_MODEL) if any(t == x.layer_type for x in top)]
    if present:
        from matplotlib.patches import Patch

        right.legend(
            handles=[Patch(color=_TYPE_COLOURS[t], label=t) for t in present],
            fontsize=7,
            loc="lower right",
        )
    shape = "x".join(str(v) for v in profile.input_shape)
    fig.suptitle(
        f"{profile.model} on {profile.dataset} ({shape}, batch {profile.batch_size}, "
        f"{profile.device}): {profile.energy_j:.3g} J {profile.energy_kind} over "
        f"{profile.steps} training steps, attributed by share of forward+backward time",
        fontsize=10,
    )
    return _save(fig, path)


def plot_factorial(result: FactorialResult, path: str | Path) -> Path:
    """Box plots of training energy (top) and test accuracy (bottom) at each level of each
    factor, every trial drawn as a dot. Returns the PNG's path."""
    effects = result.effects
    fig = _figure(4.0 * len(effects), 7.0)
    axes: Any = fig.subplots(2, len(effects), squeeze=False)
    for column, effect in enumerate(effects):
        factor = effect.factor
        levels = (factor.level_from, factor.level_to)
        for row, (key, ylabel) in enumerate(
            (
                ("train_energy_j", f"training energy (J, {result.energy_kind})"),
                ("accuracy", "test accuracy (0-1)"),
            )
        ):
            ax = axes[row][column]
            groups = [
                [
                    float(r[key])
                    for r in result.rows
                    if r[factor.key] == level
                    and isinstance(r.get(key), (int, float))
                    and math.isfinite(float(r[key]))
                ]
                for level in levels
            ]
            ax.boxplot(groups, widths=0.5, showfliers=False)
            ax.set_xticks([1, 2], [factor.describe(level) for level in levels])
            for i, group in enumerate(groups, start=1):
                offsets = [i + 0.12 * ((j % 5) - 2) / 2 for j in range(len(group))]
                ax.scatter(offsets, group, s=12, alpha=0.6, color="#1f77b4", zorder=3)
            if row == 0:
                test = effect.energy_test
                ax.set_title(
                    f"{factor.label}: {effect.energy_change_pct:+.1f}% energy\n"
                    f"KW H={test.h:.2f}, p={test.p:.2g}, $\\epsilon^2$={test.epsilon_squared:.2f}",
                    fontsize=9,
                )
            else:
                test = effect.accuracy_test
                ax.set_title(
                    f"{effect.accuracy_change_pp:+.1f} pp accuracy, p={test.p:.2g}", fontsize=9
                )
            if column == 0:
                ax.set_ylabel(ylabel)
    fig.suptitle(
        f"frugal_cnn factorial on {result.config.dataset}: {len(result.rows)} trials, "
        f"{result.config.epochs} epoch(s); energy {result.energy_kind}",
        fontsize=10,
    )
    return _save(fig, path)

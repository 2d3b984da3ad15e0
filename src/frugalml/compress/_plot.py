"""One figure of a compression run: accuracy vs sparsity, and latency and energy per method.

Drawn on matplotlib's Agg canvas directly (no pyplot), so it needs no display. Error bars
are the rows' intervals (interleaved repeats); matplotlib loads when a plot is drawn.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from frugalml.errors import ConfigError

__all__ = ["plot_compress"]


def _num(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


def plot_compress(rows: Sequence[dict[str, Any]], path: str | Path) -> Path:
    """Write a PNG of ``rows`` (the ``compress.csv`` rows) to ``path``."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if not rows:
        raise ConfigError("no compression rows to plot", fix="run frugalml compress first")
    names = [str(r["method"]) for r in rows]
    fig = Figure(figsize=(13, 4), layout="constrained")
    FigureCanvasAgg(fig)
    ax_acc, ax_lat, ax_energy = fig.subplots(1, 3)
    for r in rows:
        ax_acc.scatter(100 * _num(r["sparsity"]), 100 * _num(r["accuracy"]))
        ax_acc.annotate(
            str(r["method"]), (100 * _num(r["sparsity"]), 100 * _num(r["accuracy"])), fontsize=7
        )
    ax_acc.set_xlabel("sparsity vs dense parameters (%)")
    ax_acc.set_ylabel("test accuracy (%)")
    ax_acc.set_title("accuracy vs sparsity")
    positions = list(range(len(rows)))
    for ax, key, label in (
        (ax_lat, "latency_ms_batch", f"latency at batch {rows[0].get('batch_size', '')} (ms)"),
        (ax_energy, "energy_per_1k_j", "energy per 1,000 inferences (J)"),
    ):
        mid = [_num(r[key]) for r in rows]
        low = [m - _num(r[f"{key}_low"]) for m, r in zip(mid, rows, strict=True)]
        high = [_num(r[f"{key}_high"]) - m for m, r in zip(mid, rows, strict=True)]
        ax.bar(positions, mid, yerr=[low, high], capsize=3, color="#4c72b0")
        ax.set_xticks(positions, names, rotation=45, ha="right", fontsize=7)
        ax.set_ylabel(label)
    provenance = sorted({str(r.get("energy_per_1k_provenance", "")) for r in rows} - {""})
    ax_lat.set_title("measured latency (median, interval)")
    ax_energy.set_title(f"energy per 1k inferences ({', '.join(provenance) or 'none'})")
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, format="png", dpi=110)
    return out

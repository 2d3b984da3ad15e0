"""Plots are written as non-empty PNG files, without a display."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from frugalml.analysis import (
    PAPER_SIZE_THRESHOLD,
    _plots,
    axis_label,
    pareto_plot,
    pepr,
    pepr_profile_plot,
    size_plot,
)
from frugalml.errors import DataError

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def scored() -> pd.DataFrame:
    table = pd.DataFrame(
        {
            "model": ["resnet18", "mobilenetv2_050", "ghostnet_100", "vit_base", "tiny", "odd"],
            "dataset": ["derma", "derma", "derma", "derma", "lidc", "lidc"],
            "accuracy": [0.74, 0.70, 0.71, 0.76, 0.62, math.nan],
            "energy_j": [500.0, 90.0, 180.0, 60000.0, 40.0, 10.0],
            "params": [11.7e6, 2.0e6, 5.2e6, 86e6, 0.1e6, 1e6],
        }
    )
    with pytest.warns(UserWarning):
        return pepr(table, performance="accuracy", resource="energy_j", group="dataset")


def assert_png(path: Path) -> None:
    assert path.is_file()
    data = path.read_bytes()
    assert data.startswith(PNG_MAGIC)
    assert len(data) > 5_000


def test_profile_plot(tmp_path: Path) -> None:
    out = pepr_profile_plot(scored(), "accuracy", "energy_j_norm", tmp_path / "a" / "profile.png")
    assert out == tmp_path / "a" / "profile.png"
    assert_png(out)
    chosen = pepr_profile_plot(
        scored(), "accuracy", "energy_j_norm", tmp_path / "chosen.png", labels=["tiny"]
    )
    assert_png(chosen)


def test_pareto_plot(tmp_path: Path) -> None:
    table = scored()
    derma = table[table["dataset"] == "derma"]
    assert_png(pareto_plot(derma, "accuracy", "energy_j", tmp_path / "pareto.png"))
    assert_png(pareto_plot(derma, "accuracy", "energy_j", tmp_path / "lin.png", log_x=False))


def test_size_plot(tmp_path: Path) -> None:
    path = size_plot(
        scored(),
        "pepr_energy_j",
        "params",
        tmp_path / "size.png",
        threshold=PAPER_SIZE_THRESHOLD,
        hue="dataset",
    )
    assert_png(path)


def test_nothing_to_plot(tmp_path: Path) -> None:
    table = pd.DataFrame({"accuracy": [math.nan], "energy_j": [1.0]})
    with pytest.raises(DataError, match="nothing to plot"):
        pareto_plot(table, "accuracy", "energy_j", tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


def test_axis_labels_carry_units() -> None:
    assert axis_label("train_energy_j") == "training energy (J)"
    assert axis_label("energy_j") == "whole-trial energy (J)"
    assert axis_label("train_duration_s") == "training time (s)"
    assert axis_label("pepr_energy_j") == "PePR-E score (0-1)"
    assert axis_label("wall_kwh") == "wall (kWh)"
    assert axis_label("energy_j_norm").startswith("normalised energy_j")


def crowded() -> pd.DataFrame:
    """Twelve models, several at the same or nearly the same point, with long names."""
    accuracy = [0.928, 0.928, 0.927, 0.618, 0.886, 0.638, 0.90, 0.91, 0.5, 0.52, 0.51, 0.93]
    energy = [27.9, 39.1, 28.5, 30.5, 288.0, 241.0, 30.0, 31.0, 250.0, 251.0, 249.0, 29.0]
    params = [8970, 25300, 9000, 2840, 578e3, 613e3, 9100, 9200, 600e3, 610e3, 605e3, 8000]
    return pd.DataFrame(
        {
            "model_label": [f"frugal_cnn(conv_layers={i}, width={4 * i})" for i in range(12)],
            "accuracy": accuracy,
            "energy_j": energy,
            "params": [float(v) for v in params],
            "pepr_energy_j": [
                a / (1 + (e - 27.9) / 260.1) for a, e in zip(accuracy, energy, strict=True)
            ],
        }
    )


def label_boxes(fig: Any) -> tuple[list[Any], Any, list[str]]:
    """The labels' boxes in pixels (as drawn), the axes' box and the labels' texts."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    ax = fig.axes[0]
    texts = [t for t in ax.texts if t.get_text()]
    return (
        [t.get_window_extent(renderer) for t in texts],
        ax.get_window_extent(renderer),
        [t.get_text() for t in texts],
    )


def assert_apart(boxes: list[Any], frame: Any) -> None:
    for k, a in enumerate(boxes):
        assert frame.x0 <= a.x0 and a.x1 <= frame.x1 and frame.y0 <= a.y0 and a.y1 <= frame.y1
        for b in boxes[k + 1 :]:
            apart = a.x1 <= b.x0 or b.x1 <= a.x0 or a.y1 <= b.y0 or b.y1 <= a.y0
            assert apart, f"labels overlap: {a} and {b}"


def test_pareto_labels_name_every_point_without_overlap() -> None:
    fig = _plots._pareto_figure(
        crowded(), "accuracy", "energy_j", "model_label", 8, None, None, True
    )
    boxes, frame, texts = label_boxes(fig)
    assert_apart(boxes, frame)
    # The front (0.93 at 29 J, 0.928 at 27.9 J) is labelled first; most of the rest too.
    assert "frugal_cnn(conv_layers=11, width=44)" in texts
    assert "frugal_cnn(conv_layers=0, width=0)" in texts
    assert len(texts) >= 8


def test_size_plot_labels_without_overlap_and_the_split_in_the_legend() -> None:
    fig = _plots._size_figure(
        crowded(), "pepr_energy_j", "params", 25300.0, None, None, "model_label"
    )
    boxes, frame, texts = label_boxes(fig)
    assert_apart(boxes, frame)
    assert len(texts) >= 8
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert "small/large split: small <= 25.3k params" in legend


def test_profile_labels_without_overlap(tmp_path: Path) -> None:
    table = crowded()
    table["energy_j_norm"] = (table["energy_j"] - 27.9) / 260.1
    path = pepr_profile_plot(
        table, "accuracy", "energy_j_norm", tmp_path / "p.png", label_column="model_label"
    )
    assert_png(path)


def test_labels_leave_the_drawn_lines_uncovered_when_there_is_room() -> None:
    # The quickstart's five models: the median line of the small side runs through the
    # label's first choice (right of frugal_cnn(4, 16)), so the label moves off it.
    table = pd.DataFrame(
        {
            "model_label": [
                "frugal_mlp(hidden=64)",
                "frugal_cnn(conv_layers=4, width=16)",
                "frugal_cnn(conv_layers=1, width=8)",
                "mobilenetv3_small_050",
                "lcnet_050",
            ],
            "pepr_energy_j": [0.928, 0.893, 0.613, 0.443, 0.347],
            "params": [8970.0, 25300.0, 2840.0, 578e3, 613e3],
        }
    )
    fig = _plots._size_figure(table, "pepr_energy_j", "params", 25300.0, None, None, "model_label")
    boxes, frame, texts = label_boxes(fig)
    assert len(texts) == 5
    assert_apart(boxes, frame)
    drawn = _plots._line_samples(fig.axes[0])
    assert len(drawn) > 100  # the split and the two medians, sampled
    assert not any(_plots._covers(box, drawn) for box in boxes)

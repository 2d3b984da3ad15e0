"""Plots are written as non-empty PNG files, without a display."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest

from frugalml.analysis import (
    PAPER_SIZE_THRESHOLD,
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
    assert axis_label("energy_j") == "training energy (J)"
    assert axis_label("duration_s") == "training time (s)"
    assert axis_label("pepr_energy_j") == "PePR-E score (0-1)"
    assert axis_label("wall_kwh") == "wall (kWh)"
    assert axis_label("energy_j_norm").startswith("normalised energy_j")

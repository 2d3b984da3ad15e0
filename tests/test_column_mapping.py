"""Column mappings: a table in the PePR paper's layout through report --csv and pepr."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pandas as pd
import pytest

from frugalml.analysis._mapping import apply_mapping, parse_column_mapping
from frugalml.cli import main
from frugalml.errors import ConfigError

# model, params, kWh per setting (derma; derma_pt is half, derma_small a tenth)
_MODELS = (("resnet18", 11_700_000, 0.010), ("mobilenetv2_050", 1_970_000, 0.004),
           ("vit_tiny", 5_700_000, 0.020))  # fmt: skip
_SETTINGS = (("derma", 1.0), ("derma_pt", 0.5), ("derma_small", 0.1))


def _pepr_table(path: Path) -> Path:
    """The PePR paper's results layout: accuracy per epoch in test_00..test_09."""
    header = ["model", "num_param", "energy (kWh)", "co2 (g)", "train_time"]
    header += [f"test_{k:02d}" for k in range(10)] + ["type", "efficient", "dataset"]
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        for dataset, scale in _SETTINGS:
            for i, (model, params, kwh) in enumerate(_MODELS):
                accuracy = [round(0.5 + 0.02 * k + 0.01 * i, 3) for k in range(10)]
                row = [model, params, kwh * scale, kwh * scale * 100, 100 * scale, *accuracy]
                writer.writerow([*row, "cnn", "no", dataset])
    return path


_MAPPING = [
    "--column", "performance=test_09",
    "--column", "energy_kwh=energy (kWh)",
    "--column", "params=num_param",
    "--column", "setting=dataset",
]  # fmt: skip


def test_report_on_a_pepr_layout_table_as_it_is(tmp_path: Path) -> None:
    table = _pepr_table(tmp_path / "table.csv")
    before = table.read_bytes()
    out = tmp_path / "out" / "report.html"
    assert main(["report", "--csv", str(table), *_MAPPING, "-o", str(out), "--no-plots"]) == 0
    assert table.read_bytes() == before  # the published table is not rewritten
    board = pd.read_csv(out.parent / "leaderboard.csv")
    assert sorted(set(board["dataset"])) == ["derma", "derma_pt", "derma_small"]
    derma = board[board["dataset"] == "derma"].set_index("model")
    # derma: 0.004, 0.010, 0.020 kWh -> R_n of resnet18 = (0.010-0.004)/(0.020-0.004) = 0.375
    assert derma.loc["resnet18", "train_energy_j"] == pytest.approx(36_000.0)
    assert derma.loc["resnet18", "pepr_train_energy_j"] == pytest.approx(0.68 / 1.375)
    assert derma.loc["mobilenetv2_050", "pepr_train_energy_j"] == pytest.approx(0.69)
    assert derma.loc["vit_tiny", "pepr_train_energy_j"] == pytest.approx(0.70 / 2.0)
    assert list(derma.sort_values("rank").index) == ["mobilenetv2_050", "resnet18", "vit_tiny"]
    assert derma.loc["resnet18", "params"] == 11_700_000
    assert "mobilenetv2_050" in out.read_text()


def test_pepr_with_a_mapping_groups_by_the_setting(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    table = _pepr_table(tmp_path / "table.csv")
    assert main(["pepr", str(table), *_MAPPING[:4], "--column", "setting=dataset"]) == 0
    scored = pd.read_csv(io.StringIO(capsys.readouterr().out))
    assert list(scored.columns[:18]) == list(pd.read_csv(table).columns)  # input kept
    small = scored[scored["dataset"] == "derma_small"].set_index("model")
    assert small.loc["resnet18", "energy_j_norm"] == pytest.approx(0.375)  # per setting
    assert small.loc["resnet18", "pepr_energy_j"] == pytest.approx(0.68 / 1.375)


def test_settings_by_other_names_are_joined_for_the_report() -> None:
    table = pd.DataFrame(
        {"net": ["a", "b"], "acc": [0.5, 0.6], "J": [1.0, 2.0], "ds": ["x", "x"], "pt": [1, 0]}
    )
    mapping = parse_column_mapping(
        ["model=net", "performance=acc", "energy_j=J", "setting=ds", "setting=pt"]
    )
    out, settings = apply_mapping(table, mapping, join_settings=True)
    assert settings == ["dataset"] and list(out["dataset"]) == ["x | 1", "x | 0"]
    assert list(out["model"]) == ["a", "b"] and list(out["train_energy_j"]) == [1.0, 2.0]
    kept, groups = apply_mapping(table, mapping)
    assert groups == ["ds", "pt"] and "dataset" not in kept.columns


@pytest.mark.parametrize(
    ("items", "message"),
    [
        (["performance"], "not ROLE=COLUMN"),
        (["speed=x"], "unknown role 'speed'"),
        (["energy_j=a", "energy_kwh=b"], "both give the same quantity"),
        (["performance=a", "performance=b"], "given twice"),
    ],
)
def test_bad_mappings_are_one_line_errors(items: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_column_mapping(items)


def test_mapping_refuses_text_collisions_and_missing_columns() -> None:
    table = pd.DataFrame({"acc": ["0.5", "high"], "accuracy": [0.1, 0.2], "e": [1, 2]})
    with pytest.raises(ConfigError, match=r"'high' \(row 1\) is not a number"):
        apply_mapping(table, parse_column_mapping(["performance=acc"]))
    with pytest.raises(ConfigError, match="already has a column 'accuracy'"):
        apply_mapping(table.assign(acc=[0.5, 0.6]), parse_column_mapping(["performance=acc"]))
    with pytest.raises(ConfigError, match="did you mean 'acc'"):
        apply_mapping(table, parse_column_mapping(["performance=ac"]))


def test_report_column_needs_a_csv(tmp_path: Path) -> None:
    assert main(["report", str(tmp_path), "--column", "performance=x"]) == 2

"""Tuning a compression method's strength and threshold under an energy budget."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from frugalml.cli import main
from frugalml.compress import CompressSpec
from frugalml.compress._tune import TUNE_COLUMNS, CompressTune, plan

SPEC = """\
name: tiny
dataset: digits
model: frugal_cnn
model_args: {conv_layers: 2, width: 8, hidden: 16}
training: {epochs: 1, device: cpu}
latency: {repeats: 3, batch_size: 8, min_time_s: 0.002}
energy: {repeats: 1, min_window_s: 0.02}
methods:
  - {method: magnitude, threshold: {sparsity: 0.8}}
"""


def test_tune_writes_trials_front_and_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = tmp_path / "s.yaml"
    spec.write_text(SPEC + "tune: {threshold: {sparsity: [0.5, 0.9]}}\n")
    out = tmp_path / "out"
    assert main(["compress", str(spec), "--out", str(out), "--tune", "2"]) == 0
    with (out / "compress_tune.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert tuple(rows[0]) == TUNE_COLUMNS and [r["trial"] for r in rows] == ["0", "1"]
    for row in rows:
        assert row["state"] == "complete" and row["threshold_mode"] == "sparsity"
        value = json.loads(row["params"])["threshold"]
        assert 0.5 <= value <= 0.9 and float(row["threshold"]) == pytest.approx(value, 1e-5)
        assert float(row["sparsity"]) >= value - 0.05  # the threshold's sparsity was reached
        assert float(row["energy_per_1k_j"]) > 0 and float(row["compress_energy_j"]) > 0
        assert float(row["trial_energy_j"]) >= float(row["compress_energy_j"])
        assert row["energy_per_1k_provenance"] in ("measured", "estimated", "mixed")
    assert any(r["pareto"] == "True" for r in rows)
    capsys.readouterr()
    assert main(["report", str(out)]) == 0
    page = (out / "report" / "compress.html").read_text()
    assert "Tuning strength and threshold under an energy budget" in page
    assert page.count("data:image/png;base64,") == 4


def test_budget_stops_the_tuning(tmp_path: Path) -> None:
    spec = tmp_path / "s.yaml"
    spec.write_text(SPEC)
    out = tmp_path / "out"
    # a budget far below one trial: the guard stops after the first trial, the rest not run
    assert (
        main(["compress", str(spec), "--out", str(out), "--tune", "3", "--budget-j", "1e-6"]) == 0
    )
    with (out / "compress_tune.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert rows[0]["state"] == "complete"
    assert len(rows) <= 2 and all(r["state"] in ("complete", "pruned") for r in rows)
    assert "budget" in " ".join(r["notes"] for r in rows)


def test_plan_defaults_and_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = {"name": "t", "dataset": "digits", "model": "frugal_cnn"}
    spec = CompressSpec.from_mapping({**base, "methods": [{"method": "l1", "strength": 1e-4}]})
    chosen = plan(spec, CompressTune(n_trials=2))
    assert chosen.strength == pytest.approx((1e-5, 1e-3))  # strength / 10 .. x 10
    assert chosen.threshold == ("std", 0.05, 1.0)
    channels = CompressSpec.from_mapping({**base, "methods": [{"method": "channels"}]})
    path = tmp_path / "s.yaml"
    path.write_text("name: t\ndataset: digits\nmodel: frugal_cnn\nmethods: [{method: channels}]\n")
    assert main(["compress", str(path), "--out", str(tmp_path / "o"), "--tune", "2"]) == 2
    err = capsys.readouterr().err.strip()
    assert "no strength or threshold to tune" in err and "\n" not in err and "(fix:" in err
    assert not (tmp_path / "o").exists()  # refused before any training
    for bad, words in (
        ({"n_trials": 0}, "n_trials"),
        ({"strength": [1e-3, 1e-5]}, "strength"),
        ({"threshold": {"sparsity": [0.5, 1.5]}}, "threshold.sparsity"),
        ({"budget": 5}, "no key(s) budget"),
    ):
        path.write_text(SPEC + f"tune: {json.dumps(bad)}\n")
        assert main(["compress", str(path), "--out", str(tmp_path / "o")]) == 2
        err = capsys.readouterr().err.strip()
        assert words in err and "\n" not in err
    assert channels.tune is None

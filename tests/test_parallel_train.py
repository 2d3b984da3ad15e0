"""``frugalml train``: one process, and data parallel over 2 gloo processes from the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from frugalml.cli import main


def test_bad_shares_are_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["train", "--model", "frugal_mlp", "--nproc", "2", "--shares", "3,1,1"])
    assert code == 2
    err = capsys.readouterr().err
    assert "parallel.shares has 3 value(s) for 2 processes" in err
    assert "Traceback" not in err


def test_share_too_small_for_the_batch(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        ["train", "--model", "frugal_mlp", "--batch-size", "4", "--nproc", "2", "--shares", "9,1"]
    )
    assert code == 2
    assert "a rank would get no samples" in capsys.readouterr().err


def test_unknown_yaml_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / "run.yaml"
    spec.write_text("model: frugal_mlp\nparalel: {nproc: 2}\n")
    assert main(["train", str(spec)]) == 2
    assert "paralel" in capsys.readouterr().err


@pytest.mark.slow
def test_train_two_processes_uneven(tmp_path: Path) -> None:
    spec = tmp_path / "run.yaml"
    spec.write_text(
        "model: {name: frugal_mlp, args: {hidden: 32}}\n"
        "dataset: digits\n"
        "training: {epochs: 1, batch_size: 64}\n"
        "parallel: {nproc: 2, shares: [3, 1], slowdown: [1, 2], threads: [1, 1]}\n"
    )
    out = tmp_path / "result.json"
    assert main(["train", str(spec), "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["nproc"] == 2 and result["backend"] == "gloo"
    assert result["shares"] == [0.75, 0.25] and result["shares_source"] == "given"
    assert result["steps"][0] == result["steps"][1] > 0
    assert 0.0 <= result["test"]["accuracy"] <= 1.0
    ranks = {r["rank"]: r for r in result["energy"]["ranks"]}
    assert ranks[0]["reads_host"] and ranks[1]["components"] == []
    assert result["energy"]["energy_j"] == pytest.approx(ranks[0]["energy_j"])

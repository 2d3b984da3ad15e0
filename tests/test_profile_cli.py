"""``frugalml profile`` and ``frugalml factorial`` end to end through ``frugalml.cli.main``."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from frugalml.cli import main

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(autouse=True)
def _one_torch_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)  # the commands below set --threads 1


def test_profile_frugal_cnn_writes_table_png_and_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    png, out_json = tmp_path / "layers.png", tmp_path / "layers.json"
    code = main([
        "profile", "frugal_cnn", "--arg", "conv_layers=4", "--steps", "3",
        "--profile-steps", "3", "--warmup", "1", "--batch", "16", "--threads", "1",
        "--png", str(png), "--json", str(out_json),
    ])  # fmt: skip
    captured = capsys.readouterr()
    assert code == 0, captured.err
    out = captured.out
    assert "by layer type" in out and "convolution" in out and "features.0" in out
    assert "estimated" in out or "measured" in out
    assert "attributed" in out
    assert png.read_bytes()[:8] == PNG_MAGIC
    data = json.loads(out_json.read_text())
    assert data["model"] == "frugal_cnn" and data["input_shape"] == [1, 8, 8]
    assert data["energy_kind"] in ("measured", "estimated", "mixed")
    conv_layers = [layer for layer in data["layers"] if layer["layer_type"] == "convolution"]
    assert len(conv_layers) == 4
    assert sum(layer["time_share"] for layer in data["layers"]) == pytest.approx(1.0)
    assert sum(layer["energy_j"] for layer in data["layers"]) == pytest.approx(data["energy_j"])


def test_profile_input_override_resizes_the_data(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_json = tmp_path / "p.json"
    code = main([
        "profile", "frugal_mlp", "--input", "3x12x12", "--steps", "2", "--profile-steps", "2",
        "--warmup", "0", "--threads", "1", "--json", str(out_json),
    ])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    assert json.loads(out_json.read_text())["input_shape"] == [3, 12, 12]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["profile", "no_such_model_xyz"], "no_such_model_xyz"),
        (["profile", "frugal_cnn", "--input", "3x8"], "CxHxW"),
        (["profile", "frugal_cnn", "--arg", "conv_layers"], "KEY=VALUE"),
        (["profile", "frugal_cnn", "--arg", "conv_layers=99"], "conv_layers"),
        (["profile", "frugal_cnn", "--steps", "0"], "steps"),
        (["factorial", "--repeats", "0"], "repeats"),
    ],
)
def test_bad_input_exits_2_with_one_line(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("frugalml: error:") and message in err[0]


def test_factorial_command_reduced(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out_dir = tmp_path / "fact"
    code = main([
        "factorial", "--epochs", "1", "--repeats", "1", "--fraction", "0.2", "--width", "4",
        "--hidden", "8", "--no-warmup", "--threads", "1", "--out", str(out_dir),
    ])  # fmt: skip
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "going from 4 conv layers to 1" in captured.out
    assert "(paper: 40-49% less)" in captured.out
    assert "Kruskal" in captured.out or "KW" in captured.out
    assert "estimated" in captured.out + captured.err or "measured" in captured.out
    with (out_dir / "factorial_trials.csv").open() as handle:
        assert len(list(csv.DictReader(handle))) == 8
    assert (out_dir / "factorial.png").read_bytes()[:8] == PNG_MAGIC
    # study export works on the store the factorial wrote
    export = tmp_path / "export.csv"
    assert main(["study", "export", str(out_dir), "--csv", str(export)]) == 0
    with export.open() as handle:
        assert len(list(csv.DictReader(handle))) == 8

"""``frugalml pepr`` end to end through ``frugalml.cli.main``."""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from frugalml.cli import main

NAN = math.nan

# Dataset a: energy 100, 300, 200 scorable (row 4 lacks energy, row 5 lacks accuracy).
# Dataset b: every energy 42, so R_n = 0 and PePR = P.
HAND_CSV = """\
model,dataset,accuracy,energy_j
m1,a,0.8,100
m2,a,0.9,300
m3,a,0.6,200
m4,a,0.7,
m5,a,,50
m1,b,0.5,42
m2,b,0.75,42
"""
# a: R_n = (100-100)/200 = 0, (300-100)/200 = 1, (200-100)/200 = 0.5
#    PePR = 0.8/1, 0.9/2 = 0.45, 0.6/1.5 = 0.4
EXPECTED_NORM = [0.0, 1.0, 0.5, NAN, NAN, 0.0, 0.0]
EXPECTED_PEPR = [0.8, 0.45, 0.4, NAN, NAN, 0.5, 0.75]


def write(tmp_path: Path, text: str, name: str = "results.csv") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_scores_to_stdout(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    csv = write(tmp_path, HAND_CSV)
    code, out, err = run(
        capsys,
        "pepr",
        str(csv),
        "--performance",
        "accuracy",
        "--resource",
        "energy_j",
        "--group",
        "dataset",
    )
    assert code == 0
    table = pd.read_csv(io.StringIO(out))
    assert list(table.columns) == [
        "model",
        "dataset",
        "accuracy",
        "energy_j",
        "energy_j_norm",
        "pepr_energy_j",
    ]
    assert table["model"].tolist() == ["m1", "m2", "m3", "m4", "m5", "m1", "m2"]
    np.testing.assert_allclose(table["energy_j_norm"], EXPECTED_NORM, rtol=0, atol=1e-12)
    np.testing.assert_allclose(table["pepr_energy_j"], EXPECTED_PEPR, rtol=0, atol=1e-12)
    # Missing scores are empty cells, never 0; integer energies stay integers.
    assert out.splitlines()[4] == "m4,a,0.7,,,"
    assert out.splitlines()[1].startswith("m1,a,0.8,100,")
    # One warning line counting the rows left out.
    lines = err.strip().splitlines()
    assert len(lines) == 1
    assert "2 of 7 rows" in lines[0] and "data rows 4, 5" in lines[0]


def test_writes_output_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    csv = write(tmp_path, HAND_CSV)
    target = tmp_path / "scored.csv"
    code, out, err = run(
        capsys,
        "pepr",
        str(csv),
        "--performance",
        "accuracy",
        "--resource",
        "energy_j",
        "--group",
        "dataset",
        "-o",
        str(target),
    )
    assert code == 0
    assert out == ""
    table = pd.read_csv(target)
    np.testing.assert_allclose(table["pepr_energy_j"], EXPECTED_PEPR, rtol=0, atol=1e-12)
    assert str(target) in err


def test_two_resources_and_two_group_columns(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    csv = write(
        tmp_path,
        "model,dataset,pretrained,accuracy,energy_j,duration_s\n"
        "a,d,True,0.9,10,5\n"
        "b,d,True,0.6,30,1\n"
        "a,d,False,0.4,7,2\n"
        "b,d,False,0.5,9,2\n",
    )
    code, out, _ = run(
        capsys,
        *("pepr", str(csv), "--performance", "accuracy"),
        *("--resource", "energy_j", "--resource", "duration_s"),
        *("--group", "dataset", "--group", "pretrained"),
    )
    assert code == 0
    table = pd.read_csv(io.StringIO(out))
    # (d, True): energy 10, 30 -> 0, 1 -> 0.9, 0.3; time 5, 1 -> 1, 0 -> 0.45, 0.6
    # (d, False): energy 7, 9 -> 0, 1 -> 0.4, 0.25; time 2, 2 -> 0, 0 -> 0.4, 0.5
    np.testing.assert_allclose(table["pepr_energy_j"], [0.9, 0.3, 0.4, 0.25], atol=1e-12)
    np.testing.assert_allclose(table["pepr_duration_s"], [0.45, 0.6, 0.4, 0.5], atol=1e-12)


def test_variant_shortcut(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rows = [
        "model,accuracy,energy_j,peak_rss_bytes,peak_gpu_mem_bytes",
        "a,0.8,10,100,",
        "b,0.6,20,300,",
    ]
    csv = write(tmp_path, "\n".join(rows) + "\n")
    code, out, err = run(
        capsys, "pepr", str(csv), "--performance", "accuracy", "--variant", "E", "--variant", "M"
    )
    assert code == 0
    # No train_energy_j: PePR-E falls back to energy_j and says so on one line.
    assert err.count("\n") == 1 and "scoring energy_j" in err
    table = pd.read_csv(io.StringIO(out))
    # No GPU values: memory falls back to RSS 100, 300 -> 0, 1 -> 0.8, 0.3
    np.testing.assert_allclose(table["pepr_peak_mem_bytes"], [0.8, 0.3], atol=1e-12)
    np.testing.assert_allclose(table["pepr_energy_j"], [0.8, 0.3], atol=1e-12)
    assert table["peak_mem_source"].tolist() == ["peak_rss_bytes"] * 2


@pytest.mark.parametrize(
    ("text", "extra", "expected"),
    [
        ("model,acc,e\na,80,1\nb,95,2\n", [], ["'acc' looks like a percentage", "divide"]),
        ("model,acc,e\na,0.8,1\nb,-0.2,2\n", [], ["outside [0, 1]", "data row 2"]),
        ("model,acc,e\na,0.8,1\nb,120,2\n", [], ["outside [0, 1]"]),
        ("model,acc,e\na,0.8,1\nb,good,2\n", [], ["'acc'", "non-numeric value 'good'", "row 2"]),
        ("model,acc,e\na,0.8,1\nb,0.7,lots\n", [], ["'e'", "non-numeric value 'lots'"]),
        ("model,acc,energy\na,0.8,1\n", [], ["'e' not in the table", "model, acc, energy"]),
        ("", [], ["is empty"]),
        ("model,acc,e\n", [], ["no data rows"]),
        ("model,acc,e\na,0.8,1\n", ["--group", "dataset"], ["group column 'dataset'"]),
        ("model,acc,e\na,0.8,1\n", ["--variant", "X"], ["unknown PePR variant 'X'"]),
        # A negative cost would rank first: refused, naming the column and the rows.
        (
            "model,acc,e\na,0.8,1\nb,0.7,-5\nc,0.6,-1\n",
            [],
            ["'e' has negative values at data rows 2, 3", "correct or remove those rows"],
        ),
        ("model,acc,e\na,0.8,1\n", ["--no-group", "--group", "model"], ["contradict"]),
    ],
)
def test_bad_input_gives_one_line_and_exit_2(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    text: str,
    extra: list[str],
    expected: list[str],
) -> None:
    csv = write(tmp_path, text)
    code, out, err = run(
        capsys, "pepr", str(csv), "--performance", "acc", "--resource", "e", *extra
    )
    assert code == 2
    assert out == ""
    assert err.count("\n") == 1 and err.startswith("frugalml: error: ")
    assert "Traceback" not in err
    for fragment in expected:
        assert fragment in err


def test_missing_file_and_missing_resource(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(
        capsys, "pepr", str(tmp_path / "nope.csv"), "--performance", "acc", "--resource", "e"
    )
    assert code == 2
    assert err.count("\n") == 1 and "no such file" in err
    csv = write(tmp_path, "model,acc,e\na,0.8,1\n")
    code, _, err = run(capsys, "pepr", str(csv), "--performance", "acc")
    assert code == 2
    assert err.count("\n") == 1 and "no resource to score" in err and "--resource" in err


def test_empty_group_warns_and_scores_nan(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    csv = write(tmp_path, "model,dataset,acc,e\na,x,0.8,1\nb,x,0.6,3\nc,y,0.5,\n")
    code, out, err = run(
        capsys, "pepr", str(csv), "--performance", "acc", "--resource", "e", "--group", "dataset"
    )
    assert code == 0
    table = pd.read_csv(io.StringIO(out))
    # x: 1, 3 -> 0, 1 -> 0.8, 0.3; y has no energy at all.
    np.testing.assert_allclose(table["pepr_e"], [0.8, 0.3, NAN], atol=1e-12)
    assert err.count("\n") == 1
    assert "1 group with no scorable row: dataset='y'" in err


SETTINGS_CSV = """\
model,dataset,fraction,acc,e
a,x,1.0,0.8,10
b,x,1.0,0.6,30
a,x,0.1,0.5,1
b,x,0.1,0.4,3
"""


def test_several_settings_are_grouped_by_default(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    csv = write(tmp_path, SETTINGS_CSV)
    code, out, err = run(capsys, "pepr", str(csv), "--performance", "acc", "--resource", "e")
    assert code == 0
    table = pd.read_csv(io.StringIO(out))
    # Per fraction: 10, 30 -> 0, 1 and 1, 3 -> 0, 1: 0.8, 0.3, 0.5, 0.2.
    # (Over the whole table, 1..30: b at 1.0 would be 0.6 / 2 = 0.3 but a at 1.0 would get
    # R_n = 9/29 and 0.8 / (1 + 9/29) = 0.6105.)
    np.testing.assert_allclose(table["pepr_e"], [0.8, 0.3, 0.5, 0.2], atol=1e-12)
    assert err.count("\n") == 1
    assert "normalising per setting, by fraction (2 values)" in err
    assert "--no-group" in err


def test_no_group_normalises_the_whole_table(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    csv = write(tmp_path, SETTINGS_CSV)
    code, out, err = run(
        capsys, "pepr", str(csv), "--performance", "acc", "--resource", "e", "--no-group"
    )
    assert code == 0
    table = pd.read_csv(io.StringIO(out))
    # min 1, max 30: a@1.0 R_n = 9/29, b@1.0 1, a@0.1 0, b@0.1 2/29.
    expected = [0.8 / (1 + 9 / 29), 0.3, 0.5, 0.4 / (1 + 2 / 29)]
    np.testing.assert_allclose(table["pepr_e"], expected, atol=1e-12)
    assert "mixes several settings" in err  # the library's warning, on one line


def test_variant_e_uses_the_training_energy(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = [
        "model,accuracy,train_energy_j,energy_j",
        "a,0.8,10,90",
        "b,0.6,20,30",
    ]
    csv = write(tmp_path, "\n".join(rows) + "\n")
    code, out, err = run(capsys, "pepr", str(csv), "--performance", "accuracy", "--variant", "E")
    assert code == 0 and err == ""
    table = pd.read_csv(io.StringIO(out))
    # training 10, 20 -> 0, 1 -> 0.8, 0.3 (energy_j 90, 30 would have given 0.4, 0.6)
    np.testing.assert_allclose(table["pepr_train_energy_j"], [0.8, 0.3], atol=1e-12)
    assert "pepr_energy_j" not in table.columns

"""``frugalml report`` end to end through ``frugalml.cli.main``, on a real study store."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from frugalml.cli import main
from frugalml.meter import ComponentEnergy, Measurement
from frugalml.study import StudyStore
from test_report import hand_results, trial


def make_study(out: Path, rows: list[dict[str, Any]]) -> Path:
    """A study store holding ``rows`` as finished trials, each with a stated estimate."""
    definition_keys = ("study", "model", "model_args", "dataset", "pretrained", "fraction", "seed")
    with StudyStore(out) as store:
        store.add_trials(
            [
                (
                    row["trial_id"],
                    row["study"],
                    row["model"],
                    {k: row[k] for k in definition_keys if k != "model_args"} | {"model_args": {}},
                )
                for row in rows
            ]
        )
        for row in rows:
            result = {
                k: v for k, v in row.items() if k not in (*definition_keys, "status", "error")
            }
            if row["energy_j"] is not None:
                component = ComponentEnergy(
                    component="cpu",
                    energy_j=row["energy_j"],
                    source="estimate:tdp*utilisation",
                    kind="estimated",
                    device="CPU: Hand 1",
                    notes=("energy = CPU seconds x 12 W per busy logical CPU (hand-written)",),
                )
                result["measurement"] = Measurement(
                    name="trial",
                    started_at="2026-01-01T00:00:00+00:00",
                    duration_s=row["duration_s"],
                    cpu_time_s=row["duration_s"],
                    energy_j=row["energy_j"],
                    components=(component,),
                    co2_g=row["co2_g"],
                    intensity_g_per_kwh=480.0,
                    intensity_source="hand-written test intensity",
                    pue=1.0,
                ).to_dict()
            if row["status"] == "complete":
                store.finish(row["trial_id"], "complete", result=result)
            elif row["status"] == "failed":
                store.finish(row["trial_id"], "failed", result=result, error=row["error"])
    return out


def test_report_on_a_study_directory(tmp_path: Path, capsys: Any) -> None:
    study = make_study(tmp_path / "study", hand_results().to_dict("records"))
    assert main(["report", str(study)]) == 0
    out = capsys.readouterr().out
    folder = study / "report"
    assert f"report: {folder / 'report.html'}" in out
    for name in ("report.html", "leaderboard.md", "leaderboard.csv", "pepr-profile.png"):
        assert (folder / name).is_file(), name
    page = (folder / "report.html").read_text(encoding="utf-8")
    # The estimate's assumptions come from the measurements in the store.
    assert "12 W per busy logical CPU (hand-written)" in page
    assert "hand-written test intensity" in page
    board = pd.read_csv(folder / "leaderboard.csv")
    assert board["model"].tolist() == ["a", "b", "c"]


def test_output_path_puts_everything_beside_the_html(tmp_path: Path, capsys: Any) -> None:
    study = make_study(tmp_path / "study", hand_results().to_dict("records"))
    target = tmp_path / "site" / "derma.html"
    assert main(["report", str(study), "-o", str(target), "--title", "Derma", "--no-plots"]) == 0
    assert target.is_file()
    assert (target.parent / "leaderboard.csv").is_file()
    assert (target.parent / "leaderboard.md").read_text().startswith("# Derma")
    assert not (study / "report").exists()
    assert not list(target.parent.glob("*.png")) and "<img" not in target.read_text()


def test_report_on_an_exported_csv(tmp_path: Path, capsys: Any) -> None:
    csv = tmp_path / "results.csv"
    hand_results().to_csv(csv, index=False)
    assert main(["report", "--csv", str(csv), "--no-plots"]) == 0
    board = pd.read_csv(tmp_path / "report" / "leaderboard.csv")
    assert board["rank"].tolist() == [1, 2, 3]
    page = (tmp_path / "report" / "report.html").read_text(encoding="utf-8")
    assert "frugalml report DIR" in page  # says where the assumptions would come from


def test_a_study_with_no_complete_trial_writes_the_report_and_exits_1(
    tmp_path: Path, capsys: Any
) -> None:
    rows = [
        trial("a", None, 5.0, status="failed", error="ModelError: unknown model 'a'"),
        trial("b", None, 7.0, status="failed", error="out of memory", trial_id="b"),
    ]
    study = make_study(tmp_path / "study", rows)
    assert main(["report", str(study)]) == 1
    captured = capsys.readouterr()
    assert "no complete trial with accuracy and energy to rank (2 failed" in captured.err
    page = (study / "report" / "report.html").read_text(encoding="utf-8")
    assert "unknown model &#x27;a&#x27;" in page


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["{tmp}"], "no study store at"),
        (["{tmp}/nowhere"], "no study store at"),
        (["{tmp}/results.csv"], "is a CSV file, not a study directory"),
        (["--csv", "{tmp}/missing.csv"], "no such file"),
        (["--csv", "{tmp}/empty.csv"], "is empty"),
        (["--csv", "{tmp}/header.csv"], "has a header but no data rows"),
        (["--csv", "{tmp}/columns.csv"], "lacks column(s) 'accuracy', 'energy_j'"),
        ([], "give a study directory or --csv"),
        (["{tmp}", "--csv", "{tmp}/results.csv"], "one of them"),
        (["--csv", "{tmp}/results.csv", "-o", "{tmp}/out.pdf"], "the report is an HTML file"),
        (["--csv", "{tmp}/results.csv", "--size-threshold", "-1"], "positive parameter count"),
    ],
)
def test_bad_input_gets_one_line_and_exit_2(
    tmp_path: Path, capsys: Any, args: list[str], words: str
) -> None:
    hand_results().to_csv(tmp_path / "results.csv", index=False)
    (tmp_path / "empty.csv").write_text("")
    (tmp_path / "header.csv").write_text("model,accuracy,energy_j\n")
    (tmp_path / "columns.csv").write_text("model,params\na,12\n")
    argv = ["report", *(a.format(tmp=tmp_path) for a in args)]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("frugalml: error: ")
    assert words in err
    assert "(fix: " in err

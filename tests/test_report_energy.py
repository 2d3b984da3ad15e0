"""The report's energy rule, its states and its sentences, against hand-computed tables.

PePR-E scores ``train_energy_j`` (the epochs' training windows) unless told otherwise; a
table without it falls back to ``energy_j`` and says so. Each expected number is worked out
in a comment beside it.
"""

from __future__ import annotations

import html
import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from frugalml.cli import main
from frugalml.errors import ConfigError, DataError
from frugalml.report import build_report, leaderboard_text


def split_trial(
    model: str, accuracy: float | None, train_j: float, eval_j: float, setup_j: float, **extra: Any
) -> dict[str, Any]:
    """A results row with the energy split; energy_j is the sum of the three parts."""
    total = train_j + eval_j + setup_j
    row: dict[str, Any] = {
        "trial_id": f"{model}-{extra.get('seed', 0)}",
        "study": "split",
        "model": model,
        "model_args": "{}",
        "dataset": "digits",
        "pretrained": False,
        "fraction": 1.0,
        "seed": 0,
        "status": "complete",
        "error": None,
        "params": 1000.0,
        "accuracy": accuracy,
        "train_energy_j": train_j,
        "eval_energy_j": eval_j,
        "setup_energy_j": setup_j,
        "energy_j": total,
        "energy_kind": "estimated",
        "energy_source": "cpu=estimate:tdp*utilisation",
        "co2_g": total / 3.6e6 * 480.0,
        "intensity_g_per_kwh": 480.0,
        "pue": 1.0,
        "train_duration_s": train_j / 10.0,
        "duration_s": total / 10.0,
        "peak_rss_bytes": 9e8,
        "train_peak_rss_bytes": 1e6,
        "test_samples": 400,
    }
    row.update(extra)
    return row


def split_results() -> pd.DataFrame:
    """Setup dominates the whole trial, so the two energies rank differently.

    training 10, 30, 20 J (E_n 0, 1, 0.5); energy_j 10+2+88 = 100, 30+2+28 = 60,
    20+2+58 = 80 J (E_n 1, 0, 0.5).
    PePR-E on training: a 0.9 / 1 = 0.9, b 0.8 / 2 = 0.4, c 0.57 / 1.5 = 0.38.
    On energy_j:        a 0.9 / 2 = 0.45, b 0.8 / 1 = 0.8, c 0.57 / 1.5 = 0.38.
    """
    return pd.DataFrame(
        [
            split_trial("a", 0.9, 10.0, 2.0, 88.0),
            split_trial("b", 0.8, 30.0, 2.0, 28.0),
            split_trial("c", 0.57, 20.0, 2.0, 58.0),
        ]
    )


def definition(row: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    """A store's trial definition from a results row (model_args as a mapping)."""
    out = {k: row[k] for k in keys}
    out["model_args"] = {}
    return out


def page_text(report_html: Path) -> str:
    return html.unescape(report_html.read_text(encoding="utf-8"))


def test_pepr_e_scores_training_energy_by_default(tmp_path: Path) -> None:
    report = build_report(split_results(), tmp_path, plots=False)
    board = pd.read_csv(report.csv_path)
    assert board["model"].tolist() == ["a", "b", "c"]
    np.testing.assert_allclose(board["pepr_train_energy_j"], [0.9, 0.4, 0.38], atol=1e-12)
    assert board["rank"].tolist() == [1, 2, 3]
    assert board["pepr_e_column"].tolist() == ["train_energy_j"] * 3
    np.testing.assert_allclose(board["energy_j"], [100.0, 60.0, 80.0])
    page = page_text(report.html_path)
    assert (
        "PePR-E uses training energy, train_energy_j: the epochs' training windows; setup "
        "and evaluation are reported separately." in page
    )
    # The table shows the split; the scored column says so in its header.
    for header in ("Training energy (PePR-E)", "Evaluation", "Setup", "Trial energy"):
        assert f">{header}</th>" in page
    assert "no 'train_energy_j'" not in page  # no fallback note


def test_energy_column_chooses_another_energy(tmp_path: Path) -> None:
    report = build_report(split_results(), tmp_path, plots=False, energy_column="energy_j")
    board = pd.read_csv(report.csv_path)
    assert board["model"].tolist() == ["b", "a", "c"]
    np.testing.assert_allclose(board["pepr_energy_j"], [0.8, 0.45, 0.38], atol=1e-12)
    page = page_text(report.html_path)
    assert "PePR-E uses energy_j (whole-trial energy), as chosen." in page
    assert ">Trial energy (PePR-E)</th>" in page


def test_energy_column_that_is_absent_or_empty_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"energy column 'gpu_energy_j' is not in the table"):
        build_report(split_results(), Path("unused"), plots=False, energy_column="gpu_energy_j")
    table = split_results()
    table["eval_energy_j"] = math.nan
    with pytest.raises(DataError, match=r"'eval_energy_j' has no values"):
        build_report(table, Path("unused"), plots=False, energy_column="eval_energy_j")


def test_a_table_without_the_split_falls_back_to_energy_j_and_says_so(tmp_path: Path) -> None:
    # An older store: load_results adds train_energy_j with every value missing.
    table = split_results()
    for column in ("train_energy_j", "eval_energy_j", "setup_energy_j", "train_duration_s"):
        table[column] = None
    report = build_report(table, tmp_path, plots=False)
    board = pd.read_csv(report.csv_path)
    np.testing.assert_allclose(board["pepr_energy_j"], [0.8, 0.45, 0.38], atol=1e-12)
    page = page_text(report.html_path)
    assert "PePR-E uses energy_j, the whole trial's energy (setup and evaluation included" in page
    assert any("no 'train_energy_j'" in note for note in report.notes)
    assert ">Training energy" not in page  # no empty split columns


def test_the_split_is_totalled_once_in_the_cards(tmp_path: Path) -> None:
    report = build_report(split_results(), tmp_path, plots=False)
    page = page_text(report.html_path)
    # 100 + 60 + 80 = 240 J = 0.0667 Wh; training 10 + 30 + 20 = 60 J; eval 6; setup 174.
    assert "240 J (0.0667 Wh)" in page
    assert "60.0 J (0.0167 Wh)" in page
    assert "evaluation 6.00 J, setup 174 J" in page
    # The sentences under the cards are gone: each figure is said once.
    assert "3 trials: 3 complete" not in page
    assert page.count("all of it estimated") == 2  # the card and the energy section
    markdown = report.markdown_path.read_text(encoding="utf-8")
    assert "training 60.0 J, evaluation 6.00 J, setup 174 J" in markdown


def test_leaderboard_text_names_the_energy_it_ranks_by() -> None:
    text = leaderboard_text(split_results())
    assert "PePR-E uses training energy, train_energy_j" in text
    assert "training energy" in text.splitlines()[4]  # the table's header
    rows = [line for line in text.splitlines() if re.match(r"^\s+\d+\s", line)]
    assert rows[0].split()[:3] == ["1", "a", "0.900"]
    assert "10.0 J" in rows[0]  # a's training energy, not its 100 J trial


@pytest.mark.parametrize(
    ("column", "value", "words"),
    [
        ("energy_j", -5.0, "column 'energy_j' has negative values at row 2 of the table"),
        ("train_energy_j", -1.0, "column 'train_energy_j' has negative values at row 2"),
        ("params", -3.0, "column 'params' has negative values at row 2"),
        ("duration_s", -1.0, "column 'duration_s' has negative values at row 2"),
    ],
)
def test_negative_costs_in_a_csv_are_refused(
    tmp_path: Path, capsys: Any, column: str, value: float, words: str
) -> None:
    table = split_results()
    table.loc[1, column] = value
    csv = tmp_path / "results.csv"
    table.to_csv(csv, index=False)
    before = csv.read_bytes()
    assert main(["report", "--csv", str(csv), "--no-plots"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("frugalml: error: ")
    assert words in err
    assert "b (digits, from scratch, 100% of the training data, seed 0)" in err
    assert "(fix: correct or remove those rows" in err
    assert "Traceback" not in err
    assert csv.read_bytes() == before
    assert not (tmp_path / "report").exists()


def test_energy_column_option_on_the_command_line(tmp_path: Path, capsys: Any) -> None:
    csv = tmp_path / "results.csv"
    split_results().to_csv(csv, index=False)
    out = tmp_path / "r" / "report.html"
    argv = ["report", "--csv", str(csv), "--no-plots", "-o", str(out)]
    assert main([*argv, "--energy-column", "energy_j"]) == 0
    board = pd.read_csv(out.parent / "leaderboard.csv")
    assert board["model"].tolist() == ["b", "a", "c"]
    capsys.readouterr()
    assert main([*argv, "--energy-column", "nope_j"]) == 2
    err = capsys.readouterr().err
    assert "energy column 'nope_j' is not in the table" in err and "(fix: " in err


def test_pruned_trials_are_one_state_with_the_accuracy_and_energy_when_stopped(
    tmp_path: Path,
) -> None:
    rows = [
        split_trial("a", 0.9, 10.0, 2.0, 8.0, tune_params='{"lr": 0.001}', pruned=False),
        split_trial("a", 0.7, 30.0, 2.0, 8.0, seed=1, tune_params='{"lr": 0.01}', pruned=False),
        # A store status of its own, and an older tuning store's "complete" + pruned flag.
        split_trial(
            "a",
            0.4,
            3.0,
            1.0,
            8.0,
            seed=2,
            tune_params='{"lr": 0.1}',
            status="pruned",
            epochs=2,
            epochs_planned=10,
            stop_reason="median pruner at epoch 2",
        ),
        split_trial("a", 0.3, 5.0, 1.0, 8.0, seed=3, tune_params='{"lr": 1}', pruned=True),
    ]
    report = build_report(pd.DataFrame(rows), tmp_path, plots=False)
    assert (report.n_trials, report.n_scored, report.n_failed) == (4, 2, 0)
    board = pd.read_csv(report.csv_path)
    assert len(board.index) == 2  # pruned trials are listed, never ranked
    page = page_text(report.html_path)
    assert "<h3>Pruned (2)</h3>" in page
    assert "median pruner at epoch 2" in page and ">2 of 10<" in page
    assert ">0.400<" in page and ">12.0 J<" in page  # accuracy and energy when stopped
    assert "without accuracy or energy" not in page
    assert "2 pruned" in page
    # Totals: 20 + 40 + 12 + 14 = 86 J, the pruned trials' energy included.
    assert "86.0 J" in page
    text = leaderboard_text(pd.DataFrame(rows))
    assert "2 pruned (stopped early by the tuner" in text


def test_top_two_within_noise_of_the_test_set(tmp_path: Path) -> None:
    # 400 test images; a 0.9 (360), b 0.8975 (359): one image apart.
    # Two binomial SEs of the difference: 2 sqrt(0.9*0.1/400 + 0.8975*0.1025/400) = 0.0427.
    rows = [
        split_trial("a", 0.9, 10.0, 1.0, 1.0),
        split_trial("b", 0.8975, 11.0, 1.0, 1.0),
        split_trial("c", 0.5, 30.0, 1.0, 1.0),
    ]
    page = page_text(build_report(pd.DataFrame(rows), tmp_path / "near", plots=False).html_path)
    assert (
        "The top two by PePR-E, a and b, differ in test accuracy by 0.003 (1 of 400 test "
        "images), within noise, less than two binomial standard errors of the difference "
        "(0.043): their order rests on energy, not on accuracy. One seed each (n = 1)" in page
    )
    # a 0.9 vs b 0.6 (0.3 apart, 120 images): 2 sqrt(0.09/400 + 0.24/400) = 0.0574.
    rows[1] = split_trial("b", 0.6, 11.0, 1.0, 1.0)
    page = page_text(build_report(pd.DataFrame(rows), tmp_path / "far", plots=False).html_path)
    assert "differ in test accuracy by 0.300 (120 of 400 test images)" in page
    assert "more than two binomial standard errors of the difference (0.057)" in page


def test_seeds_show_n_and_a_spread(tmp_path: Path) -> None:
    rows = [
        split_trial("a", 0.88, 10.0, 1.0, 1.0),
        split_trial("a", 0.92, 10.0, 1.0, 1.0, seed=1),
        split_trial("a", 0.90, 10.0, 1.0, 1.0, seed=2),
        split_trial("b", 0.5, 20.0, 1.0, 1.0),
    ]
    report = build_report(pd.DataFrame(rows), tmp_path, plots=False)
    page = page_text(report.html_path)
    # mean 0.900, sample sd 0.02, range 0.88-0.92
    assert "0.900 ± 0.020 (0.880-0.920)" in page
    assert "Test accuracy (mean ± sd, min-max)" in page
    assert "One of them is a single seed (n = 1)" in page  # b ran once
    board = pd.read_csv(report.csv_path)
    assert board["accuracy_min"].iloc[0] == pytest.approx(0.88)
    assert board["accuracy_max"].iloc[0] == pytest.approx(0.92)


def test_rows_the_store_could_not_read_are_named_in_the_notes(tmp_path: Path) -> None:
    table = split_results()
    table.attrs["store_warnings"] = ["trial 'x-3': result is not valid JSON"]
    report = build_report(table, tmp_path, plots=False)
    assert any("trial 'x-3': result is not valid JSON" in note for note in report.notes)
    assert "trial 'x-3': result is not valid JSON" in page_text(report.html_path)


def tuning_results() -> pd.DataFrame:
    """Twelve tuning configurations with the long parameter text a tuner records."""
    rows = []
    for n in range(12):
        params = (
            f'{{"batch_size": 32, "betas": [0.9, 0.999], "lr": {0.001 * (n + 1):.17f}, '
            f'"model.conv_layers": {n % 4 + 1}, "model.width": {8 + n}, "weight_decay": 0.001}}'
        )
        rows.append(
            split_trial(
                "frugal_cnn",
                0.70 + 0.02 * n,
                1.0 + 0.1 * n,
                0.5,
                0.5,
                seed=n,
                model_args=f'{{"conv_layers": {n % 4 + 1}, "width": {8 + n}}}',
                tune_params=params,
                tune_number=n,
                pruned=False,
                params=1000.0 * (n % 4 + 1),
            )
        )
    return pd.DataFrame(rows)


def test_a_tuning_report_draws_without_matplotlib_warnings(tmp_path: Path) -> None:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the old labels collapsed the constrained layout
        report = build_report(tuning_results(), tmp_path)
    assert len(report.png_paths) == 3  # Pareto, size (params differ), profile
    board = pd.read_csv(report.csv_path)
    # Each configuration is its own row, numbered as the tuner numbered it.
    assert board["model_label"].iloc[0].startswith("#0 frugal_cnn(conv_layers=1, width=8) {")
    assert board["point_label"].tolist()[:2] == ["#0", "#1"]
    page = page_text(report.html_path)
    assert "Points are named #N as on the leaderboard" in page


def test_one_setting_says_each_test_once(tmp_path: Path) -> None:
    rows = [
        split_trial("s1", 0.9, 10.0, 1.0, 1.0, params=1000.0),
        split_trial("s2", 0.8, 10.0, 1.0, 1.0, params=2000.0),
        split_trial("l1", 0.6, 10.0, 1.0, 1.0, params=10000.0),
        split_trial("l2", 0.5, 10.0, 1.0, 1.0, params=20000.0),
    ]
    page = page_text(build_report(pd.DataFrame(rows), tmp_path, plots=False).html_path)
    assert page.count("Small models (<= 6k params, n=2)") == 1
    assert "Small vs large models, all settings" not in page
    assert "the small-vs-large test over the whole study is the setting's test above" in page


def test_a_store_with_a_corrupt_row_still_reports_and_names_it(tmp_path: Path, capsys: Any) -> None:
    import sqlite3

    from frugalml.study import StudyStore

    out = tmp_path / "study"
    keys = ("study", "model", "model_args", "dataset", "pretrained", "fraction", "seed")
    with StudyStore(out) as store:
        rows = split_results().to_dict("records")
        store.add_trials(
            [(str(r["trial_id"]), "split", str(r["model"]), definition(r, keys)) for r in rows]
        )
        for r in rows:
            result = {k: v for k, v in r.items() if k not in (*keys, "status", "error")}
            store.finish(str(r["trial_id"]), "complete", result=result)
    with sqlite3.connect(out / "study.db") as conn:
        conn.execute("UPDATE trials SET result_json='{not json' WHERE trial_id='c-0'")
    assert main(["report", str(out), "--no-plots"]) == 0
    capsys.readouterr()
    page = page_text(out / "report" / "report.html")
    assert "not in this report, unreadable in the study store: study.db: trial c-0" in page
    board = pd.read_csv(out / "report" / "leaderboard.csv")
    # a and b remain: training 10, 30 -> 0.9 / 1, 0.8 / 2
    np.testing.assert_allclose(board["pepr_train_energy_j"], [0.9, 0.4], atol=1e-12)


def test_a_tuning_run_with_only_pruned_trials_exits_1_and_counts_them(
    tmp_path: Path, capsys: Any
) -> None:
    rows = [split_trial("a", 0.3, 5.0, 1.0, 8.0, seed=n, pruned=True) for n in range(2)]
    csv = tmp_path / "pruned.csv"
    pd.DataFrame(rows).to_csv(csv, index=False)
    assert main(["report", "--csv", str(csv), "--no-plots"]) == 1
    err = capsys.readouterr().err
    assert "no complete trial with accuracy and energy to rank (0 failed, 2 pruned," in err


def test_a_pruned_trial_in_a_store_is_pruned_in_status_and_report(
    tmp_path: Path, capsys: Any
) -> None:
    from frugalml.study import StudyStore

    out = tmp_path / "tune"
    keys = ("study", "model", "model_args", "dataset", "pretrained", "fraction", "seed")
    rows = split_results().to_dict("records")
    rows[2].update(pruned=True, tune_state="pruned", epochs=1, stop_reason="median pruner")
    with StudyStore(out) as store:
        store.add_trials(
            [(str(r["trial_id"]), "split", str(r["model"]), definition(r, keys)) for r in rows]
        )
        for r in rows:
            result = {k: v for k, v in r.items() if k not in (*keys, "status", "error")}
            # The tuner records a pruned trial as finished in the store.
            store.finish(str(r["trial_id"]), "complete", result=result)
    assert main(["study", "status", str(out)]) == 0
    assert "complete 2, pruned 1, failed 0" in capsys.readouterr().out
    assert main(["report", str(out), "--no-plots"]) == 0
    capsys.readouterr()
    page = page_text(out / "report" / "report.html")
    assert "<h3>Pruned (1)</h3>" in page and "median pruner" in page
    assert "1 pruned" in page
    board = pd.read_csv(out / "report" / "leaderboard.csv")
    assert board["model"].tolist() == ["a", "b"]


def test_a_negative_energy_in_a_store_leaves_that_trial_out_with_a_note(
    tmp_path: Path, capsys: Any
) -> None:
    from frugalml.study import StudyStore

    out = tmp_path / "study"
    keys = ("study", "model", "model_args", "dataset", "pretrained", "fraction", "seed")
    rows = split_results().to_dict("records")
    rows[1]["train_energy_j"] = -30.0  # no meter books this: a damaged row
    with StudyStore(out) as store:
        store.add_trials(
            [(str(r["trial_id"]), "split", str(r["model"]), definition(r, keys)) for r in rows]
        )
        for r in rows:
            result = {k: v for k, v in r.items() if k not in (*keys, "status", "error")}
            store.finish(str(r["trial_id"]), "complete", result=result)
    before = (out / "study.db").read_bytes()
    assert main(["report", str(out), "--no-plots"]) == 0
    capsys.readouterr()
    assert (out / "study.db").read_bytes() == before
    page = page_text(out / "report" / "report.html")
    assert (
        "not in this report: b (digits, from scratch, 100% of the training data, seed 0) "
        "records train_energy_j = -30, which cannot be negative" in page
    )
    board = pd.read_csv(out / "report" / "leaderboard.csv")
    # a and c remain: training 10, 20 -> E_n 0, 1 -> 0.9, 0.57 / 2 = 0.285
    assert board["model"].tolist() == ["a", "c"]
    np.testing.assert_allclose(board["pepr_train_energy_j"], [0.9, 0.285], atol=1e-12)

"""``frugalml.report``: leaderboards, totals, tests and files checked against hand-made tables.

The hand tables are small enough to score on paper; each expected number is worked out in
a comment next to it.
"""

from __future__ import annotations

import base64
import html
import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from frugalml.errors import ConfigError, DataError
from frugalml.report import Report, build_report, energy_notes, leaderboard_text

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def trial(
    model: str, accuracy: float | None, energy_j: float | None, **extra: Any
) -> dict[str, Any]:
    """One row of a study results table with sensible defaults."""
    row: dict[str, Any] = {
        "trial_id": f"{model}-{extra.get('seed', 0)}-{extra.get('fraction', 1.0)}",
        "study": "hand",
        "model": model,
        "model_args": "{}",
        "dataset": "digits",
        "pretrained": False,
        "fraction": 1.0,
        "seed": 0,
        "status": "complete",
        "error": None,
        "params": 1000.0,
        "flops_per_sample": 2000.0,
        "accuracy": accuracy,
        "energy_j": energy_j,
        "energy_kind": "estimated",
        "energy_source": "cpu=estimate:tdp*utilisation",
        "co2_g": None if energy_j is None else energy_j / 3.6e6 * 480.0,
        "intensity_g_per_kwh": 480.0,
        "pue": 1.0,
        "duration_s": None if energy_j is None else energy_j / 10.0,
        "peak_rss_bytes": 5e8,
        "peak_gpu_mem_bytes": None,
    }
    row.update(extra)
    return row


def hand_results() -> pd.DataFrame:
    """Three scored models (a seeded twice), one failed trial with hostile error text.

    a: seeds 0, 1 with accuracy 0.88, 0.92 and energy 90, 110 J -> mean 0.90, 100 J.
    b: 0.80 at 300 J.  c: 0.95 at 500 J.
    E_n = (E - 100) / 400: a 0, b 0.5, c 1.
    PePR-E = P / (1 + E_n): a 0.90, b 0.80 / 1.5 = 0.5333, c 0.95 / 2 = 0.475.
    Pareto (accuracy up, energy down): a and c; b is beaten by a on both.
    """
    return pd.DataFrame(
        [
            trial("a", 0.88, 90.0, params=1000.0),
            trial("a", 0.92, 110.0, seed=1, params=1000.0),
            trial("b", 0.80, 300.0, params=5000.0),
            trial("c", 0.95, 500.0, params=20000.0),
            trial(
                "d",
                None,
                50.0,
                status="failed",
                error="RuntimeError: <script>alert('x')</script> CUDA out of memory\nline 2",
            ),
        ]
    )


# -- scoring ---------------------------------------------------------------------------------


def test_leaderboard_csv_has_the_hand_computed_scores(tmp_path: Path) -> None:
    report = build_report(hand_results(), tmp_path, plots=False)
    board = pd.read_csv(report.csv_path)
    assert board["model"].tolist() == ["a", "b", "c"]
    assert board["rank"].tolist() == [1, 2, 3]
    np.testing.assert_allclose(board["pepr_energy_j"], [0.90, 0.80 / 1.5, 0.95 / 2.0])
    np.testing.assert_allclose(board["energy_j"], [100.0, 300.0, 500.0])
    # A table without train_energy_j (written before the split): PePR-E on energy_j.
    assert board["pepr_e_column"].tolist() == ["energy_j"] * 3
    np.testing.assert_allclose(board["accuracy"], [0.90, 0.80, 0.95])
    # a's two seeds are averaged and counted; sample sd of 0.88, 0.92 = 0.02 * sqrt(2)
    assert board["n_trials"].tolist() == [2, 1, 1]
    assert board["accuracy_std"].iloc[0] == pytest.approx(0.02 * math.sqrt(2))
    assert board["pareto_accuracy_energy"].tolist() == [True, False, True]
    assert board["energy_kind"].tolist() == ["estimated"] * 3
    assert "d" not in board["model"].tolist()  # failed trials are never scored


def test_leaderboard_text_lists_the_top_models_in_order() -> None:
    text = leaderboard_text(hand_results(), top=2)
    lines = text.splitlines()
    rows = [line for line in lines if re.match(r"^\s+\d+\s", line)]
    assert len(rows) == 2  # top=2 of three
    assert rows[0].split()[:2] == ["1", "a"] and "0.900" in rows[0]
    assert rows[1].split()[:2] == ["2", "b"] and "0.533" in rows[1]
    assert "top 2 shown" in text
    assert "averaged" in text  # a has two seeds: the text says the trials were averaged
    assert "1 failed" in text


def test_seeds_weigh_like_one_model_in_the_normalisation(tmp_path: Path) -> None:
    # Had the seeds of a been scored as separate rows, min E would be 90, not 100.
    table = hand_results()
    board = pd.read_csv(build_report(table, tmp_path, plots=False).csv_path)
    assert board.loc[board["model"] == "b", "energy_j_norm"].item() == pytest.approx(0.5)


def test_settings_are_scored_apart(tmp_path: Path) -> None:
    # Reduced data: x 0.6 at 10 J, y 0.7 at 30 J -> E_n 0, 1 -> PePR-E 0.6, 0.35.
    rows = [
        trial("x", 0.6, 10.0, fraction=0.1),
        trial("y", 0.7, 30.0, fraction=0.1),
        trial("x", 0.9, 100.0),
        trial("y", 0.95, 100.0),  # same energy: E_n = 0, PePR-E = accuracy
    ]
    board = pd.read_csv(build_report(pd.DataFrame(rows), tmp_path, plots=False).csv_path)
    reduced = board[board["fraction"] == 0.1].set_index("model")
    full = board[board["fraction"] == 1.0].set_index("model")
    assert reduced.loc["x", "pepr_energy_j"] == pytest.approx(0.6)
    assert reduced.loc["y", "pepr_energy_j"] == pytest.approx(0.35)
    assert full.loc["y", "pepr_energy_j"] == pytest.approx(0.95)
    assert full.loc["y", "rank"] == 1
    assert board["setting"].tolist() == [1, 1, 2, 2]  # order of first appearance
    assert board["setting_label"].iloc[0] == "digits, from scratch, 10% of the training data"


def test_model_arguments_tell_models_apart(tmp_path: Path) -> None:
    rows = [
        trial("frugal_cnn", 0.6, 10.0, model_args='{"conv_layers": 1}'),
        trial("frugal_cnn", 0.9, 40.0, model_args='{"conv_layers": 4}'),
    ]
    board = pd.read_csv(build_report(pd.DataFrame(rows), tmp_path, plots=False).csv_path)
    assert board["model_label"].tolist() == [
        "frugal_cnn(conv_layers=1)",
        "frugal_cnn(conv_layers=4)",
    ]
    assert board["n_trials"].tolist() == [1, 1]


def test_tuning_trials_are_ranked_per_configuration_and_pruned_ones_only_listed(
    tmp_path: Path,
) -> None:
    rows = [
        trial("frugal_cnn", 0.9, 40.0, tune_params='{"lr": 0.001}', pruned=False),
        trial("frugal_cnn", 0.7, 20.0, seed=1, tune_params='{"lr": 0.01}', pruned=False),
        trial("frugal_cnn", 0.3, 5.0, seed=2, tune_params='{"lr": 1e-05}', pruned=True),
    ]
    report = build_report(pd.DataFrame(rows), tmp_path, plots=False)
    board = pd.read_csv(report.csv_path)
    # PePR-E over the two finished configurations: 0.7 / (1 + 0) and 0.9 / (1 + 1).
    assert board["model_label"].tolist() == [
        'frugal_cnn {"lr": 0.01}',
        'frugal_cnn {"lr": 0.001}',
    ]
    np.testing.assert_allclose(board["pepr_energy_j"], [0.7, 0.45])
    assert board["n_trials"].tolist() == [1, 1]
    page = html.unescape(report.html_path.read_text())
    # One state, "pruned", with the accuracy and energy of the epoch it stopped at.
    assert "<h3>Pruned (1)</h3>" in page
    assert "0.300" in page and "5.00 J" in page
    assert "without accuracy or energy" not in page
    assert "65.0 J" in page  # the pruned trial's 5 J count in the study's total
    assert (report.n_trials, report.n_scored) == (3, 2)


# -- totals and provenance ---------------------------------------------------------------------


def test_totals_count_every_joule_including_failed_trials(tmp_path: Path) -> None:
    report = build_report(hand_results(), tmp_path, plots=False)
    assert (report.n_trials, report.n_scored, report.n_failed) == (5, 4, 1)
    page = report.html_path.read_text(encoding="utf-8")
    # 90 + 110 + 300 + 500 + 50 (the failed trial) = 1,050 J = 0.292 Wh
    assert "1,050 J (0.292 Wh)" in page
    assert "all of it estimated" in page
    # CO2 = 1050 J / 3.6e6 * 480 g/kWh = 0.14 g
    assert "0.140 g" in page
    assert "480 gCO₂e/kWh with PUE 1" in page


def test_measured_and_estimated_energy_are_split(tmp_path: Path) -> None:
    rows = [
        trial("m", 0.8, 100.0, energy_kind="measured", energy_source="gpu:0=nvml"),
        trial(
            "n",
            0.9,
            250.0,
            energy_kind="mixed",
            measured_energy_j=200.0,
            estimated_energy_j=50.0,
            energy_source="gpu:0=nvml; cpu=estimate:tdp*utilisation",
        ),
    ]
    report = build_report(pd.DataFrame(rows), tmp_path, plots=False)
    page = report.html_path.read_text(encoding="utf-8")
    # measured: 100 (kind) + 200 (column) = 300 J; estimated: 50 J
    assert "300 J measured, 50.0 J estimated" in page
    assert "gpu:0=nvml; cpu=estimate:tdp*utilisation" in page
    board = pd.read_csv(report.csv_path)
    assert board["energy_kind"].tolist() == ["measured", "mixed"]


def test_energy_notes_from_measurements_are_shown(tmp_path: Path) -> None:
    measurement = {
        "components": [
            {
                "component": "cpu",
                "source": "estimate:tdp*utilisation",
                "device": "CPU: Test 9000",
                "notes": ["energy = CPU seconds x 65 W TDP / 8 logical CPUs"],
            }
        ],
        "intensity_source": "world average 2023 <Ember>",
    }
    notes = energy_notes([measurement, measurement, None])
    assert notes == {
        "cpu=estimate:tdp*utilisation": [
            "device: CPU: Test 9000",
            "energy = CPU seconds x 65 W TDP / 8 logical CPUs",
        ],
        "carbon intensity": ["world average 2023 <Ember>"],
    }
    page = build_report(
        hand_results(), tmp_path, energy_notes=notes, plots=False
    ).html_path.read_text()
    assert "65 W TDP / 8 logical CPUs" in page
    assert "world average 2023 &lt;Ember&gt;" in page


# -- tests in words ---------------------------------------------------------------------------


def test_small_vs_large_sentence_has_the_hand_medians_and_exact_p(tmp_path: Path) -> None:
    # Same energy for all -> PePR-E = accuracy. Params 1k, 2k | 10k, 20k; median split
    # at (2k + 10k) / 2 = 6k. Small: 0.9, 0.8 (median 0.85); large: 0.6, 0.5 (median 0.55).
    # Fully separated 2 vs 2: exact two-sided p = 2 / C(4, 2) = 0.333.
    rows = [
        trial("s1", 0.9, 100.0, params=1000.0),
        trial("s2", 0.8, 100.0, params=2000.0),
        trial("l1", 0.6, 100.0, params=10000.0),
        trial("l2", 0.5, 100.0, params=20000.0),
    ]
    page = html.unescape(
        build_report(pd.DataFrame(rows), tmp_path, plots=False).html_path.read_text()
    )
    assert "Small models (<= 6k params, n=2): median PePR-E 0.85 vs 0.55 for large (n=2)" in page
    assert "p = 0.333" in page
    assert "no outcome could give p below 0.333" in page


def test_pretrained_vs_scratch_is_tested_on_pairs(tmp_path: Path) -> None:
    # Pretrained minus scratch accuracy: +0.10, +0.20, +0.05 -> median +0.100.
    # Three positive differences: exact two-sided Wilcoxon p = 2 / 2^3 = 0.25.
    rows = []
    for model, scratch, gain in (("p", 0.7, 0.10), ("q", 0.6, 0.20), ("r", 0.8, 0.05)):
        rows.append(trial(model, scratch, 100.0))
        rows.append(trial(model, scratch + gain, 100.0, pretrained=True))
    page = html.unescape(
        build_report(pd.DataFrame(rows), tmp_path, plots=False).html_path.read_text()
    )
    assert "Pretrained vs from scratch" in page
    # One setting besides the factor: its test is the test over all pairs, said once.
    assert "All settings: accuracy" not in page
    sentences = [
        line for line in page.splitlines() if "accuracy, pretrained minus from scratch" in line
    ]
    assert len(sentences) == 1
    assert "Digits, 100% of the training data: accuracy" in sentences[0]
    assert "median difference +0.100 over 3 pairs" in sentences[0]
    assert "p = 0.250" in sentences[0]


def test_full_vs_reduced_data_appears_only_with_both_levels(tmp_path: Path) -> None:
    one_level = build_report(hand_results(), tmp_path / "one", plots=False).html_path.read_text()
    assert "of the training data</h3>" not in one_level
    rows = [
        trial("x", 0.6, 10.0, fraction=0.1),
        trial("y", 0.7, 30.0, fraction=0.1),
        trial("x", 0.9, 100.0),
        trial("y", 0.95, 100.0),
    ]
    page = html.unescape(
        build_report(pd.DataFrame(rows), tmp_path / "two", plots=False).html_path.read_text()
    )
    assert "100% vs 10% of the training data" in page
    # x: 0.9 - 0.6 = 0.3, y: 0.95 - 0.7 = 0.25 -> median +0.275; 2 pairs
    assert "median difference +0.275 over 2 pairs" in page


# -- files, escaping, failures ---------------------------------------------------------------


def test_files_are_written_where_asked(tmp_path: Path) -> None:
    page = tmp_path / "pages" / "mine.html"
    report = build_report(hand_results(), tmp_path / "out", html_path=page, title="Derma <1>")
    assert isinstance(report, Report)
    assert report.html_path == page and page.is_file()
    assert report.markdown_path == tmp_path / "out" / "leaderboard.md"
    assert report.csv_path == tmp_path / "out" / "leaderboard.csv"
    names = sorted(p.name for p in report.png_paths)
    assert names == [
        "pepr-profile.png",
        "s1-digits-scratch-100pct-pareto-energy.png",
        "s1-digits-scratch-100pct-pepr-e-vs-size.png",
    ]
    for path in report.png_paths:
        assert path.read_bytes().startswith(PNG_MAGIC)
    assert "<title>Derma &lt;1&gt;</title>" in page.read_text()


def test_html_is_self_contained_and_embeds_the_pngs(tmp_path: Path) -> None:
    report = build_report(hand_results(), tmp_path)
    page = report.html_path.read_text(encoding="utf-8")
    sources = re.findall(r'<img src="([^"]+)"', page)
    assert len(sources) == len(report.png_paths) == 3
    for source in sources:
        assert source.startswith("data:image/png;base64,")
        assert base64.b64decode(source.split(",", 1)[1]).startswith(PNG_MAGIC)
    assert "<script" not in page
    assert not re.search(r"""(src|href)=["'](https?:|//)""", page)
    assert "Content-Security-Policy" in page


def test_user_text_is_escaped_everywhere(tmp_path: Path) -> None:
    hostile = '<img src=x onerror="alert(1)">|*'
    rows = [trial(hostile, 0.9, 100.0), trial("b", 0.8, 200.0)]
    rows.append(trial("c", None, 10.0, status="failed", error="</td><script>evil()</script>"))
    report = build_report(pd.DataFrame(rows), tmp_path)
    page = report.html_path.read_text(encoding="utf-8")
    assert "<img src=x" not in page and "<script>evil" not in page
    assert "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in page
    assert "&lt;/td&gt;&lt;script&gt;evil()&lt;/script&gt;" in page
    markdown = report.markdown_path.read_text(encoding="utf-8")
    assert "<img" not in markdown and "<script" not in markdown
    assert "\\|" in markdown  # a pipe in a name cannot break the Markdown table
    terminal = leaderboard_text(pd.DataFrame([trial("evil\x1b[31mred", 0.9, 1.0)]))
    assert "\x1b" not in terminal and "evil[31mred" in terminal


def test_failed_trials_are_listed_with_their_error(tmp_path: Path) -> None:
    page = build_report(hand_results(), tmp_path, plots=False).html_path.read_text(encoding="utf-8")
    failed = page[page.index('id="failed"') :]
    assert "d (digits, from scratch, 100% of the training data, seed 0)" in failed
    assert (
        "RuntimeError: &lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; CUDA out of memory"
        in failed
    )
    assert "50.0 J" in failed  # the energy the failed trial spent


def test_a_study_where_every_trial_failed_still_gets_a_report(tmp_path: Path) -> None:
    rows = [
        trial("a", None, None, status="failed", error="ModelError: unknown model 'a'"),
        trial("b", None, 12.0, status="failed", error="out of memory"),
        trial("c", None, None, status="pending"),
    ]
    report = build_report(pd.DataFrame(rows), tmp_path)
    assert report.empty and report.n_failed == 2 and report.n_unfinished == 1
    assert report.png_paths == ()
    page = report.html_path.read_text(encoding="utf-8")
    assert "nothing to rank" in page
    assert "unknown model &#x27;a&#x27;" in page and "out of memory" in page
    assert pd.read_csv(report.csv_path).empty
    assert "No complete trial to rank: 2 failed, 1 unfinished" in leaderboard_text(
        pd.DataFrame(rows)
    )


def test_a_complete_trial_without_energy_is_listed_not_scored(tmp_path: Path) -> None:
    rows = [trial("a", 0.9, 100.0), trial("b", 0.8, 300.0), trial("e", 0.7, None)]
    report = build_report(pd.DataFrame(rows), tmp_path, plots=False)
    assert report.n_scored == 2
    page = report.html_path.read_text(encoding="utf-8")
    assert "Complete but not scored (1)" in page and "no energy_j" in page


def test_a_published_table_without_status_or_settings_is_one_setting(tmp_path: Path) -> None:
    table = pd.DataFrame({"model": ["u", "v"], "accuracy": [0.5, 0.75], "energy_j": [42.0, 42.0]})
    report = build_report(table, tmp_path, plots=False)
    board = pd.read_csv(report.csv_path)
    np.testing.assert_allclose(board["pepr_energy_j"], [0.75, 0.5])
    assert board["setting_label"].tolist() == ["all results"] * 2
    assert any("no 'status' column" in n for n in report.notes)


@pytest.mark.parametrize(
    ("table", "error", "words"),
    [
        (pd.DataFrame(), DataError, "no rows"),
        (pd.DataFrame({"model": ["a"], "accuracy": [0.5]}), ConfigError, "'energy_j'"),
        ([{"model": "a"}], ConfigError, "got list"),
        (
            pd.DataFrame({"model": ["a"], "accuracy": ["high"], "energy_j": [1.0]}),
            DataError,
            "'high'",
        ),
    ],
)
def test_bad_input_is_named(tmp_path: Path, table: Any, error: type[Exception], words: str) -> None:
    with pytest.raises(error, match=re.escape(words)):
        build_report(table, tmp_path, plots=False)
    assert not (tmp_path / "report.html").exists()


def test_accuracy_given_in_percent_is_refused(tmp_path: Path) -> None:
    rows = [trial("a", 90.0, 100.0), trial("b", 80.0, 300.0)]
    with pytest.raises(DataError, match="percentage"):
        build_report(pd.DataFrame(rows), tmp_path, plots=False)


def test_pretrained_written_as_text_or_numbers_is_understood(tmp_path: Path) -> None:
    rows = []
    for model, scratch, gain in (("p", 0.7, 0.10), ("q", 0.6, 0.20), ("r", 0.8, 0.05)):
        rows.append(trial(model, scratch, 100.0, pretrained="no"))
        rows.append(trial(model, scratch + gain, 100.0, pretrained=1))
    report = build_report(pd.DataFrame(rows), tmp_path, plots=False)
    board = pd.read_csv(report.csv_path)
    assert board["setting_label"].unique().tolist() == [
        "digits, from scratch, 100% of the training data",
        "digits, pretrained, 100% of the training data",
    ]
    assert "median difference +0.100 over 3 pairs" in report.html_path.read_text()
    rows[0]["pretrained"] = "maybe"
    with pytest.raises(DataError, match="'maybe' at row 1"):
        build_report(pd.DataFrame(rows), tmp_path, plots=False)

"""PePR scores against small tables computed by hand."""

from __future__ import annotations

import math
import subprocess
import sys
import warnings

import numpy as np
import pandas as pd
import pytest

import frugalml
from frugalml.analysis import (
    MEMORY_COLUMN,
    PEPR_VARIANTS,
    ColumnFallbackWarning,
    MissingDataWarning,
    MixedSettingsWarning,
    pepr,
    prepare_variants,
    rank,
    score_label,
    score_study,
)
from frugalml.errors import ConfigError, DataError

NAN = math.nan


def hand_table() -> pd.DataFrame:
    """Two settings plus one that cannot be scored.

    dataset a: energy 100, 300, 200 are scorable; 'd' lacks energy and 'e' lacks accuracy,
    so neither counts (e's energy 50 would otherwise be the minimum).
    dataset b: every energy is 42, so R_n = 0 for all.
    dataset c: its only row lacks energy: an empty group.
    """
    return pd.DataFrame(
        {
            "model": ["m1", "m2", "m3", "d", "e", "m1", "m2", "m1"],
            "dataset": ["a", "a", "a", "a", "a", "b", "b", "c"],
            "accuracy": [0.80, 0.90, 0.60, 0.70, NAN, 0.50, 0.75, 0.50],
            "energy_j": [100.0, 300.0, 200.0, NAN, 50.0, 42.0, 42.0, NAN],
            # co2 for a second resource: dataset a min 1, max 5 (rows d, e excluded).
            "co2_g": [1.0, 5.0, 2.0, 9.0, 0.5, 3.0, 6.0, 1.0],
        }
    )


def test_pepr_matches_hand_computation() -> None:
    with pytest.warns(MissingDataWarning):
        out = pepr(hand_table(), performance="accuracy", resource="energy_j", group="dataset")
    # dataset a: min 100, max 300, span 200.
    #   m1: R_n = (100-100)/200 = 0    PePR = 0.80/1   = 0.80
    #   m2: R_n = (300-100)/200 = 1    PePR = 0.90/2   = 0.45
    #   m3: R_n = (200-100)/200 = 0.5  PePR = 0.60/1.5 = 0.40
    # dataset b: all R equal -> R_n = 0, PePR = P: 0.50, 0.75.
    expected_norm = [0.0, 1.0, 0.5, NAN, NAN, 0.0, 0.0, NAN]
    expected_pepr = [0.80, 0.45, 0.40, NAN, NAN, 0.50, 0.75, NAN]
    np.testing.assert_allclose(out["energy_j_norm"], expected_norm, rtol=0, atol=1e-12)
    np.testing.assert_allclose(out["pepr_energy_j"], expected_pepr, rtol=0, atol=1e-12)


def test_pepr_keeps_rows_and_columns_in_order() -> None:
    table = hand_table()
    with pytest.warns(MissingDataWarning):
        out = pepr(table, performance="accuracy", resource=["energy_j", "co2_g"], group="dataset")
    assert list(out.columns) == [
        *table.columns,
        "energy_j_norm",
        "pepr_energy_j",
        "co2_g_norm",
        "pepr_co2_g",
    ]
    pd.testing.assert_frame_equal(out[table.columns], table)
    assert list(table.columns) == ["model", "dataset", "accuracy", "energy_j", "co2_g"]


def test_each_resource_has_its_own_missing_rows() -> None:
    with pytest.warns(MissingDataWarning):
        out = pepr(hand_table(), performance="accuracy", resource="co2_g", group="dataset")
    # co2 is present everywhere, so only 'e' (no accuracy) is left out.
    # dataset a: rows m1, m2, m3, d -> co2 1, 5, 2, 9: min 1, max 9, span 8.
    #   m1: 0/8 = 0 -> 0.80;  m2: 4/8 = 0.5 -> 0.90/1.5 = 0.6;
    #   m3: 1/8 = 0.125 -> 0.60/1.125;  d: 8/8 = 1 -> 0.70/2 = 0.35
    # dataset b: co2 3, 6: 0 -> 0.50, 1 -> 0.75/2 = 0.375
    # dataset c: one row: span 0 -> R_n 0 -> 0.50
    expected = [0.80, 0.6, 0.60 / 1.125, 0.35, NAN, 0.50, 0.375, 0.50]
    np.testing.assert_allclose(out["pepr_co2_g"], expected, rtol=0, atol=1e-12)


def test_without_group_the_whole_table_is_one_group() -> None:
    table = pd.DataFrame({"acc": [0.9, 0.6, 0.8], "t_s": [10.0, 30.0, 20.0]})
    out = pepr(table, performance="acc", resource="t_s")
    # min 10, max 30: R_n = 0, 1, 0.5 -> 0.9, 0.6/2 = 0.3, 0.8/1.5
    np.testing.assert_allclose(out["pepr_t_s"], [0.9, 0.3, 0.8 / 1.5], rtol=0, atol=1e-12)


def test_cheapest_scores_p_and_dearest_half_p() -> None:
    table = pd.DataFrame({"p": [0.7, 0.7, 0.7], "r": [5, 17, 11]})
    out = pepr(table, performance="p", resource="r")
    assert out["pepr_r"].iloc[0] == 0.7
    assert out["pepr_r"].iloc[1] == 0.35


def test_missing_rows_are_counted_in_one_warning() -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pepr(hand_table(), performance="accuracy", resource="energy_j", group="dataset")
    messages = [str(w.message) for w in caught if w.category is MissingDataWarning]
    assert len(messages) == 1
    assert "3 of 8 rows" in messages[0]
    assert "rows 3, 4, 7" in messages[0]
    assert "dataset='c'" in messages[0]


def test_all_rows_missing_gives_nan_and_a_warning() -> None:
    table = pd.DataFrame({"p": [0.5, NAN], "r": [NAN, 3.0]})
    with pytest.warns(MissingDataWarning, match="no row of the table"):
        out = pepr(table, performance="p", resource="r")
    assert out["pepr_r"].isna().all()


def test_no_warning_when_every_row_scores() -> None:
    table = pd.DataFrame({"p": [0.5, 0.6], "r": [1, 2]})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pepr(table, performance="p", resource="r")


def test_top_level_reexport() -> None:
    assert frugalml.pepr is pepr


@pytest.mark.parametrize(
    ("values", "match"),
    [
        ([0.5, 80.0], "percentage.*divide 'p' by 100"),
        ([0.5, 100.0], "percentage"),
        ([0.5, -0.1], r"outside \[0, 1\]"),
        ([0.5, 100.5], r"outside \[0, 1\]"),
    ],
)
def test_performance_out_of_range(values: list[float], match: str) -> None:
    table = pd.DataFrame({"p": values, "r": [1.0, 2.0]})
    with pytest.raises(DataError, match=match):
        pepr(table, performance="p", resource="r")


def test_non_numeric_values_name_column_value_and_row() -> None:
    table = pd.DataFrame({"p": [0.5, 0.6, 0.7], "r": ["1", "2", "lots"]})
    with pytest.raises(DataError, match="'r' has a non-numeric value 'lots' at row 2"):
        pepr(table, performance="p", resource="r")
    table = pd.DataFrame({"p": [0.5, "high"], "r": [1, 2]})
    with pytest.raises(DataError, match="'p' has a non-numeric value 'high' at row 1"):
        pepr(table, performance="p", resource="r")


def test_infinite_and_boolean_values_are_errors() -> None:
    with pytest.raises(DataError, match="infinite value at row 1"):
        pepr(pd.DataFrame({"p": [0.5, 0.6], "r": [1, math.inf]}), performance="p", resource="r")
    with pytest.raises(DataError, match="True/False"):
        pepr(pd.DataFrame({"p": [True, False], "r": [1, 2]}), performance="p", resource="r")


def test_missing_column_lists_the_available_ones() -> None:
    with pytest.raises(ConfigError, match="'energy' not in the table; available columns: p, r"):
        pepr(pd.DataFrame({"p": [0.5], "r": [1]}), performance="p", resource="energy")
    with pytest.raises(ConfigError, match="group column 'setting'"):
        pepr(pd.DataFrame({"p": [0.5], "r": [1]}), performance="p", resource="r", group="setting")


def test_empty_table_and_bad_arguments() -> None:
    with pytest.raises(DataError, match="no rows"):
        pepr(pd.DataFrame({"p": [], "r": []}), performance="p", resource="r")
    table = pd.DataFrame({"p": [0.5], "r": [1]})
    with pytest.raises(ConfigError, match="no resource"):
        pepr(table, performance="p", resource=[])
    with pytest.raises(ConfigError, match="given twice"):
        pepr(table, performance="p", resource=["r", "r"])
    with pytest.raises(ConfigError, match="both performance and resource"):
        pepr(table, performance="p", resource="p")
    with pytest.raises(ConfigError, match="DataFrame"):
        pepr([[0.5, 1]], performance="p", resource="r")  # type: ignore[arg-type]


def study_table() -> pd.DataFrame:
    """A study-shaped table: setting (d1, True, 1.0) on a GPU, (d1, False, 1.0) on a CPU."""
    return pd.DataFrame(
        {
            "model": ["a", "b", "c", "a", "b"],
            "dataset": ["d1"] * 5,
            "pretrained": [True, True, True, False, False],
            "fraction": [1.0] * 5,
            "accuracy": [0.9, 0.8, 0.6, 0.5, 0.7],
            "energy_j": [10.0, 20.0, 30.0, 5.0, 15.0],
            "co2_g": [1.0, 2.0, 3.0, 4.0, 5.0],
            "duration_s": [1.0, 1.0, 1.0, 2.0, 4.0],
            "peak_rss_bytes": [9e9, 8e9, 7e9, 300.0, 100.0],
            "peak_gpu_mem_bytes": [400.0, 200.0, 600.0, NAN, NAN],
            "params": [1e6, 2e6, 3e6, 1e6, 2e6],
            "flops_per_sample": [4.0, 2.0, 8.0, 4.0, 2.0],
        }
    )


def test_score_study_all_variants() -> None:
    # A table written before trials recorded the split: E, C and T fall back, with a warning.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = score_study(study_table())
    fallbacks = [str(w.message) for w in caught if w.category is ColumnFallbackWarning]
    assert len(fallbacks) == 3  # E, C and T; M has no training-only column to miss
    assert "scoring energy_j" in fallbacks[0]
    for column in ("energy_j", "co2_g", MEMORY_COLUMN, "duration_s", "params"):
        assert f"pepr_{column}" in out.columns
    assert "pepr_flops_per_sample" in out.columns
    # Memory: the GPU setting uses GPU peaks 400, 200, 600 (min 200, max 600):
    #   a: 200/400 = 0.5 -> 0.9/1.5 = 0.6;  b: 0 -> 0.8;  c: 1 -> 0.3
    # the CPU setting has no GPU value and uses RSS 300, 100: a: 1 -> 0.25;  b: 0 -> 0.7
    assert list(out["peak_mem_source"]) == ["peak_gpu_mem_bytes"] * 3 + ["peak_rss_bytes"] * 2
    np.testing.assert_allclose(
        out["pepr_peak_mem_bytes"], [0.6, 0.8, 0.3, 0.25, 0.7], rtol=0, atol=1e-12
    )
    # Energy, GPU setting: 10, 20, 30 -> 0, 0.5, 1 -> 0.9, 0.8/1.5, 0.3
    #         CPU setting: 5, 15 -> 0, 1 -> 0.5, 0.35
    np.testing.assert_allclose(
        out["pepr_energy_j"], [0.9, 0.8 / 1.5, 0.3, 0.5, 0.35], rtol=0, atol=1e-12
    )
    # Time, GPU setting: all 1 s -> R_n = 0 -> PePR-T = P
    np.testing.assert_allclose(out["pepr_duration_s"][:3], [0.9, 0.8, 0.6], rtol=0, atol=1e-12)


def test_score_study_equals_pepr_on_the_same_columns() -> None:
    table = study_table()
    with pytest.warns(ColumnFallbackWarning):
        out = score_study(table, variants=("E", "C"))
    direct = pepr(
        table,
        performance="accuracy",
        resource=["energy_j", "co2_g"],
        group=("dataset", "pretrained", "fraction"),
    )
    pd.testing.assert_frame_equal(out, direct)


def test_score_study_errors() -> None:
    with pytest.raises(ConfigError, match=r"unknown PePR variant 'X'.*E \(train_energy_j\)"):
        score_study(study_table(), variants=("X",))
    table = study_table().drop(columns=["peak_rss_bytes", "peak_gpu_mem_bytes"])
    with pytest.raises(ConfigError, match="PePR-M needs column"):
        prepare_variants(table, ["M"])


def test_variant_names() -> None:
    # PePR-E, -C and -T score the training alone, as the PePR paper measured.
    assert PEPR_VARIANTS["E"] == "train_energy_j"
    assert PEPR_VARIANTS["C"] == "train_co2_g"
    assert PEPR_VARIANTS["T"] == "train_duration_s"
    assert score_label("pepr_train_energy_j") == "PePR-E"
    assert score_label("pepr_energy_j") == "PePR-E"  # the fallback is named alike
    assert score_label("pepr_peak_mem_bytes") == "PePR-M"
    assert score_label("pepr_params") == "PePR (params)"
    assert score_label("accuracy") == "accuracy"


def test_rank_descending_with_ties_and_groups() -> None:
    table = pd.DataFrame(
        {
            "setting": ["s", "s", "s", "s", "t", "t"],
            "score": [0.5, 0.9, 0.5, NAN, 0.1, 0.2],
        }
    )
    out = rank(table, by="score", group="setting")
    # s: 0.9 -> 1, the two 0.5 share rank 2 (method "min"), NaN has no rank, comes last.
    # t: 0.2 -> 1, 0.1 -> 2.
    assert list(out.index) == [1, 0, 2, 3, 5, 4]
    assert out["rank"].tolist() == [1, 2, 2, pd.NA, 1, 2]
    assert str(out["rank"].dtype) == "Int64"
    ascending = rank(table, by="score", ascending=True, column="r")
    # all rows: 0.1 -> 1, 0.2 -> 2, 0.5, 0.5 -> 3, 0.9 -> 5
    assert ascending.loc[[4, 5, 0, 2, 1], "r"].tolist() == [1, 2, 3, 3, 5]


def test_import_does_not_load_scipy_or_matplotlib() -> None:
    code = (
        "import sys, frugalml.analysis; "
        "print(sorted(m for m in ('scipy', 'matplotlib') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def split_table() -> pd.DataFrame:
    """Energy split per trial: setup dominates energy_j, so the two rankings differ.

    train_energy_j 10, 30, 20 (min 10, max 30) vs energy_j 100, 60, 80 (min 60, max 100).
    """
    table = study_table().iloc[:3].copy()
    table["train_energy_j"] = [10.0, 30.0, 20.0]
    table["eval_energy_j"] = [1.0, 1.0, 1.0]
    table["setup_energy_j"] = [89.0, 29.0, 59.0]
    table["energy_j"] = [100.0, 60.0, 80.0]
    table["train_co2_g"] = [0.1, 0.3, 0.2]
    table["train_duration_s"] = [1.0, 3.0, 2.0]
    table["train_peak_rss_bytes"] = [50.0, 150.0, 100.0]
    table["train_peak_gpu_mem_bytes"] = [NAN, NAN, NAN]
    table["peak_gpu_mem_bytes"] = [NAN, NAN, NAN]
    return table


def test_pepr_e_scores_the_training_energy() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no fallback: the table has the split
        out = score_study(split_table(), variants=("E", "C", "T", "M"))
    # train_energy_j 10, 30, 20 -> E_n 0, 1, 0.5 -> 0.9, 0.8/2 = 0.4, 0.6/1.5 = 0.4
    np.testing.assert_allclose(out["pepr_train_energy_j"], [0.9, 0.4, 0.4], atol=1e-12)
    assert "pepr_energy_j" not in out.columns
    # Had energy_j (100, 60, 80) been scored: E_n 1, 0, 0.5 -> 0.45, 0.8, 0.4: b would lead.
    direct = pepr(split_table(), performance="accuracy", resource="energy_j")
    np.testing.assert_allclose(direct["pepr_energy_j"], [0.45, 0.8, 0.4], atol=1e-12)
    # Training memory 50, 150, 100 -> 0, 1, 0.5, as for energy.
    assert out["peak_mem_source"].tolist() == ["train_peak_rss_bytes"] * 3
    np.testing.assert_allclose(out["pepr_peak_mem_bytes"], [0.9, 0.4, 0.4], atol=1e-12)
    np.testing.assert_allclose(out["pepr_train_co2_g"], [0.9, 0.4, 0.4], atol=1e-12)
    np.testing.assert_allclose(out["pepr_train_duration_s"], [0.9, 0.4, 0.4], atol=1e-12)


def test_an_empty_training_column_falls_back_with_a_warning() -> None:
    # A store written before the split: load_results adds the column, every value missing.
    table = split_table()
    table["train_energy_j"] = NAN
    with pytest.warns(ColumnFallbackWarning, match=r"PePR-E uses the training alone"):
        _, columns = prepare_variants(table, ["E"])
    assert columns == ["energy_j"]


@pytest.mark.parametrize("column", ["energy_j", "co2_g"])
def test_negative_resources_are_refused_naming_rows_and_column(column: str) -> None:
    table = hand_table()
    table.loc[[1, 5], column] = [-5.0, -1.0]
    with pytest.raises(DataError, match=rf"'{column}' has negative values at rows 1, 5"):
        pepr(table, performance="accuracy", resource=column, group="dataset")


def test_negative_variant_columns_are_refused() -> None:
    table = split_table()
    table.loc[2, "params"] = -3.0
    with pytest.raises(DataError, match=r"'params' has negative values at row 2"):
        score_study(table, variants=("E", "params"))


def test_zero_resources_are_fine() -> None:
    table = pd.DataFrame({"p": [0.5, 0.6], "r": [0.0, 2.0]})
    out = pepr(table, performance="p", resource="r")
    np.testing.assert_allclose(out["pepr_r"], [0.5, 0.3], atol=1e-12)


def test_no_group_over_several_settings_warns() -> None:
    table = hand_table()
    with pytest.warns(MixedSettingsWarning, match=r"dataset: 2 values.*group=\['dataset'\]"):
        pepr(table.dropna(), performance="accuracy", resource="energy_j")
    one = table[table["dataset"] == "a"].dropna()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pepr(one, performance="accuracy", resource="energy_j")


def test_rank_defaults_to_the_pepr_e_column_the_table_has() -> None:
    trained = pd.DataFrame({"pepr_train_energy_j": [0.2, 0.9, 0.5]})
    assert rank(trained)["rank"].tolist() == [1, 2, 3]  # sorted: 0.9, 0.5, 0.2
    assert rank(trained).index.tolist() == [1, 2, 0]
    whole = pd.DataFrame({"pepr_energy_j": [0.2, 0.9]})
    assert rank(whole).index.tolist() == [1, 0]


def test_negative_memory_is_refused_under_its_own_name() -> None:
    table = split_table()
    table.loc[0, "train_peak_rss_bytes"] = -1.0
    with pytest.raises(DataError, match=r"'train_peak_rss_bytes' has negative values at row 0"):
        score_study(table, variants=("M",))

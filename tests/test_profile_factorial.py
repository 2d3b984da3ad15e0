"""The factorial experiment end to end on a reduced design, through the study store."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from scipy import stats

from frugalml.profile import (
    FactorialConfig,
    FactorialProgress,
    conv_sentence,
    dominance_sentence,
    run_factorial,
)
from frugalml.study import StudyStore, load_results

SMALL = FactorialConfig(epochs=1, repeats=1, fraction=0.2, width=4, hidden=8, warmup=False)


@pytest.fixture(autouse=True)
def _one_torch_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def factorial_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("factorial")


def test_reduced_factorial_runs_end_to_end(factorial_dir: Path) -> None:
    events: list[FactorialProgress] = []
    result = run_factorial(SMALL, factorial_dir, on_progress=events.append)

    assert len(result.rows) == 8 and not result.failed
    cells = {(r["conv_layers"], r["linear_layers"], r["relu"]) for r in result.rows}
    assert len(cells) == 8
    assert all(r["train_energy_j"] > 0 and 0 <= r["accuracy"] <= 1 for r in result.rows)
    assert all(r["energy_j"] >= r["train_energy_j"] for r in result.rows)
    for r in result.rows:  # training + evaluation + set-up is the trial's energy
        parts = r["train_energy_j"] + r["eval_energy_j"] + r["setup_energy_j"]
        assert parts == pytest.approx(r["energy_j"], rel=1e-9) and r["threads"] == 1
    # progress: every trial and epoch reported, energy only grows
    finished = [e for e in events if e.event == "trial_finished"]
    assert len(finished) == 8 and events[-1].trials_done == 8
    assert events[-1].epochs_done == events[-1].epochs_total == 8
    energies = [e.energy_j for e in events]
    assert energies == sorted(energies) and energies[-1] > 0

    # the files exist and say what they are
    for key in ("trials_csv", "effects_csv", "summary_json", "plot_png"):
        assert result.files[key].is_file(), key
    assert result.files["plot_png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    summary = json.loads(result.files["summary_json"].read_text())
    assert summary["energy_kind"] == result.energy_kind
    assert "epsilon-squared" in summary["effect_size"]
    assert "going from 4 conv layers to 1" in summary["conv_sentence"]

    # Kruskal-Wallis from the CSV, by scipy directly, equals what was reported
    with result.files["trials_csv"].open() as handle:
        rows = list(csv.DictReader(handle))
    for effect in result.effects:
        key = effect.factor.key
        groups = [
            [float(r["train_energy_j"]) for r in rows if r[key] == str(level)]
            for level in (effect.factor.level_from, effect.factor.level_to)
        ]
        assert [len(g) for g in groups] == [4, 4]
        expected = stats.kruskal(*groups)
        assert effect.energy_test.h == pytest.approx(float(expected.statistic))
        assert effect.energy_test.p == pytest.approx(float(expected.pvalue))
        n = 8
        assert effect.energy_test.epsilon_squared == pytest.approx(
            float(expected.statistic) / ((n**2 - 1) / (n + 1))
        )
        medians = [sorted(g)[1:3] for g in groups]
        change = 100 * (sum(medians[1]) / sum(medians[0]) - 1)
        assert effect.energy_change_pct == pytest.approx(change)

    # the study store holds the trials the way the study worker writes them
    with StudyStore(factorial_dir, create=False) as store:
        assert store.counts()["complete"] == 8
        trial = store.trials()[0]
        assert len(store.epochs(trial.trial_id)) == 1
        assert store.latest_spec()["name"] == "factorial"
    table = load_results(factorial_dir)
    assert len(table) == 8 and set(table["status"]) == {"complete"}
    assert table["energy_j"].gt(0).all() and set(table["model"]) == {"frugal_cnn"}

    assert "cut" in result.conv_sentence or "raised" in result.conv_sentence
    assert "(paper: 40-49% less)" in result.conv_sentence
    assert "conv layers" in result.dominance_sentence


def test_rerun_resumes_without_training_again(factorial_dir: Path) -> None:
    events: list[FactorialProgress] = []
    first = json.loads((factorial_dir / "factorial.json").read_text())
    result = run_factorial(SMALL, factorial_dir, on_progress=events.append)
    assert not [e for e in events if e.event == "trial_started"]
    assert events[0].trials_done == 8
    # the same trials from the store give the same analysis
    assert len(result.rows) == 8
    for effect, before in zip(result.effects, first["effects"], strict=True):
        assert effect.energy_test.h == before["energy_kw_h"]
        assert effect.energy_change_pct == before["energy_change_pct"]


def test_sentences() -> None:
    from frugalml.profile import FACTORS, FactorEffect, KruskalResult

    def effect(index: int, change: float) -> FactorEffect:
        test = KruskalResult(1.0, 0.5, 0.1, 8, 2)
        return FactorEffect(FACTORS[index], 4, 4, 10.0, 10.0 * (1 + change / 100), change,
                            0.9, 0.9, 0.0, test, test)  # fmt: skip

    conv, linear, relu = effect(0, -45.0), effect(1, -3.0), effect(2, 1.0)
    assert conv_sentence(conv) == (
        "going from 4 conv layers to 1 cut training energy by 45.0% (paper: 40-49% less)"
    )
    assert dominance_sentence([conv, linear, relu]).startswith("conv layers dominate here")
    loud_linear = effect(1, -60.0)
    assert dominance_sentence([conv, loud_linear, relu]).startswith(
        "conv layers do not dominate here: linear layers"
    )
    assert "raised training energy by 5.0%" in conv_sentence(effect(0, 5.0))


def test_factorial_config_is_checked() -> None:
    from frugalml.errors import ConfigError

    with pytest.raises(ConfigError, match="repeats"):
        FactorialConfig(repeats=0)
    with pytest.raises(ConfigError, match="fraction"):
        FactorialConfig(fraction=1.5)
    assert FactorialConfig(repeats=2).trials_total == 16

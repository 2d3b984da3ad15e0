"""The frugal strategy's local search: which asks perturb the best completed trial, how a
value is perturbed, the spec option, and a real tuning run that records its local trials."""

from __future__ import annotations

import math
import random
import statistics
from pathlib import Path
from typing import Any

import pytest

from frugalml.errors import ConfigError
from frugalml.tune._frugal import (
    DEFAULT_SETTINGS,
    FrugalSettings,
    _cost_aware_tpe,
    frugal_settings,
    perturb,
)
from frugalml.tune._results import LOCAL_ATTR


def _dists() -> dict[str, Any]:
    import optuna

    d = optuna.distributions
    return {
        "lr": d.FloatDistribution(1e-4, 1e-1, log=True),
        "dropout": d.FloatDistribution(0.0, 0.5, step=0.1),
        "width": d.IntDistribution(4, 16, log=True),
        "layers": d.IntDistribution(1, 7, step=2),
        "batch_size": d.CategoricalDistribution([16, 32, 64]),
    }


def test_perturb_moves_in_log_space_rounds_to_the_step_and_stays_in_range() -> None:
    dists = _dists()
    rng = random.Random(0)
    steps = [math.log10(perturb(1e-2, dists["lr"], 0.04, rng)) + 2 for _ in range(4000)]
    # 0.04 x 3 decades: a normal step of sd 0.12 decade, centred on the value
    assert statistics.fmean(steps) == pytest.approx(0.0, abs=0.01)
    assert statistics.pstdev(steps) == pytest.approx(0.12, rel=0.05)
    at_edge = [perturb(1e-1, dists["lr"], 0.5, rng) for _ in range(200)]
    assert all(1e-4 <= v <= 1e-1 for v in at_edge) and max(at_edge) == 1e-1
    dropouts = {perturb(0.2, dists["dropout"], 0.3, rng) for _ in range(500)}
    assert dropouts <= {0.0, 0.1, 0.2, 0.3, 0.4, 0.5} and len(dropouts) > 2
    assert all(isinstance(v, float) for v in dropouts)
    layers = {perturb(3, dists["layers"], 0.3, rng) for _ in range(500)}
    assert layers <= {1, 3, 5, 7} and len(layers) > 2 and all(isinstance(v, int) for v in layers)
    widths = [perturb(8, dists["width"], 0.04, rng) for _ in range(500)]
    assert set(widths) <= set(range(4, 17)) and 8 in widths and len(set(widths)) > 1
    assert {perturb(32, dists["batch_size"], 0.9, rng) for _ in range(50)} == {32}
    import optuna

    single = optuna.distributions.IntDistribution(5, 5)
    assert perturb(5, single, 0.5, rng) == 5


def _ask_tell(settings: FrugalSettings, startup: int, n: int) -> Any:
    """A real Optuna study run by the frugal sampler on a smooth objective, peak at lr 1e-2,
    width 10, batch 16."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler = _cost_aware_tpe(7, startup, lambda c: [None] * len(c), lambda: None, settings)
    study = optuna.create_study(direction="maximize", sampler=sampler)

    def objective(trial: Any) -> float:
        lr = trial.suggest_float("lr", 1e-4, 1e-1, log=True)
        width = trial.suggest_int("width", 4, 16, log=True)
        batch = trial.suggest_categorical("batch_size", [16, 32, 64])
        return -abs(math.log10(lr) + 2) - abs(width - 10) / 10 - (batch != 16)

    study.optimize(objective, n_trials=n)
    return study


@pytest.mark.parametrize("multivariate", [False, True])
def test_local_trials_perturb_the_best_completed_trial_after_the_start_up(
    multivariate: bool,
) -> None:
    settings = FrugalSettings(local_share=0.5, multivariate=multivariate, prune_ratio=None)
    study = _ask_tell(settings, startup=5, n=40)
    local = [t for t in study.trials if LOCAL_ATTR in t.system_attrs]
    assert all(t.number >= 5 for t in local)  # never a start-up trial
    assert 8 <= len(local) <= 27  # about half of the 35 after the start-up
    for t in local:
        centre = study.trials[t.system_attrs[LOCAL_ATTR]]
        earlier = [s for s in study.trials[: t.number] if s.value is not None]
        assert centre.value == max(s.value for s in earlier)  # the best when it was asked
        assert t.params["batch_size"] == centre.params["batch_size"]
        assert abs(math.log10(t.params["lr"] / centre.params["lr"])) < 0.6  # 5 sd
    # the same seed proposes the same trials; without local search none is local
    again = _ask_tell(settings, startup=5, n=40)
    assert [t.params for t in again.trials] == [t.params for t in study.trials]
    plain = _ask_tell(FrugalSettings(local_share=0.0, prune_ratio=None), startup=5, n=15)
    assert not any(LOCAL_ATTR in t.system_attrs for t in plain.trials)


def test_local_search_pays_off_on_a_narrow_peak() -> None:
    # a peak narrower than TPE's densities resolve in 30 trials: the perturbed trials land
    # near the best one, so the best value climbs higher (a test that can fail: with share 0
    # the same seeds stay lower)
    def best(share: float) -> float:
        settings = FrugalSettings(local_share=share, multivariate=False, prune_ratio=None)
        return statistics.median([_ask_tell_seed(settings, s) for s in range(5)])

    assert best(0.5) > best(0.0)


def _ask_tell_seed(settings: FrugalSettings, seed: int) -> float:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler = _cost_aware_tpe(seed, 5, lambda c: [None] * len(c), lambda: None, settings)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    study.optimize(
        lambda t: -abs(math.log10(t.suggest_float("lr", 1e-4, 1e-1, log=True)) + 2.1234),
        n_trials=30,
    )
    return float(study.best_value)


def _spec_data(strategy: Any) -> dict[str, Any]:
    return {
        "name": "t",
        "dataset": "digits",
        "fraction": 0.2,
        "model": {"name": "frugal_cnn", "args": {"conv_layers": 1, "width": 4}},
        "training": {"epochs": 1, "batch_size": 32},
        "search_space": {"lr": {"type": "float", "low": 1e-3, "high": 3e-2, "log": True}},
        "strategy": strategy,
        "budget": {"max_trials": 6},
    }


def test_the_spec_names_local_share_and_bad_values_get_one_line() -> None:
    from frugalml.tune import TuneSpec

    spec = TuneSpec.from_mapping(_spec_data({"name": "frugal", "local_share": 0.5}))
    settings = frugal_settings(spec)
    assert settings.local_share == 0.5 and settings.multivariate == DEFAULT_SETTINGS.multivariate
    assert "50% of the trials perturb the best completed one" in settings.describe()
    assert DEFAULT_SETTINGS.local_share == 0 and "perturb" not in DEFAULT_SETTINGS.describe()
    for bad in (1.5, -0.1, "half", True):
        with pytest.raises(ConfigError, match="local_share must be a number in") as err:
            TuneSpec.from_mapping(_spec_data({"name": "frugal", "local_share": bad}))
        assert "\n" not in str(err.value)
    with pytest.raises(ConfigError, match="unknown option"):
        TuneSpec.from_mapping(_spec_data({"name": "tpe", "local_share": 0.5}))
    with pytest.raises(ConfigError, match="local_scale must be in"):
        FrugalSettings(local_scale=0)


def test_a_real_tuning_run_records_its_local_trials(tmp_path: Path) -> None:
    from frugalml.tune import TuneSpec, load_optuna_study, run_tune

    data = _spec_data({"name": "frugal", "n_startup_trials": 2, "local_share": 1.0})
    outcome = run_tune(TuneSpec.from_mapping(data), tmp_path, threads=1, plot=False)
    assert len(outcome.trials) == 6
    study = load_optuna_study(tmp_path)
    local = [t for t in study.trials if LOCAL_ATTR in t.system_attrs]
    # share 1: every trial after the two start-up ones that had a completed trial to centre on
    assert [t.number for t in local] == list(range(2, 6))
    for t in local:
        centre = study.trials[t.system_attrs[LOCAL_ATTR]]
        assert abs(math.log10(t.params["lr"] / centre.params["lr"])) < 0.5
    assert any("perturb the best completed one" in note for note in outcome.notes)
    # tuning_trials.csv names the trial each one perturbed, blank for the sampler's own
    import csv

    with (tmp_path / "tuning_trials.csv").open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["perturbed_trial"] for r in rows[:2]] == ["", ""]
    assert [int(r["perturbed_trial"]) for r in rows[2:]] == [
        t.system_attrs[LOCAL_ATTR] for t in local
    ]


def test_a_queued_trial_keeps_its_parameters_and_is_not_called_local() -> None:
    study = _ask_tell(FrugalSettings(local_share=1.0, prune_ratio=None), startup=3, n=5)
    study.enqueue_trial({"lr": 0.05, "width": 5, "batch_size": 64})
    trial = study.ask()
    assert trial.params == {} or trial.params.get("lr") in (None, 0.05)
    assert trial.suggest_float("lr", 1e-4, 1e-1, log=True) == 0.05
    assert LOCAL_ATTR not in study.trials[trial.number].system_attrs
    study.tell(trial, 0.0)
    following = study.ask()  # share 1 after the start-up: the next one is local (decided
    following.suggest_float("lr", 1e-4, 1e-1, log=True)  # when it first suggests)
    assert study.trials[following.number].system_attrs[LOCAL_ATTR] == study.best_trial.number

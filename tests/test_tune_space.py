"""Search-space and tuning-spec parsing: each parameter type, each error, grids, the rules."""

from __future__ import annotations

import math
from typing import Any

import optuna
import pytest

from frugalml.errors import ConfigError
from frugalml.train import TrainConfig
from frugalml.tune import (
    DominancePruner,
    SearchSpace,
    TuneBudget,
    TuneSpec,
    apply_params,
    dominated_by,
    dominates,
    pareto_front,
    parse_param,
)


def _spec(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": "t",
        "model": {"name": "frugal_cnn", "args": {"conv_layers": 1, "width": 4}},
        "search_space": {"lr": {"type": "float", "low": 1e-4, "high": 1e-1, "log": True}},
        "budget": {"max_trials": 3},
    }
    data.update(changes)
    return data


# -- each parameter type -----------------------------------------------------------------------


def test_float_log_float_int_and_categorical_parse() -> None:
    space = SearchSpace.from_mapping(
        {
            "lr": {"type": "float", "low": "1e-4", "high": 0.1, "log": True},
            "weight_decay": {"type": "float", "low": 0, "high": 1e-3, "step": 5e-4},
            "epochs": {"type": "int", "low": 1, "high": 3},
            "batch_size": {"type": "categorical", "choices": [16, 32, 64]},
            "model.conv_layers": {"type": "int", "low": 1, "high": 4, "grid": [1, 4]},
        }
    )
    lr, wd, epochs, batch, conv = space.params
    assert (lr.type, lr.low, lr.high, lr.log) == ("float", 1e-4, 0.1, True)  # "1e-4" read as text
    assert wd.grid_values() == [0.0, 0.0005, 0.001]
    assert (epochs.type, epochs.low, epochs.high) == ("int", 1.0, 3.0)
    assert batch.choices == (16, 32, 64)
    assert conv.grid_values() == [1, 4]
    assert space.epochs_range(10) == (1, 3)
    assert "log" in lr.describe()


def test_grid_only_parameter_takes_its_range_from_the_grid() -> None:
    param = parse_param("lr", {"type": "float", "grid": [1e-3, 1e-2, 1e-1]})
    assert (param.low, param.high) == (1e-3, 1e-1)
    assert param.grid_values() == [1e-3, 1e-2, 1e-1]


def test_suggest_decodes_list_choices_and_applies_them() -> None:
    space = SearchSpace.from_mapping(
        {
            "betas": {"type": "categorical", "choices": [[0.9, 0.999], [0.5, 0.9]]},
            "model.width": {"type": "int", "low": 2, "high": 8},
            "lr": {"type": "float", "low": 1e-3, "high": 1e-1, "log": True},
        }
    )
    trial = optuna.trial.FixedTrial({"betas": "[0.5, 0.9]", "model.width": 6, "lr": 0.01})
    params = space.suggest(trial)
    assert params == {"betas": [0.5, 0.9], "model.width": 6, "lr": 0.01}
    training, name, args = apply_params(params, TrainConfig(), "frugal_cnn", {"conv_layers": 2})
    assert training.betas == (0.5, 0.9) and training.lr == 0.01
    assert (name, args) == ("frugal_cnn", {"conv_layers": 2, "width": 6})


def test_single_beta_and_model_choice() -> None:
    training, _, _ = apply_params({"betas.0": 0.5}, TrainConfig())
    assert training.betas == (0.5, 0.999)
    _, name, args = apply_params(
        {"model.name": "frugal_mlp"}, TrainConfig(), "frugal_cnn", {"w": 1}
    )
    assert (name, args) == ("frugal_mlp", {})


# -- each error --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("space", "needle"),
    [
        ({}, "search space is empty"),
        (None, "search space is empty"),
        ([1, 2], "must be a mapping"),
        ({"lr": 0.1}, "must be a mapping with a type"),
        ({"lr": {"type": "normal", "low": 0, "high": 1}}, "type must be float, int or categorical"),
        ({"lr": {"type": "float", "low": 0.1, "high": 0.01}}, "low (0.1) is greater than high"),
        ({"lr": {"type": "float", "low": 0, "high": 0.1, "log": True}}, "needs low > 0"),
        ({"lr": {"type": "float", "low": 1e-4, "high": 0.1, "log": "yes"}}, "log must be true"),
        ({"lr": {"type": "float", "high": 0.1}}, "lacks 'low'"),
        ({"batch_size": {"type": "categorical", "choices": []}}, "non-empty list"),
        ({"batch_size": {"type": "categorical", "choices": [16, 16]}}, "duplicates"),
        ({"learning_rate": {"type": "float", "low": 0.1, "high": 1}}, "unknown search-space"),
        ({"model.": {"type": "int", "low": 1, "high": 2}}, "unknown search-space"),
        ({"device": {"type": "categorical", "choices": ["cpu"]}}, "unknown search-space"),
        ({"lr": {"type": "float", "low": 1e-4, "high": 0.1, "bins": 3}}, "unknown key"),
        (
            {"lr": {"type": "float", "low": 1e-4, "high": 0.1, "log": True, "step": 0.01}},
            "step and log",
        ),
        ({"epochs": {"type": "int", "low": 1, "high": 4, "step": 0}}, "step must be > 0"),
        ({"epochs": {"type": "int", "low": 1.5, "high": 4}}, "whole number"),
        ({"lr": {"type": "float", "low": 0.01, "high": 0.1, "grid": [0.5]}}, "outside [low, high]"),
        ({"epochs": {"type": "int", "low": 0, "high": 3}}, "training rejects"),
        ({"batch_size": {"type": "categorical", "choices": [32, -1]}}, "training rejects"),
        ({"epochs": {"type": "float", "low": 1, "high": 3}}, "training rejects"),
        ({"lr": {"type": "float", "low": "fast", "high": 0.1}}, "must be a number"),
        (
            {
                "betas": {"type": "categorical", "choices": [[0.9, 0.99]]},
                "betas.0": {"type": "float", "low": 0.5, "high": 0.9},
            },
            "betas and also",
        ),
        (
            {
                "model.name": {"type": "categorical", "choices": ["frugal_cnn", "frugal_mlp"]},
                "model.width": {"type": "int", "low": 2, "high": 4},
            },
            "a knob of one model",
        ),
    ],
)
def test_bad_search_spaces_are_config_errors(space: Any, needle: str) -> None:
    with pytest.raises(ConfigError) as info:
        SearchSpace.from_mapping(space)
    assert needle in str(info.value)
    assert info.value.fix  # every message says how to fix it


def test_grid_mode_needs_a_finite_grid() -> None:
    continuous = SearchSpace.from_mapping({"lr": {"type": "float", "low": 1e-4, "high": 0.1}})
    with pytest.raises(ConfigError, match=r"grid search needs a finite grid.*'lr'"):
        continuous.grid()
    ints = SearchSpace.from_mapping({"epochs": {"type": "int", "low": 1, "high": 3}})
    with pytest.raises(ConfigError, match=r"grid: \[\.\.\.\]` values or a `step`"):
        ints.grid()
    stepped = SearchSpace.from_mapping(
        {
            "epochs": {"type": "int", "low": 1, "high": 3, "step": 1},
            "batch_size": {"type": "categorical", "choices": [16, 32]},
        }
    )
    assert stepped.grid() == {"epochs": [1, 2, 3], "batch_size": [16, 32]}
    assert stepped.grid_size() == 6
    # ... and the spec refuses it as soon as it is parsed
    with pytest.raises(ConfigError, match="finite grid"):
        TuneSpec.from_mapping(_spec(strategy="grid"))


# -- the spec ----------------------------------------------------------------------------------


def test_spec_parses_and_round_trips() -> None:
    spec = TuneSpec.from_mapping(
        _spec(
            strategy={"name": "tpe", "n_startup_trials": 3},
            pruner={"type": "median", "n_startup_trials": 2, "n_warmup_steps": 1},
            objective="accuracy",
            training={"epochs": 2, "batch_size": 64},
            budget={"max_trials": 5, "energy_kwh": "1e-3"},
            fraction=0.5,
        )
    )
    assert spec.strategy == "tpe" and spec.strategy_options == {"n_startup_trials": 3}
    assert spec.pruner == "median" and spec.pruner_options["n_warmup_steps"] == 1
    assert spec.directions == ["maximize"] and not spec.multi_objective
    assert spec.budget == TuneBudget(max_trials=5, energy_kwh=1e-3)
    assert TuneSpec.from_mapping(spec.to_dict()).to_dict() == spec.to_dict()
    both = TuneSpec.from_mapping(_spec(objective=["accuracy", "energy"], strategy="nsga2"))
    assert both.directions == ["maximize", "minimize"] and both.multi_objective


@pytest.mark.parametrize(
    ("changes", "needle"),
    [
        ({"strategy": "bayes"}, "unknown strategy 'bayes'"),
        ({"strategy": {"name": "random", "n_startup_trials": 3}}, "unknown option"),
        ({"objective": "loss"}, "unknown objective"),
        ({"objective": ["accuracy", "accuracy"]}, "repeats itself"),
        ({"objective": ["accuracy", "energy"], "pruner": "median"}, "cannot prune multi-objective"),
        ({"pruner": "dominance"}, "needs both objectives"),
        ({"pruner": "hyperband"}, "unknown pruner"),
        ({"pruner": {"type": "median", "n_startup_trials": -1}}, "integer >= 1"),
        ({"budget": {"max_trials": 0}}, "max_trials must be an integer >= 1"),
        ({"budget": {"energy_kwh": -1}}, "positive number"),
        ({"budget": {"kwh": 1}}, "unknown budget key"),
        ({"dataset": "imagenet"}, "imagenet"),
        ({"fraction": 0}, "outside (0, 1]"),
        ({"searchspace": {}}, "unknown tuning spec key"),
        ({"name": "bad name!"}, "not a valid study name"),
        ({"model": 3}, "model must be a name or a mapping"),
        ({"seed": -1}, "seed must be"),
        ({"training": {"epoch": 3}}, "unknown training option"),
    ],
)
def test_bad_specs_are_config_errors(changes: dict[str, Any], needle: str) -> None:
    with pytest.raises(ConfigError) as info:
        TuneSpec.from_mapping(_spec(**changes))
    assert needle in str(info.value)


def test_missing_search_space_and_bad_yaml(tmp_path: Any) -> None:
    data = _spec()
    del data["search_space"]
    with pytest.raises(ConfigError, match="lacks 'search_space'"):
        TuneSpec.from_mapping(data)
    path = tmp_path / "bad.yaml"
    path.write_text("name: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML at line"):
        TuneSpec.from_yaml(path)
    with pytest.raises(ConfigError, match="does not exist"):
        TuneSpec.from_yaml(tmp_path / "missing.yaml")


def test_replace_checks_a_new_grid_strategy() -> None:
    spec = TuneSpec.from_mapping(_spec(strategy={"name": "tpe", "n_startup_trials": 2}))
    assert spec.replace(strategy="random").strategy_options == {}
    with pytest.raises(ConfigError, match="finite grid"):
        spec.replace(strategy="grid")
    with pytest.raises(ConfigError, match="unknown strategy"):
        spec.replace(strategy="annealing")


# -- the accuracy-against-energy pruning rule ---------------------------------------------------


def test_dominance_on_hand_made_points() -> None:
    assert dominates((0.9, 10.0), (0.8, 12.0))
    assert dominates((0.9, 10.0), (0.9, 12.0))  # equal accuracy, less energy
    assert dominates((0.9, 10.0), (0.8, 10.0))  # equal energy, more accuracy
    assert not dominates((0.9, 10.0), (0.9, 10.0))  # identical: neither strictly better
    assert not dominates((0.9, 12.0), (0.8, 10.0))  # a trade-off
    assert not dominates((math.nan, 1.0), (0.5, 2.0))
    assert dominated_by((0.5, 5.0), [(0.4, 1.0), (0.6, 4.0)]) == (0.6, 4.0)


def test_dominance_pruner_compares_at_the_same_epoch() -> None:
    completed = [
        [(0.5, 2.0), (0.7, 4.0), (0.8, 6.0)],  # three epochs
        [(0.3, 1.0)],  # one epoch only
    ]
    pruner = DominancePruner(n_startup_trials=2, n_warmup_steps=0)
    # epoch 1: (0.4, 1.5) is a trade-off with both (0.5, 2.0) and (0.3, 1.0): keep going
    assert pruner.should_prune(1, (0.4, 1.5), completed) is None
    # epoch 1: (0.45, 2.5) is dominated by (0.5, 2.0)
    assert pruner.should_prune(1, (0.45, 2.5), completed) == (0.5, 2.0)
    # epoch 2: only the three-epoch trial is a peer; (0.65, 4.5) is dominated by (0.7, 4.0)
    assert pruner.should_prune(2, (0.65, 4.5), completed) == (0.7, 4.0)
    # ... and the one-epoch trial takes no part: (0.29, 3.9) would be dominated by its (0.3, 1.0)
    assert pruner.should_prune(2, (0.29, 3.9), completed) is None
    assert pruner.should_prune(2, (0.75, 4.5), completed) is None
    # warm-up and start-up
    assert DominancePruner(n_warmup_steps=1).should_prune(1, (0.0, 9.0), completed) is None
    assert DominancePruner(n_startup_trials=3).should_prune(1, (0.0, 9.0), completed) is None


def test_pareto_front_keeps_the_non_dominated_points() -> None:
    points = [(0.9, 10.0), (0.8, 5.0), (0.85, 12.0), (0.7, 5.0), (0.95, 30.0), (math.nan, 1.0)]
    assert pareto_front(points) == [0, 1, 4]


# -- grids are counted, not listed (issue 8) -----------------------------------------------------


def test_a_wide_stepped_grid_is_counted_without_building_it() -> None:
    import tracemalloc

    from frugalml.tune._space import MAX_GRID_POINTS

    space = SearchSpace.from_mapping(
        {
            "weight_decay": {"type": "float", "low": 0.0, "high": 1.0, "step": 1e-9},
            "batch_size": {"type": "categorical", "choices": [16, 32]},
        }
    )
    tracemalloc.start()
    assert space.grid_size() == (10**9 + 1) * 2  # hand-counted: 0, 1e-9, ..., 1.0; x 2 sizes
    with pytest.raises(ConfigError, match=r"2,000,000,002 points.*limit of 100,000"):
        space.grid()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 10 * 2**20  # 10^9 floats would take 23 GB
    with pytest.raises(ConfigError, match=r"1,000,000,001 grid values"):
        space.params[0].grid_values()
    with pytest.raises(ConfigError, match="limit"):
        TuneSpec.from_mapping(_spec(strategy="grid", search_space=space.to_dict()))
    small = SearchSpace.from_mapping({"epochs": {"type": "int", "low": 1, "high": 9, "step": 2}})
    assert small.grid_size() == 5 == len(small.grid()["epochs"]) <= MAX_GRID_POINTS


def test_validation_checks_the_models_a_search_can_ask_for() -> None:
    with pytest.raises(ConfigError, match=r"model\.conv_layers allows 100"):
        TuneSpec.from_mapping(
            _spec(search_space={"model.conv_layers": {"type": "int", "low": 1, "high": 100}})
        )
    with pytest.raises(ConfigError, match="frugal_nosuch"):
        TuneSpec.from_mapping(
            _spec(
                model=None,
                search_space={
                    "model.name": {
                        "type": "categorical",
                        "choices": ["frugal_mlp", "frugal_nosuch"],
                    }
                },
            )
        )
    for bad in (["tpe"], {"name": ["tpe"]}):
        with pytest.raises(ConfigError, match="strategy"):
            TuneSpec.from_mapping(_spec(strategy=bad))
    with pytest.raises(ConfigError, match="pruner"):
        TuneSpec.from_mapping(_spec(pruner={"type": ["median"]}))


def test_absurd_but_legal_tuning_plans_warn(caplog: pytest.LogCaptureFixture) -> None:
    import logging

    space = {"epochs": {"type": "int", "low": 1, "high": 5000}}
    with caplog.at_level(logging.WARNING, logger="frugalml"):
        TuneSpec.from_mapping(_spec(search_space=space, budget={"max_trials": 20_000}))
    assert "search_space.epochs reaches 5,000" in caplog.text
    assert "budget.max_trials is 20,000" in caplog.text
    with pytest.raises(ConfigError, match="max_trials"):
        TuneSpec.from_mapping(_spec(budget={"max_trials": 10**7}))

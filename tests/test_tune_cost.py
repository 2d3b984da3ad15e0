"""Cost prediction from a configuration's knobs, start-up trials scaled to the budget, the
cost-aware (frugal) and multi-fidelity strategies on real digits runs."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from frugalml.tune import Tuner, TuneSpec, make_pruner, make_sampler
from frugalml.tune._cost import CostModel, Knobs, Observation, Reference
from frugalml.tune._strategies import startup_trials


def _knobs(epochs: int, batch: int, flops: float) -> Knobs:
    return Knobs(epochs, batch, flops, train_samples=100, val_samples=20)


def test_knobs_count_flops_and_batches_by_hand() -> None:
    k = _knobs(2, 32, 1000.0)
    assert k.flops == 2 * 1000 * (3 * 100 + 20)  # 640,000
    assert k.steps == 2 * (4 + 1)  # ceil(100/32) + ceil(20/32)
    assert k.features() == (640_000.0, 10.0, 1.0)


def test_cost_model_prior_then_fit_recovers_a_linear_law() -> None:
    reference = Reference(_knobs(1, 32, 1000.0), energy_j=4.0)
    prior = CostModel.fitted([], reference)
    # twice the FLOPs, a quarter of the batches (batch 128: ceil(100/128) + 1 = 2 of 5) per
    # epoch, 3 epochs: 4 J x (0.5 x 2 + 0.5 x 2/5) x 3 = 14.4 J
    assert prior.predict(_knobs(3, 128, 2000.0)) == pytest.approx(14.4)
    assert math.isnan(prior.error) and not prior.use_fit

    def law(k: Knobs) -> float:  # 1e-5 J per FLOP, 0.2 J per batch, 1.5 J per trial
        return 1e-5 * k.flops + 0.2 * k.steps + 1.5

    configs = [
        _knobs(e, b, f)
        for e, b, f in [
            (1, 16, 500),
            (2, 32, 1000),
            (4, 64, 800),
            (3, 16, 2000),
            (2, 128, 3000),
            (1, 64, 100),
        ]
    ]
    model = CostModel.fitted([Observation(k, law(k)) for k in configs], reference)
    assert model.use_fit and model.error == pytest.approx(0.0, abs=1e-6)
    unseen = _knobs(5, 32, 1500.0)
    assert model.predict(unseen) == pytest.approx(law(unseen))
    assert "leave-one-out median error 0%" in model.describe()


def _spec_data(strategy: Any, **changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": "cost",
        "fraction": 0.2,
        "model": {"name": "frugal_cnn", "args": {"conv_layers": 1, "width": 4}},
        "training": {"epochs": 2, "batch_size": 32},
        "search_space": {
            "lr": {"type": "float", "low": 1e-3, "high": 3e-2, "log": True},
            "batch_size": {"type": "categorical", "choices": [16, 64]},
            "model.width": {"type": "int", "low": 4, "high": 16, "log": True},
        },
        "strategy": strategy,
        "pruner": "none",
        "budget": {"max_trials": 4},
    }
    data.update(changes)
    return data


def test_start_up_trials_scale_with_the_budget() -> None:
    tpe = TuneSpec.from_mapping(_spec_data("tpe"))
    assert startup_trials(tpe, 10)[0] == 2  # a fifth of 10 trials
    assert startup_trials(tpe, 27)[0] == 5
    assert startup_trials(tpe, 500)[0] == 10
    _, sentence = startup_trials(tpe, 27)
    assert sentence == (
        "tpe: 5 random start-up trial(s), a fifth of the about 27 trial(s) the budget affords "
        "(bounds 2-10)"
    )
    assert startup_trials(tpe, None)[0] == 10  # Optuna's default without an estimate
    named = TuneSpec.from_mapping(_spec_data({"name": "tpe", "n_startup_trials": 3}))
    assert startup_trials(named, 100) == (3, "tpe: 3 random start-up trial(s), as the spec says")
    assert startup_trials(TuneSpec.from_mapping(_spec_data("random")), 10) == (None, "")
    sampler = make_sampler(tpe, 0, affordable_trials=10)
    assert sampler._n_startup_trials == 2  # type: ignore[attr-defined]


def test_sha_and_hyperband_bring_their_pruner_over_epochs() -> None:
    import optuna

    sha = TuneSpec.from_mapping(_spec_data("sha"))
    assert isinstance(make_pruner(sha), optuna.pruners.SuccessiveHalvingPruner)
    assert isinstance(make_sampler(sha, 0), optuna.samplers.RandomSampler)
    hyperband = TuneSpec.from_mapping(_spec_data({"name": "hyperband", "reduction_factor": 2}))
    pruner = make_pruner(hyperband)
    assert isinstance(pruner, optuna.pruners.HyperbandPruner)
    assert pruner._max_resource == 2 and pruner._reduction_factor == 2  # type: ignore[attr-defined]


@pytest.mark.slow
def test_frugal_run_predicts_costs_and_keeps_to_the_energy_budget(tmp_path: Path) -> None:
    """Real digits trials under an energy budget: the cost model's stated error, the
    budget overshot by at most one predicted trial, the start-up choice stated."""
    budget_j = 30.0
    spec = TuneSpec.from_mapping(
        _spec_data("frugal", budget={"energy_kwh": budget_j / 3.6e6, "max_trials": 40})
    )
    tuner = Tuner(spec, tmp_path, plot=False, threads=1)
    predictions: list[float] = []
    predict = tuner.predict

    def recording(*args: Any, **kwargs: Any) -> Any:
        prediction = predict(*args, **kwargs)
        if prediction is not None:
            predictions.append(prediction.energy_j)
        return prediction

    tuner.predict = recording  # type: ignore[method-assign]
    outcome = tuner.run()
    ran = [t for t in outcome.trials if t.counted]
    assert len(ran) >= 4
    total = outcome.trial_energy_j + outcome.overhead_energy_j
    assert total <= budget_j + max(predictions) + 1e-9
    assert any("random start-up trial(s), a fifth of the about" in n for n in outcome.notes)
    assert any(
        n.startswith("frugal: each configuration's energy is predicted") for n in outcome.notes
    )
    # the cost model over these digits trials: leave-one-out median error within 35%
    from frugalml.tune._cost import TrialCosts
    from frugalml.tune._storage import load_or_create_study

    tuner._study, _ = load_or_create_study(
        tmp_path, spec.name, spec.directions, pruner=make_pruner(spec)
    )
    tuner._dataset = tuner._load_dataset()
    model = TrialCosts(tuner).model()
    print(model.describe())
    assert math.isfinite(model.error) and model.error <= 0.35, model.describe()


@pytest.mark.slow
def test_hyperband_stops_trials_early_over_epochs(tmp_path: Path) -> None:
    spec = TuneSpec.from_mapping(_spec_data("hyperband", budget={"max_trials": 8}))
    outcome = Tuner(spec, tmp_path, plot=False, threads=1).run()
    pruned = [t for t in outcome.trials if t.state == "pruned"]
    assert pruned and all(t.epochs == 1 for t in pruned)  # stopped at the first rung
    assert any(t.state == "complete" and t.epochs == 2 for t in outcome.trials)


def test_multi_fidelity_strategies_refuse_a_second_pruner() -> None:
    from frugalml.errors import ConfigError
    from frugalml.tune import parse_strategies

    spec = TuneSpec.from_mapping(_spec_data("tpe", pruner="median"))
    assert parse_strategies("hyperband,sha", spec) == [
        ("hyperband", "hyperband", "none"),
        ("sha", "sha", "none"),
    ]
    with pytest.raises(ConfigError, match="brings its own pruner"):
        parse_strategies("hyperband+median", spec)

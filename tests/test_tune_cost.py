"""Cost prediction from a configuration's knobs, start-up trials scaled to the budget, the
cost-aware (frugal) and multi-fidelity strategies on real digits runs."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from frugalml.errors import ConfigError
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


#: The budget of the frugal run test beyond its calibration, in calibration epochs (24 left
#: room for only 3 trials once a trial's fixed costs were counted).
EPOCHS_OF_BUDGET = 60


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
    """Real digits trials under an energy budget: every trial started was predicted to fit
    what was left, so the budget is overshot by at most the last trial's prediction error;
    the cost model's stated error; the start-up choice stated.

    Energy here is estimated from CPU time, which a loaded machine inflates (and the first
    training in a process pays one-off costs: the calibration), so the budget is set from
    this run's own calibration, not in fixed joules: its spent energy plus
    :data:`EPOCHS_OF_BUDGET` of its per-epoch figure. A 2-epoch trial costs about 8 of those
    epochs with its set-up, evaluation and sampler work (measured 2026-12-03: 1.3-1.9 J against
    0.21 J an epoch), so the budget affords about 7 trials."""
    from frugalml.meter import J_PER_KWH
    from frugalml.tune._results import TRIAL_ATTR

    spec = TuneSpec.from_mapping(
        _spec_data("frugal", budget={"energy_kwh": 1.0 / J_PER_KWH, "max_trials": 40})
    )
    tuner = Tuner(spec, tmp_path, plot=False, threads=1)
    calibrate = tuner.calibrate

    def calibrate_and_set_budget(*args: Any, **kwargs: Any) -> Any:
        c = calibrate(*args, **kwargs)
        budget_j = c.spent_energy_j + EPOCHS_OF_BUDGET * c.energy_j_per_epoch
        tuner.spec = spec.replace(budget=spec.budget.replace(energy_kwh=budget_j / J_PER_KWH))
        return c

    tuner.calibrate = calibrate_and_set_budget  # type: ignore[method-assign]
    outcome = tuner.run()
    budget_j = float(tuner.spec.budget.energy_kwh or 0.0) * J_PER_KWH
    assert "energy budget" in outcome.stop_reason  # the budget, not max_trials, stopped it
    ran = [t for t in outcome.trials if t.counted]
    assert len(ran) >= 4
    # one trial at a time: TPE samples from its ask's one read (no constant liar)
    assert tuner.study.sampler._constant_liar is False  # type: ignore[attr-defined]
    # the invariant the loop keeps: a trial starts only when what is spent (calibration and
    # every earlier trial, sampler work included) plus its predicted cost fits the budget
    attrs = {t.number: t.user_attrs.get(TRIAL_ATTR) or {} for t in tuner.study.trials}
    spent_j = outcome.overhead_energy_j
    # (a skipped one was predicted not to fit), so the budget is overshot by at most the
    # last trial's prediction error and the sampler work of the skips after it
    for trial in outcome.trials:
        predicted = float(attrs[trial.number]["predicted_energy_j"])
        fits = spent_j + predicted <= budget_j + 1e-9
        assert fits == (trial.state != "skipped"), (trial, spent_j, predicted, budget_j)
        spent_j += trial.total_energy_j
    assert spent_j == pytest.approx(outcome.trial_energy_j + outcome.overhead_energy_j)
    last = ran[-1]
    after = sum(t.sampler_energy_j for t in outcome.trials if t.number > last.number)
    error_j = last.total_energy_j - float(attrs[last.number]["predicted_energy_j"])
    assert spent_j - budget_j <= max(error_j, 0.0) + after + 1e-9
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
    # the pruner reported is the one that decides over epochs, as the trials record it
    assert parse_strategies("hyperband,sha,frugal", spec) == [
        ("hyperband", "hyperband", "hyperband"),
        ("sha", "sha", "successive_halving"),
        ("frugal+median", "frugal", "median"),
    ]
    plain = TuneSpec.from_mapping(_spec_data("tpe"))
    assert parse_strategies("frugal,tpe+successive_halving", plain) == [
        ("frugal", "frugal", "frugal"),
        ("tpe+successive_halving", "tpe", "successive_halving"),
    ]
    with pytest.raises(ConfigError, match="brings its own pruner"):
        parse_strategies("hyperband+median", spec)
    # a spec with sha or hyperband and a pruner of its own is refused in one line
    for strategy in ("sha", "hyperband"):
        with pytest.raises(ConfigError, match=f"the {strategy} strategy prunes over epochs"):
            TuneSpec.from_mapping(_spec_data(strategy, pruner="median"))
        assert TuneSpec.from_mapping(_spec_data(strategy)).pruner == "none"
    with pytest.raises(ConfigError, match="pruner: median would be ignored"):
        plain.replace(strategy="sha", pruner="median")


def _trial(number: int, epochs: int, state: str, epoch_j: float = 2.0) -> Any:
    """A hand-made trial record: ``epochs`` epochs of ``epoch_j`` each (its learning curve),
    1.5 J of set-up in its window and 0.5 J of sampler work: 2 J per trial outside epochs."""
    from frugalml.tune import TrialSummary

    return TrialSummary(
        number=number,
        state=state,
        params={},
        val_accuracy=0.5,
        test_accuracy=0.5,
        energy_j=epochs * epoch_j + 1.5,
        energy_kind="estimated",
        co2_g=(epochs * epoch_j + 2.0) * 0.1,
        duration_s=(epochs * epoch_j + 2.0) * 0.5,
        epochs=epochs,
        epochs_planned=4,
        intermediate=tuple((0.5, epoch_j * (k + 1)) for k in range(epochs)),
        sampler_energy_j=0.5,
    )


def test_a_full_trial_after_pruned_ones_is_predicted_from_epochs_plus_a_per_trial_part() -> None:
    from frugalml.tune._planning import predict

    # one full 4-epoch trial (10 J) and three pruned after 1 epoch (4 J each): 22 J over 7
    # epochs; the whole-trial rule said 22 / 7 x 4 = 12.6 J for the next 4-epoch trial
    trials = [_trial(0, 4, "complete"), *(_trial(n, 1, "pruned") for n in (1, 2, 3))]
    prediction = predict(4, trials, calibration=None)
    assert prediction is not None
    assert prediction.energy_j == pytest.approx(4 * 2.0 + 2.0)  # 14 J / 7 epochs, 8 J / 4
    assert prediction.co2_g == pytest.approx(1.0) and prediction.duration_s == pytest.approx(5.0)
    assert "2 J per epoch over the 7 epoch(s) of 4 trial(s)" in prediction.method
    assert "+ 2 J per trial" in prediction.method
    # a 1-epoch trial: one epoch and one per-trial part, as the pruned ones cost
    one = predict(1, trials, calibration=None)
    assert one is not None and one.energy_j == pytest.approx(4.0)


def test_the_cost_models_prior_adds_the_per_trial_part_once() -> None:
    full, pruned = _knobs(4, 32, 1000.0), _knobs(1, 32, 1000.0)
    observations = [Observation(full, 10.0, 2.0), Observation(pruned, 4.0, 2.0)]
    model = CostModel.fitted(observations)  # two distinct knobs: the prior, no fit
    assert not model.use_fit and model.per_trial_j == pytest.approx(2.0)
    assert model.predict(full) == pytest.approx(10.0)  # 2 J per epoch x 4 + 2 J, not 11.2
    anchored = CostModel.fitted(observations, Reference(_knobs(1, 32, 1000.0), energy_j=3.0))
    assert anchored.predict(full) == pytest.approx(4 * 3.0 + 2.0)


def test_frugal_takes_the_multivariate_option() -> None:
    from frugalml.tune._frugal import DEFAULT_SETTINGS, frugal_settings

    plain = TuneSpec.from_mapping(_spec_data("frugal"))
    assert frugal_settings(plain) == DEFAULT_SETTINGS and DEFAULT_SETTINGS.multivariate
    one_each = TuneSpec.from_mapping(_spec_data({"name": "frugal", "multivariate": False}))
    settings = frugal_settings(one_each)
    assert not settings.multivariate and "one density per parameter" in settings.describe()

    def costs(candidates: list[dict[str, Any]]) -> list[float | None]:
        return [1.0] * len(candidates)

    sampler = make_sampler(
        one_each, 0, affordable_trials=20, predict_costs=costs, remaining_j=lambda: 10.0
    )
    assert sampler._multivariate is False  # type: ignore[attr-defined]
    assert sampler._n_startup_trials == 4  # type: ignore[attr-defined]
    assert make_sampler(plain, 0)._multivariate is True  # type: ignore[attr-defined]
    with pytest.raises(ConfigError, match="multivariate must be true or false"):
        TuneSpec.from_mapping(_spec_data({"name": "frugal", "multivariate": "no"}))

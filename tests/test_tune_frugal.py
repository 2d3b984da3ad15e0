"""The frugal strategy's rules by hand: cheap-first start-up trials (when asked), the
candidate pool, expected improvement
per joule from TPE's density ratio, and pruning against the best completed curve."""

from __future__ import annotations

import math
from typing import Any

import pytest

from frugalml.tune._frugal import (
    FrugalSettings,
    _cost_aware_tpe,
    best_curve_pruner,
    cheapest,
    log_expected_improvement,
)


def test_cheapest_and_log_expected_improvement_by_hand() -> None:
    assert cheapest([3.0, 1.0, 2.0]) == 1
    assert cheapest([3.0, None]) is None
    # gamma 0.1: EI ~ 1 / (0.1 + 0.9 exp(-v)); v = 0 -> 1, v = log 9 -> 1 / 0.2 = 5
    values = log_expected_improvement([0.0, math.log(9.0)], 0.1)
    assert values[0] == pytest.approx(0.0)
    assert values[1] == pytest.approx(math.log(5.0))
    # saturates at 1 / gamma: a large ratio buys little, so the cost decides
    assert log_expected_improvement([50.0], 0.1)[0] == pytest.approx(math.log(10.0))


def _study(sampler: Any) -> Any:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.create_study(direction="maximize", sampler=sampler)


def test_cheap_first_start_up_takes_the_cheapest_of_its_draws() -> None:
    import optuna

    calls: list[list[dict[str, Any]]] = []

    def cost(candidates: list[dict[str, Any]]) -> list[float | None]:
        calls.append(candidates)
        return [100.0 / c["batch_size"] + c["width"] for c in candidates]

    sampler = _cost_aware_tpe(
        0, 6, cost, lambda: None, FrugalSettings(startup_candidates=3, prune_ratio=None)
    )
    study = _study(sampler)
    space = {
        "batch_size": optuna.distributions.CategoricalDistribution([16, 32, 64]),
        "width": optuna.distributions.IntDistribution(4, 16),
    }
    chosen = []
    for _ in range(6):
        trial = study.ask(space)
        chosen.append(dict(trial.params))
        study.tell(trial, float(trial.params["width"]))
    # the first trial has no search space to draw from (multivariate TPE samples it
    # independently); each later start-up trial is the cheapest of three draws
    startup_calls = [c for c in calls if len(c) == 3]
    assert len(startup_calls) == 5
    for params, draws in zip(chosen[1:], startup_calls, strict=True):
        costs = cost(draws)
        assert params == draws[costs.index(min(costs))]
    # uniform start-up: no draw is predicted
    calls.clear()
    uniform = _study(_cost_aware_tpe(0, 6, cost, lambda: None, FrugalSettings(1, prune_ratio=None)))
    for _ in range(3):
        trial = uniform.ask(space)
        uniform.tell(trial, 1.0)
    assert calls == []


def test_best_curve_pruner_by_hand() -> None:
    import optuna

    study = _study(optuna.samplers.RandomSampler(seed=0))
    pruner = best_curve_pruner(0.75, last_step=4)
    best = study.ask()
    for step, value in ((1, 0.80), (2, 0.90)):
        best.report(value, step)
    study.tell(best, 0.95)
    worse = study.ask()
    worse.report(0.70, 1)
    study.tell(worse, 0.90)

    def frozen(values: dict[int, float]) -> Any:
        trial = study.ask()
        for step, value in values.items():
            trial.report(value, step)
        return study._storage.get_trial(trial._trial_id)

    assert not pruner.prune(study, frozen({1: 0.61}))  # 0.61 >= 0.75 x 0.80 = 0.6
    assert pruner.prune(study, frozen({1: 0.59}))  # below 0.6
    assert pruner.prune(study, frozen({1: 0.80, 2: 0.67}))  # below 0.75 x 0.90 = 0.675
    assert not pruner.prune(study, frozen({1: 0.8, 2: 0.8, 3: 0.1}))  # best has no step 3
    assert not pruner.prune(study, frozen({4: 0.1}))  # the last epoch: nothing to save
    empty = _study(optuna.samplers.RandomSampler(seed=0))
    trial = empty.ask()
    trial.report(0.0, 1)
    assert not pruner.prune(empty, empty._storage.get_trial(trial._trial_id))  # none completed


def test_best_curve_pruner_reads_the_study_once_a_trial() -> None:
    import optuna

    study = _study(optuna.samplers.RandomSampler(seed=0))
    pruner = best_curve_pruner(0.75, last_step=4)
    first = study.ask()
    first.report(0.80, 1)
    study.tell(first, 0.90)
    reads = []
    get_trials = study.get_trials

    def counted(*args: Any, **kwargs: Any) -> Any:
        reads.append(1)
        return get_trials(*args, **kwargs)

    study.get_trials = counted  # type: ignore[method-assign]
    running = study.ask()
    frozen = lambda: study._storage.get_trial(running._trial_id)  # noqa: E731
    running.report(0.70, 1)
    assert not pruner.prune(study, frozen())  # 0.70 >= 0.75 x 0.80
    # a better trial completes while this one runs (trials in flight): it counts from the
    # next trial on, and the running trial's later epochs read nothing
    better = study.ask()
    better.report(0.99, 1)
    better.report(0.99, 2)
    study.tell(better, 0.99)
    running.report(0.70, 2)
    assert not pruner.prune(study, frozen())  # the first trial has no step 2
    running.report(0.70, 3)
    assert not pruner.prune(study, frozen())
    assert len(reads) == 1
    after = study.ask()
    after.report(0.70, 1)  # below 0.75 x 0.99 of the better trial, now the reference
    assert pruner.prune(study, study._storage.get_trial(after._trial_id))
    assert len(reads) == 2


def test_the_frugal_strategy_brings_its_best_curve_pruner() -> None:
    from pathlib import Path

    from frugalml.tune import TuneSpec, make_pruner

    spec = TuneSpec.from_yaml(Path(__file__).parent.parent / "examples" / "compare_digits.yaml")
    frugal = spec.replace(strategy="frugal", pruner="none")
    assert type(make_pruner(frugal)).__name__ == "BestCurvePruner"
    assert type(make_pruner(spec.replace(pruner="none"))).__name__ == "NopPruner"  # tpe
    described = FrugalSettings().describe()
    assert "start-up trials drawn uniformly" in described
    assert "24 candidates scored per ask" in described
    assert "TPE's expected improvement, the cost only a constraint" in described
    assert "cheapest of 3 random draws" in FrugalSettings(startup_candidates=3).describe()


def test_frugal_settings_refuse_values_out_of_range_and_reach_tpe() -> None:
    from frugalml.errors import ConfigError

    for bad in ({"candidates": 0}, {"startup_candidates": 0}, {"candidates": 2.5}):
        with pytest.raises(ConfigError, match="must be an integer >= 1"):
            FrugalSettings(**bad)
    for ratio in (0.0, 1.5, -0.1):
        with pytest.raises(ConfigError, match="prune_ratio"):
            FrugalSettings(prune_ratio=ratio)
    sampler = _cost_aware_tpe(0, 4, lambda c: [1.0] * len(c), lambda: None, FrugalSettings())
    assert sampler._n_ei_candidates == 24 and sampler._multivariate
    wide = _cost_aware_tpe(
        0, 4, lambda c: [1.0] * len(c), lambda: None, FrugalSettings(candidates=128)
    )
    assert wide._n_ei_candidates == 128
    with pytest.raises(ConfigError, match="acquisition must be one of"):
        FrugalSettings(acquisition="ucb")  # type: ignore[arg-type]


def test_cost_cooling_lets_expected_improvement_alone_decide_as_the_budget_runs_out() -> None:
    import optuna

    space = {
        "batch_size": optuna.distributions.CategoricalDistribution([16, 32, 64]),
        "width": optuna.distributions.IntDistribution(4, 16),
    }

    def cost(candidates: list[dict[str, Any]]) -> list[float | None]:  # widths cost most
        return [1e-3 * float(c["width"]) ** 4 for c in candidates]

    def proposals(sampler: Any) -> list[dict[str, Any]]:
        study = _study(sampler)
        chosen = []
        for _ in range(14):
            trial = study.ask(space)
            chosen.append(dict(trial.params))
            study.tell(trial, float(trial.params["width"]))  # wider is better
        return chosen

    plain = proposals(optuna.samplers.TPESampler(seed=0, n_startup_trials=4, multivariate=True))
    rules = FrugalSettings(acquisition="ei_per_joule", prune_ratio=None, cost_cooling=True)
    # 1e3 J left of 1e9: the cost weighs 1e-6, so EI (monotone in TPE's ratio) picks as TPE
    cooled = _cost_aware_tpe(0, 4, cost, lambda: 1e3, rules, budget_j=1e9)
    assert proposals(cooled) == plain
    # the whole budget left: the cost weighs fully and the proposals move to cheaper widths
    full = _cost_aware_tpe(0, 4, cost, lambda: 1e9, rules, budget_j=1e9)
    chosen = proposals(full)
    assert chosen != plain
    assert sum(c["width"] for c in chosen[4:]) < sum(c["width"] for c in plain[4:])


def test_expected_improvement_uses_the_cost_only_as_a_constraint() -> None:
    import optuna

    space = {
        "batch_size": optuna.distributions.CategoricalDistribution([16, 32, 64]),
        "width": optuna.distributions.IntDistribution(4, 16),
    }

    def proposals(sampler: Any, n: int = 12) -> list[dict[str, Any]]:
        study = _study(sampler)
        chosen = []
        for _ in range(n):
            trial = study.ask(space)
            chosen.append(dict(trial.params))
            study.tell(trial, float(trial.params["width"]))
        return chosen

    def cost(candidates: list[dict[str, Any]]) -> list[float | None]:
        return [float(c["width"]) for c in candidates]  # width w costs w J

    plain = proposals(optuna.samplers.TPESampler(seed=0, n_startup_trials=4, multivariate=True))
    rules = FrugalSettings(prune_ratio=None)  # the default acquisition
    # everything affordable: TPE's own choices, however much wider ones cost
    assert proposals(_cost_aware_tpe(0, 4, cost, lambda: 1e9, rules)) == plain
    # 9 J left: no model-based proposal above width 9
    capped = proposals(_cost_aware_tpe(0, 4, cost, lambda: 9.0, rules))
    assert all(c["width"] <= 9 for c in capped[4:])
    assert any(c["width"] > 9 for c in plain[4:])
    # per joule, the same trials drift to cheaper widths
    per_joule = proposals(
        _cost_aware_tpe(0, 4, cost, lambda: 1e9, FrugalSettings(acquisition="ei_per_joule"))
    )
    assert sum(c["width"] for c in per_joule[4:]) < sum(c["width"] for c in plain[4:])
    # one density per parameter: Optuna's univariate TPE, the cost left out
    univariate = FrugalSettings(multivariate=False, prune_ratio=None)
    assert proposals(_cost_aware_tpe(0, 4, cost, lambda: 1.0, univariate)) == proposals(
        optuna.samplers.TPESampler(seed=0, n_startup_trials=4, multivariate=False)
    )


@pytest.mark.parametrize("multivariate", [False, True])
def test_one_trial_at_a_time_tpe_reads_the_trials_once_an_ask_and_decides_the_same(
    multivariate: bool,
) -> None:
    import optuna

    space = {
        "lr": optuna.distributions.FloatDistribution(1e-4, 1e-1, log=True),
        "batch_size": optuna.distributions.CategoricalDistribution([16, 32, 64]),
        "width": optuna.distributions.IntDistribution(4, 16),
    }
    rules = FrugalSettings(multivariate=multivariate, prune_ratio=None)

    def run(sampler: Any) -> tuple[list[dict[str, Any]], list[int]]:
        study = _study(sampler)
        storage = study._storage
        get_all = storage.get_all_trials
        reads: list[int] = [0]

        def counted(*args: Any, **kwargs: Any) -> Any:
            reads[-1] += 1
            return get_all(*args, **kwargs)

        storage.get_all_trials = counted
        chosen, per_ask = [], []
        for number in range(12):
            reads[-1] = 0
            trial = study.ask(space)
            if number >= 4:  # after the start-up trials
                per_ask.append(reads[-1])
            chosen.append(dict(trial.params))
            lr, width = trial.params["lr"], trial.params["width"]
            study.tell(trial, -abs(math.log10(lr) + 2) + width / 100)
        return chosen, per_ask

    def frugal(constant_liar: bool) -> Any:
        costs = lambda c: [1.0] * len(c)  # noqa: E731
        return _cost_aware_tpe(0, 4, costs, lambda: None, rules, constant_liar=constant_liar)

    _, optunas_own = run(optuna.samplers.RandomSampler(seed=0))  # its look for waiting trials
    liar, liar_reads = run(frugal(True))
    alone, alone_reads = run(frugal(False))
    assert alone == liar  # one trial at a time nothing else runs: the same proposals
    # the ask's one read, every parameter sampled from it
    assert [a - o for a, o in zip(alone_reads, optunas_own, strict=True)] == [1] * 8
    # the liar reads afresh: once a parameter (univariate), once more (multivariate)
    assert min(r - o for r, o in zip(liar_reads, optunas_own, strict=True)) == (
        2 if multivariate else 1 + len(space)
    )


def test_make_sampler_turns_the_liar_off_only_when_trials_run_one_at_a_time() -> None:
    from pathlib import Path

    from frugalml.tune import TuneSpec, make_sampler

    spec = TuneSpec.from_yaml(Path(__file__).parent.parent / "examples" / "compare_digits.yaml")
    for strategy in ("tpe", "frugal"):
        chosen = spec.replace(strategy=strategy)
        samplers = [make_sampler(chosen, 0, in_flight=n) for n in (None, 1, 2)]
        assert [s._constant_liar for s in samplers] == [True, False, True]  # type: ignore[attr-defined]

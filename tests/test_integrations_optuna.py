"""frugalml.tune.metered: a plain Optuna objective, every trial metered, a budget stop."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest

from frugalml.errors import ConfigError
from frugalml.meter import Budget, Meter, MeterConfig
from frugalml.tune import measured_trials, metered, study_spec_fragment
from meter_fixtures import FakeClock, PowercapTree

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _quadratic(trial: optuna.Trial) -> float:
    x = trial.suggest_float("x", -2.0, 2.0)
    return sum((x - 0.5) ** 2 for _ in range(20_000)) / 20_000


def test_a_plain_objective_on_the_real_meter_records_energy(meter_no_powercap: Path) -> None:
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    study.optimize(metered(_quadratic, config=MeterConfig(gpus="none")), n_trials=3)
    assert len(study.trials) == 3
    for t in study.trials:
        assert t.state == optuna.trial.TrialState.COMPLETE
        assert t.user_attrs["energy_j"] > 0
        assert t.user_attrs["energy_provenance"] == "estimated"  # no counters here
        assert "estimate" in t.user_attrs["energy_source"]
    assert [m.name for m in measured_trials(study)] == ["trial 0", "trial 1", "trial 2"]


class _CountedWork:
    """An objective whose every trial costs 30 J on the fake RAPL package and 10 s."""

    def __init__(self, tree: PowercapTree, clock: FakeClock) -> None:
        self.tree, self.clock, self.uj = tree, clock, 0

    def __call__(self, trial: optuna.Trial) -> float:
        x = trial.suggest_float("x", 0.0, 1.0)
        self.uj += 30_000_000
        self.tree.set("intel-rapl:0", self.uj)
        self.clock.advance(10.0)
        return x


def _rapl_meter(tree: PowercapTree, clock: FakeClock) -> Meter:
    tree.zone("intel-rapl:0", "package-0", energy_uj=0)
    tree.zone("intel-rapl:0:0", "dram", energy_uj=0)
    return Meter(MeterConfig(gpus="none"), clock=clock)


def test_budget_stops_before_the_trial_that_would_pass_it(meter_powercap: PowercapTree) -> None:
    clock = FakeClock()
    with _rapl_meter(meter_powercap, clock) as meter:
        objective = metered(
            _CountedWork(meter_powercap, clock), meter=meter, budget=Budget(energy_kwh=100 / 3.6e6)
        )
        study = optuna.create_study()
        study.optimize(objective, n_trials=10)
    # 30 J a trial against 100 J: after 3 trials 90 J + 30 J predicted > 100 J, so 3 ran
    assert len(study.trials) == 3
    assert [t.user_attrs["energy_j"] for t in study.trials] == pytest.approx([30.0] * 3)
    assert {t.user_attrs["energy_provenance"] for t in study.trials} == {"measured"}
    assert objective.stop_reason is not None and "energy budget" in objective.stop_reason
    assert "trial" in objective.stop_reason and "epoch" not in objective.stop_reason
    assert study.user_attrs["frugalml_budget_stop"] == objective.stop_reason


def test_a_resumed_study_counts_its_earlier_trials(meter_powercap: PowercapTree) -> None:
    clock = FakeClock()
    with _rapl_meter(meter_powercap, clock) as meter:
        work = _CountedWork(meter_powercap, clock)
        study = optuna.create_study()
        study.optimize(metered(work, meter=meter), n_trials=3)  # 90 J, no budget
        again = metered(work, meter=meter, budget=Budget(energy_kwh=100 / 3.6e6))
        study.optimize(again, n_trials=5)
    # the fourth trial is predicted to take 90 J + 30 J over 100 J: not run, marked
    assert len(study.trials) == 4
    skipped = study.trials[-1]
    assert skipped.state == optuna.trial.TrialState.PRUNED
    assert "energy budget" in skipped.user_attrs["frugalml_budget_stop"]
    assert "energy_j" not in skipped.user_attrs


def test_energy_as_a_second_objective(meter_powercap: PowercapTree) -> None:
    clock = FakeClock()
    with _rapl_meter(meter_powercap, clock) as meter:
        study = optuna.create_study(directions=["maximize", "minimize"])
        study.optimize(
            metered(_CountedWork(meter_powercap, clock), meter=meter, energy="objective"),
            n_trials=2,
        )
    for t in study.trials:
        assert t.values[1] == pytest.approx(30.0)
        assert t.values[0] == t.params["x"]


def test_a_failing_or_pruned_trial_keeps_its_energy(meter_no_powercap: Path) -> None:
    def pruned(trial: optuna.Trial) -> float:
        raise optuna.TrialPruned("too slow")

    study = optuna.create_study()
    study.optimize(metered(pruned, config=MeterConfig(gpus="none")), n_trials=1)
    (t,) = study.trials
    assert t.state == optuna.trial.TrialState.PRUNED
    assert t.user_attrs["energy_j"] >= 0
    assert "TrialPruned" in t.user_attrs["frugalml_measurement"]["error"]


def test_bad_arguments() -> None:
    with pytest.raises(ConfigError, match="callable objective"):
        metered(42)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="energy must be"):
        metered(_quadratic, energy="both")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"frugalml\.meter\.Budget"):
        metered(_quadratic, budget={"energy_kwh": 1})  # type: ignore[arg-type]


def test_best_params_as_a_study_spec_fragment() -> None:
    params = {"lr": 0.001, "batch_size": 64, "betas.1": 0.99, "model.name": "frugal_cnn"}
    fragment = study_spec_fragment(params)
    assert fragment == {
        "models": ["frugal_cnn"],
        "training": {"batch_size": 64, "betas": [0.9, 0.99], "lr": 0.001},
    }
    with_args = study_spec_fragment({"model.width": 8}, model="frugal_cnn")
    assert with_args == {"models": [{"name": "frugal_cnn", "args": {"width": 8}}], "training": {}}
    with pytest.raises(ConfigError, match="colour"):
        study_spec_fragment({"colour": "red"})

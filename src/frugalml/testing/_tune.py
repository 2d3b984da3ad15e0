"""The contracts every registered tuning strategy and pruner passes.

:class:`TuningStrategyContract` runs each strategy of :mod:`frugalml.tune._registry` for
two real trials on a tiny digits space; :class:`TuningPrunerContract` checks each pruner's
per-epoch interface against a live Optuna trial. A strategy or pruner registered later is
tested the same way, without a test that lists names.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from frugalml.errors import ConfigError

__all__ = ["TuningPrunerContract", "TuningStrategyContract"]

_TINY_MODEL = {"name": "frugal_cnn", "args": {"conv_layers": 1, "width": 4}}


def tiny_spec_data(name: str, **changes: Any) -> dict[str, Any]:
    """A tuning spec for the strategy ``name`` on 20% of digits with a tiny CNN, two trials
    of one epoch; a strategy with start-up trials gets one (its model is used in two)."""
    from frugalml.tune._registry import get_strategy

    info = get_strategy(name)
    named: Any = name
    if "n_startup_trials" in info.options:
        named = {"name": name, "n_startup_trials": 1}
    data: dict[str, Any] = {
        "name": f"contract-{name}",
        "dataset": "digits",
        "fraction": 0.2,
        "model": _TINY_MODEL,
        "training": {"epochs": 1, "batch_size": 32},
        "search_space": {
            "lr": {"type": "float", "low": 1e-3, "high": 3e-2, "log": True, "grid": [3e-2, 1e-2]},
            "batch_size": {"type": "categorical", "choices": [16, 32]},
        },
        "strategy": named,
        "budget": {"max_trials": 2},
    }
    data.update(changes)
    return data


class TuningStrategyContract:
    """Contract tests run once per registered tuning strategy (``strategy`` parameter).

    Every strategy is described, named in the spec's help and allowed names; an unknown
    option is refused naming the ones it takes; it accepts both objectives exactly when the
    registry says it is multi-objective; and it runs two real trials that are recorded in
    both stores with their strategy and the pruner that decided. Subclass it (the name
    starting with ``Test``); override :meth:`strategies` to test only some.
    """

    def strategies(self) -> list[str]:
        """The strategies under test (default: every registered one, at collection)."""
        from frugalml.tune._registry import list_strategies

        return list_strategies()

    def pytest_generate_tests(self, metafunc: pytest.Metafunc) -> None:
        if "strategy" in metafunc.fixturenames:
            metafunc.parametrize("strategy", self.strategies())

    def test_described_and_allowed(self, strategy: str) -> None:
        from frugalml.tune import STRATEGIES
        from frugalml.tune._registry import get_strategy
        from frugalml.tune._spec import _KEYS

        info = get_strategy(strategy)
        assert info.name == strategy and info.help and "\n" not in info.help
        assert strategy in STRATEGIES and strategy in _KEYS["strategy"]

    def test_unknown_option_is_refused(self, strategy: str) -> None:
        from frugalml.tune import TuneSpec
        from frugalml.tune._registry import get_strategy

        data = tiny_spec_data(strategy, strategy={"name": strategy, "no_such_option": 1})
        with pytest.raises(ConfigError, match="no_such_option") as caught:
            TuneSpec.from_mapping(data)
        assert all(o in (caught.value.fix or "") for o in get_strategy(strategy).options)

    def test_objectives_as_registered(self, strategy: str) -> None:
        from frugalml.tune import TuneSpec
        from frugalml.tune._registry import get_strategy

        both = tiny_spec_data(strategy, objective=["accuracy", "energy"])
        if get_strategy(strategy).multi_objective:
            assert TuneSpec.from_mapping(both).multi_objective
        else:
            with pytest.raises(ConfigError, match="one objective"):
                TuneSpec.from_mapping(both)

    def test_runs_two_recorded_trials(self, strategy: str, tmp_path: Path) -> None:
        from frugalml.study import StudyStore
        from frugalml.tune import TuneSpec, run_tune
        from frugalml.tune._registry import epoch_pruner

        spec = TuneSpec.from_mapping(tiny_spec_data(strategy))
        outcome = run_tune(spec, tmp_path, threads=1, plot=False)
        ran = [t for t in outcome.trials if t.counted]
        assert len(ran) == 2 and outcome.new_trials == 2, outcome.stop_reason
        for trial in ran:
            assert trial.state in ("complete", "pruned"), (trial.state, trial.error)
            assert trial.params.keys() == {"lr", "batch_size"}
            assert 1e-3 <= trial.params["lr"] <= 3e-2 and trial.params["batch_size"] in (16, 32)
            assert trial.energy_j > 0 and math.isfinite(trial.energy_j)
            assert trial.energy_kind in ("measured", "estimated", "mixed")
        assert outcome.best is not None and outcome.stop_reason
        pruner = epoch_pruner(spec).name
        with StudyStore(tmp_path, create=False) as store:
            rows = store.trials()
            assert [r.status for r in rows] == ["complete", "complete"]
            for row in rows:
                assert row.definition["tune"]["strategy"] == strategy
                assert row.definition["tune"]["pruner"] == pruner
                assert row.result is not None and row.result["tune_strategy"] == strategy
                assert row.result["tune_pruner"] == pruner
                assert json.loads(row.result["tune_params"]).keys() == {"lr", "batch_size"}


class TuningPrunerContract:
    """Contract tests run once per registered pruner (``pruner`` parameter): described,
    allowed, unknown options refused; its per-epoch interface gives the Optuna study a
    pruner and answers after an epoch of a live trial with None or a reason."""

    def pruners(self) -> list[str]:
        """The pruners under test (default: every registered one, at collection)."""
        from frugalml.tune._registry import list_pruners

        return list_pruners()

    def pytest_generate_tests(self, metafunc: pytest.Metafunc) -> None:
        if "pruner" in metafunc.fixturenames:
            metafunc.parametrize("pruner", self.pruners())

    def _spec(self, pruner: str, **options: Any) -> Any:
        from frugalml.tune import TuneSpec
        from frugalml.tune._registry import get_pruner

        both = get_pruner(pruner).objectives == "multi"
        objective: Any = ["accuracy", "energy"] if both else "accuracy"
        return TuneSpec.from_mapping(
            tiny_spec_data("random", objective=objective, pruner={"type": pruner, **options})
        )

    def test_described_and_allowed(self, pruner: str) -> None:
        from frugalml.tune import PRUNERS
        from frugalml.tune._registry import get_pruner
        from frugalml.tune._spec import _KEYS

        info = get_pruner(pruner)
        assert info.name == pruner and info.help and "\n" not in info.help
        assert pruner in PRUNERS and pruner in _KEYS["pruner"]
        assert self._spec(pruner).pruner == pruner

    def test_unknown_option_is_refused(self, pruner: str) -> None:
        with pytest.raises(ConfigError, match="no_such_option"):
            self._spec(pruner, no_such_option=1)

    def test_decides_after_an_epoch(self, pruner: str) -> None:
        import optuna

        from frugalml.tune._registry import epoch_pruner

        spec = self._spec(pruner)
        decider = epoch_pruner(spec)
        assert decider.name == pruner
        study = optuna.create_study(directions=spec.directions, pruner=decider.optuna_pruner())
        trial = study.ask()
        verdict = decider.should_stop(trial, 1, (0.5, 1.0), [[(0.9, 0.5)]])
        assert verdict is None or (isinstance(verdict, str) and "epoch 1" in verdict)

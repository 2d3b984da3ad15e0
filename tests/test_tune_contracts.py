"""Every registered tuning strategy and pruner passes the same contract (frugalml.testing),
instead of tests that list the names."""

from __future__ import annotations

import pytest

from frugalml.errors import ConfigError
from frugalml.testing import TuningPrunerContract, TuningStrategyContract


class TestTuningStrategies(TuningStrategyContract):
    pass


class TestTuningPruners(TuningPrunerContract):
    pass


def test_a_registered_strategy_is_one_call_away(monkeypatch: pytest.MonkeyPatch) -> None:
    from frugalml.testing._tune import tiny_spec_data
    from frugalml.tune import StrategyInfo, TuneSpec, _registry, list_strategies, register_strategy

    monkeypatch.setattr(_registry, "_STRATEGIES", dict(_registry._STRATEGIES))
    random = _registry.get_strategy("random")
    register_strategy(
        StrategyInfo("quasi", "random, under another name", random.build, options=frozenset({"k"}))
    )
    assert list_strategies()[-1] == "quasi"
    spec = TuneSpec.from_mapping(tiny_spec_data("quasi", strategy={"name": "quasi", "k": 2}))
    assert spec.strategy == "quasi" and spec.strategy_options == {"k": 2}
    with pytest.raises(ConfigError, match="unknown option"):
        TuneSpec.from_mapping(tiny_spec_data("quasi", strategy={"name": "quasi", "j": 1}))


def test_an_unknown_strategy_names_every_registered_one() -> None:
    from frugalml.testing._tune import tiny_spec_data
    from frugalml.tune import TuneSpec, list_strategies

    with pytest.raises(ConfigError, match="unknown strategy") as caught:
        TuneSpec.from_mapping(tiny_spec_data("random", strategy="annealing"))
    assert all(name in (caught.value.fix or "") for name in list_strategies())

"""Prediction of a run's totals and the budget guard, on hand-computed and recorded epochs."""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import replace
from pathlib import Path

import pytest

from frugalml.errors import ConfigError, FrugalError
from frugalml.meter import (
    Budget,
    BudgetExceeded,
    BudgetGuard,
    ComponentEnergy,
    Measurement,
    predict_total,
)

TRACE = Path(__file__).parent / "data" / "meter_digits_epochs.json"


def _epoch(energy_j: float, duration_s: float = 10.0, co2_g: float | None = None) -> Measurement:
    return Measurement(
        name="epoch",
        started_at="2026-01-01T00:00:00+00:00",
        duration_s=duration_s,
        cpu_time_s=duration_s,
        energy_j=energy_j,
        components=(ComponentEnergy("cpu", energy_j, "estimate:tdp*utilisation", "estimated"),),
        co2_g=energy_j / 3.6e6 * 400.0 if co2_g is None else co2_g,
        intensity_g_per_kwh=400.0,
        intensity_source="test",
        pue=1.0,
    )


def _recorded() -> list[Measurement]:
    data = json.loads(TRACE.read_text())
    return [Measurement.from_dict(m) for m in data["epochs"]]


def test_hand_computed_interval() -> None:
    # Energies 10, 12, 14 J: mean 12, s = 2; 7 of 10 epochs remain.
    # t(0.95, 2 dof) = 2.919986; half width = 2.919986 * 2 * sqrt(7 + 49/3) = 28.2096.
    prediction = predict_total([_epoch(10), _epoch(12), _epoch(14)], 10, confidence=0.9)
    energy = prediction.energy_j
    assert energy.observed == pytest.approx(36.0)
    assert energy.total == pytest.approx(120.0)
    assert energy.per_epoch_sd == pytest.approx(2.0)
    assert energy.high == pytest.approx(120.0 + 28.2096, abs=1e-3)
    assert energy.low == pytest.approx(120.0 - 28.2096, abs=1e-3)
    assert prediction.duration_s.total == pytest.approx(100.0)
    assert prediction.duration_s.high == pytest.approx(100.0)  # no spread in durations
    assert prediction.energy_kwh == pytest.approx(120.0 / 3.6e6)
    assert "90% t prediction interval" in prediction.method


def test_one_epoch_gives_no_interval() -> None:
    prediction = predict_total([_epoch(10)], 5)
    assert prediction.energy_j.total == pytest.approx(50.0)
    assert prediction.energy_j.low is None and prediction.energy_j.high is None
    assert not prediction.has_interval
    assert "no interval" in prediction.method


def test_all_epochs_done_is_exact() -> None:
    prediction = predict_total([_epoch(10), _epoch(30)], 2)
    assert prediction.energy_j.total == prediction.energy_j.low == prediction.energy_j.high == 40.0


def test_lower_bound_never_below_what_was_spent() -> None:
    prediction = predict_total([_epoch(1), _epoch(100)], 3, confidence=0.99)
    assert prediction.energy_j.low == pytest.approx(101.0)


def test_warmup_epochs_are_counted_but_not_fitted() -> None:
    prediction = predict_total([_epoch(100), _epoch(10), _epoch(10)], 4, warmup_epochs=1)
    assert prediction.fitted_epochs == 2
    assert prediction.energy_j.total == pytest.approx(130.0)
    assert "warm-up" in prediction.method


@pytest.mark.parametrize(
    ("epochs", "planned", "kwargs"),
    [([], 3, {}), ([1.0, 2.0], 1, {}), ([1.0], 3, {"confidence": 1.5})],
)
def test_bad_input(epochs: list[float], planned: int, kwargs: dict[str, float]) -> None:
    with pytest.raises(ConfigError):
        predict_total([_epoch(e) for e in epochs], planned, **kwargs)  # type: ignore[arg-type]


def test_recorded_trace_prediction_matches_independent_arithmetic() -> None:
    epochs = _recorded()
    assert len(epochs) == 10
    k = 3
    prediction = predict_total(epochs[:k], len(epochs), confidence=0.9)
    values = [m.energy_j for m in epochs[:k]]
    mean, sd = statistics.mean(values), statistics.stdev(values)
    m = len(epochs) - k
    half = 2.919986 * sd * math.sqrt(m + m * m / k)  # t(0.95, 2)
    assert prediction.energy_j.total == pytest.approx(sum(values) + m * mean)
    assert prediction.energy_j.high == pytest.approx(sum(values) + m * mean + half, rel=1e-5)
    co2 = [e.co2_g for e in epochs[:k]]
    assert prediction.co2_g.total == pytest.approx(sum(co2) + m * statistics.mean(co2))


def test_budget_validation() -> None:
    with pytest.raises(ConfigError, match="at least one limit"):
        Budget()
    with pytest.raises(ConfigError):
        Budget(energy_kwh=-1.0)
    with pytest.raises(ConfigError):
        BudgetGuard(Budget(co2_g=1.0), 3, bound="mean")  # type: ignore[arg-type]


def test_guard_upper_bound_stops_before_point_does() -> None:
    # Point prediction 120 J, upper 90% bound ~148 J.
    epochs = [_epoch(10), _epoch(12), _epoch(14)]
    budget = Budget(energy_kwh=130.0 / 3.6e6)
    upper = BudgetGuard(budget, 10, bound="upper").check(epochs)
    point = BudgetGuard(budget, 10, bound="point").check(epochs)
    assert upper.stop and "upper 90% bound" in upper.reason
    assert not point.stop and "within budget" in point.reason
    assert upper.prediction.energy_j.total == pytest.approx(120.0)


def test_guard_uses_point_with_one_epoch_and_says_so() -> None:
    decision = BudgetGuard(Budget(duration_s=45.0), 5).check([_epoch(1.0, duration_s=10.0)])
    assert decision.stop
    assert "point prediction (no interval yet)" in decision.reason


def test_guard_stops_when_already_spent() -> None:
    decision = BudgetGuard(Budget(co2_g=1e-3), 5).check([_epoch(10.0, co2_g=0.01)])
    assert decision.stop and "already exceeded" in decision.reason


def test_enforce_raises_a_frugal_error() -> None:
    guard = BudgetGuard(Budget(energy_kwh=1e-9), 10)
    with pytest.raises(BudgetExceeded) as info:
        guard.enforce([_epoch(10.0), _epoch(11.0)])
    assert isinstance(info.value, FrugalError)
    assert info.value.decision.stop
    assert info.value.fix is not None
    relaxed = BudgetGuard(Budget(energy_kwh=1.0), 10)
    assert not relaxed.enforce([_epoch(10.0), _epoch(11.0)]).stop


def test_guard_on_recorded_trace() -> None:
    epochs = _recorded()
    total_j = sum(m.energy_j for m in epochs)
    n = len(epochs)
    # A generous budget (twice the real total) lets the run finish.
    generous = BudgetGuard(Budget(energy_kwh=2 * total_j / 3.6e6), n, bound="point")
    assert not any(generous.check(epochs[:k]).stop for k in range(1, n + 1))
    # Half the real total: the guard must stop the run before the end.
    tight = BudgetGuard(Budget(energy_kwh=0.5 * total_j / 3.6e6), n)
    stops = [k for k in range(1, n + 1) if tight.check(epochs[:k]).stop]
    assert stops and stops[0] < n
    # A budget in seconds on the same trace.
    seconds = sum(m.duration_s for m in epochs)
    assert BudgetGuard(Budget(duration_s=0.5 * seconds), n).check(epochs[:3]).stop


def test_prediction_ignores_measurement_errors_field() -> None:
    epoch = replace(_epoch(5.0), error="ValueError: boom")
    assert predict_total([epoch, epoch], 4).energy_j.total == pytest.approx(20.0)


def test_epochs_with_unmeasured_seconds_make_the_prediction_a_lower_bound() -> None:
    import dataclasses

    clean = _epoch(100.0)
    gap = dataclasses.replace(
        _epoch(80.0),
        components=(
            ComponentEnergy(
                "cpu:0",
                80.0,
                "rapl:powercap",
                "measured",
                unmeasured_s=2.0,
                unmeasured_intervals_s=((3.0, 5.0),),
            ),
        ),
    )
    prediction = predict_total([clean, gap], 4)
    assert prediction.energy_j.total == pytest.approx(180.0 + 2 * 90.0)
    assert "1 epoch(s) have seconds a counter could not measure" in prediction.method
    assert "lower bounds" in prediction.method
    assert "could not measure" not in predict_total([clean, clean], 4).method

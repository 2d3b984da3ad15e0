"""MLflow: a measurement logged into a real file:// tracking store and read back."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import mlflow
import pytest

from frugalml.errors import ConfigError
from frugalml.integrations import log_measurement
from frugalml.meter import ComponentEnergy, Measurement, Meter, MeterConfig


def _m(name: str, energy_j: float, duration_s: float) -> Measurement:
    parts = (
        ComponentEnergy("gpu:0", energy_j * 0.75, "nvml:total_energy_counter", "measured"),
        ComponentEnergy("cpu", energy_j * 0.25, "estimate:tdp*utilisation", "estimated"),
    )
    return Measurement(
        name=name,
        started_at="2026-01-01T00:00:00+00:00",
        duration_s=duration_s,
        cpu_time_s=duration_s / 2,
        energy_j=energy_j,
        components=parts,
        co2_g=energy_j / 3.6e6 * 400.0,
        intensity_g_per_kwh=400.0,
        intensity_source="test",
        pue=1.0,
    )


@pytest.fixture
def tracking(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    # MLflow 3.x keeps the file store in maintenance mode behind this switch
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    uri = (tmp_path / "mlruns").as_uri()
    mlflow.set_tracking_uri(uri)
    yield uri
    mlflow.set_tracking_uri(None)


def test_one_run_with_metrics_steps_tags_and_artifact(tracking: str, tmp_path: Path) -> None:
    total = _m("train", 7200.0, 20.0)
    epochs = [_m("epoch 0", 3600.0, 10.0), _m("epoch 1", 1800.0, 8.0)]
    with mlflow.start_run() as run:
        run_id = log_measurement(total, epochs=epochs)
    assert run_id == run.info.run_id
    client = mlflow.MlflowClient()
    assert len(client.search_runs([run.info.experiment_id])) == 1
    got = client.get_run(run_id).data
    assert got.metrics["energy_j"] == 7200.0
    assert got.metrics["energy_kwh"] == pytest.approx(0.002)
    assert got.metrics["co2_g"] == pytest.approx(0.8)  # 0.002 kWh x 400 g/kWh
    assert got.metrics["measured_energy_j"] == 5400.0
    assert got.tags["frugalml.energy_provenance"] == "mixed"
    assert got.tags["frugalml.component.gpu_0"] == "measured nvml:total_energy_counter"
    history = client.get_metric_history(run_id, "epoch_energy_j")
    assert [(h.step, h.value) for h in sorted(history, key=lambda h: h.step)] == [
        (0, 3600.0),
        (1, 1800.0),
    ]
    local = Path(client.download_artifacts(run_id, "frugalml", str(tmp_path / "dl")))
    assert Measurement.from_json((local / "measurement.json").read_text()) == total
    assert [e["energy_j"] for e in json.loads((local / "epochs.json").read_text())] == [
        3600.0,
        1800.0,
    ]


def test_a_real_meter_window_without_an_active_run(tracking: str, meter_no_powercap: Path) -> None:
    with Meter(MeterConfig(gpus="none")) as meter, meter.window("work"):
        sum(i * i for i in range(200_000))
    measured = meter.measurements[-1]
    run_id = log_measurement(measured)  # starts and ends a run of its own
    assert mlflow.active_run() is None
    data = mlflow.MlflowClient().get_run(run_id).data
    assert data.metrics["energy_j"] == pytest.approx(measured.energy_j)
    assert data.tags["frugalml.energy_provenance"] == measured.provenance
    assert data.tags["frugalml.window"] == "work"


def test_bad_arguments_are_one_line_errors(tracking: str) -> None:
    with pytest.raises(ConfigError, match="needs a frugalml Measurement"):
        log_measurement({"energy_j": 1.0})  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="run must be an MLflow run"):
        log_measurement(_m("x", 1.0, 1.0), run=42)


def test_a_missing_extra_is_a_one_line_error_naming_it(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    import frugalml.integrations as integrations

    monkeypatch.setitem(sys.modules, "mlflow", None)  # as if not installed
    with pytest.raises(ConfigError, match=r"pip install 'frugalml\[mlflow\]'"):
        log_measurement(_m("x", 1.0, 1.0))
    monkeypatch.setitem(sys.modules, "transformers", None)
    monkeypatch.delitem(sys.modules, "frugalml.integrations.huggingface", raising=False)
    with pytest.raises(ConfigError, match=r"pip install 'frugalml\[hf\]'") as caught:
        integrations.FrugalTrainerCallback  # noqa: B018
    assert "\n" not in str(caught.value)

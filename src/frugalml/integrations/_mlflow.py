"""``log_measurement``: a frugalml measurement into an MLflow run.

Metrics: ``energy_j``, ``energy_kwh``, ``measured_energy_j``, ``estimated_energy_j``,
``co2_g``, ``duration_s``, ``cpu_time_s`` for the total, and the same names prefixed
``epoch_`` once per epoch with ``step`` = the epoch's index. Tags (``frugalml.*``): the
provenance (``measured``/``estimated``/``mixed``), every component's counter or model
(``frugalml.component.<name>`` = ``<kind> <source>``), the carbon intensity and its source,
the PUE. Artifacts: ``frugalml/measurement.json`` (the total, readable with
:meth:`Measurement.from_json`) and, with epochs, ``frugalml/epochs.json``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any

from frugalml.errors import ConfigError
from frugalml.integrations._extras import require
from frugalml.integrations._fields import metric_fields, provenance_fields
from frugalml.meter import Measurement

__all__ = ["log_measurement"]

_ARTIFACT_DIR = "frugalml"


def _run_id(mlflow: Any, run: Any) -> tuple[str, bool]:
    """The run to log into and whether this call started it (and must end it)."""
    if run is None:
        active = mlflow.active_run()
        if active is not None:
            return str(active.info.run_id), False
        started = mlflow.start_run()
        return str(started.info.run_id), True
    if isinstance(run, str):
        return run, False
    info = getattr(run, "info", None)
    run_id = getattr(info, "run_id", None)
    if not isinstance(run_id, str):
        raise ConfigError(
            f"run must be an MLflow run, a run id or None, not {type(run).__name__}",
            fix="pass mlflow.active_run(), a run id string, or nothing for the active run",
        )
    return run_id, False


def _tag_safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "_-./ " else "_" for ch in name)


def log_measurement(
    measurement: Measurement,
    run: Any = None,
    *,
    epochs: Sequence[Measurement] = (),
) -> str:
    """Log ``measurement`` (and per-epoch ``epochs``) into ``run``; return the run id.

    ``run`` is an MLflow run (``mlflow.start_run()``'s value), a run id, or None for the
    active run; with None and no active run, a run is started and ended here.
    """
    if not isinstance(measurement, Measurement):
        raise ConfigError(
            f"log_measurement needs a frugalml Measurement, not {type(measurement).__name__}",
            fix="pass a window's measurement, e.g. meter.measurements[-1]",
        )
    mlflow = require("mlflow", "mlflow")
    entities = require("mlflow.entities", "mlflow")
    run_id, started = _run_id(mlflow, run)
    client = mlflow.MlflowClient()
    now_ms = int(time.time() * 1000)
    metrics = [
        entities.Metric(key, float(value), now_ms, 0)
        for key, value in metric_fields(measurement).items()
    ]
    for step, epoch in enumerate(epochs):
        metrics.extend(
            entities.Metric(key, float(value), now_ms, step)
            for key, value in metric_fields(epoch, "epoch_").items()
        )
    tags = {f"frugalml.{k}": v for k, v in provenance_fields(measurement).items()}
    for c in measurement.components:
        tags[f"frugalml.component.{_tag_safe(c.component)}"] = f"{c.kind} {c.source}"
    tags["frugalml.window"] = measurement.name
    if measurement.error:
        tags["frugalml.error"] = measurement.error
    try:
        client.log_batch(
            run_id,
            metrics=metrics,
            tags=[entities.RunTag(k, v[:5000]) for k, v in tags.items()],
        )
        client.log_text(run_id, measurement.to_json(), f"{_ARTIFACT_DIR}/measurement.json")
        if epochs:
            text = json.dumps([e.to_dict() for e in epochs], indent=2)
            client.log_text(run_id, text, f"{_ARTIFACT_DIR}/epochs.json")
    finally:
        if started:
            mlflow.end_run()
    return run_id

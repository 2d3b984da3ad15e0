"""The results table of a study: one row per trial, the columns of ``study export``."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from frugalml.study._store import StudyStore

if TYPE_CHECKING:
    import pandas as pd

#: Column order of the export (docs/architecture.md); extra columns follow these.
COLUMNS: tuple[str, ...] = (
    "trial_id",
    "study",
    "model",
    "model_args",
    "dataset",
    "pretrained",
    "fraction",
    "seed",
    "status",
    "error",
    "params",
    "trainable_params",
    "flops_per_sample",
    "weight_bytes",
    "image_size",
    "epochs",
    "accuracy",
    "balanced_accuracy",
    "auc",
    "f1",
    "best_val_epoch",
    "best_val_accuracy",
    "best_val_test_accuracy",
    "energy_j",
    "energy_kind",
    "energy_source",
    "measured_energy_j",
    "estimated_energy_j",
    "co2_g",
    "intensity_g_per_kwh",
    "pue",
    "duration_s",
    "cpu_time_s",
    "peak_rss_bytes",
    "peak_gpu_mem_bytes",
    "device",
    "samples_per_s",
    "started_at",
    "finished_at",
)


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def build_result(
    trial_id: str,
    definition: dict[str, Any],
    *,
    costs: Any = None,
    train_result: Any = None,
    measurement: Any = None,
    image_size: tuple[int, int] | None = None,
    overhead_s: float | None = None,
) -> dict[str, Any]:
    """The row of the results table for one trial (see docs/architecture.md)."""
    row: dict[str, Any] = {
        "trial_id": trial_id,
        "model": definition["model"],
        "model_args": json.dumps(definition.get("model_args") or {}, sort_keys=True),
        "dataset": definition["dataset"],
        "pretrained": definition["pretrained"],
        "fraction": definition["fraction"],
        "seed": definition["seed"],
        "image_size": image_size[0] if image_size else definition.get("image_size"),
        "epochs_planned": definition["training"]["epochs"],
    }
    if costs is not None:
        row.update(
            params=costs.params,
            trainable_params=costs.trainable_params,
            flops_per_sample=costs.flops_per_sample,
            weight_bytes=costs.weight_bytes,
        )
    if train_result is not None:
        last = train_result.epochs[-1]
        row.update(
            epochs=len(train_result.epochs),
            accuracy=train_result.final_test.get("accuracy"),
            balanced_accuracy=train_result.final_test.get("balanced_accuracy"),
            auc=train_result.final_test.get("auc"),
            f1=train_result.final_test.get("f1"),
            val_accuracy=train_result.final_val.get("accuracy"),
            best_val_epoch=train_result.best_val_epoch,
            best_val_accuracy=train_result.best_val.get("accuracy"),
            best_val_test_accuracy=train_result.best_val_test.get("accuracy"),
            best_val_test_balanced_accuracy=train_result.best_val_test.get("balanced_accuracy"),
            best_val_test_auc=train_result.best_val_test.get("auc"),
            best_val_test_f1=train_result.best_val_test.get("f1"),
            train_loss=last.train_loss,
            train_samples=last.train_samples,
            samples_per_s=sum(e.samples_per_s for e in train_result.epochs)
            / len(train_result.epochs),
            device=train_result.device,
            data_path=train_result.data_path,
            stopped_early=train_result.stopped_early,
            stop_reason=train_result.stop_reason,
        )
    if measurement is not None:
        row.update(
            energy_j=measurement.energy_j,
            energy_kind=measurement.provenance,
            energy_source=measurement.energy_source,
            measured_energy_j=measurement.measured_energy_j,
            estimated_energy_j=measurement.estimated_energy_j,
            co2_g=measurement.co2_g,
            intensity_g_per_kwh=measurement.intensity_g_per_kwh,
            pue=measurement.pue,
            duration_s=measurement.duration_s,
            cpu_time_s=measurement.cpu_time_s,
            peak_rss_bytes=measurement.peak_rss_bytes,
            peak_gpu_mem_bytes=measurement.peak_gpu_mem_bytes,
            measurement=measurement.to_dict(),
        )
    if overhead_s is not None:
        row["process_overhead_s"] = overhead_s
    return {k: _finite(v) for k, v in row.items()}


def result_rows(store: StudyStore) -> list[dict[str, Any]]:
    """Every trial of the store as a flat dict (the measurement JSON left out)."""
    rows = []
    for trial in store.trials():
        definition = trial.definition
        row: dict[str, Any] = {
            "trial_id": trial.trial_id,
            "study": definition.get("study"),
            "model": definition.get("model"),
            "model_args": json.dumps(definition.get("model_args") or {}, sort_keys=True),
            "dataset": definition.get("dataset"),
            "pretrained": definition.get("pretrained"),
            "fraction": definition.get("fraction"),
            "seed": definition.get("seed"),
        }
        result = dict(trial.result or {})
        result.pop("measurement", None)
        row.update(result)
        row.update(
            status=trial.status,
            error=trial.error,
            attempts=trial.attempts,
            started_at=trial.started_at,
            finished_at=trial.finished_at,
        )
        rows.append(row)
    return rows


def load_results(out_dir: str | Path) -> pd.DataFrame:
    """The study in ``out_dir`` as a DataFrame, one row per trial, export columns first."""
    import pandas as pd

    with StudyStore(out_dir, create=False, read_only=True) as store:
        rows = result_rows(store)
        warnings = list(store.warnings)
    frame = pd.DataFrame(rows)
    frame.attrs["store_warnings"] = warnings  # rows that could not be read, by name
    for column in COLUMNS:
        if column not in frame.columns:
            frame[column] = None
    extra = [c for c in frame.columns if c not in COLUMNS]
    return frame[list(COLUMNS) + extra]


def export_csv(out_dir: str | Path, path: str | Path) -> int:
    """Write the results table as CSV; returns the number of rows."""
    frame = load_results(out_dir)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False)
    return len(frame)

"""The results table of a study: one row per trial, the columns of ``study export``."""

from __future__ import annotations

import json
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

    with StudyStore(out_dir, create=False) as store:
        rows = result_rows(store)
    frame = pd.DataFrame(rows)
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

"""The results table of a study: one row per trial, the columns of ``study export``."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
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
    "train_energy_j",
    "eval_energy_j",
    "setup_energy_j",
    "energy_j",
    "train_energy_kind",
    "train_energy_source",
    "energy_kind",
    "energy_source",
    "energy_note",
    "measured_energy_j",
    "estimated_energy_j",
    "train_co2_g",
    "co2_g",
    "intensity_g_per_kwh",
    "pue",
    "train_duration_s",
    "eval_duration_s",
    "setup_duration_s",
    "duration_s",
    "cpu_time_s",
    "train_peak_rss_bytes",
    "baseline_rss_bytes",
    "peak_rss_bytes",
    "train_peak_gpu_mem_bytes",
    "peak_gpu_mem_bytes",
    "threads",
    "device",
    "samples_per_s",
    "started_at",
    "finished_at",
)


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def process_rss_bytes() -> int:
    """This process's resident set size now: the baseline that ``train_peak_rss_bytes`` is
    counted above (take it after the imports, before loading data and building the model)."""
    import psutil

    return int(psutil.Process().memory_info().rss)


def _provenance(kinds: set[str]) -> str:
    if not kinds:
        return "none"
    return kinds.pop() if len(kinds) == 1 else "mixed"


def _window_sum(windows: list[Any], attr: str) -> float:
    return float(sum(float(getattr(w, attr)) for w in windows))


def energy_split(
    measurement: Any, epochs: Sequence[Any], baseline_rss_bytes: int | None = None
) -> dict[str, Any]:
    """Split a trial's window into its training, evaluation and setup parts.

    ``train_*`` sums the epochs' ``train`` windows (the training steps, PePR's resource),
    ``eval_*`` their ``eval`` windows, ``setup_*`` is the rest of the trial window (data,
    model, cost counting, the loop's own set-up): ``energy_j`` and ``duration_s`` are the
    sums of the three. ``train_peak_rss_bytes`` is the highest RSS seen in a training window
    less ``baseline_rss_bytes`` (the process after its imports); ``train_peak_gpu_mem_bytes``
    the highest CUDA allocation in a training window (allocations start from zero, so no
    baseline). Epochs without a window (no meter) leave the split out.
    """
    train = [e.train_measurement for e in epochs if e.train_measurement is not None]
    evals = [e.eval_measurement for e in epochs if e.eval_measurement is not None]
    if len(train) != len(epochs) or len(evals) != len(epochs):
        return {}
    row: dict[str, Any] = {}
    train_j, eval_j = _window_sum(train, "energy_j"), _window_sum(evals, "energy_j")
    train_s, eval_s = _window_sum(train, "duration_s"), _window_sum(evals, "duration_s")
    setup_j = float(measurement.energy_j) - train_j - eval_j
    setup_s = float(measurement.duration_s) - train_s - eval_s
    notes = []
    if setup_j < 0:  # nested windows are differences of one counter: only rounding gets here
        notes.append(
            f"the trial window read {measurement.energy_j:.6g} J, {-setup_j:.3g} J less than "
            "its epochs' windows; energy_j is the epochs' sum and setup_energy_j 0"
        )
        setup_j = 0.0
    setup_s = max(0.0, setup_s)
    row.update(
        train_energy_j=train_j,
        eval_energy_j=eval_j,
        setup_energy_j=setup_j,
        energy_j=train_j + eval_j + setup_j,
        train_energy_kind=_provenance({str(m.provenance) for m in train}) if train else None,
        train_energy_source="; ".join(sorted({str(m.energy_source) for m in train})) or None,
        train_co2_g=_window_sum(train, "co2_g"),
        train_duration_s=train_s,
        eval_duration_s=eval_s,
        setup_duration_s=setup_s,
        duration_s=train_s + eval_s + setup_s,
    )
    peaks = [int(m.peak_rss_bytes) for m in train if m.peak_rss_bytes is not None]
    if peaks and baseline_rss_bytes is not None:
        row["train_peak_rss_bytes"] = max(0, max(peaks) - int(baseline_rss_bytes))
        row["baseline_rss_bytes"] = int(baseline_rss_bytes)
    gpu = [int(m.peak_gpu_mem_bytes) for m in train if m.peak_gpu_mem_bytes is not None]
    if gpu:
        row["train_peak_gpu_mem_bytes"] = max(gpu)
    if notes:
        row["energy_note"] = "; ".join(notes)
    return row


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
    """The row of the results table for one trial (see docs/architecture.md).

    ``epochs`` are the :class:`frugalml.train.EpochRecord` s that ran (default: those of
    ``train_result``; pass them when training raised after some epochs) and split the
    trial's ``measurement`` into ``train_*``, ``eval_*`` and ``setup_*`` (:func:`energy_split`).
    ``threads`` is torch's thread count (default: the one ``train_result`` recorded).
    """
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

        ran = list(epochs) if epochs is not None else list(getattr(train_result, "epochs", []))
        row.update(energy_split(measurement, ran, baseline_rss_bytes))
    if threads is None and train_result is not None:
        threads = getattr(train_result, "threads", None)
    if threads is not None:
        row["threads"] = int(threads)

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

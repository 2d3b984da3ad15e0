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
    "attributed_energy_j",
    "attributed_energy_kind",
    "attributed_energy_source",
    "attribution_rule",
    "attributed_components",
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
    """This process's resident set size now; taken before a trial's set-up (after the core
    imports) it is the row's ``setup_start_rss_bytes``."""
    import psutil

    return int(psutil.Process().memory_info().rss)


def _provenance(kinds: set[str]) -> str:
    from frugalml.meter import combine_provenance

    return combine_provenance(kinds)


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
    less ``baseline_rss_bytes``, the process's RSS when training began (every import done,
    data loaded, model built: recorded by :func:`frugalml.train.train` in each epoch; the
    lazy imports of set-up, sklearn, the FLOP counter, timm, took 300-350 MB here, so a
    baseline before them would charge them to the model); ``baseline_rss_bytes`` given
    here is the fallback for epochs without one. ``train_peak_gpu_mem_bytes`` is the highest
    CUDA allocation in a training window (allocations start from zero, so no baseline).
    Epochs without a window (no meter) leave the split out.
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
    recorded = [getattr(e, "baseline_rss_bytes", None) for e in epochs]
    baseline = next((int(b) for b in recorded if b is not None), baseline_rss_bytes)
    if peaks and baseline is not None:
        row["train_peak_rss_bytes"] = max(0, max(peaks) - int(baseline))
        row["baseline_rss_bytes"] = int(baseline)
    gpu = [int(m.peak_gpu_mem_bytes) for m in train if m.peak_gpu_mem_bytes is not None]
    if gpu:
        row["train_peak_gpu_mem_bytes"] = max(gpu)
    if notes:
        row["energy_note"] = "; ".join(notes)
    return row


def _definition_fields(
    trial_id: str, definition: dict[str, Any], image_size: tuple[int, int] | None
) -> dict[str, Any]:
    """What the trial was asked to be: model, data, seed and the planned epochs."""
    return {
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


def _cost_fields(costs: Any) -> dict[str, Any]:
    """The model's counted costs: parameters, FLOPs per sample, weight bytes."""
    return {
        "params": costs.params,
        "trainable_params": costs.trainable_params,
        "flops_per_sample": costs.flops_per_sample,
        "weight_bytes": costs.weight_bytes,
    }


def _training_fields(train_result: Any) -> dict[str, Any]:
    """What training reached: the test and best-validation metrics, loss and throughput."""
    last = train_result.epochs[-1]
    final_test, best_val_test = train_result.final_test, train_result.best_val_test
    return {
        "epochs": len(train_result.epochs),
        "accuracy": final_test.get("accuracy"),
        "balanced_accuracy": final_test.get("balanced_accuracy"),
        "auc": final_test.get("auc"),
        "f1": final_test.get("f1"),
        "val_accuracy": train_result.final_val.get("accuracy"),
        "best_val_epoch": train_result.best_val_epoch,
        "best_val_accuracy": train_result.best_val.get("accuracy"),
        "best_val_test_accuracy": best_val_test.get("accuracy"),
        "best_val_test_balanced_accuracy": best_val_test.get("balanced_accuracy"),
        "best_val_test_auc": best_val_test.get("auc"),
        "best_val_test_f1": best_val_test.get("f1"),
        "train_loss": last.train_loss,
        "train_samples": last.train_samples,
        "samples_per_s": sum(e.samples_per_s for e in train_result.epochs)
        / len(train_result.epochs),
        "device": train_result.device,
        "data_path": train_result.data_path,
        "stopped_early": train_result.stopped_early,
        "stop_reason": train_result.stop_reason,
    }


def _measurement_fields(measurement: Any) -> dict[str, Any]:
    """The trial window's energy (with its provenance), CO2, time and memory peaks."""
    return {
        "energy_j": measurement.energy_j,
        "energy_kind": measurement.provenance,
        "energy_source": measurement.energy_source,
        "measured_energy_j": measurement.measured_energy_j,
        "estimated_energy_j": measurement.estimated_energy_j,
        "co2_g": measurement.co2_g,
        "intensity_g_per_kwh": measurement.intensity_g_per_kwh,
        "pue": measurement.pue,
        "duration_s": measurement.duration_s,
        "cpu_time_s": measurement.cpu_time_s,
        "peak_rss_bytes": measurement.peak_rss_bytes,
        "peak_gpu_mem_bytes": measurement.peak_gpu_mem_bytes,
        "measurement": measurement.to_dict(),
    }


def build_result(
    trial_id: str,
    definition: dict[str, Any],
    *,
    costs: Any = None,
    train_result: Any = None,
    measurement: Any = None,
    image_size: tuple[int, int] | None = None,
    overhead_s: float | None = None,
    epochs: Sequence[Any] | None = None,
    baseline_rss_bytes: int | None = None,
    threads: int | None = None,
    test_samples: int | None = None,
) -> dict[str, Any]:
    """The row of the results table for one trial (see docs/architecture.md).

    ``epochs`` are the :class:`frugalml.train.EpochRecord` s that ran (default: those of
    ``train_result``; pass them when training raised after some epochs) and split the
    trial's ``measurement`` into ``train_*``, ``eval_*`` and ``setup_*`` (:func:`energy_split`).
    ``threads`` is torch's thread count (default: the one ``train_result`` recorded).
    ``baseline_rss_bytes``: the process's RSS before the trial's set-up (after its core
    imports), kept as ``setup_start_rss_bytes``; the training's own memory is counted above
    the RSS when training began, which the epochs carry.
    """
    row = _definition_fields(trial_id, definition, image_size)
    if costs is not None:
        row.update(_cost_fields(costs))
    if train_result is not None:
        row.update(_training_fields(train_result))
    if measurement is not None:
        row.update(_measurement_fields(measurement))
        ran = list(epochs) if epochs is not None else list(getattr(train_result, "epochs", []))
        row.update(energy_split(measurement, ran))
        if baseline_rss_bytes is not None:
            row["setup_start_rss_bytes"] = int(baseline_rss_bytes)
    if threads is None and train_result is not None:
        threads = getattr(train_result, "threads", None)
    if threads is not None:
        row["threads"] = int(threads)
    if overhead_s is not None:
        row["process_overhead_s"] = overhead_s
    if test_samples is not None:
        # The test split's size: how far one test image moves the accuracy (the report's
        # noise bound on accuracy differences).
        row["test_samples"] = int(test_samples)
    return {k: _finite(v) for k, v in row.items()}


def setup_record(measurement: Any) -> dict[str, Any]:
    """The store's epoch-0 record: a trial's set-up window (data, model, cost counting)."""
    return {
        "epoch": 0,
        "phase": "setup",
        "measurement": measurement.to_dict() if measurement is not None else None,
    }


def _recorded(epochs: Sequence[Mapping[str, Any]]) -> tuple[Any, list[Any]]:
    """The set-up window and the epochs' (epoch, train, eval) windows of stored records;
    records that cannot be read are skipped (they hold no energy that can be trusted)."""
    from frugalml.errors import FrugalError
    from frugalml.meter import Measurement

    def read(data: Any) -> Any:
        if not isinstance(data, Mapping):
            return None
        try:
            return Measurement.from_dict(data)
        except (FrugalError, KeyError, TypeError, ValueError):
            return None

    setup = None
    windows = []
    for record in epochs:
        if not isinstance(record, Mapping):
            continue
        if record.get("epoch") == 0:
            setup = read(record.get("measurement"))
            continue
        whole = read(record.get("measurement"))
        if whole is not None:
            windows.append(
                (
                    whole,
                    read(record.get("train_measurement")),
                    read(record.get("eval_measurement")),
                )
            )
    return setup, windows


def _end_s(measurement: Any) -> float:
    from datetime import datetime

    started = datetime.fromisoformat(str(measurement.started_at)).timestamp()
    return started + float(measurement.duration_s)


def _killed_span(
    setup: Any, recorded: list[Any], launched_at: float, ended_at: float
) -> tuple[float, float]:
    """A killed trial's wall time and the part of it that no recorded window covers.

    The wall time runs from the trial window (as for a finished trial) when the set-up
    window was recorded, from the worker's launch when it was not, to ``ended_at``.
    """
    start = launched_at
    if setup is not None:
        start = _end_s(setup) - float(setup.duration_s)
    last_end = max([_end_s(m) for m in recorded], default=start)
    return max(0.0, ended_at - start), max(0.0, ended_at - last_end)


def _killed_power(recorded: list[Any], fallback_power_w: float | None) -> tuple[float | None, str]:
    """The power that books a killed trial's uncovered time, and the rule that gave it: the
    mean power of its recorded windows, else the study's completed trials' (may be None)."""
    recorded_j = sum(float(m.energy_j) for m in recorded)
    recorded_s = sum(float(m.duration_s) for m in recorded)
    if recorded_s > 0:
        return recorded_j / recorded_s, f"the mean power of its {len(recorded)} recorded window(s)"
    return fallback_power_w, "the mean power of the study's completed trials"


def _unbooked_row(trial_id: str, reason: str, wall_s: float) -> dict[str, Any]:
    """The row of a trial killed before it recorded a window, with no power figure to
    estimate from: no energy booked, and the note says why (no figure is made up)."""
    return {
        "trial_id": trial_id,
        "epochs": 0,
        "energy_j": None,
        "duration_s": wall_s,
        "energy_note": (
            f"{reason}: no energy booked: the worker was stopped {wall_s:.3g} s after "
            "its launch, before it recorded a window, and no completed trial of the "
            "study gives a power figure to estimate from"
        ),
        "killed": True,
    }


def _killed_training(
    windows: list[Any], estimated_j: float, uncovered_s: float, in_training: bool
) -> dict[str, Any]:
    """The training and evaluation parts of a killed trial: its recorded epochs' windows,
    with the uncovered time (the epoch in flight) counted as training once it had begun."""
    train_j = sum(float(w[1].energy_j) for w in windows if w[1] is not None)
    eval_j = sum(float(w[2].energy_j) for w in windows if w[2] is not None)
    train_s = sum(float(w[1].duration_s) for w in windows if w[1] is not None)
    eval_s = sum(float(w[2].duration_s) for w in windows if w[2] is not None)
    train_kinds = {str(w[1].provenance) for w in windows if w[1] is not None}
    if in_training:
        train_j += estimated_j
        train_s += uncovered_s
        if estimated_j > 0:
            train_kinds.add("estimated")
    return {
        "train_energy_j": train_j,
        "eval_energy_j": eval_j,
        "train_energy_kind": _provenance(train_kinds) if train_kinds else None,
        "train_duration_s": train_s,
        "eval_duration_s": eval_s,
    }


def _killed_note(
    reason: str,
    recorded_j: float,
    n_epochs: int,
    in_training: bool,
    estimated_j: float,
    uncovered_s: float,
    power_rule: str,
    power_w: float,
) -> str:
    """The ``energy_note`` of a killed trial: what was booked as recorded, what was estimated
    for the uncovered time, and at which power and by which rule."""
    return (
        f"{reason}: booked {recorded_j:.4g} J from {n_epochs} recorded epoch(s)"
        f"{' and the set-up window' if in_training else ''}, plus {estimated_j:.4g} J "
        f"estimated for {uncovered_s:.3g} s not covered by a recorded window "
        f"({'the epoch in flight, counted as training' if in_training else 'set-up'}) at "
        f"{power_rule}, {power_w:.3g} W"
    )


def killed_result(
    trial_id: str,
    definition: dict[str, Any],
    epochs: Sequence[Mapping[str, Any]],
    *,
    launched_at: float,
    ended_at: float,
    reason: str,
    fallback_power_w: float | None = None,
) -> dict[str, Any]:
    """The row of a trial whose worker was killed (time-out, signal, crash) before it could
    record its own end: what its recorded windows measured, plus an estimate for the rest.

    Booked: the set-up window (epoch 0) and every recorded epoch's windows, as measured (or
    estimated) by the worker's meter. Not covered by a recorded window: the time from the
    worker's launch (``launched_at``, seconds since the epoch) to its set-up window, when that
    was not recorded, and from the last recorded window to ``ended_at`` (the epoch in flight).
    That time is booked as ``estimated`` at the mean power of the recorded windows, or at
    ``fallback_power_w`` (the study's completed trials) when none was recorded; without
    either no energy is booked. The time after the last window goes to ``train_*`` once the
    set-up window was recorded (training had begun), to ``setup_*`` before. The rule and the
    figures are in ``energy_note``; with nothing recorded and no power figure, ``energy_j``
    is None and the note says why (no figure is made up).
    """
    setup, windows = _recorded(epochs)
    recorded = ([setup] if setup is not None else []) + [w[0] for w in windows]
    wall_s, uncovered_s = _killed_span(setup, recorded, launched_at, ended_at)
    power_w, power_rule = _killed_power(recorded, fallback_power_w)
    if power_w is None or not math.isfinite(power_w):
        if not recorded:  # nothing measured and nothing to scale from: no figure is made up
            return _unbooked_row(trial_id, reason, wall_s)
        power_w, power_rule = 0.0, "nothing (no power figure)"
    estimated_j = power_w * uncovered_s
    in_training = setup is not None
    split = _killed_training(windows, estimated_j, uncovered_s, in_training)
    recorded_j = sum(float(m.energy_j) for m in recorded)
    energy_j = recorded_j + estimated_j
    kinds = {str(m.provenance) for m in recorded}
    if estimated_j > 0:
        kinds.add("estimated")
    g_per_j = sum(float(m.co2_g) for m in recorded) / recorded_j if recorded_j > 0 else None
    note = _killed_note(
        reason, recorded_j, len(windows), in_training, estimated_j, uncovered_s, power_rule, power_w
    )
    sources = sorted({str(m.energy_source) for m in recorded})
    row: dict[str, Any] = {
        "trial_id": trial_id,
        "model": definition.get("model"),
        "dataset": definition.get("dataset"),
        "pretrained": definition.get("pretrained"),
        "fraction": definition.get("fraction"),
        "seed": definition.get("seed"),
        "epochs": len(windows),
        "epochs_planned": (definition.get("training") or {}).get("epochs"),
        "energy_j": energy_j,
        "train_energy_j": split["train_energy_j"],
        "eval_energy_j": split["eval_energy_j"],
        "setup_energy_j": max(0.0, energy_j - split["train_energy_j"] - split["eval_energy_j"]),
        "energy_kind": _provenance(kinds),
        "energy_source": "; ".join([*sources, f"estimate:killed-trial extrapolation ({reason})"]),
        "train_energy_kind": split["train_energy_kind"],
        "energy_note": note,
        "measured_energy_j": sum(float(m.measured_energy_j) for m in recorded),
        "estimated_energy_j": sum(float(m.estimated_energy_j) for m in recorded) + estimated_j,
        "co2_g": energy_j * g_per_j if g_per_j is not None else None,
        "duration_s": wall_s,
        "train_duration_s": split["train_duration_s"],
        "eval_duration_s": split["eval_duration_s"],
        "setup_duration_s": max(0.0, wall_s - split["train_duration_s"] - split["eval_duration_s"]),
        "killed": True,
    }
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
        if isinstance(result.get("attributed_components"), list):  # one cell, as JSON
            result["attributed_components"] = json.dumps(result["attributed_components"])
        row.update(result)
        # A tuner stores a trial it stopped early as finished ("complete") with pruned=True;
        # the export says "pruned", as Optuna, `study status` and the report do.
        pruned = trial.status == "complete" and result.get("pruned") is True
        row.update(
            status="pruned" if pruned else trial.status,
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

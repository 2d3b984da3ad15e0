"""A trial's energy split into training, evaluation and set-up; killed trials keep their energy;
one threads rule. Real training on digits through the real worker, tuner and factorial."""

from __future__ import annotations

import os
import signal
import sqlite3
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
import torch

from frugalml.errors import ConfigError
from frugalml.meter import ComponentEnergy, Measurement
from frugalml.study import COLUMNS, StudySpec, StudyStore, load_results, run_study
from frugalml.study._results import killed_result
from frugalml.train import DEFAULT_THREADS, apply_threads, check_threads, using_threads

TINY = {"name": "frugal_cnn", "args": {"conv_layers": 1, "width": 4}}
SPLIT = ("train", "eval", "setup")
NEW_COLUMNS = (
    "train_energy_j",
    "eval_energy_j",
    "setup_energy_j",
    "train_energy_kind",
    "train_energy_source",
    "energy_note",
    "train_co2_g",
    "train_duration_s",
    "eval_duration_s",
    "setup_duration_s",
    "train_peak_rss_bytes",
    "baseline_rss_bytes",
    "train_peak_gpu_mem_bytes",
    "threads",
)


def _spec(**changes: Any) -> StudySpec:
    data: dict[str, Any] = {
        "name": "split",
        "datasets": ["digits"],
        "models": [TINY],
        "pretrained": [False],
        "fractions": [1.0, 0.1],
        "seeds": [0],
        "training": {"epochs": 2, "batch_size": 32},
    }
    data.update(changes)
    return StudySpec.from_mapping(data)


def _assert_split(row: dict[str, Any]) -> None:
    """train + eval + setup is the trial's figure, for energy and time; set-up is real."""
    parts = [float(row[f"{p}_energy_j"]) for p in SPLIT]
    assert sum(parts) == pytest.approx(float(row["energy_j"]), rel=1e-9, abs=1e-9)
    times = [float(row[f"{p}_duration_s"]) for p in SPLIT]
    assert sum(times) == pytest.approx(float(row["duration_s"]), rel=1e-9, abs=1e-9)
    assert all(p >= 0 for p in parts + times)
    assert row["setup_energy_j"] > 0 and row["setup_duration_s"] > 0
    assert row["train_energy_j"] > 0 and row["eval_energy_j"] > 0
    assert row["train_energy_kind"] in ("measured", "estimated", "mixed")
    assert row["threads"] == 1


def _train_windows(records: list[dict[str, Any]], key: str = "train_measurement") -> float:
    return sum(r[key]["energy_j"] for r in records if r["epoch"] >= 1)


# -- the study worker, end to end ------------------------------------------------------------


@pytest.fixture(scope="module")
def study_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("split")
    outcome = run_study(_spec(), out)
    assert outcome.progress.complete == 2
    return out


def test_study_trials_split_their_energy_and_time(study_dir: Path) -> None:
    with StudyStore(study_dir, create=False) as store:
        rows = store.trials()
        epochs = {r.trial_id: store.epochs(r.trial_id) for r in rows}
    assert len(rows) == 2
    for row in rows:
        result = row.result
        assert result is not None
        _assert_split(result)
        records = epochs[row.trial_id]
        assert [r["epoch"] for r in records] == [0, 1, 2]  # set-up window, then the epochs
        # train_energy_j is exactly the epochs' training windows, eval_energy_j their eval ones
        assert result["train_energy_j"] == pytest.approx(_train_windows(records), rel=1e-12)
        assert result["eval_energy_j"] == pytest.approx(
            _train_windows(records, "eval_measurement"), rel=1e-12
        )
        # set-up holds at least the set-up window (data, model, cost counting)
        assert result["setup_energy_j"] >= records[0]["measurement"]["energy_j"] * (1 - 1e-9)
        # memory: the training's own peak above the process when training began, which the
        # epochs carry; the process before its set-up (lazy imports, data, model) is smaller
        assert result["baseline_rss_bytes"] == records[1]["baseline_rss_bytes"] > 0
        assert result["setup_start_rss_bytes"] <= result["baseline_rss_bytes"]
        assert 0 <= result["train_peak_rss_bytes"] < result["peak_rss_bytes"]
        peak = max(r["train_measurement"]["peak_rss_bytes"] for r in records[1:])
        assert result["train_peak_rss_bytes"] == max(0, peak - result["baseline_rss_bytes"])


def test_less_data_means_clearly_less_training_energy(study_dir: Path) -> None:
    frame = load_results(study_dir).set_index("fraction")
    full, tenth = frame.loc[1.0], frame.loc[0.1]
    # 1259 training images in 40 batches of 32 against 125 in 4: ten times the steps.
    assert int(full["train_samples"]) == 1259 and int(tenth["train_samples"]) < 130
    assert tenth["train_energy_j"] < 0.5 * full["train_energy_j"]
    # set-up (imports, data, model) does not shrink with the data: it is not in the ratio
    assert tenth["setup_energy_j"] > 0 and full["setup_energy_j"] > 0


def test_export_has_the_split_columns(study_dir: Path) -> None:
    assert set(NEW_COLUMNS) <= set(COLUMNS)
    assert COLUMNS.index("train_energy_j") < COLUMNS.index("energy_j")
    frame = load_results(study_dir)
    assert list(frame.columns[: len(COLUMNS)]) == list(COLUMNS)
    assert frame["train_energy_j"].notna().all() and frame["threads"].eq(1).all()


# -- killed trials -------------------------------------------------------------------------


def _m(name: str, start: float, duration_s: float, energy_j: float) -> dict[str, Any]:
    return Measurement(
        name=name,
        started_at=datetime.fromtimestamp(start, timezone.utc).isoformat(),
        duration_s=duration_s,
        cpu_time_s=duration_s,
        energy_j=energy_j,
        components=(ComponentEnergy("cpu", energy_j, "estimate:tdp*utilisation", "estimated"),),
        co2_g=energy_j * 1e-4,
        intensity_g_per_kwh=360.0,
        intensity_source="test",
        pue=1.0,
    ).to_dict()


def test_killed_result_books_the_recorded_windows_and_estimates_the_rest() -> None:
    # launched at t=1000; set-up window 1003-1005 (20 J); epoch 1 1005-1009 (40 J: training
    # 33 J in 3 s, evaluation 7 J in 1 s); killed at 1011. Recorded: 60 J in 6 s = 10 W, so
    # the 2 s since the last window are 20 J estimated, counted as training.
    epochs = [
        {"epoch": 0, "phase": "setup", "measurement": _m("trial setup", 1003, 2, 20)},
        {
            "epoch": 1,
            "measurement": _m("epoch 1", 1005, 4, 40),
            "train_measurement": _m("epoch 1 train", 1005, 3, 33),
            "eval_measurement": _m("epoch 1 eval", 1008, 1, 7),
        },
    ]
    definition = {"model": "m", "dataset": "digits", "training": {"epochs": 10}}
    row = killed_result(
        "t1", definition, epochs, launched_at=1000, ended_at=1011, reason="timed out after 8 s"
    )
    assert row is not None
    assert row["energy_j"] == pytest.approx(80.0)
    assert row["train_energy_j"] == pytest.approx(53.0)
    assert row["eval_energy_j"] == pytest.approx(7.0)
    assert row["setup_energy_j"] == pytest.approx(20.0)
    assert row["duration_s"] == pytest.approx(8.0)  # from the trial window on, as complete ones
    assert row["train_duration_s"] == pytest.approx(5.0)
    assert row["setup_duration_s"] == pytest.approx(2.0)
    assert row["estimated_energy_j"] == pytest.approx(80.0)  # this meter estimated, too
    assert row["energy_kind"] == "estimated" and row["epochs"] == 1
    assert row["co2_g"] == pytest.approx(80 * 1e-4)
    assert "timed out after 8 s" in row["energy_note"] and "20 J estimated" in row["energy_note"]
    assert "killed-trial extrapolation" in row["energy_source"]

    # killed while importing: nothing recorded, the study's completed trials give the power
    early = killed_result(
        "t2", definition, [], launched_at=1000, ended_at=1004, reason="r", fallback_power_w=5.0
    )
    assert early is not None
    assert early["energy_j"] == pytest.approx(20.0) and early["setup_energy_j"] == 20.0
    assert early["train_energy_j"] == 0 and early["energy_kind"] == "estimated"
    # and with no power figure at all, nothing is invented, and the note says so
    none = killed_result("t3", definition, [], launched_at=0, ended_at=4, reason="timed out")
    assert none["energy_j"] is None and none["duration_s"] == 4
    assert "no energy booked" in none["energy_note"]


def _worker_pid(db: Path) -> tuple[str, int] | None:
    conn = sqlite3.connect(db, timeout=10)
    try:
        row = conn.execute(
            "SELECT t.trial_id, t.worker_pid FROM trials t JOIN epochs e "
            "ON e.trial_id = t.trial_id WHERE t.status='running' AND e.epoch >= 1 LIMIT 1"
        ).fetchone()
    except sqlite3.OperationalError:  # the tables do not exist yet
        return None
    finally:
        conn.close()
    return (str(row[0]), int(row[1])) if row and row[1] else None


@pytest.mark.slow
def test_a_killed_trial_keeps_the_energy_it_spent(tmp_path: Path) -> None:
    spec = _spec(fractions=[1.0], training={"epochs": 400, "batch_size": 32})
    out = tmp_path / "out"
    errors: list[BaseException] = []

    def run() -> None:
        try:
            run_study(spec, out)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    deadline = time.monotonic() + 120
    found = None
    while found is None and time.monotonic() < deadline:
        time.sleep(0.1)
        if (out / "study.db").exists():
            found = _worker_pid(out / "study.db")
    if found is None:
        thread.join(timeout=600)
        pytest.fail("no epoch was recorded")
    trial_id, pid = found
    os.kill(pid, signal.SIGKILL)  # as the out-of-memory killer or a time-out would
    thread.join(timeout=120)
    assert not thread.is_alive() and not errors
    with StudyStore(out, create=False) as store:
        row = store.trial(trial_id)
        recorded = store.epochs(trial_id)
    assert row.status == "failed" and "SIGKILL" in (row.error or "")
    result = row.result
    assert result is not None and result["killed"] is True
    assert result["energy_j"] > 0 and result["epochs"] >= 1
    # what the recorded training windows measured is booked as it was, plus the epoch in flight
    assert result["train_energy_j"] >= _train_windows(recorded) * (1 - 1e-9)
    parts = sum(result[f"{p}_energy_j"] for p in SPLIT)
    assert parts == pytest.approx(result["energy_j"], rel=1e-9)
    assert "estimated" in result["energy_note"] and result["energy_kind"] in ("estimated", "mixed")
    # and totals count it
    frame = load_results(out)
    assert float(frame["energy_j"].sum()) == pytest.approx(result["energy_j"])


# -- the tuner and the factorial produce the same split ----------------------------------------


def test_tuner_trials_split_their_energy(tmp_path: Path) -> None:
    from frugalml.tune import TuneSpec, run_tune

    spec = TuneSpec.from_mapping(
        {
            "name": "t",
            "dataset": "digits",
            "fraction": 0.2,
            "model": TINY,
            "training": {"epochs": 2, "batch_size": 32},
            "search_space": {"lr": {"type": "float", "low": 1e-3, "high": 1e-2, "grid": [1e-2]}},
            "strategy": "grid",
        }
    )
    before = torch.get_num_threads()
    outcome = run_tune(spec, tmp_path, plot=False, warm_up=False)
    assert torch.get_num_threads() == before  # restored afterwards
    with StudyStore(tmp_path, create=False) as store:
        rows = store.trials()
        records = store.epochs(rows[0].trial_id)
    assert len(rows) == 1 and rows[0].result is not None
    _assert_split(rows[0].result)  # threads: the default, one
    summary = outcome.trials[0]  # the tuning record carries the training part, too
    assert summary.train_energy_j == pytest.approx(rows[0].result["train_energy_j"])
    assert summary.train_energy_j < summary.energy_j
    assert rows[0].result["train_energy_j"] == pytest.approx(_train_windows(records), rel=1e-12)


def test_factorial_trials_split_their_energy(tmp_path: Path) -> None:
    from frugalml.profile import FactorialConfig, run_factorial

    config = FactorialConfig(epochs=1, repeats=1, fraction=0.2, width=4, hidden=8, warmup=False)
    result = run_factorial(config, tmp_path)
    assert len(result.rows) == 8
    frame = load_results(tmp_path)
    for _, row in frame.iterrows():
        _assert_split(row.to_dict())


# -- one threads rule ------------------------------------------------------------------------


def test_one_threads_rule() -> None:
    assert DEFAULT_THREADS == 1
    before = torch.get_num_threads()
    try:
        with using_threads(None) as count:
            assert count == 1 == torch.get_num_threads()
            with using_threads(2) as inner:
                assert inner == 2 == torch.get_num_threads()
            assert torch.get_num_threads() == 1
        assert torch.get_num_threads() == before
        assert apply_threads(None) == 1 == torch.get_num_threads()
    finally:
        torch.set_num_threads(before)
    for bad in (0, -1, 1.5, True, "2"):
        with pytest.raises(ConfigError, match="at least 1"):
            check_threads(bad, option="--threads")


def test_profile_and_factorial_default_to_one_thread() -> None:
    from frugalml.profile import FactorialConfig, ProfileConfig

    assert ProfileConfig().threads is None and FactorialConfig().threads is None  # -> 1
    with pytest.raises(ConfigError, match="threads"):
        ProfileConfig(threads=0)
    with pytest.raises(ConfigError, match="threads"):
        FactorialConfig(threads=-2)


# -- the budget prediction ---------------------------------------------------------------------


def test_estimate_predicts_training_energy_and_the_total_with_setup() -> None:
    from frugalml.study._estimate import estimate_study

    estimate = estimate_study(_spec(), calibration_cap_s=10)
    assert len(estimate.trials) == 2 and estimate.threads == 1
    for t in estimate.trials:
        parts = t.train_energy_j + t.eval_energy_j + t.setup_energy_j
        assert parts == pytest.approx(t.energy_j, rel=1e-9)
        assert t.setup_duration_s > 0 and 0 < t.train_energy_j < t.energy_j
    full, tenth = estimate.trials
    # ceil(1259 / 32) = 40 steps an epoch against ceil(126 / 32) = 4, at the same timed step
    assert tenth.train_energy_j == pytest.approx(full.train_energy_j * 4 / 40, rel=1e-9)
    assert tenth.setup_energy_j == pytest.approx(full.setup_energy_j, rel=1e-9)
    assert estimate.total_train_energy_j == pytest.approx(
        sum(t.train_energy_j for t in estimate.trials)
    )
    assert estimate.total_energy_j == pytest.approx(
        estimate.total_train_energy_j + estimate.total_eval_energy_j + estimate.total_setup_energy_j
    )
    assert "fresh interpreter" in estimate.method and "PePR's resource" in estimate.method

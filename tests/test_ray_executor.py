"""The Ray executor on a real local Ray (``ray.init(num_cpus=2)``, shared by the module):
the same accuracies as the local executor, one row per trial, the driver alone writing the
store, a missing dataset failing its trial, a killed Ray worker retried once then failed (a
study's trial and a tuning trial's), and a driver killed with kill -9 resumed without
rerunning a complete trial."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from frugalml.study import StudySpec, StudyStore, export_csv, run_study
from study_specs import write_spec

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[Any]:
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def _spec(tmp_path: Path, **changes: Any) -> Path:
    return write_spec(
        tmp_path, **{"seeds": [0, 1], "training": {"epochs": 2, "batch_size": 64}, **changes}
    )


@pytest.mark.slow  # 8 real trials
def test_a_study_on_ray_matches_the_local_executor(tmp_path: Path, ray_cluster: Any) -> None:
    spec = StudySpec.from_yaml(_spec(tmp_path))
    local = run_study(spec, tmp_path / "local")
    remote = run_study(spec, tmp_path / "ray", executor="ray")
    assert local.progress.complete == remote.progress.complete == 4
    with (
        StudyStore(tmp_path / "local", read_only=True) as a,
        StudyStore(tmp_path / "ray", read_only=True) as b,
    ):
        here = {r.trial_id: r.result for r in a.trials()}
        there = {r.trial_id: r for r in b.trials()}
        epochs = b.epochs(next(iter(there)))
    for trial_id, result in here.items():
        row = there[trial_id]
        assert row.result is not None and result is not None
        assert row.result["accuracy"] == result["accuracy"]  # same seeds, same training
        assert row.result["executor"] == "ray"
        assert row.attempts == 1
    # the driver recorded the epochs the task brought back: set-up (0), then 1 and 2
    assert [e["epoch"] for e in epochs] == [0, 1, 2]
    assert export_csv(tmp_path / "ray", tmp_path / "ray.csv") == 4


@pytest.mark.slow
def test_a_missing_dataset_on_a_worker_fails_that_trial(tmp_path: Path, ray_cluster: Any) -> None:
    """The driver's dataset exists; the one the task is given does not (a worker node
    without the data): that trial fails, saying where and what is missing."""
    import dataclasses

    from frugalml.study._runner import StudyRunner

    spec = StudySpec.from_yaml(_spec(tmp_path, fractions=[1.0], seeds=[0]))
    out = tmp_path / "out"
    runner = StudyRunner(spec, out, executor="ray")
    real_trial = runner.store.trial

    def moved(trial_id: str) -> Any:
        row = real_trial(trial_id)
        if row.status == "running":  # what the driver hands to the Ray task
            definition = {**row.definition, "dataset": f"folder:{tmp_path / 'nowhere'}"}
            return dataclasses.replace(row, definition=definition)
        return row

    runner.store.trial = moved  # type: ignore[method-assign]
    runner.run()
    with StudyStore(out, read_only=True) as store:
        (row,) = store.trials()
    assert row.status == "failed"
    assert row.error is not None and row.error.startswith("on Ray node ")
    assert "nowhere" in row.error


def _kill_ray_trials(
    times: int, stop: threading.Event, killed: list[int], task: str = "frugalml_trial"
) -> None:
    """Kill the Ray worker process running a frugalml trial (the Ray task ``task``),
    ``times`` times."""
    while not stop.is_set() and len(killed) < times:
        for process in psutil.process_iter(["pid", "cmdline"]):
            cmdline = " ".join(process.info["cmdline"] or [])
            if f"ray::{task}" in cmdline and process.pid not in killed:
                try:
                    process.send_signal(signal.SIGKILL)
                except psutil.Error:
                    continue
                killed.append(process.pid)
                break
        time.sleep(0.2)


@pytest.mark.slow
@pytest.mark.parametrize("kills", [1, 2])
def test_a_ray_worker_killed_mid_trial_is_retried_once_then_failed(
    tmp_path: Path, ray_cluster: Any, kills: int
) -> None:
    spec = StudySpec.from_yaml(
        _spec(tmp_path, fractions=[1.0], seeds=[0], training={"epochs": 30, "batch_size": 64})
    )
    stop = threading.Event()
    killed: list[int] = []
    killer = threading.Thread(target=_kill_ray_trials, args=(kills, stop, killed))
    killer.start()
    try:
        run_study(spec, tmp_path / "out", executor="ray")
    finally:
        stop.set()
        killer.join()
    assert len(killed) == kills
    with StudyStore(tmp_path / "out", read_only=True) as store:
        (row,) = store.trials()
    if kills == 1:
        assert row.status == "complete"  # given back to Ray and run again
    else:
        assert row.status == "failed"
        assert row.error is not None and "its Ray worker died 2 times (retried once)" in row.error


@pytest.mark.slow
@pytest.mark.parametrize("kills", [1, 2])
def test_a_tune_trial_whose_ray_worker_is_killed_is_retried_once_then_failed(
    tmp_path: Path, ray_cluster: Any, kills: int
) -> None:
    """Tuning keeps the study's rule: the trial runs again once, then fails with the reason."""
    from frugalml.tune import TuneSpec, run_tune

    spec = TuneSpec.from_mapping(
        {
            "name": "t",
            "dataset": "digits",
            "model": {"name": "frugal_cnn", "args": {"conv_layers": 1, "width": 4}},
            "training": {"epochs": 30, "batch_size": 64},
            "search_space": {"lr": {"type": "categorical", "choices": [0.03]}},
            "strategy": "random",
            "budget": {"max_trials": 1},
        }
    )
    stop = threading.Event()
    killed: list[int] = []
    killer = threading.Thread(
        target=_kill_ray_trials, args=(kills, stop, killed, "frugalml_tune_trial")
    )
    killer.start()
    try:
        outcome = run_tune(spec, tmp_path / "out", threads=1, executor="ray")
    finally:
        stop.set()
        killer.join()
    assert len(killed) == kills and not outcome.interrupted
    (trial,) = outcome.trials
    with StudyStore(tmp_path / "out", read_only=True) as store:
        (row,) = store.trials()
        epochs = [e["epoch"] for e in store.epochs(row.trial_id)]
    assert row.result is not None
    if kills == 1:
        assert trial.state == "complete" and row.status == "complete"  # run again, once
        assert row.result["ray_attempts"] == 2 and epochs[-1] == 30
        assert "the energy of the attempt that died is not included" in row.result["energy_note"]
    else:
        assert trial.state == "failed" and row.status == "failed"
        assert row.error is not None and "its Ray worker died 2 times (retried once)" in row.error


def _count(db: Path, query: str) -> int:
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(db) as conn:
            return int(conn.execute(query).fetchone()[0])
    except sqlite3.OperationalError:
        return 0


@pytest.mark.slow  # two drivers, each starting its own local Ray
def test_a_driver_killed_minus_9_resumes_without_rerunning_a_complete_trial(
    tmp_path: Path,
) -> None:
    spec_path = _spec(tmp_path, seeds=[0], training={"epochs": 3, "batch_size": 64})
    out = tmp_path / "out"
    argv = [sys.executable, "-m", "frugalml", "study", "run", str(spec_path), "--out", str(out)]
    argv += ["--executor", "ray", "--workers", "1", "--no-report"]
    driver = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    db = out / "study.db"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        done = _count(db, "SELECT COUNT(*) FROM trials WHERE status='complete'")
        running = _count(db, "SELECT COUNT(*) FROM trials WHERE status='running'")
        if done >= 1 and running == 1:
            break
        time.sleep(0.1)
    else:
        driver.kill()
        pytest.fail("the study did not get going on Ray")
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    with StudyStore(out, read_only=True) as store:
        before = {r.trial_id: (r.status, r.finished_at) for r in store.trials()}
    result = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    with StudyStore(out, read_only=True) as store:
        rows = store.trials()
    assert [r.status for r in rows] == ["complete", "complete"]
    for row in rows:
        if before[row.trial_id][0] == "complete":
            assert row.attempts == 1 and row.finished_at == before[row.trial_id][1]
        else:
            assert row.attempts == 2  # the trial in flight ran again, once


def test_the_ray_executor_says_what_to_install_when_ray_is_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from frugalml.errors import ConfigError
    from frugalml.study._executors import import_ray

    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(ConfigError) as info:
        import_ray()
    assert "needs Ray" in str(info.value) and info.value.fix == "pip install 'frugalml[ray]'"


def test_a_trial_with_a_parallel_section_reserves_a_cpu_per_rank() -> None:
    """num_cpus = max(num_cpus, nproc) for nproc >= 2 ranks; GPUs as given; without a
    parallel: section (or with one rank) the spec's resources as they are."""
    from frugalml.study._executors import ExecutorConfig, trial_resources

    config = ExecutorConfig.from_mapping({"kind": "ray", "num_cpus": 1, "num_gpus": 0.5})
    assert trial_resources(config, {}) == {"num_cpus": 1.0, "num_gpus": 0.5}
    assert trial_resources(config, {"parallel": None})["num_cpus"] == 1.0
    assert trial_resources(config, {"parallel": {"nproc": 1}})["num_cpus"] == 1.0
    two = trial_resources(config, {"parallel": {"nproc": 2, "shares": [3, 1]}})
    assert two == {"num_cpus": 2.0, "num_gpus": 0.5}
    assert trial_resources(config, {"parallel": {"nproc": 4}})["num_cpus"] == 4.0
    wide = ExecutorConfig.from_mapping({"kind": "ray", "num_cpus": 6})
    assert trial_resources(wide, {"parallel": {"nproc": 4}})["num_cpus"] == 6.0  # more given
    small = ExecutorConfig.from_mapping({"kind": "ray", "num_cpus": 0.5})
    assert trial_resources(small, {})["num_cpus"] == 0.5  # a share of a CPU stays a share

"""The local executor's warm workers: trials forked from a parent that has imported torch,
one process per trial, with the same isolation (a segfault or an exhausted memory limit fails
that trial alone), the same parent-death rule, and the executor settings of a spec."""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

from frugalml.errors import ConfigError
from frugalml.study import StudySpec, StudyStore
from frugalml.study._executors import (
    TEST_FAULT_ENV,
    ExecutorConfig,
    LocalExecutor,
    _ForkedHandle,
    _PopenHandle,
)
from frugalml.study._runner import StudyRunner
from study_specs import write_spec


def _spec(tmp_path: Path, **changes: Any) -> Path:
    return write_spec(tmp_path, **changes)


def _run_with_handles(spec: StudySpec, out: Path) -> list[Any]:
    """Run the study; return the handle of every trial the runner started."""
    handles: list[Any] = []
    runner: StudyRunner

    def on_event(event: Any) -> None:
        if event.kind == "trial_started":
            handles.extend(s.handle for s in runner.running.values() if s.handle not in handles)

    runner = StudyRunner(spec, out, on_event=on_event)
    runner.run()
    return handles


@pytest.mark.slow  # real trials
@pytest.mark.parametrize("fault", ["segfault", "memory"])
def test_a_warm_trial_that_crashes_fails_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fault: str
) -> None:
    """The first trial's warm process segfaults (or runs out of address space under
    RLIMIT_AS) before training; it is failed with the reason, the second completes."""
    spec = StudySpec.from_yaml(_spec(tmp_path))
    first, second = (t.trial_id for t in spec.trials())
    monkeypatch.setenv(TEST_FAULT_ENV, f"{fault}@{first}")
    handles = _run_with_handles(spec, tmp_path / "out")
    assert len(handles) == 2 and all(isinstance(h, _ForkedHandle) for h in handles)
    with StudyStore(tmp_path / "out", read_only=True) as store:
        rows = {r.trial_id: r for r in store.trials()}
    assert rows[first].status == "failed"
    if fault == "segfault":
        assert rows[first].error == "worker killed by signal SIGSEGV"
    else:  # the worker records the failed allocation itself, or dies of it
        assert rows[first].error
    assert rows[second].status == "complete"
    assert rows[second].result is not None and rows[second].result["accuracy"] > 0


def test_the_warm_child_is_forked_from_the_forkserver_not_the_runner(tmp_path: Path) -> None:
    """Warm trials are children of the forkserver (which imported torch once); a chosen
    interpreter or warm: false gives the cold path, a fresh ``python -m`` per trial."""
    assert LocalExecutor().warm
    assert not LocalExecutor(warm=False).warm
    assert not LocalExecutor(python="/usr/bin/env").warm
    spec = StudySpec.from_yaml(_spec(tmp_path, fractions=[0.2]))
    handles = _run_with_handles(spec, tmp_path / "out")
    (handle,) = handles
    assert isinstance(handle, _ForkedHandle)
    from multiprocessing import forkserver

    server = forkserver._forkserver._forkserver_pid  # type: ignore[attr-defined]
    assert server is not None and server != os.getpid()
    assert "forkserver" in " ".join(psutil.Process(server).cmdline())
    assert psutil.Process(server).ppid() == os.getpid()
    with StudyStore(tmp_path / "out", read_only=True) as store:
        (row,) = store.trials()
    assert row.status == "complete"
    assert row.result is not None and row.result["process_overhead_s"] >= 0


def test_a_cold_executor_runs_a_trial_in_a_fresh_interpreter(tmp_path: Path) -> None:
    spec = StudySpec.from_yaml(
        _spec(tmp_path, fractions=[0.2], executor={"kind": "local", "warm": False})
    )
    handles = _run_with_handles(spec, tmp_path / "out")
    assert [type(h) for h in handles] == [_PopenHandle]
    with StudyStore(tmp_path / "out", read_only=True) as store:
        assert [r.status for r in store.trials()] == ["complete"]


@pytest.mark.slow  # a study in a subprocess
def test_a_warm_worker_dies_with_a_runner_killed_minus_9(tmp_path: Path) -> None:
    """kill -9 of the runner: the forkserver exits, and the warm worker with it
    (PR_SET_PDEATHSIG), so no orphan finishes a trial that a resume hands out again."""
    spec_path = _spec(tmp_path, fractions=[1.0], training={"epochs": 200, "batch_size": 64})
    out = tmp_path / "out"
    runner = subprocess.Popen(
        [sys.executable, "-m", "frugalml", "study", "run", str(spec_path), "--out", str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    worker_pid = None
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and worker_pid is None:
        time.sleep(0.2)
        if (out / "study.db").exists():
            with contextlib.suppress(sqlite3.OperationalError):  # until the schema exists
                with sqlite3.connect(out / "study.db") as conn:
                    found = conn.execute("SELECT worker_pid FROM trials").fetchone()
                if found and found[0]:
                    worker_pid = int(found[0])
    if worker_pid is None:
        runner.kill()
        pytest.fail("the study did not start its trial")
    assert psutil.Process(worker_pid).ppid() != runner.pid  # forked by the forkserver
    runner.send_signal(signal.SIGKILL)
    runner.wait()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and psutil.pid_exists(worker_pid):
        with_status = psutil.Process(worker_pid)
        if with_status.status() == psutil.STATUS_ZOMBIE:
            break
        time.sleep(0.1)
    assert not psutil.pid_exists(worker_pid) or (
        psutil.Process(worker_pid).status() == psutil.STATUS_ZOMBIE
    )


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ("ray", "mapping"),
        ({"kind": "dask"}, "kind 'dask' is unknown"),
        ({"kind": "ray", "num_gpus": -1}, "num_gpus must be a number of 0 or more"),
        ({"kind": "ray", "num_cpus": 0}, "both 0"),
        ({"kind": "ray", "cpus": 1}, "unknown executor key(s) cpus"),
        ({"warm": "yes"}, "warm must be true or false"),
    ],
)
def test_a_bad_executor_mapping_is_one_clear_error(value: Any, words: str) -> None:
    with pytest.raises(ConfigError) as info:
        ExecutorConfig.from_mapping(value)
    assert words in str(info.value)
    assert info.value.fix


def test_the_spec_keeps_its_executor_and_the_command_line_overrides_it(tmp_path: Path) -> None:
    spec = StudySpec.from_yaml(
        _spec(tmp_path, executor={"kind": "ray", "num_cpus": 0.5, "num_gpus": 0.25})
    )
    assert spec.executor == ExecutorConfig("ray", None, 0.5, 0.25, True)
    assert spec.to_dict()["executor"]["num_gpus"] == 0.25
    runner = StudyRunner(spec, tmp_path / "out", executor="local")
    assert runner.executor.kind == "local"
    runner.store.close()
    runner = StudyRunner(spec, tmp_path / "out2", address="auto")
    assert runner.executor_config.address == "auto" and runner.executor.kind == "ray"
    runner.store.close()
    with pytest.raises(ConfigError, match="--address is for the ray executor"):
        StudyRunner(StudySpec.from_yaml(_spec(tmp_path)), tmp_path / "out3", address="auto")


def test_the_command_line_refuses_an_address_without_ray_in_one_line(
    tmp_path: Path, capsys: Any
) -> None:
    from frugalml.cli import main

    spec = _spec(tmp_path)
    code = main(["study", "run", str(spec), "--out", str(tmp_path / "out"), "--address", "auto"])
    err = capsys.readouterr().err
    assert code == 2
    assert "--address is for the ray executor" in err and "fix: add --executor ray" in err
    assert "Traceback" not in err and not (tmp_path / "out").exists()

"""Faults around the study store: Ctrl-C while a worker starts, a full disk, a read-only
store, corrupt rows, and a second spec run into a directory that holds another."""

from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import pytest
import yaml

from frugalml.cli import main
from frugalml.errors import ConfigError, StoreError
from frugalml.study import StudySpec, StudyStore, load_results, run_study
from frugalml.study import _store as store_module

TINY = {"name": "frugal_cnn", "args": {"conv_layers": 1, "width": 4}}


def _spec_file(tmp_path: Path, name: str = "t", **changes: Any) -> Path:
    data: dict[str, Any] = {
        "name": name,
        "datasets": ["digits"],
        "models": [TINY],
        "pretrained": [False],
        "fractions": [0.2],
        "seeds": [0],
        "training": {"epochs": 1, "batch_size": 64},
    }
    data.update(changes)
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _filled_store(directory: Path) -> Path:
    """A store with three finished trials written through the store's own API."""
    with StudyStore(directory) as store:
        store.save_spec({"name": "s"})
        store.add_trials(
            [
                (f"t{i}", "s", f"model{i}", {"model": f"model{i}", "dataset": "digits"})
                for i in range(3)
            ]
        )
        for i in range(3):
            assert store.claim([f"t{i}"]) == f"t{i}"
            store.record_epoch(f"t{i}", 1, {"epoch": 1, "val_accuracy": 0.5})
            store.finish(
                f"t{i}",
                "complete",
                result={"accuracy": 0.5 + i / 10, "energy_j": 10.0 + i, "params": 100 * (i + 1)},
            )
    return directory / "study.db"


def _digest(directory: Path) -> dict[str, tuple[str, int]]:
    """Every file of the directory: its bytes' hash and mtime (nothing may change)."""
    return {
        p.name: (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
        for p in sorted(directory.iterdir())
        if p.is_file()
    }


# -- Ctrl-C while a worker is starting -------------------------------------------------------


@pytest.mark.slow  # real trials in worker processes
def test_ctrl_c_while_the_worker_imports_gives_the_trial_back(tmp_path: Path) -> None:
    """The real runner and worker: Ctrl-C lands right after the worker is spawned (before it
    has imported torch or installed its SIGTERM handler). The trial goes back to pending,
    and a plain resume runs it."""
    spec = StudySpec.from_yaml(_spec_file(tmp_path))
    out = tmp_path / "out"

    def interrupt(event: Any) -> None:
        if event.kind == "trial_started":
            raise KeyboardInterrupt

    outcome = run_study(spec, out, on_event=interrupt)
    assert outcome.interrupted
    with StudyStore(out, read_only=True) as store:
        rows = store.trials()
    assert [r.status for r in rows] == ["pending"]
    assert rows[0].error is None
    outcome = run_study(spec, out)
    assert outcome.progress.complete == 1 and outcome.progress.failed == 0


# -- a full disk -----------------------------------------------------------------------------


class _FullDisk:
    """An sqlite3 connection whose writes fail as SQLite fails on a full disk (SQLITE_FULL,
    'database or disk is full'); reads pass. Injected at the store's connection. ``only``:
    fail just the statements that start so (e.g. the claim's update)."""

    def __init__(self, conn: sqlite3.Connection, only: str | None = None) -> None:
        self._conn = conn
        self.only = only

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)

    def _check(self, sql: str) -> None:
        text = " ".join(sql.split())
        if self.only is not None:
            if text.startswith(self.only):
                raise sqlite3.OperationalError("database or disk is full")
            return
        if text.split(" ", 1)[0].upper() in {"INSERT", "UPDATE", "DELETE"}:
            raise sqlite3.OperationalError("database or disk is full")

    def execute(self, sql: str, *args: Any) -> Any:
        self._check(sql)
        return self._conn.execute(sql, *args)

    def executemany(self, sql: str, *args: Any) -> Any:
        self._check(sql)
        return self._conn.executemany(sql, *args)


def test_full_disk_is_a_store_error_and_the_store_keeps_its_rows(tmp_path: Path) -> None:
    db = _filled_store(tmp_path)
    store = StudyStore(tmp_path)
    store.add_trials([("t9", "s", "nine", {"model": "m"})])
    store._conn = _FullDisk(store._conn)  # type: ignore[assignment]
    with pytest.raises(StoreError, match="disk is full") as info:
        store.claim(["t9"])
    assert "free disk space" in str(info.value)
    with pytest.raises(StoreError, match="disk is full"):
        store.heartbeat(["t9"])
    store._conn = store._conn._conn  # type: ignore[attr-defined]
    assert store.trial("t9").status == "pending"  # the failed claim was rolled back
    store.close()
    with sqlite3.connect(db) as conn:
        assert (
            conn.execute("SELECT COUNT(*) FROM trials WHERE status='complete'").fetchone()[0] == 3
        )


@pytest.mark.slow  # real trials in worker processes
def test_full_disk_during_a_study_is_one_line_and_resumable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    """The runner's store fails its writes after the set-up (claim time): one line, exit 2,
    no traceback, no worker left; a rerun with the disk back finishes the study."""
    spec_path = _spec_file(tmp_path, fractions=[0.2, 0.1])
    out = tmp_path / "out"
    real_connect = StudyStore._connect

    def full_connect(self: StudyStore) -> Any:
        # the spec and the trials are written; the disk fills at the first claim
        return _FullDisk(real_connect(self), only="UPDATE trials SET status='running'")

    monkeypatch.setattr(StudyStore, "_connect", full_connect)
    code = main(["study", "run", str(spec_path), "--out", str(out), "--no-report"])
    err = capsys.readouterr().err
    assert code == 2
    lines = [line for line in err.splitlines() if "error" in line]
    assert len(lines) == 1 and "disk is full" in lines[0] and "free disk space" in lines[0]
    assert "Traceback" not in err
    monkeypatch.setattr(StudyStore, "_connect", real_connect)
    with StudyStore(out, read_only=True) as store:
        assert len(store.trials()) == 2
        assert store.counts()["complete"] == 0
    assert main(["study", "run", str(spec_path), "--out", str(out), "--no-report"]) == 0
    with StudyStore(out, read_only=True) as store:
        assert store.counts()["complete"] == 2


# -- read-only commands ----------------------------------------------------------------------


def test_read_only_commands_never_write_the_store(tmp_path: Path, capsys: Any) -> None:
    """status, export and report read the store through SQLite's read-only open and leave
    every file of the directory byte-for-byte and mtime unchanged. (Tests run as root, so a
    chmod would not stop a write; what this proves is that nothing is written and that the
    mode=ro path is the one used.)"""
    _filled_store(tmp_path / "s")
    study = tmp_path / "s"
    before = _digest(study)
    assert main(["study", "status", str(study)]) == 0
    assert main(["study", "export", str(study), "--csv", str(tmp_path / "x.csv")]) == 0
    assert main(["report", str(study), "-o", str(tmp_path / "r" / "r.html"), "--no-plots"]) == 0
    assert _digest(study) == before
    with StudyStore(study, read_only=True) as store:
        assert store.open_mode.startswith("mode=ro")
        with pytest.raises(StoreError, match="read-only"):
            store.save_spec({})
    assert _digest(study) == before


def test_a_foreign_sqlite_file_is_not_switched_to_wal(tmp_path: Path, capsys: Any) -> None:
    db = tmp_path / "study.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE notes (x TEXT)")
    conn.close()
    before = db.read_bytes()
    for argv in (["study", "status", str(tmp_path)], ["report", str(tmp_path)]):
        assert main(argv) == 2
        assert "not a frugalml study store" in capsys.readouterr().err
    assert StudyStore.__init__ is not None
    with pytest.raises(StoreError, match="not a frugalml study store"):
        StudyStore(tmp_path)  # a writable open refuses it before switching it to WAL
    assert db.read_bytes() == before
    assert not (tmp_path / "study.db-wal").exists()


def test_a_zero_byte_store_is_left_as_it_is(tmp_path: Path, capsys: Any) -> None:
    (tmp_path / "study.db").write_bytes(b"")
    for argv in (["study", "status", str(tmp_path)], ["report", str(tmp_path)]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert "empty file" in err and "backup" not in err
    assert (tmp_path / "study.db").read_bytes() == b""


def test_a_store_on_read_only_media_is_opened_immutable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where mode=ro cannot open a WAL store (no -shm, directory not writable), the store
    is opened immutable. SQLite's refusal is injected, since root can write anywhere."""
    _filled_store(tmp_path)
    (tmp_path / "study.db-wal").write_bytes(b"")  # as a killed writer may leave it
    real = sqlite3.connect
    tried: list[str] = []

    def connect(target: Any, *args: Any, **kwargs: Any) -> Any:
        tried.append(str(target))
        if "immutable" not in str(target):
            raise sqlite3.OperationalError("unable to open database file")
        return real(target, *args, **kwargs)

    monkeypatch.setattr(store_module.sqlite3, "connect", connect)
    with StudyStore(tmp_path, read_only=True) as store:
        assert store.open_mode == "mode=ro&immutable=1"
        assert len(store.trials()) == 3
    assert len(tried) == 2


# -- corrupt rows ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sql", "named"),
    [
        ("UPDATE trials SET result_json='{not json' WHERE trial_id='t1'", "t1"),
        ("UPDATE trials SET definition_json='[1, 2]' WHERE trial_id='t1'", "t1"),
        ("UPDATE trials SET result_json='{\"energy_j\": \"lots\"}' WHERE trial_id='t2'", "t2"),
        ("UPDATE trials SET position='first' WHERE trial_id='t0'", "t0"),
        ("UPDATE trials SET status='done' WHERE trial_id='t2'", "t2"),
    ],
)
def test_a_corrupt_row_is_named_and_the_rest_is_read(
    tmp_path: Path, capsys: Any, sql: str, named: str
) -> None:
    db = _filled_store(tmp_path)
    with sqlite3.connect(db) as conn:
        conn.execute(sql)
    conn.close()
    frame = load_results(tmp_path)
    assert len(frame) == 2 and named not in set(frame["trial_id"])
    warnings = frame.attrs["store_warnings"]
    assert len(warnings) == 1 and f"trial {named}" in warnings[0]
    capsys.readouterr()
    assert main(["study", "status", str(tmp_path)]) == 0
    captured = capsys.readouterr()
    assert f"trial {named}" in captured.err and "Traceback" not in captured.err
    assert main(["study", "export", str(tmp_path), "--csv", str(tmp_path / "x.csv")]) == 0
    assert f"trial {named}" in capsys.readouterr().err
    assert main(["report", str(tmp_path), "-o", str(tmp_path / "r" / "report.html")]) == 0
    assert f"trial {named}" in capsys.readouterr().err


def test_a_bad_schema_version_and_a_missing_table_are_one_line(tmp_path: Path, capsys: Any) -> None:
    db = _filled_store(tmp_path / "a")
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE meta SET value='one' WHERE key='schema_version'")
    conn.close()
    assert main(["study", "status", str(tmp_path / "a")]) == 2
    assert "schema version 'one'" in capsys.readouterr().err
    db = _filled_store(tmp_path / "b")
    with sqlite3.connect(db) as conn:
        conn.execute("DROP TABLE epochs")
    conn.close()
    with StudyStore(tmp_path / "b", read_only=True) as store:
        assert len(store.trials()) == 3 and store.epochs("t0") == []
        assert any("epochs" in w for w in store.warnings)
    with pytest.raises(StoreError, match="epochs"):
        StudyStore(tmp_path / "b")  # a writer refuses a damaged store
    db = _filled_store(tmp_path / "c")
    with sqlite3.connect(db) as conn:
        conn.execute("DROP TABLE trials")
    conn.close()
    assert main(["study", "status", str(tmp_path / "c")]) == 2
    assert "'trials' table is missing" in capsys.readouterr().err


# -- a second spec into a directory ----------------------------------------------------------


@pytest.mark.slow  # real trials in worker processes
def test_another_spec_into_an_existing_out_is_refused_unless_added(
    tmp_path: Path, capsys: Any
) -> None:
    out = tmp_path / "out"
    first = StudySpec.from_yaml(_spec_file(tmp_path, "a"))
    assert run_study(first, out).progress.complete == 1
    before = _digest(out)
    second = _spec_file(tmp_path, "b", seeds=[1])
    assert main(["study", "run", str(second), "--out", str(out), "--no-report"]) == 2
    err = capsys.readouterr().err
    assert "would merge" in err and "--add" in err and "Traceback" not in err
    assert _digest(out) == before
    # the same spec again (a resume) is not refused
    assert run_study(first, out).new_trials == 0
    with pytest.raises(ConfigError, match="would merge"):
        run_study(StudySpec.from_yaml(second), out)
    outcome = run_study(StudySpec.from_yaml(second), out, add=True)
    assert outcome.new_trials == 1
    with StudyStore(out, read_only=True) as store:
        assert store.counts()["complete"] == 2


def test_a_study_into_a_tuning_directory_is_refused(tmp_path: Path, capsys: Any) -> None:
    out = tmp_path / "tune"
    with StudyStore(out) as store:
        store.save_spec({"kind": "tune", "name": "x"})
    shutil.copy(out / "study.db", tmp_path / "copy.db")
    code = main(["study", "run", str(_spec_file(tmp_path)), "--out", str(out), "--add"])
    assert code == 2
    assert "holds a tuning run" in capsys.readouterr().err
    with StudyStore(out, read_only=True) as store:
        assert store.trials() == [] and json.dumps(store.latest_spec()) == json.dumps(
            {"kind": "tune", "name": "x"}
        )


def _tune_spec(name: str) -> Any:
    from frugalml.tune import TuneSpec

    return TuneSpec.from_mapping(
        {
            "name": name,
            "dataset": "digits",
            "fraction": 0.2,
            "model": TINY,
            "training": {"epochs": 1, "batch_size": 32},
            "search_space": {"lr": {"type": "float", "low": 1e-3, "high": 3e-2, "log": True}},
            "strategy": "random",
            "budget": {"max_trials": 1},
        }
    )


@pytest.mark.slow  # real trials in worker processes
def test_tuning_into_a_study_or_another_tuning_directory_is_refused(tmp_path: Path) -> None:
    from frugalml.tune import run_tune

    study = tmp_path / "study"
    _filled_store(study)
    before = _digest(study)
    with pytest.raises(ConfigError, match="holds a study"):
        run_tune(_tune_spec("a"), study, threads=1)
    after = _digest(study)
    after.pop(".tune.lock", None)  # the tuner's directory lock, taken before the check
    assert after == before  # the store untouched, and no optuna.db
    tune = tmp_path / "tune"
    assert sum(run_tune(_tune_spec("a"), tune, threads=1).counts().values()) == 1
    before = _digest(tune)
    with pytest.raises(ConfigError, match="holds the tuning study 'a'"):
        run_tune(_tune_spec("b"), tune, threads=1)
    after = _digest(tune)
    after.pop(".tune.lock"), before.pop(".tune.lock")  # the lock is taken before the check
    assert after == before


@pytest.mark.slow  # real trials in worker processes
def test_a_store_failure_with_a_worker_running_stops_it_and_gives_the_trial_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The disk fills just after a worker started (recording its pid): the runner stops
    that worker (no child process left), gives its trial back and raises one StoreError."""
    import psutil

    spec = StudySpec.from_yaml(_spec_file(tmp_path))
    out = tmp_path / "out"
    real_connect = StudyStore._connect

    def full_connect(self: StudyStore) -> Any:
        return _FullDisk(real_connect(self), only="UPDATE trials SET worker_pid")

    monkeypatch.setattr(StudyStore, "_connect", full_connect)
    with pytest.raises(StoreError, match="disk is full"):
        run_study(spec, out)
    monkeypatch.setattr(StudyStore, "_connect", real_connect)
    alive = [c for c in psutil.Process().children(recursive=True) if c.is_running()]
    assert not [c for c in alive if "frugalml.study._worker" in " ".join(c.cmdline())]
    with StudyStore(out, read_only=True) as store:
        assert [r.status for r in store.trials()] == ["pending"]


def test_a_worker_whose_store_fills_gives_its_trial_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    """The worker's own code, in this process: the disk fills when the first epoch is
    recorded. The store failed, not the trial: it goes back to pending (exit 130), not to
    failed, so a plain resume runs it."""
    from frugalml.study._worker import EXIT_INTERRUPTED, run_trial

    spec = StudySpec.from_yaml(_spec_file(tmp_path))
    trial = spec.trials()[0]
    with StudyStore(tmp_path / "out") as store:
        extra = {"carbon": {}, "data_root": None, "download": spec.download}
        store.add_trials([(trial.trial_id, trial.study, trial.label, {**trial.to_dict(), **extra})])
        assert store.claim([trial.trial_id]) == trial.trial_id
    real_connect = StudyStore._connect

    def full_connect(self: StudyStore) -> Any:
        return _FullDisk(real_connect(self), only="INSERT OR REPLACE INTO epochs")

    import torch

    threads = torch.get_num_threads()
    monkeypatch.setattr(StudyStore, "_connect", full_connect)
    try:
        code = run_trial(str(tmp_path / "out" / "study.db"), trial.trial_id, 1, 0.0)
    finally:
        torch.set_num_threads(threads)  # run_trial sets the process's threads
    monkeypatch.setattr(StudyStore, "_connect", real_connect)
    assert code == EXIT_INTERRUPTED
    assert "given back" in capsys.readouterr().err
    with StudyStore(tmp_path / "out", read_only=True) as store:
        row = store.trial(trial.trial_id)
    assert row.status == "pending" and row.error is None

"""Studies end to end: specs, the store, isolation, resume after kill -9, concurrency, budget."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from frugalml.cli import main
from frugalml.errors import ConfigError, ModelError, StoreError
from frugalml.study import COLUMNS, StudySpec, StudyStore, load_results, run_study
from study_specs import TINY, write_spec


def _spec(tmp_path: Path, **changes: Any) -> Path:
    return write_spec(tmp_path, **changes)


# -- specs ----------------------------------------------------------------------------------


def test_spec_expands_into_every_combination(tmp_path: Path) -> None:
    spec = StudySpec.from_yaml(
        _spec(tmp_path, models=[TINY, "frugal_mlp"], seeds=[0, 1], pretrained=[False])
    )
    trials = spec.trials()
    assert len(trials) == 1 * 2 * 1 * 2 * 2
    assert len({t.trial_id for t in trials}) == len(trials)
    again = StudySpec.from_yaml(_spec(tmp_path, models=[TINY, "frugal_mlp"], seeds=[0, 1]))
    assert [t.trial_id for t in again.trials()] == [t.trial_id for t in trials]


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("name: t\ndatasets: [digits\n", "not valid YAML"),
        ("- just\n- a list\n", "mapping"),
        ("name: t\ndatasets: [digits]\nmodels: [frugal_cnn]\nfractons: [0.1]\n", "fractons"),
        ("name: t\ndatasets: [digits]\nmodels: [frugal_cnn]\nfractions: [1.5]\n", "outside (0, 1]"),
        ("name: t\ndatasets: [digits]\nmodels: [frugal_cnn]\nfractions: [0]\n", "outside (0, 1]"),
        (
            "name: t\ndatasets: [digits]\nmodels: [frugal_cnn]\npretrained: [yes please]\n",
            "true or false",
        ),
        ("name: t\ndatasets: [digits]\nmodels: [frugal_cnn]\nseeds: [-1]\n", "seeds"),
        ("name: t\ndatasets: [digits]\nmodels: [frugal_cnn]\ntraining: {epochs: 0}\n", "epochs"),
        ("name: t\ndatasets: [digits]\nmodels: [frugal_cnn]\nbudget: {energy_kwh: -1}\n", "budget"),
        ("name: t\ndatasets: [imagenet]\nmodels: [frugal_cnn]\n", "imagenet"),
        ("name: t\nmodels: [frugal_cnn]\n", "datasets"),
        ("name: 'bad name!'\ndatasets: [digits]\nmodels: [frugal_cnn]\n", "name"),
    ],
)
def test_bad_specs_get_one_clear_message(
    tmp_path: Path, text: str, words: str, capsys: Any
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=words.replace("(", r"\(").replace(")", r"\)")):
        StudySpec.from_yaml(path)
    assert main(["study", "validate", "--no-calibrate", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("frugalml: error:") and "Traceback" not in err


def test_unknown_model_is_named_with_a_suggestion(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="resnet181"):
        StudySpec.from_yaml(_spec(tmp_path, models=["resnet181"]))


def test_validate_predicts_energy_and_time(tmp_path: Path, capsys: Any) -> None:
    assert main(["study", "validate", str(_spec(tmp_path))]) == 0
    out = capsys.readouterr().out
    assert "2 trials" in out and "predicted total" in out and "how:" in out


# -- running --------------------------------------------------------------------------------


def test_study_runs_records_and_exports(tmp_path: Path, capsys: Any) -> None:
    out = tmp_path / "out"
    code = main(["study", "run", str(_spec(tmp_path)), "--out", str(out), "--no-report"])
    assert code == 0
    frame = load_results(out)
    assert list(frame.columns[: len(COLUMNS)]) == list(COLUMNS)
    assert len(frame) == 2 and set(frame["status"]) == {"complete"}
    assert frame["energy_j"].gt(0).all() and frame["duration_s"].gt(0).all()
    assert set(frame["energy_kind"]) <= {"measured", "estimated", "mixed"}
    assert frame["params"].gt(0).all() and frame["flops_per_sample"].gt(0).all()
    assert frame["accuracy"].between(0, 1).all()
    small = frame[frame["fraction"] == 0.2]
    assert int(small["train_samples"].iloc[0]) < int(
        frame[frame["fraction"] == 1.0]["train_samples"].iloc[0]
    )
    with StudyStore(out) as store:
        for row in store.trials():
            # epoch 0 is the set-up window (for booking a killed trial), then the epochs
            records = store.epochs(row.trial_id)
            assert [r["epoch"] for r in records] == [0, 1]
            assert records[0]["phase"] == "setup" and records[0]["measurement"]["energy_j"] > 0
    csv_path = tmp_path / "x" / "results.csv"
    assert main(["study", "export", str(out), "--csv", str(csv_path)]) == 0
    exported = pd.read_csv(csv_path)
    assert len(exported) == 2 and "energy_source" in exported.columns
    # A rerun resumes: nothing is trained twice.
    assert main(["study", "run", str(_spec(tmp_path)), "--out", str(out), "--no-report"]) == 0
    with StudyStore(out) as store:
        assert [r.attempts for r in store.trials()] == [1, 1]
    assert main(["study", "status", str(out)]) == 0
    assert "complete 2" in capsys.readouterr().out


def test_a_failing_trial_fails_alone(tmp_path: Path) -> None:
    # timm's test_vit cuts 16x16 patches: digits' 8x8 images make it fail inside the worker.
    spec = StudySpec.from_yaml(_spec(tmp_path, models=[TINY, "test_vit"], fractions=[1.0]))
    outcome = run_study(spec, tmp_path / "out")
    frame = load_results(tmp_path / "out")
    assert outcome.progress.complete == 1 and outcome.progress.failed == 1
    failed = frame[frame["status"] == "failed"].iloc[0]
    assert failed["model"] == "test_vit" and "patch size" in failed["error"]
    assert failed["energy_j"] > 0  # what the failed trial spent is kept


def test_a_trial_past_its_time_limit_fails_with_that_reason(tmp_path: Path) -> None:
    # 300 epochs: a warm trial (forked with torch already imported) can finish one epoch
    # inside 0.5 s, so the trial must be long enough that the limit always ends it
    training = {"epochs": 300, "batch_size": 64}
    spec = StudySpec.from_yaml(
        _spec(tmp_path, fractions=[1.0], trial_timeout_s=0.5, training=training)
    )
    run_study(spec, tmp_path / "out")
    frame = load_results(tmp_path / "out")
    assert frame["status"].tolist() == ["failed"]
    assert "timed out" in frame["error"].iloc[0]
    # killed before its result: no completed trial to scale from, so no energy is made up
    # for what was not measured, and the row says so
    assert bool(frame["killed"].iloc[0]) and "timed out" in frame["energy_note"].iloc[0]


def test_budget_stops_launching_and_says_why(tmp_path: Path) -> None:
    spec = StudySpec.from_yaml(
        _spec(tmp_path, fractions=[1.0, 0.5, 0.2], budget={"duration_s": 0.001})
    )
    outcome = run_study(spec, tmp_path / "out")
    assert outcome.budget_stopped and "budget" in (outcome.budget_reason or "")
    assert outcome.progress.complete == 1 and outcome.progress.pending == 2


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "frugalml", *args]


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _count(db: Path, query: str) -> int:
    """A count from a study store that another process is writing; 0 until the store and
    its tables exist (the file appears a moment before the schema is committed)."""
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(db) as conn:
            return int(conn.execute(query).fetchone()[0])
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            return 0
        raise


def test_kill_minus_9_loses_only_the_trial_in_flight_and_resume_finishes(tmp_path: Path) -> None:
    spec_path = _spec(tmp_path, fractions=[1.0, 0.5, 0.3, 0.2])
    out = tmp_path / "out"
    process = subprocess.Popen(
        _cli("study", "run", str(spec_path), "--out", str(out), "--no-report"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    db = out / "study.db"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        done = _count(db, "SELECT COUNT(*) FROM trials WHERE status='complete'")
        running = _count(db, "SELECT COUNT(*) FROM trials WHERE status='running'")
        if done >= 1 and running == 1:
            break
        time.sleep(0.1)
    else:
        process.kill()
        pytest.fail("the study did not get going")
    process.send_signal(signal.SIGKILL)
    process.wait()
    with StudyStore(out) as store:
        before = {r.trial_id: r.status for r in store.trials()}
    assert list(before.values()).count("complete") >= 1
    result = subprocess.run(
        _cli("study", "run", str(spec_path), "--out", str(out), "--no-report"),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    with StudyStore(out) as store:
        rows = store.trials()
    assert [r.status for r in rows] == ["complete"] * 4
    for row in rows:
        if before[row.trial_id] == "complete":
            assert row.attempts == 1  # kept, not rerun
        assert row.attempts <= 2


def test_ctrl_c_stops_cleanly_and_a_rerun_resumes(tmp_path: Path) -> None:
    spec_path = _spec(tmp_path, fractions=[1.0, 0.5, 0.3], training={"epochs": 3})
    out = tmp_path / "out"
    # Ctrl-C as a terminal sends it: SIGINT handled by default in the child, even when this
    # test runs in a background job (a shell then starts it with SIGINT ignored, which the
    # child would inherit, and Python then installs no KeyboardInterrupt handler)
    process = subprocess.Popen(
        _cli("study", "run", str(spec_path), "--out", str(out), "--no-report"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_default_sigint,
    )
    db = out / "study.db"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if _count(db, "SELECT COUNT(*) FROM epochs") >= 1:  # a worker is inside a trial
            break
        time.sleep(0.05)
    else:
        process.kill()
        pytest.fail("the study did not get going")
    assert process.poll() is None, "the study ended before it could be interrupted"
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    with StudyStore(out) as store:
        statuses = [r.status for r in store.trials()]
    assert "running" not in statuses  # the trial in flight was given back
    assert statuses.count("complete") < 3
    result = subprocess.run(
        _cli("study", "run", str(spec_path), "--out", str(out), "--no-report"),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    with StudyStore(out) as store:
        assert [r.status for r in store.trials()] == ["complete"] * 3


def test_two_runs_on_one_directory_never_run_a_trial_twice(tmp_path: Path) -> None:
    spec_path = _spec(tmp_path, fractions=[1.0, 0.5, 0.3, 0.2])
    out = tmp_path / "out"
    runs = [
        subprocess.Popen(
            _cli("study", "run", str(spec_path), "--out", str(out), "--no-report"),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    for run in runs:
        _, err = run.communicate(timeout=300)
        assert run.returncode == 0, err
    with StudyStore(out) as store:
        rows = store.trials()
    assert len(rows) == 4
    assert all(r.status == "complete" and r.attempts == 1 for r in rows)


# -- the store ------------------------------------------------------------------------------


def test_corrupt_store_is_a_clear_error(tmp_path: Path, capsys: Any) -> None:
    (tmp_path / "study.db").write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match="not a readable"):
        StudyStore(tmp_path)
    assert main(["study", "status", str(tmp_path)]) == 2
    assert "not a readable" in capsys.readouterr().err


def test_store_of_another_schema_version_is_refused_and_kept(tmp_path: Path) -> None:
    with StudyStore(tmp_path) as store:
        store.add_trials([("abc", "t", "label", {"model": "m"})])
    with sqlite3.connect(tmp_path / "study.db") as conn:
        conn.execute("UPDATE meta SET value='99' WHERE key='schema_version'")
    with pytest.raises(StoreError, match="schema 99"):
        StudyStore(tmp_path)
    with sqlite3.connect(tmp_path / "study.db") as conn:
        assert conn.execute("SELECT COUNT(*) FROM trials").fetchone()[0] == 1


def test_status_of_a_directory_without_a_store(tmp_path: Path, capsys: Any) -> None:
    assert main(["study", "status", str(tmp_path)]) == 2
    assert "no study store" in capsys.readouterr().err
    assert not (tmp_path / "study.db").exists()


def test_claims_are_exclusive(tmp_path: Path) -> None:
    a, b = StudyStore(tmp_path), StudyStore(tmp_path)
    a.add_trials([("t1", "s", "one", {}), ("t2", "s", "two", {})])
    assert a.claim(["t1", "t2"]) == "t1"
    assert b.claim(["t1", "t2"]) == "t2"
    assert a.claim(["t1", "t2"]) is None
    a.close()
    b.close()


def test_running_trial_of_a_dead_process_is_claimed_again(tmp_path: Path) -> None:
    store = StudyStore(tmp_path)
    store.add_trials([("t1", "s", "one", {})])
    assert store.claim(["t1"]) == "t1"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    with store.transaction() as conn:
        conn.execute(
            "UPDATE trials SET owner=? WHERE trial_id='t1'",
            (f"{os.uname().nodename}:{dead.pid}:?",),
        )
    assert store.claim(["t1"]) == "t1"
    assert store.trial("t1").attempts == 2
    store.close()

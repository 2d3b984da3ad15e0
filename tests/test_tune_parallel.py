"""Tuning with several trials in flight (``tune --parallel N``), local processes and Ray.

Real digits, the real trainer, meter, Optuna and study store; each trial in its own process
(the warm forkserver locally, a Ray task on ``ray.init(num_cpus=2)`` shared by the module).
The driver alone writes the stores; pruning decisions travel from it to the trials.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import optuna
import pytest
import yaml
from optuna.trial import TrialState

from frugalml.cli import main
from frugalml.study import StudyStore
from frugalml.study._runner import NOT_ATTRIBUTED_RAY
from frugalml.tune import TuneSpec, load_study, run_tune
from frugalml.tune._planning import CostPrediction
from frugalml.tune._spec import TuneBudget

TINY = {"name": "frugal_cnn", "args": {"conv_layers": 1, "width": 4}}


def _data(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": "p",
        "dataset": "digits",
        "fraction": 0.2,
        "model": TINY,
        "training": {"epochs": 1, "batch_size": 32},
        "search_space": {
            "lr": {"type": "float", "low": 1e-3, "high": 3e-2, "log": True},
            "batch_size": {"type": "categorical", "choices": [16, 32]},
        },
        "strategy": "random",
        "budget": {"max_trials": 3},
    }
    data.update(changes)
    return data


def _write(tmp_path: Path, **changes: Any) -> Path:
    path = tmp_path / "tune.yaml"
    path.write_text(yaml.safe_dump(_data(**changes)))
    return path


def _pruning_data() -> dict[str, Any]:
    """Three epochs; a learning rate of 1e-7 learns nothing, so once a good trial has
    completed, a 1e-7 trial is below the median at epoch 1 and must be pruned there."""
    return _data(
        training={"epochs": 3, "batch_size": 16},
        search_space={"lr": {"type": "categorical", "choices": [0.03, 1e-7]}},
        pruner={"type": "median", "n_startup_trials": 1, "n_warmup_steps": 0},
        budget={"max_trials": 4},
    )


def _enqueue(out: Path, *lrs: float) -> None:
    out.mkdir(parents=True, exist_ok=True)
    study = optuna.create_study(
        storage=f"sqlite:///{out / 'optuna.db'}", study_name="p", direction="maximize"
    )
    for lr in lrs:
        study.enqueue_trial({"lr": lr})


def _rows(out: Path) -> list[Any]:
    with StudyStore(out, read_only=True) as store:
        return list(store.trials())


def test_parallel_2_local_runs_the_budgets_trials_once_each(tmp_path: Path) -> None:
    out = tmp_path / "out"
    code = main(["-q", "tune", str(_write(tmp_path)), "--out", str(out), "--parallel", "2"])
    assert code == 0
    study = load_study(out)
    # exactly the budget's three trials were asked for and ran (none asked beyond it)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 3
    rows = _rows(out)
    assert len(rows) == 3 and {r.status for r in rows} == {"complete"}
    for row in rows:
        assert row.result is not None
        assert row.result["concurrent_workers"] == 2 and row.result["executor"] == "local"
        assert "2 trials ran at once" in row.result["energy_note"]
        assert row.result["energy_j"] > 0 and row.result["tune_state"] == "complete"
        assert row.log_path is not None and Path(row.log_path).is_file()
        with StudyStore(out, read_only=True) as store:
            assert [e["epoch"] for e in store.epochs(row.trial_id)] == [1]
    summary = json.loads((out / "tuning_summary.json").read_text())
    assert any("trials ran at once" in note for note in summary["notes"])


@pytest.mark.slow
def test_parallel_local_prunes_from_the_driver(tmp_path: Path) -> None:
    out = tmp_path / "out"
    _enqueue(out, 0.03, 0.03, 1e-7, 1e-7)
    outcome = run_tune(TuneSpec.from_mapping(_pruning_data()), out, threads=1, parallel=2)
    assert sum(t.counted for t in outcome.trials) == 4
    pruned = [t for t in outcome.trials if t.state == "pruned"]
    assert pruned, [(t.params, t.state, t.epochs) for t in outcome.trials]
    for trial in pruned:
        assert trial.params["lr"] == 1e-7 and trial.epochs < 3
        assert trial.energy_j > 0 and math.isfinite(trial.energy_j)  # kept what it spent
    rows = {r.trial_id: r for r in _rows(out)}
    row = rows[pruned[0].store_trial_id or ""]
    assert row.result is not None and row.result["pruned"] is True
    assert "median pruner at epoch" in row.result["stop_reason"]


def test_parallel_2_attributes_the_shared_package_as_a_study_does(
    tmp_path: Path, meter_powercap: Any, meter_no_nvml: None
) -> None:
    """The study runner's host attribution, in tuning: a fake 50 W package (the vendor
    boundary, as tests/test_study_attribution.py fakes it) split between two trials in flight
    by their CPU time; never more than the tree gave, and all of it while a trial ran."""
    from datetime import datetime

    from frugalml.study._runner import ATTRIBUTION_RULE_PUBLISHED
    from test_study_attribution import PACKAGE, POWER_W, SteadyPower

    meter_powercap.zone(PACKAGE, "package-0", energy_uj=0)
    spec = TuneSpec.from_mapping(_data(budget={"max_trials": 2}))
    with SteadyPower(meter_powercap, POWER_W) as power:
        outcome = run_tune(spec, tmp_path / "out", threads=1, parallel=2, plot=False)
        tree_j = power.read_j()
    assert sum(t.counted for t in outcome.trials) == 2
    windows: list[tuple[float, float]] = []
    attributed_j = 0.0
    for row in _rows(tmp_path / "out"):
        result = row.result
        assert result is not None and result["attributed_energy_kind"] == "attributed"
        assert result["attributed_energy_source"] == "rapl:powercap share:cpu_time"
        assert result["attribution_rule"] == ATTRIBUTION_RULE_PUBLISHED
        # the trial's own meter read its published share, not the package (one reader)
        kinds = {c["component"]: c["kind"] for c in result["measurement"]["components"]}
        assert kinds["cpu:0"] == "attributed", kinds  # DRAM has no zone here: estimated
        assert result["energy_j"] <= result["attributed_energy_j"] * (1 + 1e-9)
        (component,) = result["attributed_components"]
        assert component["component"] == "cpu:0" and component["kind"] == "attributed"
        assert 0 < result["attributed_energy_j"] == pytest.approx(component["energy_j"])
        attributed_j += result["attributed_energy_j"]
        window = result["measurement"]  # the trial's own meter's window
        start = datetime.fromisoformat(window["started_at"]).timestamp()
        windows.append((start, start + window["duration_s"]))
    # each trial's own window lies inside its stay on the sampler (launch to outcome), so the
    # package's energy over the union of the windows was all given out; and never more than
    # the tree counted over the whole run
    covered_s, end = 0.0, -math.inf
    for a, b in sorted(windows):
        covered_s += max(0.0, b - max(a, end))
        end = max(end, b)
    print(
        f"attributed {attributed_j:.2f} J, windows {POWER_W * covered_s:.2f} J, tree {tree_j:.2f} J"
    )
    assert POWER_W * covered_s * 0.99 <= attributed_j <= tree_j


@pytest.mark.slow
def test_max_trials_counts_trials_in_flight(tmp_path: Path) -> None:
    """Four slots, a budget of three trials: three are asked for and run, never a fourth."""
    out = tmp_path / "out"
    in_flight: list[int] = []
    running: set[int] = set()

    def watch(event: Any) -> None:
        if event.kind == "trial_started":
            running.add(event.trial_number)
            in_flight.append(len(running))
        elif event.kind == "trial_finished":
            running.discard(event.trial_number)

    outcome = run_tune(TuneSpec.from_mapping(_data()), out, threads=1, parallel=4, on_event=watch)
    assert len(load_study(out).trials) == 3 and outcome.new_trials == 3
    assert max(in_flight) <= 3 and len(_rows(out)) == 3
    assert "max_trials reached: 3 of 3" in outcome.stop_reason


def test_a_resource_budget_counts_the_predicted_cost_of_trials_in_flight() -> None:
    from frugalml.tune._parallel import in_flight_stop

    budget = TuneBudget(energy_kwh=450 / 3.6e6)
    per_trial = CostPrediction(200.0, 0.0, 1.0, "mean per epoch")
    # 100 J spent, nothing in flight: the next 200 J trial fits under 450 J
    assert in_flight_stop(budget, (100.0, 0.0, 0.0), [], per_trial) is None
    # one trial in flight predicted at 200 J: 100 + 200 + 200 > 450, the launch waits
    reason = in_flight_stop(budget, (100.0, 0.0, 0.0), [per_trial], per_trial)
    assert reason is not None and "energy budget" in reason and "1 trial(s) in flight" in reason


@pytest.mark.slow
def test_ctrl_c_gives_the_trials_in_flight_back(tmp_path: Path) -> None:
    out = tmp_path / "out"
    spec = TuneSpec.from_mapping(_data(training={"epochs": 3, "batch_size": 16}))

    def interrupt(event: Any) -> None:
        if event.kind == "epoch":
            raise KeyboardInterrupt

    outcome = run_tune(spec, out, threads=1, parallel=2, on_event=interrupt)
    assert outcome.interrupted
    study = load_study(out)
    assert not study.get_trials(states=(TrialState.RUNNING,))
    # the trials in flight went back (interrupted or queued again), none counted as run
    given_back = [t for t in outcome.trials if t.state in ("interrupted", "waiting")]
    assert given_back and not any(t.counted for t in outcome.trials)
    assert all(r.status != "running" for r in _rows(out))
    again = run_tune(spec, out, threads=1, parallel=2)  # the rerun runs what was given back
    assert not again.interrupted and sum(t.counted for t in again.trials) == 3
    retried = {json.dumps(t.params, sort_keys=True) for t in again.trials if t.counted}
    assert {json.dumps(t.params, sort_keys=True) for t in given_back} <= retried


def test_parallel_1_on_the_local_executor_stays_in_process(tmp_path: Path) -> None:
    from frugalml.tune import Tuner

    spec = TuneSpec.from_mapping(_data())
    one = Tuner(spec, tmp_path / "a", parallel=1)
    assert not one.runs_apart and one.warm_up  # the in-process loop, as before
    two = Tuner(spec, tmp_path / "b", parallel=2)
    assert two.runs_apart and not two.warm_up
    keys = _data(workers=3, executor={"kind": "local", "warm": False})
    from_spec = Tuner(TuneSpec.from_mapping(keys), tmp_path / "c")
    assert from_spec.parallel == 3 and from_spec.executor.warm is False
    overridden = Tuner(from_spec.spec, tmp_path / "d", parallel=1, executor="local")
    assert not overridden.runs_apart


@pytest.mark.slow
def test_a_killed_trial_process_fails_alone_and_keeps_its_recorded_energy(tmp_path: Path) -> None:
    import os
    import signal

    import psutil

    out = tmp_path / "out"
    spec = TuneSpec.from_mapping(_data(training={"epochs": 3, "batch_size": 16}))
    killed: list[int] = []

    def kill_one(event: Any) -> None:
        if event.kind != "epoch" or killed:
            return
        servers = [c for c in psutil.Process().children() if "forkserver" in " ".join(c.cmdline())]
        trials = sorted((t for s in servers for t in s.children()), key=lambda t: t.create_time())
        if trials:  # the oldest: the trial whose epoch this most likely is
            killed.append(trials[0].pid)
            os.kill(trials[0].pid, signal.SIGKILL)

    outcome = run_tune(spec, out, threads=1, parallel=2, on_event=kill_one)
    assert killed and not outcome.interrupted
    states = sorted(t.state for t in outcome.trials)
    assert states == ["complete", "complete", "failed"], states
    rows = [r for r in _rows(out) if r.status == "failed"]
    assert len(rows) == 1 and rows[0].error is not None
    assert "ended without a result (signal SIGKILL)" in rows[0].error
    result = rows[0].result
    assert result is not None and result["killed"] is True
    assert result["energy_j"] > 0 and "booked" in result["energy_note"]  # its recorded windows


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--parallel", "0"], "--parallel must be"),
        (["--address", "auto"], "--address is for the ray executor"),
    ],
)
def test_bad_parallel_options_are_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], needle: str
) -> None:
    out = tmp_path / "out"
    assert main(["-q", "tune", str(_write(tmp_path)), "--out", str(out), *args]) == 2
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err
    assert not out.exists()


def test_a_tune_spec_with_a_parallel_section_says_workers_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A study's parallel: (ranks per trial) is not a tuning key; workers: N is, and
    --parallel overrides it."""
    out = tmp_path / "out"
    spec = _write(tmp_path, parallel={"nproc": 2})
    assert main(["-q", "tune", str(spec), "--out", str(out), "--parallel", "2"]) == 2
    err = capsys.readouterr().err
    assert "tuning runs trials in flight with workers: N" in err
    assert "ranks per trial" in err and "not supported for tuning" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) <= 2  # error, fix
    assert not out.exists()
    from frugalml.tune import Tuner

    workers = TuneSpec.from_mapping(_data(workers=2))
    assert workers.workers == 2 and workers.to_dict()["workers"] == 2
    assert Tuner(workers, tmp_path / "a", parallel=3).parallel == 3  # --parallel wins


# -- Ray --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[Any]:
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.mark.slow  # Ray's start-up and four three-epoch trials
def test_tune_on_ray_parallel_2_prunes_from_the_driver(tmp_path: Path, ray_cluster: Any) -> None:
    out = tmp_path / "out"
    _enqueue(out, 0.03, 0.03, 1e-7, 1e-7)
    spec_path = tmp_path / "tune.yaml"
    spec_path.write_text(yaml.safe_dump(_pruning_data()))
    argv = ["-q", "tune", str(spec_path), "--out", str(out), "--executor", "ray"]
    assert main([*argv, "--parallel", "2"]) == 0
    study = load_study(out)
    states = [t.state for t in study.trials]
    assert len(states) == 4 and TrialState.RUNNING not in states
    assert states.count(TrialState.PRUNED) > 0, states
    rows = _rows(out)
    assert len(rows) == 4
    for row in rows:
        assert row.result is not None and row.result["executor"] == "ray"
        assert row.result["concurrent_workers"] == 2
        assert row.result["attribution_rule"] == NOT_ATTRIBUTED_RAY  # says why not
        assert row.result["attributed_energy_j"] is None
        with StudyStore(out, read_only=True) as store:
            epochs = [e["epoch"] for e in store.epochs(row.trial_id)]
        if row.result["pruned"]:
            assert row.definition["training"]["lr"] == 1e-7
            assert epochs == list(range(1, len(epochs) + 1)) and len(epochs) < 3
            assert row.result["energy_j"] > 0  # a pruned trial keeps the energy it spent
        else:
            assert epochs == [1, 2, 3]

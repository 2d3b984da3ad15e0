"""A study with two trials in flight on one machine: its shared counter is attributed.

Only the vendor boundary is faked: a powercap tree in tmp_path (FRUGALML_POWERCAP_ROOT,
read by the study's host sampler, the one reader), whose package-0 counter a background
thread raises at a steady 50 W, and pynvml made unavailable. The trials are real warm
worker processes training tiny digits models; the runner's one host sampler splits every
interval of the package's energy between them by their process-tree CPU time and publishes
each trial's share, which the trial's own meter reads instead of the counters.
"""

from __future__ import annotations

import json
import random
import threading
import time
from pathlib import Path
from types import TracebackType

import pytest

from frugalml.meter import TrialUsage, attribute, split_energy
from frugalml.study import StudyEvent, StudySpec, load_results, run_study
from frugalml.study._runner import (
    ATTRIBUTION_INTERVAL_S,
    ATTRIBUTION_RULE_PUBLISHED,
    NOT_ATTRIBUTED_NO_COUNTERS,
)
from meter_fixtures import PowercapTree
from study_specs import TINY, write_spec

PACKAGE = "intel-rapl:0"
POWER_W = 50.0


class SteadyPower:
    """Raises the fake package counter at ``watts`` from a background thread."""

    def __init__(self, tree: PowercapTree, watts: float) -> None:
        self.tree = tree
        self.watts = watts
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        start = time.monotonic()
        while not self._stop.wait(0.002):
            self.tree.set(PACKAGE, round((time.monotonic() - start) * self.watts * 1e6))

    def read_j(self) -> float:
        return int((self.tree.root / PACKAGE / "energy_uj").read_text()) / 1e6

    def __enter__(self) -> SteadyPower:
        self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        self._thread.join(10)


def test_shares_of_a_window_add_up_to_its_energy_never_more() -> None:
    rng = random.Random(0)
    for _ in range(2000):
        energy = {c: rng.uniform(0, 500) * 10 ** rng.randint(-4, 2) for c in ("cpu:0", "dram:0")}
        usage = {
            f"t{i}": TrialUsage(cpu_s=rng.choice([0.0, rng.random(), rng.uniform(0, 1e-3)]))
            for i in range(rng.randint(1, 5))
        }
        shares = attribute(energy, usage)
        for component, joules in energy.items():
            given = sum(s[component].energy_j for s in shares.values())
            assert given <= joules  # never more, not even by a rounding
            assert given == pytest.approx(joules, rel=1e-12)
            assert all(s[component].energy_j >= 0 for s in shares.values())
    parts = split_energy(0.3, {"a": 0.1, "b": 0.2, "c": 0.7})
    assert sum(parts.values()) <= 0.3


#: The heavier trial: a wider, deeper model on the same data.
HEAVY = {"name": "frugal_cnn", "args": {"conv_layers": 3, "width": 64}}


def _spec(tmp_path: Path) -> StudySpec:
    return StudySpec.from_yaml(
        write_spec(
            tmp_path,
            models=[TINY, HEAVY],
            fractions=[1.0],
            training={"epochs": 3, "batch_size": 32},
        )
    )


def test_two_trials_in_flight_share_the_package_by_their_cpu_time(
    tmp_path: Path, meter_powercap: PowercapTree, meter_no_nvml: None
) -> None:
    meter_powercap.zone(PACKAGE, "package-0", energy_uj=0)
    meter_powercap.zone(f"{PACKAGE}:0", "dram", energy_uj=0)  # covered: no DRAM estimate
    tree_j: dict[str, float] = {}
    seen_t: dict[tuple[str, str], float] = {}
    with SteadyPower(meter_powercap, POWER_W) as power:

        def on_event(event: StudyEvent) -> None:
            # the first trial's start (just after it joined the sampler), the last one's end
            # (just after it left), and the study's start and end around them
            if event.kind != "trial_started" or event.kind not in tree_j:
                tree_j[event.kind] = power.read_j()
            if event.trial is not None:  # each trial's stay, a few store writes outward
                seen_t[(event.kind, event.trial.trial_id)] = time.monotonic()

        outcome = run_study(_spec(tmp_path), tmp_path / "out", workers=2, on_event=on_event)
    assert outcome.progress.complete == 2
    frame = load_results(tmp_path / "out")
    by_width = {json.loads(r["model_args"])["width"]: r for _, r in frame.iterrows()}
    heavy, light = by_width[HEAVY["args"]["width"]], by_width[TINY["args"]["width"]]
    for row in (heavy, light):
        stay_s = (
            seen_t[("trial_finished", row["trial_id"])] - seen_t[("trial_started", row["trial_id"])]
        )
        assert row["attributed_energy_kind"] == "attributed"
        assert row["attributed_energy_source"] == "rapl:powercap share:cpu_time"
        assert row["attribution_rule"] == ATTRIBUTION_RULE_PUBLISHED
        components = {c["component"]: c for c in json.loads(row["attributed_components"])}
        assert set(components) == {"cpu:0", "dram:0"}
        assert all(c["kind"] == "attributed" for c in components.values())
        assert sum(c["energy_j"] for c in components.values()) == pytest.approx(
            row["attributed_energy_j"]
        )
        assert "process-tree CPU time" in components["cpu:0"]["notes"][0]
        # the trial's own meter read its published share, not the counters
        assert row["energy_kind"] == row["train_energy_kind"] == "attributed"
        assert "share:cpu_time" in row["energy_source"]
        assert row["measured_energy_j"] == 0 and row["estimated_energy_j"] == 0
        # its windows lie inside its stay on the sampler: never more than it was given, and
        # what they miss is at most the whole package's power over the stay's time outside
        # them (its process's start and exit), give or take a sampler interval at each edge
        assert row["energy_j"] <= row["attributed_energy_j"] * (1 + 1e-9)
        outside_s = stay_s - row["duration_s"] + 2 * ATTRIBUTION_INTERVAL_S
        assert row["attributed_energy_j"] - row["energy_j"] <= POWER_W * outside_s
        windows_j = row["train_energy_j"] + row["eval_energy_j"] + row["setup_energy_j"]
        assert windows_j == pytest.approx(row["energy_j"])
    assert not list((tmp_path / "out" / "attribution").iterdir())  # removed when reaped
    attributed_j = float(heavy["attributed_energy_j"] + light["attributed_energy_j"])
    # by construction: every interval the sampler read while a trial ran is split among the
    # trials in it, to the joule; what it read while none ran is given to no one
    read_j = outcome.host_counter_j["cpu:0"] - outcome.unattributed_j.get("cpu:0", 0.0)
    assert attributed_j == pytest.approx(read_j, rel=1e-9)
    # the tree's energy between the first trial's start and the last one's end (each read a
    # few store writes after the sampler's own reading); the study's start and end (the
    # forkserver's warm-up, before any trial ran, included) bound it
    tree_delta_j = tree_j["trial_finished"] - tree_j["trial_started"]
    own_j = float(heavy["energy_j"] + light["energy_j"])
    print(
        f"attributed {attributed_j:.2f} J, tree {tree_delta_j:.2f} J, sampler {read_j:.2f} J, "
        f"trials' own meters {own_j:.2f} J ({own_j / read_j:.3f} of the sampler's); "
        + "; ".join(
            f"{f}: attributed {r['attributed_energy_j']:.1f} J, own {r['energy_j']:.1f} J "
            f"(train {r['train_energy_j']:.1f}, eval {r['eval_energy_j']:.1f}, set-up "
            f"{r['setup_energy_j']:.1f}), cpu {r['cpu_time_s']:.2f} s, {r['duration_s']:.2f} s, "
            f"process overhead {r['process_overhead_s']:.2f} s"
            for f, r in (("heavy", heavy), ("light", light))
        )
    )
    assert attributed_j == pytest.approx(tree_delta_j, rel=0.01)
    assert attributed_j <= tree_j["finished"] - tree_j["started"]
    # the trials' own windows (set-up, epochs, evaluation) add up to no more than the
    # counter measured over their stay; the rest is their processes' start and exit (outside
    # any window), within the sampler's interval at each edge
    assert own_j <= read_j * (1 + 1e-9)
    # shares follow CPU time: the heavier trial used more CPU and was given more
    assert heavy["cpu_time_s"] > light["cpu_time_s"]
    assert heavy["attributed_energy_j"] > light["attributed_energy_j"]
    assert heavy["energy_j"] > light["energy_j"]


def test_without_shared_counters_nothing_is_attributed_and_the_record_says_so(
    tmp_path: Path, meter_no_powercap: Path, meter_no_nvml: None
) -> None:
    spec = StudySpec.from_yaml(write_spec(tmp_path, fractions=[0.2], seeds=[0, 1]))
    outcome = run_study(spec, tmp_path / "out", workers=2)
    assert outcome.progress.complete == 2 and outcome.host_counter_j == {}
    frame = load_results(tmp_path / "out")
    assert list(frame["attribution_rule"]) == [NOT_ATTRIBUTED_NO_COUNTERS] * 2
    assert frame["attributed_energy_j"].isna().all()
    assert frame["energy_j"].notna().all()  # the trials' own (estimated) energy is kept


def test_merge_result_adds_fields_and_keeps_every_other_one(tmp_path: Path) -> None:
    from frugalml.study import StudyStore

    with StudyStore(tmp_path) as store:
        store.add_trials([("a", "s", "A", {}), ("b", "s", "B", {})])
        assert store.claim(["a", "b"]) == "a"
        recorded = {"energy_j": 12.5, "energy_kind": "measured", "accuracy": 0.9}
        store.finish("a", "complete", result=recorded)
        assert store.merge_result("a", {"attributed_energy_j": 7.0, "attribution_rule": "r"})
        assert store.trial("a").result == {
            **recorded,
            "attributed_energy_j": 7.0,
            "attribution_rule": "r",
        }
        assert store.trial("a").status == "complete"
        assert not store.merge_result("b", {"attributed_energy_j": 1.0})  # no result yet
        assert store.trial("b").result is None

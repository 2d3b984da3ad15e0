"""A trial's attributed share read from the file its host sampler publishes (issue 10).

The host sampler reads a fake powercap tree (the vendor boundary) for every trial and
publishes each trial's cumulative shares; a trial's meter over
:class:`PublishedShareBackend` opens no counter, books attributed windows, and books nothing
(unmeasured, with a note) while the file is missing, corrupt or stale.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import pytest

from frugalml.meter import HostSampler, Meter, MeterConfig, ProcessTreeSampler
from frugalml.meter._published import (
    PublishedShareBackend,
    published_meter_backends,
    write_published,
)
from frugalml.testing import BackendCase, EnergyBackendContract
from meter_fixtures import Cpu, FakeClock, PowercapTree, spend, zones

NO_GPU = MeterConfig(gpus="none")


def _by_component(backend: PublishedShareBackend) -> dict[str, float]:
    return {r.component: r.energy_j for r in backend.read()}


def test_the_sampler_publishes_each_trial_and_the_trial_reads_its_share(
    tmp_path: Path, meter_powercap: PowercapTree
) -> None:
    zones(meter_powercap)
    clock, total = FakeClock(), [0.0]
    a, b = Cpu(), Cpu()
    folder = tmp_path / "attribution"
    folder.mkdir()
    path_a, path_b = folder / "a.json", folder / "b.json"
    with HostSampler(NO_GPU, clock=clock, thread=False, interval_s=0.1) as sampler:
        sampler.join("a", cpu_time=a, publish=path_a)
        sampler.join("b", cpu_time=b, publish=path_b)
        # published at the join: the trial knows its counters before any energy is spent
        share_a = PublishedShareBackend(path_a, clock=clock, wait_s=0)
        share_b = PublishedShareBackend(path_b, clock=clock, wait_s=0)
        assert share_a.failure is None
        assert share_a.capabilities.kind == "attributed"
        assert set(share_a.capabilities.devices) == {"cpu", "dram"}
        assert _by_component(share_a) == {"cpu:0": 0.0, "dram:0": 0.0}
        spend(meter_powercap, clock, 40.0, total)
        a.s, b.s = a.s + 3.0, b.s + 1.0  # 3:1 -> a 30 J of the package, 7.5 J of DRAM
        sampler.tick()
        got_a, got_b = _by_component(share_a), _by_component(share_b)
        assert got_a == pytest.approx({"cpu:0": 30.0, "dram:0": 7.5})
        assert got_b == pytest.approx({"cpu:0": 10.0, "dram:0": 2.5})
        # the sampler's own view and the published one agree to the joule
        assert {c.component: c.energy_j for c in sampler.leave("a")} == pytest.approx(got_a)
        sampler.leave("b")
    reading = share_a.read()[0]
    assert reading.kind == "attributed"
    assert reading.source == "rapl:powercap share:cpu_time"
    assert "process-tree CPU time" in reading.notes[0]
    assert any("accurate to that interval" in n and "0.1 s" in n for n in reading.notes)
    # atomic: tmp file then os.replace, nothing partial left behind
    assert sorted(p.name for p in folder.iterdir()) == ["a.json", "b.json"]
    assert json.loads(path_a.read_text())["state"] == "left"
    # the trial left the sampler: from here on its reader books nothing, and says why
    share_a.read()
    assert share_a.failure is not None and "ended" in share_a.failure


def test_a_meter_over_published_shares_gives_attributed_windows_that_add_up(
    tmp_path: Path, meter_powercap: PowercapTree
) -> None:
    zones(meter_powercap)
    clock, total = FakeClock(), [0.0]
    a, b = Cpu(), Cpu()
    with HostSampler(NO_GPU, clock=clock, thread=False) as sampler:
        for name, cpu in (("a", a), ("b", b)):
            sampler.join(name, cpu_time=cpu, publish=tmp_path / f"{name}.json")
        meters = {}
        for name in ("a", "b"):
            process = ProcessTreeSampler(clock=clock)
            backends = published_meter_backends(tmp_path / f"{name}.json", NO_GPU, process, clock)
            assert [x.name for x in backends] == ["attributed"]  # CPU and DRAM are covered
            meters[name] = Meter(NO_GPU, backends=backends, process=process, clock=clock).start()
        with contextlib.ExitStack() as stack:
            windows = {n: stack.enter_context(m.window("trial")) for n, m in meters.items()}
            spend(meter_powercap, clock, 20.0, total)
            a.s, b.s = a.s + 1.0, b.s + 1.0
            sampler.tick()
        for meter in meters.values():
            meter.close()
        for name in ("a", "b"):
            sampler.leave(name)
    measured = {n: w.measurement for n, w in windows.items()}
    assert all(m is not None and m.provenance == "attributed" for m in measured.values())
    total_j = sum(m.energy_j for m in measured.values() if m is not None)
    assert total_j == pytest.approx(25.0)  # the package's 20 J and the DRAM's 5 J, once
    assert total_j <= 25.0 + 1e-9


def test_a_missing_file_is_a_failure_of_attribution_never_energy(
    tmp_path: Path, meter_powercap: PowercapTree
) -> None:
    clock = FakeClock()
    path = tmp_path / "attribution" / "t.json"
    share = PublishedShareBackend(path, clock=clock, wait_s=0)
    assert share.failure is not None and "missing" in share.failure
    clock.advance(2.0)
    (reading,) = share.read()
    assert reading.energy_j == 0.0 and reading.kind == "attributed"
    assert reading.unmeasured_s == pytest.approx(2.0)
    assert "attribution failed" in reading.notes[0] and str(path) in reading.notes[0]
    assert reading.faults and "missing" in reading.faults[0].note
    # the meter states it: its estimate covers the CPU and DRAM and says attribution failed
    process = ProcessTreeSampler(clock=clock)
    backends = published_meter_backends(path, NO_GPU, process, clock, wait_s=0)
    assert backends[0].name == "attributed" and len(backends) > 1
    assert any(b.capabilities.kind == "estimated" for b in backends[1:])


def test_a_corrupt_or_stale_file_books_nothing_until_it_is_good_again(
    tmp_path: Path, meter_powercap: PowercapTree
) -> None:
    zones(meter_powercap)
    clock, total = FakeClock(), [0.0]
    path = tmp_path / "t.json"
    with HostSampler(NO_GPU, clock=clock, thread=False) as sampler:
        sampler.join("t", cpu_time=Cpu(), publish=path)
        share = PublishedShareBackend(path, clock=clock, wait_s=0)
        spend(meter_powercap, clock, 8.0, total)  # t alone: all of it
        sampler.tick()
        assert _by_component(share) == pytest.approx({"cpu:0": 8.0, "dram:0": 2.0})
        path.write_text("{not json")
        clock.advance(1.0)
        assert _by_component(share) == pytest.approx({"cpu:0": 8.0, "dram:0": 2.0})
        assert share.failure is not None and "corrupt" in share.failure
        (cpu, _) = share.read()
        assert cpu.unmeasured_s == pytest.approx(1.0)
        spend(meter_powercap, clock, 12.0, total)
        sampler.tick()  # good again: what was given meanwhile (12 J) is not booked
        assert _by_component(share) == pytest.approx({"cpu:0": 8.0, "dram:0": 2.0})
        assert share.failure is None
        spend(meter_powercap, clock, 4.0, total)
        sampler.tick()
        assert _by_component(share) == pytest.approx({"cpu:0": 12.0, "dram:0": 3.0})
        data = json.loads(path.read_text())
        data["written_t"] -= 3600.0  # the sampler stopped publishing an hour ago
        write_back = path.with_name("stale.partial")
        write_back.write_text(json.dumps(data))
        write_back.replace(path)
        share.read()
        assert share.failure is not None and "stale" in share.failure
        sampler.leave("t")


def test_write_published_replaces_the_file_whole(tmp_path: Path) -> None:
    path = tmp_path / "t.json"
    write_published(path, [], trial="t", interval_s=0.1)
    first = json.loads(path.read_text())
    assert first["components"] == [] and first["state"] == "running"
    write_published(path, [], trial="t", interval_s=0.1, state="left")
    assert json.loads(path.read_text())["state"] == "left"
    assert [p.name for p in tmp_path.iterdir()] == ["t.json"]


class TestPublishedShare(EnergyBackendContract):
    """A trial's published share of a host sampler over a fake powercap tree, read in what
    would be the trial's process, beside another trial."""

    def make_case(self, request: pytest.FixtureRequest) -> BackendCase:
        tree: PowercapTree = request.getfixturevalue("meter_powercap")
        zones(tree)
        folder: Path = request.getfixturevalue("tmp_path") / "attribution"
        folder.mkdir()
        clock = FakeClock()
        sampler = HostSampler(NO_GPU, clock=clock, thread=False).start()
        request.addfinalizer(sampler.close)
        cpu = {"mine": 0.0, "other": 0.0}
        sampler.join("other", cpu_time=lambda: cpu["other"])
        sampler.join("mine", cpu_time=lambda: cpu["mine"], publish=folder / "mine.json")
        share = PublishedShareBackend(folder / "mine.json", clock=clock, wait_s=0)
        total = [0.0]

        def drive() -> None:
            spend(tree, clock, 5.0, total)
            cpu["mine"] += 0.3
            cpu["other"] += 0.1
            sampler.tick()

        return BackendCase(share, drive)

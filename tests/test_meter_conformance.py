"""One contract, every backend: NVML counter, NVML power sampling, RAPL and the estimate.

A backend reports, per component, non-negative cumulative joules that never decrease, with
a provenance label and a source; the set of components is stable; ``close()`` can be called
twice and freezes the figures.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

import meter_fixtures
from frugalml.meter import EnergyBackend, EstimateBackend, ProcessTreeSampler
from frugalml.meter._estimate import cpu_power_model
from frugalml.meter._nvml import open_nvml
from frugalml.meter._rapl import RaplBackend, discover_rapl
from meter_fixtures import UUID_A, FakeClock, FakeGpu, FakeNvml, PowercapTree

meter_fake_nvml = meter_fixtures.meter_fake_nvml
meter_powercap = meter_fixtures.meter_powercap


@dataclass
class Case:
    backend: EnergyBackend
    drive: Callable[[], None]  # advance the hardware (or burn real CPU)
    kind: str


def _nvml_counter(request: pytest.FixtureRequest) -> Case:
    fake: FakeNvml = request.getfixturevalue("meter_fake_nvml")
    gpu = FakeGpu(UUID_A, energy_mj=10_000)
    fake.gpus.append(gpu)
    backend, probe = open_nvml(None)
    assert backend is not None, probe.reason

    def drive() -> None:
        gpu.energy_mj = (gpu.energy_mj or 0) + 1_234

    return Case(backend, drive, "measured")


def _nvml_sampling(request: pytest.FixtureRequest) -> Case:
    fake: FakeNvml = request.getfixturevalue("meter_fake_nvml")
    gpu = FakeGpu(UUID_A, energy_mj=None, power_mw=80_000)
    fake.gpus.append(gpu)
    clock = FakeClock()
    backend, probe = open_nvml(None, clock=clock)
    assert backend is not None, probe.reason

    def drive() -> None:
        clock.advance(0.1)
        gpu.power_mw = 80_000 if (gpu.power_mw or 0) > 100_000 else 250_000
        backend.poll()

    return Case(backend, drive, "measured")


def _rapl(request: pytest.FixtureRequest) -> Case:
    tree: PowercapTree = request.getfixturevalue("meter_powercap")
    tree.zone("intel-rapl:0", "package-0", energy_uj=0, max_range_uj=1_000_000)
    tree.zone("intel-rapl:0:0", "dram", energy_uj=0, max_range_uj=1_000_000)
    found = discover_rapl()
    backend = RaplBackend(found.selected)
    values = iter([300_000, 800_000, 200_000, 900_000, 100_000, 400_000, 950_000, 10])

    def drive() -> None:
        value = next(values)
        tree.set("intel-rapl:0", value)
        tree.set("intel-rapl:0:0", value // 2)
        backend.poll()

    return Case(backend, drive, "measured")


def _estimate(request: pytest.FixtureRequest) -> Case:
    sampler = ProcessTreeSampler()
    backend = EstimateBackend(sampler, cpu=cpu_power_model(), dram_w_per_gb=0.3725)

    def drive() -> None:
        end = time.process_time() + 0.02
        while time.process_time() < end:
            pass
        sampler.poll()

    return Case(backend, drive, "estimated")


FACTORIES = {
    "nvml-counter": _nvml_counter,
    "nvml-sampling": _nvml_sampling,
    "rapl": _rapl,
    "estimate": _estimate,
}


@pytest.fixture(params=sorted(FACTORIES))
def case(request: pytest.FixtureRequest) -> Iterator[Case]:
    made = FACTORIES[request.param](request)
    yield made
    made.backend.close()


def test_labels(case: Case) -> None:
    readings = case.backend.read()
    assert readings, "a real backend reports at least one component"
    assert len({r.component for r in readings}) == len(readings)
    for r in readings:
        assert r.component and r.source and r.device
        assert r.kind == case.kind
        assert all(isinstance(n, str) and n for n in r.notes)
    assert case.backend.poll_interval_s > 0
    assert case.backend.devices


def test_cumulative_energy_is_non_negative_and_monotonic(case: Case) -> None:
    previous = {r.component: r.energy_j for r in case.backend.read()}
    assert all(v >= 0 for v in previous.values())
    for _ in range(6):
        case.drive()
        current = {r.component: r.energy_j for r in case.backend.read()}
        assert current.keys() == previous.keys()
        for component, value in current.items():
            assert value >= previous[component] >= 0, component
        previous = current
    assert sum(previous.values()) > 0


def test_unmeasured_time_and_power_bounds(case: Case) -> None:
    previous = {r.component: r.unmeasured_s for r in case.backend.read()}
    for _ in range(3):
        case.drive()
        for r in case.backend.read():
            assert r.unmeasured_s >= previous[r.component] >= 0, r.component
            assert all(f.end_t >= f.start_t and f.note for f in r.faults)
            previous[r.component] = r.unmeasured_s
            # every counter is checked against a bound; estimates have none
            assert (r.power_bound is not None) == (r.kind == "measured"), r.component
            if r.power_bound is not None:
                assert r.power_bound.max_power_w > 0 and r.power_bound.source


def test_close_is_idempotent_and_freezes(case: Case) -> None:
    case.drive()
    case.backend.close()
    frozen = {r.component: r.energy_j for r in case.backend.read()}
    case.backend.close()
    case.drive()
    case.backend.poll()
    assert {r.component: r.energy_j for r in case.backend.read()} == frozen
    assert case.backend.closed

"""One contract, every backend: NVML counter, NVML power sampling, RAPL, the estimate and a
trial's attributed view of a host sampler, each through ``frugalml.testing``.

Only the vendor boundaries are faked: pynvml (autospecced) and the powercap files.
"""

from __future__ import annotations

import time

import pytest

from frugalml.meter import EstimateBackend, HostSampler, MeterConfig, ProcessTreeSampler
from frugalml.meter._estimate import cpu_power_model
from frugalml.meter._nvml import open_nvml
from frugalml.meter._rapl import RaplBackend, discover_rapl
from frugalml.testing import BackendCase, EnergyBackendContract
from meter_fixtures import UUID_A, FakeClock, FakeGpu, FakeNvml, PowercapTree


class TestNvmlCounter(EnergyBackendContract):
    def make_case(self, request: pytest.FixtureRequest) -> BackendCase:
        fake: FakeNvml = request.getfixturevalue("meter_fake_nvml")
        gpu = FakeGpu(UUID_A, energy_mj=10_000)
        fake.gpus.append(gpu)
        backend, probe = open_nvml(None)
        assert backend is not None, probe.reason

        def drive() -> None:
            gpu.energy_mj = (gpu.energy_mj or 0) + 1_234

        return BackendCase(backend, drive)


class TestNvmlSampling(EnergyBackendContract):
    def make_case(self, request: pytest.FixtureRequest) -> BackendCase:
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

        return BackendCase(backend, drive)


class TestRapl(EnergyBackendContract):
    def make_case(self, request: pytest.FixtureRequest) -> BackendCase:
        tree: PowercapTree = request.getfixturevalue("meter_powercap")
        tree.zone("intel-rapl:0", "package-0", energy_uj=0, max_range_uj=1_000_000)
        tree.zone("intel-rapl:0:0", "dram", energy_uj=0, max_range_uj=1_000_000)
        backend = RaplBackend(discover_rapl().selected)
        values = iter([300_000, 800_000, 200_000, 900_000, 100_000, 400_000, 950_000, 10])

        def drive() -> None:  # wraps included
            value = next(values)
            tree.set("intel-rapl:0", value)
            tree.set("intel-rapl:0:0", value // 2)
            backend.poll()

        return BackendCase(backend, drive)


class TestEstimate(EnergyBackendContract):
    def make_case(self, request: pytest.FixtureRequest) -> BackendCase:
        sampler = ProcessTreeSampler()
        backend = EstimateBackend(sampler, cpu=cpu_power_model(), dram_w_per_gb=0.3725)

        def drive() -> None:  # real CPU time, no wall-time assertion
            end = time.process_time() + 0.02
            while time.process_time() < end:
                pass
            sampler.poll()

        return BackendCase(backend, drive)


class TestAttributedView(EnergyBackendContract):
    """A trial's share of a host sampler over a fake powercap tree, beside another trial."""

    def make_case(self, request: pytest.FixtureRequest) -> BackendCase:
        tree: PowercapTree = request.getfixturevalue("meter_powercap")
        tree.zone("intel-rapl:0", "package-0", energy_uj=0)
        tree.zone("intel-rapl:0:0", "dram", energy_uj=0)
        clock = FakeClock()
        sampler = HostSampler(MeterConfig(gpus="none"), clock=clock, thread=False).start()
        request.addfinalizer(sampler.close)
        cpu = {"mine": 0.0, "other": 0.0}
        sampler.join("other", cpu_time=lambda: cpu["other"])
        view = sampler.join("mine", cpu_time=lambda: cpu["mine"])
        spent = [0]

        def drive() -> None:
            clock.advance(1.0)
            spent[0] += 5_000_000
            tree.set("intel-rapl:0", spent[0])
            tree.set("intel-rapl:0:0", spent[0] // 4)
            cpu["mine"] += 0.3
            cpu["other"] += 0.1

        return BackendCase(view, drive)

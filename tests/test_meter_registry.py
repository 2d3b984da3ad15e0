"""Backends declare their capabilities; build_backends iterates registered factories.

A new backend (here a stand-in for an AMD GPU reader, faked at its vendor boundary: a
counter the test drives) is one class plus one ``register_backend`` line, and the meter
then measures it, synchronises CUDA for it and fills in only what it does not cover.
"""

from __future__ import annotations

import pytest

from frugalml.errors import MeterError
from frugalml.meter import (
    BackendCapabilities,
    BackendContext,
    ComponentReading,
    EnergyBackend,
    EstimateBackend,
    Meter,
    MeterConfig,
    NvmlBackend,
    PowerBound,
    ProcessTreeSampler,
    RaplBackend,
    _registry,
    build_backends,
    register_backend,
    registered_backends,
)
from meter_fixtures import UUID_A, FakeClock, FakeGpu, FakeNvml, PowercapTree


class FakeVendorGpu(EnergyBackend):
    """A GPU backend for another vendor: its counter is a number the test sets."""

    name = "fakegpu"

    def __init__(self, clock: FakeClock, *, covers: str = "gpu") -> None:
        super().__init__(clock)
        self.counter_j = 0.0
        self.covers = covers
        self.closes = 0

    @property
    def capabilities(self) -> BackendCapabilities:
        if self.covers == "cpu":
            return BackendCapabilities(devices=("cpu",), kind="measured")
        return BackendCapabilities(
            devices=("gpu",),
            kind="measured",
            sync_cuda=True,
            min_trusted_window_s=0.5,
            short_window_reason="the fake counter updates every 0.5 s",
        )

    @property
    def devices(self) -> tuple[str, ...]:
        return ("fake GPU 0",)

    def _poll(self) -> None:
        return None

    def _readings(self) -> list[ComponentReading]:
        return [
            ComponentReading(
                component=f"{self.covers}:fake0",
                energy_j=self.counter_j,
                source="fake:counter",
                kind="measured",
                device="fake GPU 0",
                power_bound=PowerBound(500.0, "stated", 0.5),
            )
        ]

    def _release(self) -> None:
        self.closes += 1


@pytest.fixture
def restore_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_registry, "_factories", list(_registry._factories))


def test_builtin_factories_are_registered_in_order() -> None:
    names = [f.__name__ for f in registered_backends()]
    assert names[:2] == ["nvml_backends", "rapl_backends"]


def test_a_registered_backend_is_measured_and_declares_its_window(
    restore_registry: None, meter_no_powercap: object, meter_idle_load: object
) -> None:
    clock = FakeClock()
    made: list[FakeVendorGpu] = []

    @register_backend
    def fake_backends(context: BackendContext) -> list[EnergyBackend]:
        made.append(FakeVendorGpu(clock))
        return [made[-1]]

    register_backend(fake_backends)  # twice is a no-op
    assert registered_backends().count(fake_backends) == 1
    with Meter(MeterConfig(gpus="none"), clock=clock) as meter:
        assert meter._sync_cuda_at_edges  # declared, not found by isinstance
        with meter.window("short") as short:
            made[0].counter_j += 12.5
            clock.advance(0.2)
        with meter.window("long") as long:
            made[0].counter_j += 100.0
            clock.advance(2.0)
    assert short.measurement is not None and long.measurement is not None
    gpu = {c.component: c for c in short.measurement.components}["gpu:fake0"]
    assert gpu.energy_j == pytest.approx(12.5) and gpu.kind == "measured"
    assert any(
        "shorter than 0.5 s: the fake counter updates every 0.5 s" in n
        for n in short.measurement.notes
    )
    assert not any("shorter than" in n for n in long.measurement.notes)
    # the CPU and DRAM are still estimated: the fake covers only the GPU
    kinds = {c.component: c.kind for c in long.measurement.components}
    assert kinds == {"gpu:fake0": "measured", "cpu": "estimated", "dram": "estimated"}
    assert made[0].closes == 1


def test_estimate_fills_only_what_no_backend_measures(
    restore_registry: None, meter_no_powercap: object
) -> None:
    clock = FakeClock()
    register_backend(lambda context: [FakeVendorGpu(clock, covers="cpu")])
    backends = build_backends(MeterConfig(gpus="none"), ProcessTreeSampler(), clock)
    try:
        estimate = [b for b in backends if isinstance(b, EstimateBackend)]
        assert len(estimate) == 1
        assert estimate[0].capabilities.devices == ("dram",)
        assert [r.component for r in estimate[0].read()] == ["dram"]
    finally:
        for b in backends:
            b.close()


def test_capabilities_of_the_builtin_backends(
    meter_fake_nvml: FakeNvml, meter_powercap: PowercapTree
) -> None:
    meter_fake_nvml.gpus.append(FakeGpu(UUID_A, energy_mj=0))
    meter_powercap.zone("intel-rapl:0", "package-0", energy_uj=0)
    backends = build_backends(
        MeterConfig(gpus="all", min_trusted_window_s=2.0), ProcessTreeSampler()
    )
    try:
        caps = {type(b): b.capabilities for b in backends}
        assert caps[NvmlBackend].devices == ("gpu",) and caps[NvmlBackend].sync_cuda
        assert caps[NvmlBackend].min_trusted_window_s == 2.0
        assert caps[RaplBackend].devices == ("cpu",) and not caps[RaplBackend].sync_cuda
        assert caps[EstimateBackend].devices == ("dram",)  # no DRAM zone in this tree
        assert caps[EstimateBackend].kind == "estimated"
        assert caps[EstimateBackend].reads_process_tree
        estimate = next(b for b in backends if isinstance(b, EstimateBackend))
        note = next(n for r in estimate.read() for n in r.notes if "estimated because" in n)
        assert "RAPL has no DRAM zone here" in note
    finally:
        for b in backends:
            b.close()


def test_psys_covers_cpu_and_dram(meter_powercap: PowercapTree) -> None:
    meter_powercap.zone("intel-rapl:1", "psys", energy_uj=0)
    backends = build_backends(MeterConfig(gpus="none"), ProcessTreeSampler())
    try:
        assert [type(b) for b in backends] == [RaplBackend]  # nothing left to estimate
        assert backends[0].capabilities.covers("dram")
    finally:
        for b in backends:
            b.close()


def test_a_failing_factory_closes_what_was_opened(
    restore_registry: None, meter_no_powercap: object
) -> None:
    clock = FakeClock()
    opened = FakeVendorGpu(clock)
    register_backend(lambda context: [opened])

    def refuses(context: BackendContext) -> list[EnergyBackend]:
        raise MeterError("asked-for hardware missing", fix="ask for less")

    register_backend(refuses)
    with pytest.raises(MeterError, match="asked-for hardware missing"):
        build_backends(MeterConfig(gpus="none"), ProcessTreeSampler(), clock)
    assert opened.closes == 1


def test_register_backend_refuses_a_non_callable() -> None:
    with pytest.raises(Exception, match="must be callable"):
        register_backend("nvml")  # type: ignore[arg-type]


def test_env_names_registered_backends_beyond_the_builtins(
    restore_registry: None, meter_no_powercap: object
) -> None:
    from frugalml.meter import describe_environment

    def amd_backends(context: BackendContext) -> list[EnergyBackend]:
        return []

    assert not any("register_backend" in n for n in describe_environment(NO_GPU).notes)
    register_backend(amd_backends)
    notes = describe_environment(NO_GPU).notes
    assert any("register_backend" in n and "amd_backends" in n for n in notes)


NO_GPU = MeterConfig(gpus="none")

"""NVML, mocked at its boundary (autospecced pynvml functions): counter, sampling, driver
reloads, missing library or driver, CUDA_VISIBLE_DEVICES."""

from __future__ import annotations

import logging

import pytest

from frugalml.errors import MeterError
from frugalml.meter import Meter, MeterConfig, NullBackend, NvmlBackend, probe_nvml
from frugalml.meter._nvml import open_nvml, parse_cuda_visible_devices
from meter_fixtures import UUID_A, UUID_B, UUID_C, FakeClock, FakeGpu, FakeNvml


def _open(clock: FakeClock | None = None, ordinals: tuple[int, ...] | None = None) -> NvmlBackend:
    backend, probe = open_nvml(ordinals, clock=clock)
    assert backend is not None, probe.reason
    return backend


def test_counter_supported(meter_fake_nvml: FakeNvml) -> None:
    gpu = FakeGpu(UUID_A, energy_mj=50_000)
    meter_fake_nvml.gpus.append(gpu)
    backend = _open()
    assert not backend.sampling
    assert backend.poll_interval_s == 1.0
    gpu.energy_mj = 53_500
    [reading] = backend.read()
    assert reading.component == "gpu:0"
    assert reading.energy_j == pytest.approx(3.5)
    assert (reading.source, reading.kind) == ("nvml:total_energy_counter", "measured")
    assert UUID_A in reading.device
    meter_fake_nvml.mocks["nvmlDeviceGetTotalEnergyConsumption"].assert_called_with(gpu)
    backend.close()
    backend.close()
    assert meter_fake_nvml.shutdowns == 1


def test_counter_unsupported_integrates_sampled_power(meter_fake_nvml: FakeNvml) -> None:
    gpu = FakeGpu(UUID_A, energy_mj=None, power_mw=100_000)
    meter_fake_nvml.gpus.append(gpu)
    clock = FakeClock()
    backend = _open(clock)
    assert backend.sampling
    assert backend.poll_interval_s == pytest.approx(0.1)
    # Power trace (t s, W): (0, 100) (1, 200) (2, 200) (3, 100) (3.5, 300).
    for dt, watts in ((1.0, 200), (1.0, 200), (1.0, 100), (0.5, 300)):
        clock.advance(dt)
        gpu.power_mw = watts * 1000
        backend.poll()
    # Trapezoid: 150 + 200 + 150 + 0.5 * (100 + 300) / 2 = 600 J.
    [reading] = backend.read()
    assert reading.energy_j == pytest.approx(600.0)
    assert reading.source == "nvml:power_usage_integral"
    assert reading.kind == "measured"
    assert any("trapezoid" in n and "0.1 s" in n for n in reading.notes)


def test_driver_reload_never_counts_negative_energy(
    meter_fake_nvml: FakeNvml, meter_caplog: pytest.LogCaptureFixture
) -> None:
    gpu = FakeGpu(UUID_A, energy_mj=5_000)
    meter_fake_nvml.gpus.append(gpu)
    clock = FakeClock()
    backend = _open(clock)
    with meter_caplog.at_level(logging.WARNING):
        for value in (7_000, 300, 800):  # the driver reloads between 7000 and 300
            clock.advance(1.0)
            gpu.energy_mj = value
            backend.poll()
    [reading] = backend.read()
    # The interval with the reload (1 s) is not booked; the raw 300 mJ is never added.
    assert reading.energy_j == pytest.approx((2_000 + 500) / 1000)
    assert reading.unmeasured_s == pytest.approx(1.0)
    [fault] = reading.faults
    assert "driver reload" in fault.note and "stepped back 6.7 J" in fault.note
    assert "stepped back" in meter_caplog.text


def test_reading_failure_mid_run_is_noted(meter_fake_nvml: FakeNvml) -> None:
    import pynvml

    gpu = FakeGpu(UUID_A, energy_mj=0)
    meter_fake_nvml.gpus.append(gpu)
    backend = _open()
    mocked = meter_fake_nvml.mocks["nvmlDeviceGetTotalEnergyConsumption"]
    mocked.side_effect = pynvml.NVMLError(pynvml.NVML_ERROR_GPU_IS_LOST)
    [reading] = backend.read()
    assert reading.energy_j == 0.0
    assert any("reading failed" in n for n in reading.notes)


def test_nvml_not_installed_is_quiet_unless_gpus_asked_for(
    meter_no_nvml: None, meter_no_powercap: object, meter_caplog: pytest.LogCaptureFixture
) -> None:
    probe = probe_nvml()
    assert probe.status == "no_nvml"
    with meter_caplog.at_level(logging.INFO, logger="frugalml"), Meter(MeterConfig()) as meter:
        assert not any(isinstance(b, NvmlBackend) for b in meter.backends)
        [null] = [b for b in meter.backends if isinstance(b, NullBackend)]
        assert "nvidia-ml-py" in null.reason and null.read() == []
    assert not [r for r in meter_caplog.records if r.levelno >= logging.INFO]
    with pytest.raises(MeterError, match="nvidia-ml-py") as info:
        Meter(MeterConfig(gpus="all"))
    assert info.value.fix is not None and "pip install nvidia-ml-py" in info.value.fix


def test_nvml_init_failure(meter_fake_nvml: FakeNvml, meter_no_powercap: object) -> None:
    import pynvml

    meter_fake_nvml.init_error = pynvml.NVML_ERROR_DRIVER_NOT_LOADED
    probe = probe_nvml()
    assert probe.status == "no_driver"
    assert "Driver Not Loaded" in probe.reason
    with Meter(MeterConfig()) as meter:  # quiet by default
        assert not any(isinstance(b, NvmlBackend) for b in meter.backends)
    with pytest.raises(MeterError, match="Driver Not Loaded") as info:
        Meter(MeterConfig(gpus=(0,)))
    assert info.value.fix is not None and "nvidia-smi" in info.value.fix


def test_no_gpus(meter_fake_nvml: FakeNvml) -> None:
    assert probe_nvml().status == "no_gpus"
    assert meter_fake_nvml.shutdowns == 1


def test_cuda_visible_devices_by_index(
    meter_fake_nvml: FakeNvml, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = FakeGpu(UUID_A, energy_mj=0), FakeGpu(UUID_B, energy_mj=0)
    meter_fake_nvml.gpus += [a, b]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    backend = _open()
    b.energy_mj, a.energy_mj = 2_000, 9_000
    [reading] = backend.read()
    assert reading.component == "gpu:0"  # CUDA's ordinal 0 is NVML's device 1
    assert UUID_B in reading.device
    assert reading.energy_j == pytest.approx(2.0)


@pytest.mark.parametrize("token", [UUID_B, UUID_B.removeprefix("GPU-"), "GPU-bbbbbbbb", "bbbbbbbb"])
def test_cuda_visible_devices_by_uuid(
    meter_fake_nvml: FakeNvml, monkeypatch: pytest.MonkeyPatch, token: str
) -> None:
    meter_fake_nvml.gpus += [FakeGpu(UUID_A), FakeGpu(UUID_B), FakeGpu(UUID_C)]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", f"{token},0")
    backend = _open()
    assert backend.ordinals == (0, 1)
    assert UUID_B in backend.devices[0] and UUID_A in backend.devices[1]


@pytest.mark.parametrize(
    ("value", "expected", "note"),
    [
        (None, [0, 1, 2], None),
        ("", [], "empty"),
        ("2,0", [2, 0], None),
        ("0,7,1", [0], "names no GPU"),
        ("bbbb", [], "matches several"),
        ("0,0", [0], "twice"),
        ("MIG-12345678-aaaa", [], "MIG"),
    ],
)
def test_parse_cuda_visible_devices(
    value: str | None, expected: list[int], note: str | None
) -> None:
    indices, notes = parse_cuda_visible_devices(value, [UUID_A, UUID_B, UUID_C])
    assert indices == expected
    if note is None:
        assert notes == []
    else:
        assert any(note in n for n in notes)


def test_explicit_gpu_index_that_is_not_visible(
    meter_fake_nvml: FakeNvml, monkeypatch: pytest.MonkeyPatch, meter_no_powercap: object
) -> None:
    meter_fake_nvml.gpus += [FakeGpu(UUID_A), FakeGpu(UUID_B)]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    with pytest.raises(MeterError, match=r"\[1\]"):
        Meter(MeterConfig(gpus=(1,)))
    with Meter(MeterConfig(gpus=(0,))) as meter:
        assert meter.backends[0].name == "nvml"


def test_gpu_without_any_reading_is_skipped(meter_fake_nvml: FakeNvml) -> None:
    meter_fake_nvml.gpus += [FakeGpu(UUID_A, energy_mj=None, power_mw=None), FakeGpu(UUID_B)]
    probe = probe_nvml()
    assert probe.gpus[0].problem is not None
    backend = _open()
    assert backend.ordinals == (1,)


def test_meter_with_gpu_notes_short_windows(
    meter_fake_nvml: FakeNvml, meter_no_powercap: object, meter_idle_load: list[float | None]
) -> None:
    gpu = FakeGpu(UUID_A, energy_mj=0)
    meter_fake_nvml.gpus.append(gpu)
    clock = FakeClock()
    with Meter(MeterConfig(min_trusted_window_s=1.0), clock=clock) as meter:
        with meter.window("short") as short:
            gpu.energy_mj += 10_000
            clock.advance(0.2)
        with meter.window("long") as long:
            clock.advance(3.0)  # time passes before the GPU can spend 300 J
            gpu.energy_mj += 300_000
    assert short.measurement is not None and long.measurement is not None
    gpu_short = next(c for c in short.measurement.components if c.component == "gpu:0")
    assert gpu_short.energy_j == pytest.approx(10.0)
    assert any("shorter than 1 s" in n for n in short.measurement.notes)
    assert not long.measurement.notes
    assert short.measurement.provenance == "mixed"  # GPU measured, CPU/DRAM estimated
    assert short.measurement.measured_energy_j == pytest.approx(10.0)

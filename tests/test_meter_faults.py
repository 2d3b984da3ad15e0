"""Counter faults: only physically possible readings are booked, and the measurement says
which part of the window could not be measured.

The vendor boundaries are faked (powercap files in tmp_path, pynvml autospecced); the clock
is a FakeClock, so every joule and second below is computed by hand:
allowed joules = max power x 1.25 x (seconds between reads + update slack), with an update
slack of 0.01 s for RAPL and 0.1 s for NVML.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import types

import pytest

from frugalml.meter import ComponentEnergy, Measurement, Meter, MeterConfig, describe_environment
from frugalml.meter._backend import POWER_SLACK
from frugalml.meter._nvml import NVML_CEILING_W, NvmlBackend, open_nvml
from frugalml.meter._rapl import RAPL_CEILING_W, RaplBackend, discover_rapl
from meter_fixtures import UUID_A, FakeClock, FakeGpu, FakeNvml, PowercapTree

J = 1_000_000  # uJ per J
DEFAULT_RANGE_UJ = 262_143_328_850
BOUND_100W = {"constraint_0_max_power_uw": 65 * J, "constraint_1_power_limit_uw": 100 * J}


def _rapl(tree: PowercapTree, clock: FakeClock) -> RaplBackend:
    found = discover_rapl(tree.root)
    assert found.status == "ok", found.reason
    return RaplBackend(found.selected, clock=clock)


def _step(
    tree: PowercapTree, clock: FakeClock, backend: RaplBackend, dt: float, uj: int | str
) -> None:
    clock.advance(dt)
    tree.set("intel-rapl:0", uj)
    backend.poll()


# -- RAPL ------------------------------------------------------------------------------


def test_a_small_step_back_is_not_booked_as_a_wrap(
    meter_powercap: PowercapTree, meter_caplog: pytest.LogCaptureFixture
) -> None:
    # The case from the issue: 5 J back gave 262,157 J "measured" in 2.2 s.
    meter_powercap.zone("intel-rapl:0", "package-0", energy_uj=100 * J)
    clock = FakeClock()
    backend = _rapl(meter_powercap, clock)
    with meter_caplog.at_level(logging.WARNING):
        _step(meter_powercap, clock, backend, 2.2, 95 * J)
    _step(meter_powercap, clock, backend, 1.0, 145 * J)  # 50 J in 1 s: fine at 1000 W
    [reading] = backend.read()
    # A wrap would be 262,143.32885 - 100 + 95 = 262,138.33 J > 1000 x 1.25 x 2.21 = 2,762.5 J.
    assert reading.energy_j == pytest.approx(50.0)
    assert reading.unmeasured_s == pytest.approx(2.2)
    [fault] = reading.faults
    assert (fault.start_t, fault.end_t) == (pytest.approx(1000.0), pytest.approx(1002.2))
    assert "stepped back 5 J" in fault.note and "not a plausible wrap" in fault.note
    assert "262138" in fault.note
    assert "not booked" in meter_caplog.text
    assert reading.power_bound is not None
    assert reading.power_bound.max_power_w == RAPL_CEILING_W
    assert "stated ceiling" in reading.power_bound.source


def test_a_plausible_wrap_is_booked_against_the_zones_own_bound(
    meter_powercap: PowercapTree,
) -> None:
    meter_powercap.zone(
        "intel-rapl:0",
        "package-0",
        energy_uj=990 * J,
        max_range_uj=1000 * J,
        constraints={**BOUND_100W, "constraint_1_max_power_uw": 0},
    )
    clock = FakeClock()
    backend = _rapl(meter_powercap, clock)
    bound = backend.power_bounds["cpu:0"]
    assert bound.max_power_w == 100.0  # the largest constraint file, zeros ignored
    assert "constraint_1_power_limit_uw" in bound.source
    _step(meter_powercap, clock, backend, 1.0, 10 * J)  # wrap: 20 J <= 100 x 1.25 x 1.01
    _step(meter_powercap, clock, backend, 1.0, 5 * J)  # a wrap would be 995 J: a fault
    _step(meter_powercap, clock, backend, 1.0, 85 * J)  # 80 J
    [reading] = backend.read()
    assert reading.energy_j == pytest.approx(20.0 + 80.0)
    assert reading.unmeasured_s == pytest.approx(1.0)
    assert "a wrap would mean 995 J" in reading.faults[0].note


def test_a_reset_to_zero_loses_only_its_interval(meter_powercap: PowercapTree) -> None:
    meter_powercap.zone("intel-rapl:0", "package-0", energy_uj=0)
    clock = FakeClock()
    backend = _rapl(meter_powercap, clock)
    _step(meter_powercap, clock, backend, 1.0, 500 * J)  # 500 J in 1 s: <= 1,262.5 J
    _step(meter_powercap, clock, backend, 1.0, 0)  # reset
    _step(meter_powercap, clock, backend, 1.0, 30 * J)
    [reading] = backend.read()
    assert reading.energy_j == pytest.approx(530.0)
    assert reading.unmeasured_s == pytest.approx(1.0)
    assert "500 J (500000000 -> 0 uJ)" in reading.faults[0].note


def test_a_spike_above_the_power_bound_is_not_booked(meter_powercap: PowercapTree) -> None:
    meter_powercap.zone(
        "intel-rapl:0",
        "package-0",
        energy_uj=0,
        constraints={"constraint_0_max_power_uw": 50 * J},
    )
    clock = FakeClock()
    backend = _rapl(meter_powercap, clock)
    _step(meter_powercap, clock, backend, 1.0, 10 * J)  # 10 J <= 50 x 1.25 x 1.01 = 63.125
    _step(meter_powercap, clock, backend, 1.0, 200 * J)  # 190 J: impossible at 50 W
    _step(meter_powercap, clock, backend, 1.0, 240 * J)  # 40 J from the new baseline
    [reading] = backend.read()
    assert reading.energy_j == pytest.approx(50.0)
    assert reading.unmeasured_s == pytest.approx(1.0)
    assert "jumped 190 J" in reading.faults[0].note
    assert "63.1 J for 1 s at 50 W" in reading.faults[0].note


def test_a_reading_outside_the_stated_range_is_not_booked(meter_powercap: PowercapTree) -> None:
    meter_powercap.zone("intel-rapl:0", "package-0", energy_uj=100 * J, max_range_uj=1000 * J)
    clock = FakeClock()
    backend = _rapl(meter_powercap, clock)
    _step(meter_powercap, clock, backend, 1.0, 1500 * J)  # above max_energy_range_uj
    _step(meter_powercap, clock, backend, 1.0, 200 * J)  # a new baseline, nothing booked
    _step(meter_powercap, clock, backend, 1.0, 260 * J)
    [reading] = backend.read()
    assert reading.energy_j == pytest.approx(60.0)
    assert reading.unmeasured_s == pytest.approx(2.0)  # from the last good reading at 0 s
    [fault] = reading.faults
    assert "above the counter's stated range" in fault.note
    assert (fault.start_t, fault.end_t) == (pytest.approx(1000.0), pytest.approx(1002.0))


def test_a_counter_outside_its_range_at_the_start_has_no_baseline(
    meter_powercap: PowercapTree,
) -> None:
    meter_powercap.zone("intel-rapl:0", "package-0", energy_uj=2000 * J, max_range_uj=1000 * J)
    clock = FakeClock()
    backend = _rapl(meter_powercap, clock)
    _step(meter_powercap, clock, backend, 1.5, 10 * J)  # the first reading inside the range
    _step(meter_powercap, clock, backend, 1.0, 40 * J)
    [reading] = backend.read()
    assert reading.energy_j == pytest.approx(30.0)
    assert reading.unmeasured_s == pytest.approx(1.5)


def test_zero_max_range_never_adds_the_raw_counter(meter_powercap: PowercapTree) -> None:
    meter_powercap.zone("intel-rapl:0", "package-0", energy_uj=100 * J, max_range_uj=0)
    found = discover_rapl(meter_powercap.root)
    assert any("missing, unreadable or 0" in n for n in found.notes)
    clock = FakeClock()
    backend = RaplBackend(found.selected, clock=clock)
    assert backend.poll_interval_s == 1.0
    _step(meter_powercap, clock, backend, 1.0, 150 * J)
    _step(meter_powercap, clock, backend, 1.0, 20 * J)  # a wrap? a reset? cannot tell
    _step(meter_powercap, clock, backend, 1.0, 40 * J)
    [reading] = backend.read()
    assert reading.energy_j == pytest.approx(50.0 + 20.0)  # never + the raw 20 J
    assert reading.unmeasured_s == pytest.approx(1.0)
    assert "a wrap cannot be corrected" in reading.faults[0].note
    assert any("max_energy_range_uj unknown or 0" in n for n in reading.notes)


def test_a_zone_that_disappears_is_unmeasured_from_its_last_reading(
    meter_powercap: PowercapTree,
) -> None:
    import shutil

    meter_powercap.zone("intel-rapl:0", "package-0", energy_uj=0)
    clock = FakeClock()
    backend = _rapl(meter_powercap, clock)
    _step(meter_powercap, clock, backend, 1.0, 10 * J)
    shutil.rmtree(meter_powercap.root / "intel-rapl:0")
    clock.advance(2.0)
    backend.poll()
    clock.advance(3.0)
    [reading] = backend.read()
    assert reading.energy_j == pytest.approx(10.0)
    assert reading.unmeasured_s == pytest.approx(5.0)  # still open: up to the reading


def _rapl_meter(tree: PowercapTree, clock: FakeClock) -> tuple[Meter, RaplBackend]:
    # The poller's first tick would come after 131 s (262 kJ at 1000 W, halved): the test
    # drives every poll itself.
    meter = Meter(MeterConfig(gpus="none", poll_interval_s=3600.0), clock=clock)
    [backend] = meter.backends
    assert isinstance(backend, RaplBackend)
    return meter, backend


def test_faults_across_nested_and_consecutive_windows(
    meter_powercap: PowercapTree, meter_idle_load: list[float | None]
) -> None:
    meter_powercap.zone("intel-rapl:0", "package-0", energy_uj=0, constraints=BOUND_100W)
    meter_powercap.zone("intel-rapl:0:0", "dram", energy_uj=0, constraints=BOUND_100W)
    clock = FakeClock()
    meter, rapl = _rapl_meter(meter_powercap, clock)
    with meter:
        outer = meter.begin("outer")  # t = 0
        _step(meter_powercap, clock, rapl, 1.0, 50 * J)  # +50 J
        _step(meter_powercap, clock, rapl, 1.0, 40 * J)  # 10 J back: (1, 2] lost
        with meter.window("inner") as inner:  # t = 2 .. 4
            _step(meter_powercap, clock, rapl, 1.0, 100 * J)  # +60 J
            clock.advance(1.0)
            meter_powercap.set("intel-rapl:0", 130 * J)  # +30 J, read at the edge
        _step(meter_powercap, clock, rapl, 1.0, 2000 * J)  # 1,960 J in 1 s: (4, 5] lost
        clock.advance(1.0)
        meter_powercap.set("intel-rapl:0", 2050 * J)  # +50 J
        outer_m = meter.end(outer)  # t = 6
        with meter.window("next") as after:  # t = 6 .. 9
            _step(meter_powercap, clock, rapl, 1.0, 300_000 * J)  # outside the range
            _step(meter_powercap, clock, rapl, 1.0, 2200 * J)  # new baseline: (6, 8] lost
            clock.advance(1.0)
            meter_powercap.set("intel-rapl:0", 2230 * J)  # +30 J
    assert inner.measurement is not None and after.measurement is not None

    def cpu(m: Measurement) -> ComponentEnergy:
        return next(c for c in m.components if c.component == "cpu:0")

    inner_cpu, outer_cpu, after_cpu = cpu(inner.measurement), cpu(outer_m), cpu(after.measurement)
    assert inner_cpu.energy_j == pytest.approx(90.0)
    assert inner_cpu.unmeasured_s == 0.0 and inner_cpu.unmeasured_intervals_s == ()
    assert not any("not booked" in n for n in inner_cpu.notes)
    assert outer_cpu.energy_j == pytest.approx(50.0 + 90.0 + 50.0)
    assert outer_cpu.unmeasured_s == pytest.approx(2.0)
    assert outer_cpu.unmeasured_intervals_s == (
        (pytest.approx(1.0), pytest.approx(2.0)),
        (pytest.approx(4.0), pytest.approx(5.0)),
    )
    assert any(
        "1.000-2.000 s into the window" in n and "stepped back" in n for n in outer_cpu.notes
    )
    assert any("4.000-5.000 s into the window" in n and "jumped" in n for n in outer_cpu.notes)
    assert outer_cpu.power_bound_w == 100.0
    assert outer_m.unmeasured_s == pytest.approx(2.0)
    assert any("cpu:0: 2 s of the 6 s window not measured" in n for n in outer_m.notes)
    assert after_cpu.energy_j == pytest.approx(30.0)
    assert after_cpu.unmeasured_intervals_s == ((pytest.approx(0.0), pytest.approx(2.0)),)
    assert any("stated range" in n for n in after_cpu.notes)
    dram = next(c for c in outer_m.components if c.component == "dram:0")
    assert dram.unmeasured_s == 0.0  # the other zone's counter is fine
    assert outer_m.energy_j == pytest.approx(190.0)


def test_a_window_ending_without_a_baseline_says_so(
    meter_powercap: PowercapTree, meter_idle_load: list[float | None]
) -> None:
    meter_powercap.zone("intel-rapl:0", "package-0", energy_uj=0)
    meter_powercap.zone("intel-rapl:0:0", "dram", energy_uj=0)
    clock = FakeClock()
    meter, rapl = _rapl_meter(meter_powercap, clock)
    with meter:
        with meter.window("a") as a:
            _step(meter_powercap, clock, rapl, 1.0, 20 * J)
            _step(meter_powercap, clock, rapl, 1.0, "garbage")
            clock.advance(2.0)  # the edge reads garbage too
        with meter.window("b") as b:
            _step(meter_powercap, clock, rapl, 1.0, 50 * J)  # baseline again: (1, 5] lost
            _step(meter_powercap, clock, rapl, 1.0, 70 * J)
    assert a.measurement is not None and b.measurement is not None
    a_cpu = a.measurement.components[0]
    assert a_cpu.energy_j == pytest.approx(20.0)
    assert a_cpu.unmeasured_s == pytest.approx(3.0)
    assert a_cpu.unmeasured_intervals_s == ((pytest.approx(1.0), pytest.approx(4.0)),)
    b_cpu = b.measurement.components[0]
    assert b_cpu.energy_j == pytest.approx(20.0)  # not the 30 J from before b began
    assert b_cpu.unmeasured_s == pytest.approx(1.0)


# -- NVML ------------------------------------------------------------------------------


def _nvml(clock: FakeClock) -> NvmlBackend:
    backend, probe = open_nvml(None, clock=clock, counter_interval_s=3600.0)
    assert backend is not None, probe.reason
    return backend


def _gpu_step(gpu: FakeGpu, clock: FakeClock, backend: NvmlBackend, dt: float, mj: int) -> None:
    clock.advance(dt)
    gpu.energy_mj = mj
    backend.poll()


def test_nvml_step_back_of_one_joule_is_not_five_megajoules(
    meter_fake_nvml: FakeNvml, meter_caplog: pytest.LogCaptureFixture
) -> None:
    gpu = FakeGpu(UUID_A, energy_mj=5_000_000_000)  # 5 MJ since the driver loaded
    meter_fake_nvml.gpus.append(gpu)
    clock = FakeClock()
    backend = _nvml(clock)
    with meter_caplog.at_level(logging.WARNING):
        _gpu_step(gpu, clock, backend, 1.0, 4_999_999_000)  # 1 J back
    _gpu_step(gpu, clock, backend, 1.0, 5_000_199_000)  # 200 J <= 300 x 1.25 x 1.1 = 412.5
    [reading] = backend.read()
    assert reading.energy_j == pytest.approx(200.0)
    assert reading.unmeasured_s == pytest.approx(1.0)
    assert "stepped back 1 J" in reading.faults[0].note
    assert "not booked" in meter_caplog.text
    assert reading.power_bound is not None
    assert reading.power_bound.max_power_w == 300.0
    assert reading.power_bound.source == "nvmlDeviceGetEnforcedPowerLimit"


def test_nvml_reset_to_zero(meter_fake_nvml: FakeNvml) -> None:
    gpu = FakeGpu(UUID_A, energy_mj=5_000)
    meter_fake_nvml.gpus.append(gpu)
    clock = FakeClock()
    backend = _nvml(clock)
    for mj in (7_000, 0, 250_000):
        _gpu_step(gpu, clock, backend, 1.0, mj)
    [reading] = backend.read()
    assert reading.energy_j == pytest.approx(2.0 + 250.0)
    assert reading.unmeasured_s == pytest.approx(1.0)


def test_nvml_spike_above_the_power_limit_and_a_raised_limit(meter_fake_nvml: FakeNvml) -> None:
    gpu = FakeGpu(UUID_A, energy_mj=0)
    meter_fake_nvml.gpus.append(gpu)
    clock = FakeClock()
    backend = _nvml(clock)
    _gpu_step(gpu, clock, backend, 1.0, 1_000_000)  # 1,000 J in 1 s > 412.5 J at 300 W
    gpu.enforced_limit_mw = 1_000_000  # an administrator raises the limit to 1,000 W
    _gpu_step(gpu, clock, backend, 1.0, 1_900_000)  # 900 J <= 1000 x 1.25 x 1.1 = 1,375 J
    [reading] = backend.read()
    assert reading.energy_j == pytest.approx(900.0)
    assert reading.unmeasured_s == pytest.approx(1.0)
    assert "jumped 1000 J" in reading.faults[0].note
    assert "413 J for 1 s at 300 W" in reading.faults[0].note
    assert any("power limit raised during the run to 1000 W" in n for n in reading.notes)
    assert backend.power_bounds["gpu:0"].max_power_w == 1000.0


@pytest.mark.parametrize(
    ("enforced_mw", "management_mw", "bound_w", "source"),
    [
        (250_000, 400_000, 250.0, "nvmlDeviceGetEnforcedPowerLimit"),
        (None, 400_000, 400.0, "nvmlDeviceGetPowerManagementLimit"),
        (None, None, NVML_CEILING_W, "stated ceiling: NVML reports no power limit"),
        (0, 0, NVML_CEILING_W, "stated ceiling: NVML reports no power limit"),
    ],
)
def test_nvml_power_bound_fallbacks(
    meter_fake_nvml: FakeNvml,
    enforced_mw: int | None,
    management_mw: int | None,
    bound_w: float,
    source: str,
) -> None:
    meter_fake_nvml.gpus.append(
        FakeGpu(UUID_A, enforced_limit_mw=enforced_mw, management_limit_mw=management_mw)
    )
    backend = _nvml(FakeClock())
    bound = backend.power_bounds["gpu:0"]
    assert (bound.max_power_w, bound.source) == (bound_w, source)
    assert bound.allowed_j(2.0) == pytest.approx(bound_w * POWER_SLACK * 2.1)


def test_nvml_read_failure_loses_the_time_until_the_next_good_read(
    meter_fake_nvml: FakeNvml,
) -> None:
    import pynvml

    gpu = FakeGpu(UUID_A, energy_mj=0)
    meter_fake_nvml.gpus.append(gpu)
    clock = FakeClock()
    backend = _nvml(clock)
    _gpu_step(gpu, clock, backend, 1.0, 100_000)
    mocked = meter_fake_nvml.mocks["nvmlDeviceGetTotalEnergyConsumption"]
    real = mocked.side_effect
    mocked.side_effect = pynvml.NVMLError(pynvml.NVML_ERROR_UNKNOWN)
    _gpu_step(gpu, clock, backend, 1.0, 200_000)
    mocked.side_effect = real
    _gpu_step(gpu, clock, backend, 1.0, 300_000)  # a new baseline
    _gpu_step(gpu, clock, backend, 1.0, 350_000)
    [reading] = backend.read()
    assert reading.energy_j == pytest.approx(100.0 + 50.0)
    assert reading.unmeasured_s == pytest.approx(2.0)
    assert "NVML reading failed" in reading.faults[0].note


def test_nvml_sampled_power_above_the_limit_is_not_integrated(meter_fake_nvml: FakeNvml) -> None:
    gpu = FakeGpu(UUID_A, energy_mj=None, power_mw=100_000)
    meter_fake_nvml.gpus.append(gpu)
    clock = FakeClock()
    backend, _ = open_nvml(None, clock=clock)
    assert backend is not None
    for dt, watts in ((1.0, 200), (1.0, 900), (1.0, 100), (1.0, 300)):
        clock.advance(dt)
        gpu.power_mw = watts * 1000
        backend.poll()
    # 900 W > 300 W x 1.25: no good sample from 1 s to 3 s; trapezoids 150 J + 200 J.
    [reading] = backend.read()
    assert reading.energy_j == pytest.approx(150.0 + 200.0)
    assert reading.unmeasured_s == pytest.approx(2.0)
    assert "sampled power 900 W" in reading.faults[0].note


def test_nvml_faults_across_consecutive_windows(
    meter_fake_nvml: FakeNvml, meter_no_powercap: object, meter_idle_load: list[float | None]
) -> None:
    gpu = FakeGpu(UUID_A, energy_mj=0)
    meter_fake_nvml.gpus.append(gpu)
    clock = FakeClock()
    gpu_backend = _nvml(clock)
    config = MeterConfig(poll_interval_s=3600.0)
    with Meter(config, backends=[gpu_backend], clock=clock) as meter:
        with meter.window("a") as a:
            _gpu_step(gpu, clock, gpu_backend, 1.0, 100_000)
            _gpu_step(gpu, clock, gpu_backend, 1.0, 99_000)  # 1 J back: (1, 2] lost
            clock.advance(1.0)
            gpu.energy_mj = 150_000  # +51 J
        with meter.window("b") as b:
            _gpu_step(gpu, clock, gpu_backend, 1.0, 250_000)
    assert a.measurement is not None and b.measurement is not None
    [a_gpu], [b_gpu] = a.measurement.components, b.measurement.components
    assert a_gpu.energy_j == pytest.approx(100.0 + 51.0)
    assert a_gpu.unmeasured_intervals_s == ((pytest.approx(1.0), pytest.approx(2.0)),)
    assert a_gpu.power_bound_w == 300.0
    assert b_gpu.energy_j == pytest.approx(100.0)
    assert b_gpu.unmeasured_s == 0.0 and not any("not booked" in n for n in b_gpu.notes)
    assert a.measurement.unmeasured_s == pytest.approx(1.0)


# -- machine load, threads, the record -------------------------------------------------


def test_load_cpus_and_threads_are_recorded_and_contention_is_noted(
    meter_no_powercap: object,
    meter_idle_load: list[float | None],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "torch", types.SimpleNamespace(get_num_threads=lambda: 3))
    cpus = os.cpu_count() or 1
    with Meter(MeterConfig(gpus="none", poll_interval_s=3600.0)) as meter:
        meter_idle_load[0] = 0.5
        with meter.window("calm") as calm:
            pass
        with meter.window("busy") as busy:
            meter_idle_load[0] = cpus + 1.5
            meter._tick()  # what the poller does: the peak is kept
            meter_idle_load[0] = 0.25
    assert calm.measurement is not None and busy.measurement is not None
    assert calm.measurement.peak_load_avg_1m == 0.5
    assert calm.measurement.logical_cpus == cpus
    assert calm.measurement.torch_threads == 3
    assert not calm.measurement.oversubscribed
    assert not any("contention" in n for n in calm.measurement.notes)
    assert busy.measurement.peak_load_avg_1m == cpus + 1.5
    assert busy.measurement.oversubscribed
    [note] = [n for n in busy.measurement.notes if "contention" in n]
    assert f"reached {cpus + 1.5:.2f} on {cpus} logical CPUs" in note
    assert "estimated figures (cpu, dram) are inflated by contention" in note


def test_no_torch_and_no_load_average(
    meter_no_powercap: object,
    meter_idle_load: list[float | None],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delitem(sys.modules, "torch", raising=False)
    meter_idle_load[0] = None  # an OS without getloadavg
    with Meter(MeterConfig(gpus="none")) as meter, meter.window("w") as window:
        pass
    assert window.measurement is not None
    assert window.measurement.torch_threads is None
    assert window.measurement.peak_load_avg_1m is None
    assert not window.measurement.oversubscribed


def test_measured_counters_get_no_contention_note(
    meter_powercap: PowercapTree, meter_idle_load: list[float | None]
) -> None:
    meter_powercap.zone("intel-rapl:0", "package-0", energy_uj=0)
    meter_powercap.zone("intel-rapl:0:0", "dram", energy_uj=0)
    meter_idle_load[0] = (os.cpu_count() or 1) * 4.0
    with Meter(MeterConfig(gpus="none")) as meter, meter.window("w") as window:
        pass
    assert window.measurement is not None and window.measurement.oversubscribed
    assert not any("contention" in n for n in window.measurement.notes)


def test_new_fields_round_trip_and_old_records_still_load() -> None:
    component = ComponentEnergy(
        "gpu:0",
        151.0,
        "nvml:total_energy_counter",
        "measured",
        "GPU 0",
        ("not booked: 1.000-2.000 s into the window (1 s): ...",),
        unmeasured_s=1.0,
        unmeasured_intervals_s=((1.0, 2.0), (2.5, 2.75)),
        power_bound_w=300.0,
    )
    m = Measurement(
        name="a",
        started_at="2026-12-01T00:00:00+00:00",
        duration_s=3.0,
        cpu_time_s=0.1,
        energy_j=151.0,
        components=(component,),
        co2_g=0.02,
        intensity_g_per_kwh=480.0,
        intensity_source="world",
        pue=1.0,
        peak_load_avg_1m=2.75,
        logical_cpus=2,
        torch_threads=1,
    )
    assert Measurement.from_json(m.to_json()) == m
    assert m.unmeasured_s == 1.0 and m.oversubscribed
    old = m.to_dict()
    for key in ("peak_load_avg_1m", "logical_cpus", "torch_threads"):
        del old[key]
    for key in ("unmeasured_s", "unmeasured_intervals_s", "power_bound_w"):
        del old["components"][0][key]
    again = Measurement.from_dict(json.loads(json.dumps(old)))
    assert again.peak_load_avg_1m is None and again.logical_cpus is None
    assert again.torch_threads is None and again.unmeasured_s == 0.0
    assert again.components[0].unmeasured_intervals_s == ()
    assert again.components[0].power_bound_w is None
    assert again.energy_j == 151.0


def test_env_shows_the_power_bound_per_counter(
    meter_powercap: PowercapTree, meter_fake_nvml: FakeNvml
) -> None:
    meter_powercap.zone("intel-rapl:0", "package-0", constraints=BOUND_100W)
    meter_powercap.zone("intel-rapl:0:0", "dram")
    meter_fake_nvml.gpus.append(FakeGpu(UUID_A, enforced_limit_mw=700_000))
    report = describe_environment(MeterConfig())
    [gpu] = report.gpus
    assert "deltas checked against 700 W (nvmlDeviceGetEnforcedPowerLimit)" in gpu
    rapl = next(c for c in report.counters if c.source == "rapl")
    package = next(d for d in rapl.details if d.startswith("intel-rapl:0 "))
    assert "deltas checked against 100 W (largest of constraint_0_max_power_uw" in package
    dram = next(d for d in rapl.details if d.startswith("intel-rapl:0:0 "))
    assert f"deltas checked against {RAPL_CEILING_W:g} W (stated ceiling" in dram


# -- every fault across windows --------------------------------------------------------

# (max_range_uj, the fault reading, the readings after it, A's J and lost s, outer's J and s)
# Window A covers 0-3 s, B 3-5 s, "outer" both; one reading per second, starting at 100 J,
# 150 J at 1 s, the fault at 2 s, then +20 J per second (none booked while no baseline).
RAPL_FAULTS = {
    "step back 5 J": (DEFAULT_RANGE_UJ, 145 * J, (165, 185, 205), (70.0, 1.0), (110.0, 1.0)),
    "reset to 0": (DEFAULT_RANGE_UJ, 0, (20, 40, 60), (70.0, 1.0), (110.0, 1.0)),
    "spike": (DEFAULT_RANGE_UJ, 1150 * J, (1170, 1190, 1210), (70.0, 1.0), (110.0, 1.0)),
    "outside range": (1000 * J, 1500 * J, (170, 190, 210), (50.0, 2.0), (90.0, 2.0)),
    "range 0": (0, 145 * J, (165, 185, 205), (70.0, 1.0), (110.0, 1.0)),
    "garbage": (DEFAULT_RANGE_UJ, "x", (170, 190, 210), (50.0, 2.0), (90.0, 2.0)),
}


@pytest.mark.parametrize("fault", sorted(RAPL_FAULTS))
def test_each_rapl_fault_across_consecutive_and_nested_windows(
    meter_powercap: PowercapTree, meter_idle_load: list[float | None], fault: str
) -> None:
    max_range, bad, after, (a_j, a_lost), (outer_j, outer_lost) = RAPL_FAULTS[fault]
    kwargs = {"max_range_uj": max_range, "constraints": BOUND_100W}
    meter_powercap.zone("intel-rapl:0", "package-0", energy_uj=100 * J, **kwargs)
    meter_powercap.zone("intel-rapl:0:0", "dram", energy_uj=0)
    clock = FakeClock()
    meter, rapl = _rapl_meter(meter_powercap, clock)
    with meter:
        outer = meter.begin("outer")
        a = meter.begin("a")
        _step(meter_powercap, clock, rapl, 1.0, 150 * J)
        _step(meter_powercap, clock, rapl, 1.0, bad)
        clock.advance(1.0)
        meter_powercap.set("intel-rapl:0", after[0] * J)
        a_m = meter.end(a)
        b = meter.begin("b")
        _step(meter_powercap, clock, rapl, 1.0, after[1] * J)
        clock.advance(1.0)
        meter_powercap.set("intel-rapl:0", after[2] * J)
        b_m = meter.end(b)
        outer_m = meter.end(outer)
    got = {
        m.name: (m.components[0].energy_j, m.components[0].unmeasured_s)
        for m in (a_m, b_m, outer_m)
    }
    assert got == {
        "a": (pytest.approx(a_j), pytest.approx(a_lost)),
        "b": (pytest.approx(40.0), 0.0),
        "outer": (pytest.approx(outer_j), pytest.approx(outer_lost)),
    }
    assert a_m.components[0].unmeasured_intervals_s == (
        (pytest.approx(1.0), pytest.approx(1.0 + a_lost)),
    )
    assert not b_m.notes and b_m.components[0].unmeasured_intervals_s == ()
    assert any("not measured" in n for n in outer_m.notes)


# Window A covers 0-3 s, B 3-5 s; the GPU counter reads 10 J, 60 J at 1 s, the fault at
# 2 s, then +20 J per second.
NVML_FAULTS = {
    "step back 1 J": (59_000, (79_000, 99_000, 119_000), (70.0, 1.0)),
    "reset to 0": (0, (20_000, 40_000, 60_000), (70.0, 1.0)),
    "spike": (1_060_000, (1_080_000, 1_100_000, 1_120_000), (70.0, 1.0)),
    "read failure": (None, (80_000, 100_000, 120_000), (50.0, 2.0)),
}


@pytest.mark.parametrize("fault", sorted(NVML_FAULTS))
def test_each_nvml_fault_across_consecutive_and_nested_windows(
    meter_fake_nvml: FakeNvml,
    meter_no_powercap: object,
    meter_idle_load: list[float | None],
    fault: str,
) -> None:
    import pynvml

    bad, after, (a_j, a_lost) = NVML_FAULTS[fault]
    gpu = FakeGpu(UUID_A, energy_mj=10_000)
    meter_fake_nvml.gpus.append(gpu)
    clock = FakeClock()
    backend = _nvml(clock)
    mocked = meter_fake_nvml.mocks["nvmlDeviceGetTotalEnergyConsumption"]
    real = mocked.side_effect
    with Meter(MeterConfig(poll_interval_s=3600.0), backends=[backend], clock=clock) as meter:
        outer = meter.begin("outer")
        a = meter.begin("a")
        _gpu_step(gpu, clock, backend, 1.0, 60_000)
        if bad is None:
            mocked.side_effect = pynvml.NVMLError(pynvml.NVML_ERROR_UNKNOWN)
            _gpu_step(gpu, clock, backend, 1.0, 70_000)
            mocked.side_effect = real
        else:
            _gpu_step(gpu, clock, backend, 1.0, bad)
        clock.advance(1.0)
        gpu.energy_mj = after[0]
        a_m = meter.end(a)
        b = meter.begin("b")
        _gpu_step(gpu, clock, backend, 1.0, after[1])
        clock.advance(1.0)
        gpu.energy_mj = after[2]
        b_m = meter.end(b)
        outer_m = meter.end(outer)
    got = {
        m.name: (m.components[0].energy_j, m.components[0].unmeasured_s)
        for m in (a_m, b_m, outer_m)
    }
    assert got == {
        "a": (pytest.approx(a_j), pytest.approx(a_lost)),
        "b": (pytest.approx(40.0), 0.0),
        "outer": (pytest.approx(a_j + 40.0), pytest.approx(a_lost)),
    }
    assert a_m.components[0].unmeasured_intervals_s == (
        (pytest.approx(1.0), pytest.approx(1.0 + a_lost)),
    )
    assert b_m.components[0].unmeasured_intervals_s == ()

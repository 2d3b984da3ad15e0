"""The Meter: windows, nesting, errors, the decorator, the poller, CUDA edges, real estimates."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import types
from pathlib import Path

import pytest

from frugalml.errors import ConfigError, MeterError
from frugalml.meter import EstimateBackend, Meter, MeterConfig, _rapl
from meter_fixtures import UUID_A, FakeClock, FakeGpu, FakeNvml, PowercapTree


def _busy(seconds: float) -> None:
    end = time.process_time() + seconds
    while time.process_time() < end:
        pass


def test_exception_inside_a_window_is_recorded_and_reraised(meter_no_powercap: Path) -> None:
    with Meter(MeterConfig(gpus="none")) as meter:
        with pytest.raises(ValueError, match="boom"), meter.window("failing"):
            raise ValueError("boom")
        with meter.window("fine"):
            pass
    failing, fine = meter.measurements
    assert failing.name == "failing" and failing.error == "ValueError: boom"
    assert fine.error is None


def test_decorator_and_begin_end(meter_no_powercap: Path) -> None:
    meter = Meter(MeterConfig(gpus="none"))

    @meter.measure()
    def step(x: int) -> int:
        return x + 1

    @meter.measure("named")
    def other() -> None:
        return None

    assert step(1) == 2
    other()
    window = meter.begin("loop")
    result = meter.end(window)
    meter.close()
    meter.close()  # idempotent
    names = [m.name for m in meter.measurements]
    assert names[0].endswith("step") and names[1:] == ["named", "loop"]
    assert window.measurement is result and not window.open
    with pytest.raises(MeterError, match="already ended"):
        meter.end(window)
    with pytest.raises(MeterError, match="closed"):
        meter.begin("late")


def test_window_of_another_meter_is_refused(meter_no_powercap: Path) -> None:
    with Meter(MeterConfig(gpus="none")) as a, Meter(MeterConfig(gpus="none")) as b:
        window = a.begin("a")
        with pytest.raises(MeterError, match="not opened by this meter"):
            b.end(window)


def test_config_validation() -> None:
    with pytest.raises(ConfigError):
        MeterConfig(gpus="some")  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        MeterConfig(gpus=())
    with pytest.raises(ConfigError):
        MeterConfig(poll_interval_s=0)
    with pytest.raises(ConfigError, match="cpu_tdp_w"):
        MeterConfig(cpu_tdp_w=-3)


def test_estimate_on_this_process_for_real(meter_no_powercap: Path) -> None:
    config = MeterConfig(gpus="none", cpu_tdp_w=40.0, cpu_logical_cpus=4)
    with Meter(config) as meter, meter.window("busy") as window:
        _busy(0.3)
    m = window.measurement
    assert m is not None
    assert m.provenance == "estimated"
    assert 0.25 <= m.cpu_time_s <= 0.3 + m.duration_s
    cpu = next(c for c in m.components if c.component == "cpu")
    assert cpu.energy_j == pytest.approx(m.cpu_time_s * 40.0 / 4, rel=0.05)
    assert "40 W TDP / 4 logical CPUs" in cpu.notes[0] and "user setting" in cpu.notes[0]
    dram = next(c for c in m.components if c.component == "dram")
    assert dram.energy_j > 0
    assert m.peak_rss_bytes is not None and m.peak_rss_bytes > 10_000_000
    assert m.co2_g == pytest.approx(m.energy_kwh * m.pue * m.intensity_g_per_kwh)


def test_child_process_cpu_is_attributed_to_the_tree(meter_no_powercap: Path) -> None:
    code = "import time\nend = time.process_time() + 0.4\nwhile time.process_time() < end: pass"
    config = MeterConfig(gpus="none", poll_interval_s=0.05)
    with Meter(config) as meter, meter.window("child") as window:
        subprocess.run([sys.executable, "-c", code], check=True)
    assert window.measurement is not None
    assert window.measurement.cpu_time_s >= 0.4


def test_peak_rss_covers_a_short_allocation(meter_no_powercap: Path) -> None:
    with Meter(MeterConfig(gpus="none", poll_interval_s=0.02)) as meter:
        before = meter.process.sample().rss_bytes
        with meter.window("alloc") as window:
            block = bytearray(200 * 2**20)
            block[::4096] = b"x" * len(block[::4096])  # touch every page
            time.sleep(0.1)
            del block
    assert window.measurement is not None
    assert (window.measurement.peak_rss_bytes or 0) >= before + 150 * 2**20


def test_poller_sees_every_rapl_wrap(
    meter_powercap: PowercapTree, monkeypatch: pytest.MonkeyPatch
) -> None:
    meter_powercap.zone("intel-rapl:0", "package-0", energy_uj=0, max_range_uj=1_000_000)
    meter_powercap.zone("intel-rapl:0:0", "dram", energy_uj=0, max_range_uj=1_000_000)
    poller_reads = threading.Semaphore(0)
    real_read = _rapl.read_sysfs

    def counting_read(path: Path) -> str:
        text = real_read(path)
        if threading.current_thread().name == "frugalml-meter-poller":
            poller_reads.release()
        return text

    monkeypatch.setattr(_rapl, "read_sysfs", counting_read)
    # 1 J range at 20 W conservative power: the poller runs every 25 ms.
    config = MeterConfig(gpus="none", rapl_max_power_w=20.0)
    with Meter(config) as meter:
        assert meter.poll_interval_s == pytest.approx(0.025)
        with meter.window("wraps") as window:
            for value in (600_000, 100_000, 700_000, 200_000):  # two wraps
                meter_powercap.set("intel-rapl:0", value)
                while poller_reads.acquire(blocking=False):
                    pass  # forget reads from before the write
                # Two zone reads by the poller thread after the write: a full tick saw it.
                assert poller_reads.acquire(timeout=10) and poller_reads.acquire(timeout=10)
                assert poller_reads.acquire(timeout=10) and poller_reads.acquire(timeout=10)
    assert window.measurement is not None
    cpu = next(c for c in window.measurement.components if c.component == "cpu:0")
    assert cpu.energy_j == pytest.approx(2.2)


def test_cuda_edges_sync_and_peak_memory(
    meter_fake_nvml: FakeNvml, meter_no_powercap: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # torch.cuda is the boundary here: a stand-in module with CUDA "initialised" on one
    # device (importing real torch would only add seconds; the meter never imports it).
    meter_fake_nvml.gpus.append(FakeGpu(UUID_A, energy_mj=0))
    calls: list[str] = []
    peaks = iter([100, 500, 300, 50])
    cuda = types.SimpleNamespace(
        is_initialized=lambda: True,
        device_count=lambda: 1,
        synchronize=lambda d=None: calls.append(f"sync {d}"),
        max_memory_allocated=lambda d=None: next(peaks),
        reset_peak_memory_stats=lambda d=None: calls.append(f"reset {d}"),
    )
    monkeypatch.setitem(sys.modules, "torch", types.SimpleNamespace(cuda=cuda))
    with Meter(MeterConfig(), clock=FakeClock()) as meter:
        outer = meter.begin("outer")  # peak 100 (before the window) is not its own
        inner = meter.begin("inner")  # peak 500 happened in outer
        inner_m = meter.end(inner)  # 300
        outer_m = meter.end(outer)  # 50
    assert inner_m.peak_gpu_mem_bytes == 300
    assert outer_m.peak_gpu_mem_bytes == 500
    assert calls.count("sync 0") == 4 and calls.count("reset 0") == 4


def test_cuda_not_initialised_is_left_alone(
    meter_fake_nvml: FakeNvml, meter_no_powercap: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    meter_fake_nvml.gpus.append(FakeGpu(UUID_A, energy_mj=0))

    def must_not_run(*args: object) -> None:
        raise AssertionError("CUDA touched while not initialised")

    cuda = types.SimpleNamespace(
        is_initialized=lambda: False,
        device_count=must_not_run,
        synchronize=must_not_run,
        max_memory_allocated=must_not_run,
        reset_peak_memory_stats=must_not_run,
    )
    monkeypatch.setitem(sys.modules, "torch", types.SimpleNamespace(cuda=cuda))
    with Meter(MeterConfig()) as meter, meter.window("w") as window:
        pass
    assert window.measurement is not None
    assert window.measurement.peak_gpu_mem_bytes is None


def test_without_cuda_peak_gpu_memory_is_none(meter_no_powercap: Path) -> None:
    with Meter(MeterConfig(gpus="none")) as meter, meter.window("w") as window:
        pass
    assert window.measurement is not None
    assert window.measurement.peak_gpu_mem_bytes is None


def test_meter_never_imports_torch(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "from frugalml.meter import Meter, MeterConfig\n"
        "with Meter(MeterConfig()) as m, m.window('w'):\n"
        "    pass\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
    )
    env = {**os.environ, "FRUGALML_POWERCAP_ROOT": str(tmp_path / "none")}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=60)


def test_backends_default_to_estimates_here(meter_no_powercap: Path) -> None:
    with Meter(MeterConfig(gpus="none")) as meter:
        [backend] = meter.backends
    assert isinstance(backend, EstimateBackend)
    assert meter.devices and meter.devices[0].startswith("CPU: ")

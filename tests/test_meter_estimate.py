"""The stated estimates (CPU power model, DRAM per GB), the process-tree sampler and the
environment report."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from frugalml.errors import ConfigError
from frugalml.meter import (
    EstimateBackend,
    MeterConfig,
    ProcessTreeSampler,
    cpu_power_model,
    describe_environment,
    parse_gpu_selection,
)
from frugalml.meter._estimate import FALLBACK_W_PER_LOGICAL_CPU, cpu_model_name
from meter_fixtures import UUID_A, FakeClock, FakeGpu, FakeNvml, PowercapTree


@pytest.mark.parametrize(
    ("model", "tdp_w", "threads"),
    [
        ("AMD EPYC 7763 64-Core Processor", 280.0, 128),
        ("Intel(R) Xeon(R) Platinum 8380 CPU @ 2.30GHz", 270.0, 80),
        ("Intel(R) Xeon(R) Platinum 8480+", 350.0, 112),
        ("Intel(R) Core(TM) i7-8700K CPU @ 3.70GHz", 95.0, 12),
    ],
)
def test_tdp_table(model: str, tdp_w: float, threads: int) -> None:
    power = cpu_power_model(model=model)
    assert (power.tdp_w, power.logical_cpus) == (tdp_w, threads)
    assert power.w_per_logical_cpu == pytest.approx(tdp_w / threads)
    assert "cpu_tdp.csv" in power.source


@pytest.mark.parametrize(
    "model",
    ["AMD EPYC", "Intel(R) Xeon(R) Platinum 8380H CPU", "Intel(R) Core(TM) i7-8700 CPU", ""],
)
def test_fallback_is_stated(model: str) -> None:
    power = cpu_power_model(model=model, logical_cpus=8)
    assert power.w_per_logical_cpu == FALLBACK_W_PER_LOGICAL_CPU
    assert "Green Algorithms" in power.source and "fallback" in power.source
    assert "12 W per busy logical CPU" in power.describe()


def test_user_tdp_wins() -> None:
    power = cpu_power_model(65.0, 4, model="AMD EPYC 7763 64-Core Processor")
    assert (power.tdp_w, power.logical_cpus, power.source) == (65.0, 4, "user setting")
    assert "process-tree CPU seconds x 65 W TDP / 4 logical CPUs" in power.describe()
    with pytest.raises(ConfigError, match="TDP"):
        cpu_power_model(0.0)


def test_cpu_model_name_reads_cpuinfo(tmp_path: Path) -> None:
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 7763\n")
    assert cpu_model_name(info) == "AMD EPYC 7763"
    assert cpu_model_name(tmp_path / "missing")  # platform fallback, never empty


def test_estimate_arithmetic_follows_the_stated_model() -> None:
    clock = FakeClock()
    sampler = ProcessTreeSampler(clock=clock)
    power = cpu_power_model(30.0, 3)
    backend = EstimateBackend(sampler, cpu=power, dram_w_per_gb=0.5, clock=clock)
    end = time.process_time() + 0.1
    while time.process_time() < end:
        pass
    clock.advance(2.0)
    readings = {r.component: r for r in backend.read()}
    sample = sampler.latest()
    assert readings["cpu"].energy_j == pytest.approx(sample.cpu_s * 10.0)
    assert sample.cpu_s >= 0.1
    # Trapezoid over the 2 s the fake clock moved, at the real RSS of this process.
    assert readings["dram"].energy_j == pytest.approx(sample.rss_byte_s / 1e9 * 0.5)
    assert sample.rss_byte_s > 2.0 * 1e6
    assert "0.5 W/GB (user setting)" in readings["dram"].notes[0]
    assert all(r.kind == "estimated" for r in readings.values())


def test_sampler_for_a_process_that_is_gone() -> None:
    sampler = ProcessTreeSampler(attach_later=True)
    assert sampler.latest().cpu_s == 0.0
    sampler.raise_cpu_floor(1.5)
    assert sampler.sample().cpu_s == 1.5
    sampler.attach(2**22 + 12345)  # no such pid: reads as nothing, never raises
    assert sampler.sample().rss_bytes == 0


def test_sampler_counts_only_since_start() -> None:
    end = time.process_time() + 0.05
    while time.process_time() < end:
        pass
    sampler = ProcessTreeSampler()
    assert sampler.latest().cpu_s < 0.05
    assert sampler.root_pid == os.getpid()


def test_parse_gpu_selection() -> None:
    assert parse_gpu_selection("auto") == "auto"
    assert parse_gpu_selection("NONE") == "none"
    assert parse_gpu_selection("0, 2") == (0, 2)
    for bad in ("x", "", "-1"):
        with pytest.raises(ConfigError):
            parse_gpu_selection(bad)


def test_environment_with_readable_counters(
    meter_fake_nvml: FakeNvml, meter_powercap: PowercapTree
) -> None:
    meter_fake_nvml.gpus.append(FakeGpu(UUID_A, name="NVIDIA H100", energy_mj=1))
    meter_powercap.zone("intel-rapl:0", "package-0", energy_uj=5)
    meter_powercap.zone("intel-rapl:0:0", "dram", energy_uj=5)
    report = describe_environment(MeterConfig())
    assert report.measured == ("gpu:0", "intel-rapl:0 (package-0)", "intel-rapl:0:0 (dram)")
    assert report.estimated == () and report.estimates == ()
    assert report.nvidia_driver == "999.99"
    assert "NVIDIA H100" in report.gpus[0] and "energy counter" in report.gpus[0]
    assert all(c.readable for c in report.counters)
    assert report.to_dict()["counters"][0]["source"] == "nvml"


def test_environment_without_counters(meter_no_nvml: None, meter_no_powercap: Path) -> None:
    report = describe_environment()
    assert report.measured == ()
    assert report.estimated == ("cpu", "dram")
    nvml = report.counters[0]
    assert not nvml.readable and nvml.fix == "pip install nvidia-ml-py"
    assert any("never estimated" in n for n in report.notes)

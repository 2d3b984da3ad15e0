"""Energy attribution when trials share a machine (issue 10).

One host sampler reads the (fake) powercap tree for every trial; each interval's energy is
split among the trials in it by their CPU time, and the shares add up to what the counter
measured. Only the vendor boundaries are faked: the sysfs files, pynvml; the CPU times are
injected (hand-computed cases) or read from two real subprocesses.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from frugalml.errors import ConfigError, MeterError
from frugalml.meter import (
    HostSampler,
    MeterConfig,
    TrialUsage,
    attribute,
    host_sampler,
    split_energy,
)
from meter_fixtures import UUID_A, Cpu, FakeClock, FakeGpu, FakeNvml, PowercapTree, spend, zones

NO_GPU = MeterConfig(gpus="none")


def test_split_energy_is_proportional_and_adds_up() -> None:
    assert split_energy(10.0, {"a": 1.0, "b": 3.0}) == {"a": 2.5, "b": 7.5}
    assert split_energy(9.0, {"a": 0.0, "b": 0.0, "c": 0.0}) == {"a": 3.0, "b": 3.0, "c": 3.0}
    assert split_energy(5.0, {"a": -1.0, "b": float("nan"), "c": 2.0}) == {
        "a": 0.0,
        "b": 0.0,
        "c": 5.0,
    }
    parts = split_energy(1.0, {str(i): 1.0 / (i + 1) for i in range(7)})
    assert sum(parts.values()) == 1.0  # exactly: the last part is what the others leave
    assert split_energy(3.0, {}) == {}
    with pytest.raises(ConfigError, match="finite number >= 0"):
        split_energy(-1.0, {"a": 1.0})


def test_attribute_uses_cpu_time_gpu_time_or_equal_shares() -> None:
    energy = {"cpu:0": 20.0, "dram:0": 4.0, "gpu:0": 30.0}
    usage = {
        "a": TrialUsage(cpu_s=1.0, gpu_s={"gpu:0": 3.0}),
        "b": TrialUsage(cpu_s=3.0),  # no GPU time can be read for b
    }
    shares = attribute(energy, usage)
    assert shares["a"]["cpu:0"].energy_j == pytest.approx(5.0)
    assert shares["b"]["cpu:0"].energy_j == pytest.approx(15.0)
    assert shares["a"]["dram:0"].energy_j == pytest.approx(1.0)
    assert shares["a"]["cpu:0"].rule == "cpu_time" and shares["a"]["cpu:0"].fraction == 0.25
    assert shares["a"]["gpu:0"].rule == "equal" and shares["a"]["gpu:0"].energy_j == 15.0
    usage["b"] = TrialUsage(cpu_s=3.0, gpu_s={"gpu:0": 1.0})
    shares = attribute(energy, usage)
    assert shares["a"]["gpu:0"].rule == "gpu_time"
    assert shares["a"]["gpu:0"].energy_j == pytest.approx(22.5)
    # a trial that does not use the GPU gets none of it
    usage["a"] = TrialUsage(cpu_s=1.0, components=frozenset({"cpu:0", "dram:0"}))
    shares = attribute(energy, usage)
    assert "gpu:0" not in shares["a"] and shares["b"]["gpu:0"].energy_j == 30.0
    for component, joules in energy.items():
        assert sum(s[component].energy_j for s in shares.values() if component in s) == joules


def test_host_sampler_splits_every_interval_by_cpu_time(meter_powercap: PowercapTree) -> None:
    zones(meter_powercap)
    clock, total = FakeClock(), [0.0]
    a, b = Cpu(), Cpu()
    with HostSampler(NO_GPU, clock=clock, thread=False) as sampler:
        spend(meter_powercap, clock, 10.0, total)  # nobody running: not given to anyone
        sampler.join("a", cpu_time=a)
        spend(meter_powercap, clock, 20.0, total)
        a.s += 0.5  # a alone: all 20 J
        sampler.join("b", cpu_time=b)
        spend(meter_powercap, clock, 30.0, total)
        a.s += 1.0
        b.s += 2.0  # 1:2 -> 10 J and 20 J
        sampler.tick()
        spend(meter_powercap, clock, 12.0, total)  # nobody used CPU: 6 J each
        got_a = {c.component: c for c in sampler.leave("a")}
        spend(meter_powercap, clock, 8.0, total)
        b.s += 1.0  # b alone: 8 J
        got_b = {c.component: c for c in sampler.leave("b")}
        assert sampler.trials == ()
    assert got_a["cpu:0"].energy_j == pytest.approx(20 + 10 + 6)
    assert got_b["cpu:0"].energy_j == pytest.approx(20 + 6 + 8)
    assert got_a["dram:0"].energy_j == pytest.approx((20 + 10 + 6) / 4)
    assert sampler.unattributed_j["cpu:0"] == pytest.approx(10.0)
    for component in ("cpu:0", "dram:0"):  # never more, never twice
        given = got_a[component].energy_j + got_b[component].energy_j
        measured = sampler.counter_j[component]
        assert given + sampler.unattributed_j[component] == pytest.approx(measured, rel=1e-9)
    assert sampler.counter_j["cpu:0"] == pytest.approx(80.0)
    record = got_a["cpu:0"]
    assert record.kind == "attributed"
    assert record.source == "rapl:powercap share:cpu_time"
    assert "process-tree CPU time" in record.notes[0] and "never twice" in record.notes[0]
    assert record.power_bound_w is not None


def test_a_trial_meter_over_the_sampler_windows_its_share(
    meter_powercap: PowercapTree, meter_idle_load: object
) -> None:
    zones(meter_powercap)
    clock, total = FakeClock(), [0.0]
    a, b = Cpu(), Cpu()
    with HostSampler(NO_GPU, clock=clock, thread=False) as sampler:
        sampler.join("b", cpu_time=b)
        with sampler.meter("a", cpu_time=a) as meter:
            with meter.window("epoch 1") as epoch1:
                spend(meter_powercap, clock, 40.0, total)
                a.s, b.s = a.s + 3.0, b.s + 1.0  # a gets 30 J of 40
            with meter.window("epoch 2") as epoch2:
                spend(meter_powercap, clock, 40.0, total)
                a.s, b.s = a.s + 1.0, b.s + 1.0  # 20 J
        assert sampler.trials == ("b",)  # closing a's meter made it leave
        rest_b = {c.component: c.energy_j for c in sampler.leave("b")}
    m1, m2 = epoch1.measurement, epoch2.measurement
    assert m1 is not None and m2 is not None
    assert m1.provenance == "attributed" and m1.attributed_energy_j == pytest.approx(30 * 1.25)
    assert {c.component: c.energy_j for c in m2.components} == pytest.approx(
        {"cpu:0": 20.0, "dram:0": 5.0}
    )
    assert rest_b["cpu:0"] == pytest.approx(10.0 + 20.0)
    assert not any(c.kind == "estimated" for c in m1.components)  # RAPL covers CPU and DRAM


def test_two_real_trials_share_the_tree_by_their_cpu_time(
    meter_powercap: PowercapTree,
) -> None:
    zones(meter_powercap)
    clock, total = FakeClock(), [0.0]
    burn = (
        "import sys, time\n"
        "target = float(sys.argv[1])\n"
        "while time.process_time() < target:\n"
        "    pass\n"
        "print(time.process_time(), flush=True)\n"
        "sys.stdin.readline()\n"
    )
    targets = {"small": 0.25, "large": 0.75}
    procs = {
        name: subprocess.Popen(
            [sys.executable, "-c", burn, str(t)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for name, t in targets.items()
    }
    try:
        with HostSampler(NO_GPU, clock=clock, thread=False) as sampler:
            for name, proc in procs.items():
                sampler.join(name, pid=proc.pid)
            assert all(p.stdout is not None for p in procs.values())
            reported = {n: float(p.stdout.readline()) for n, p in procs.items()}  # type: ignore[union-attr]
            spend(meter_powercap, clock, 50.0, total)
            got = {n: {c.component: c.energy_j for c in sampler.leave(n)} for n in procs}
    finally:
        for proc in procs.values():
            proc.communicate("\n", timeout=30)
    tree_j = int(Path(meter_powercap.root, "intel-rapl:0", "energy_uj").read_text()) / 1e6
    given = got["small"]["cpu:0"] + got["large"]["cpu:0"]
    assert given == pytest.approx(tree_j, rel=0.01)
    share_small = got["small"]["cpu:0"] / given
    expected_small = reported["small"] / (reported["small"] + reported["large"])
    assert share_small == pytest.approx(expected_small, abs=0.05)
    assert got["large"]["cpu:0"] > 2 * got["small"]["cpu:0"]


def test_gpu_energy_goes_equally_or_by_gpu_time_and_only_to_its_users(
    meter_fake_nvml: FakeNvml, meter_powercap: PowercapTree
) -> None:
    gpu = FakeGpu(UUID_A, energy_mj=0)
    meter_fake_nvml.gpus.append(gpu)
    clock = FakeClock()
    a, b, c = Cpu(), Cpu(), Cpu()
    a_gpu = Cpu()
    config = MeterConfig(gpus="all", use_rapl=False)
    with HostSampler(config, clock=clock, thread=False) as sampler:
        sampler.join("a", cpu_time=a)
        sampler.join("b", cpu_time=b)
        sampler.join("cpu-only", cpu_time=c, components=())
        clock.advance(1.0)
        gpu.energy_mj += 90_000
        got = {n: {r.component: r for r in sampler.leave(n)} for n in ("a", "b", "cpu-only")}
        assert got["a"]["gpu:0"].energy_j == pytest.approx(45.0)  # no GPU time: equal
        assert got["a"]["gpu:0"].source == "nvml:total_energy_counter share:equal"
        assert got["cpu-only"] == {}
        b_gpu = Cpu()
        sampler.join("a2", cpu_time=a, gpu_time={"gpu:0": a_gpu})
        sampler.join("b2", cpu_time=b, gpu_time={"gpu:0": b_gpu})
        clock.advance(1.0)
        gpu.energy_mj += 80_000
        a_gpu.s, b_gpu.s = 0.3, 0.1
        a2 = {r.component: r for r in sampler.leave("a2")}
        assert a2["gpu:0"].energy_j == pytest.approx(60.0)
        assert "GPU time" in a2["gpu:0"].notes[0]
        sampler.leave("b2")


def test_one_reader_per_host(meter_powercap: PowercapTree) -> None:
    zones(meter_powercap)
    with HostSampler(NO_GPU, thread=False) as first:
        with pytest.raises(MeterError, match="already reading this machine's counters"):
            HostSampler(NO_GPU, thread=False)
        with pytest.raises(MeterError, match="already reading"):  # any config: one reader
            HostSampler(MeterConfig(gpus="auto", rapl_psys=True), thread=False)
        assert host_sampler(NO_GPU) is first
        assert host_sampler() is first
        first.join("t", cpu_time=lambda: 0.0)
        with pytest.raises(ConfigError, match="already running"):
            first.join("t", cpu_time=lambda: 0.0)
        with pytest.raises(ConfigError, match=r"pass pid= .* or cpu_time="):
            first.join("u")
    again = HostSampler(NO_GPU, thread=False)  # the first one closed: a new reader may open
    again.close()
    with pytest.raises(ConfigError, match="is not running"):
        again.leave("t")


def test_the_poller_thread_keeps_the_sum(meter_powercap: PowercapTree) -> None:
    zones(meter_powercap)
    a, b = Cpu(), Cpu()
    spent_uj = 0
    with HostSampler(NO_GPU, interval_s=0.01) as sampler:
        sampler.join("a", cpu_time=a)
        sampler.join("b", cpu_time=b)
        for _ in range(30):  # the poller closes intervals while the test spends energy
            spent_uj += 100_000
            meter_powercap.set("intel-rapl:0", spent_uj)
            a.s += 0.01
            b.s += 0.03
            sampler.backends[0].poll()
            threading.Event().wait(0.005)
        got = {n: {c.component: c.energy_j for c in sampler.leave(n)} for n in ("a", "b")}
    given = got["a"]["cpu:0"] + got["b"]["cpu:0"] + sampler.unattributed_j.get("cpu:0", 0.0)
    assert given == pytest.approx(sampler.counter_j["cpu:0"], rel=1e-9)
    assert sampler.counter_j["cpu:0"] == pytest.approx(spent_uj / 1e6)
    assert got["b"]["cpu:0"] > got["a"]["cpu:0"] > 0


def test_two_trials_on_threads_meter_their_share(
    meter_powercap: PowercapTree, meter_idle_load: object
) -> None:
    zones(meter_powercap)
    clock, total = FakeClock(), [0.0]
    idents: dict[str, int] = {}
    burnt = {name: threading.Event() for name in ("a", "b")}
    release = threading.Event()

    def thread_cpu(name: str) -> float:
        ident = idents.get(name)
        return 0.0 if ident is None else time.clock_gettime(time.pthread_getcpuclockid(ident))

    def trial(name: str, cpu_s: float) -> None:
        idents[name] = threading.get_ident()
        end = time.thread_time() + cpu_s
        while time.thread_time() < end:
            pass
        burnt[name].set()
        release.wait(30)  # alive until its CPU clock has been read

    # the fake tree spends its energy at the end, so no poller may close an interval
    # while the threads burn (that interval would hold their CPU time and no energy)
    quiet = MeterConfig(gpus="none", poll_interval_s=3600.0)
    with HostSampler(quiet, clock=clock, thread=False, interval_s=3600.0) as sampler:
        meter_a = sampler.meter("a", cpu_time=lambda: thread_cpu("a"))
        meter_b = sampler.meter("b", cpu_time=lambda: thread_cpu("b"))
        threads = [
            threading.Thread(target=trial, args=("a", 0.1)),
            threading.Thread(target=trial, args=("b", 0.3)),
        ]
        try:
            with meter_a, meter_b, meter_a.window("a") as wa, meter_b.window("b") as wb:
                for thread in threads:
                    thread.start()
                assert all(e.wait(60) for e in burnt.values())
                spend(meter_powercap, clock, 40.0, total)
        finally:
            release.set()
            for thread in threads:
                thread.join(30)
    assert wa.measurement is not None and wb.measurement is not None
    cpu_a = {c.component: c.energy_j for c in wa.measurement.components}["cpu:0"]
    cpu_b = {c.component: c.energy_j for c in wb.measurement.components}["cpu:0"]
    assert cpu_a + cpu_b == pytest.approx(40.0, rel=0.01)
    assert cpu_a / (cpu_a + cpu_b) == pytest.approx(0.25, abs=0.03)
    assert wa.measurement.provenance == "attributed"

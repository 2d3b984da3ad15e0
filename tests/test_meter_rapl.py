"""RAPL over fake powercap trees: wraps, zone selection, unreadable and vanishing zones."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest

from frugalml.meter import Meter, MeterConfig, _rapl, discover_rapl
from frugalml.meter._estimate import EstimateBackend
from frugalml.meter._rapl import RaplBackend
from meter_fixtures import FakeClock, PowercapTree


def _backend(tree: PowercapTree, clock: FakeClock | None = None, **kwargs: object) -> RaplBackend:
    found = discover_rapl(tree.root)
    assert found.status == "ok", found.reason
    return RaplBackend(found.selected, clock=clock, **kwargs)  # type: ignore[arg-type]


def _energy(backend: RaplBackend) -> dict[str, float]:
    return {r.component: r.energy_j for r in backend.read()}


def test_counts_deltas_in_joules(meter_powercap: PowercapTree) -> None:
    meter_powercap.zone("intel-rapl:0", "package-0", energy_uj=5_000_000)
    backend = _backend(meter_powercap)
    assert _energy(backend) == {"cpu:0": 0.0}
    meter_powercap.set("intel-rapl:0", 7_500_000)
    assert _energy(backend) == {"cpu:0": pytest.approx(2.5)}
    reading = backend.read()[0]
    assert (reading.kind, reading.source) == ("measured", "rapl:powercap")
    assert "intel-rapl:0 (package-0)" in reading.device


def test_one_wrap_is_corrected(meter_powercap: PowercapTree) -> None:
    meter_powercap.zone("intel-rapl:0", "package-0", energy_uj=900, max_range_uj=1000)
    backend = _backend(meter_powercap)
    meter_powercap.set("intel-rapl:0", 100)  # wrapped: 900 -> 1000 -> 0 -> 100
    assert _energy(backend)["cpu:0"] == pytest.approx(200e-6)


def test_several_wraps_between_windows_are_all_seen(meter_powercap: PowercapTree) -> None:
    meter_powercap.zone("intel-rapl:0", "package-0", energy_uj=900, max_range_uj=1000)
    clock = FakeClock()
    backend = _backend(meter_powercap, clock=clock, max_power_w=1e-6)
    # The counter wraps three times; the poller polls within every wrap period.
    for value in (100, 500, 50, 20, 999):
        clock.advance(backend.poll_interval_s)
        meter_powercap.set("intel-rapl:0", value)
        backend.poll()
    expected_uj = (1000 - 900 + 100) + 400 + (1000 - 500 + 50) + (1000 - 50 + 20) + 979
    assert _energy(backend)["cpu:0"] == pytest.approx(expected_uj * 1e-6)
    assert not any("missed" in n for n in backend.read()[0].notes)


def test_poll_interval_follows_range_and_max_power(meter_powercap: PowercapTree) -> None:
    meter_powercap.zone("intel-rapl:0", "package-0", max_range_uj=262_143_328_850)
    meter_powercap.zone("intel-rapl:0:0", "dram", max_range_uj=65_712_999_613)
    backend = _backend(meter_powercap, max_power_w=500.0)
    # Half the shortest wrap period: 65,713 J / 500 W / 2.
    assert backend.poll_interval_s == pytest.approx(65_712.999613 / 500 / 2)


def test_a_gap_longer_than_a_wrap_period_is_noted(meter_powercap: PowercapTree) -> None:
    meter_powercap.zone("intel-rapl:0", "package-0", energy_uj=10, max_range_uj=1_000_000)
    clock = FakeClock()
    backend = _backend(meter_powercap, clock=clock, max_power_w=1.0)  # wraps within 1 s
    clock.advance(5.0)
    meter_powercap.set("intel-rapl:0", 20)
    backend.poll()
    assert any("may have been missed" in n for n in backend.read()[0].notes)


def test_missing_max_range_warns_and_cannot_correct(
    meter_powercap: PowercapTree, meter_caplog: pytest.LogCaptureFixture
) -> None:
    meter_powercap.zone("intel-rapl:0", "package-0", energy_uj=900, max_range_uj=None)
    found = discover_rapl(meter_powercap.root)
    assert found.status == "ok"
    assert any("max_energy_range_uj missing" in n for n in found.notes)
    with meter_caplog.at_level(logging.WARNING, logger="frugalml.meter._rapl"):
        backend = RaplBackend(found.selected)
    assert "wraps cannot be corrected" in meter_caplog.text
    meter_powercap.set("intel-rapl:0", 100)  # a decrease: not booked, never the raw counter
    reading = backend.read()[0]
    assert reading.energy_j == 0.0
    assert any("max_energy_range_uj unknown" in n for n in reading.notes)
    [fault] = reading.faults
    assert "max_energy_range_uj is unknown: a wrap cannot be corrected" in fault.note


def test_parent_and_children_are_not_double_counted(meter_powercap: PowercapTree) -> None:
    meter_powercap.zone("intel-rapl:0", "package-0", energy_uj=0)
    meter_powercap.zone("intel-rapl:0:0", "core", energy_uj=0)
    meter_powercap.zone("intel-rapl:0:1", "uncore", energy_uj=0)
    meter_powercap.zone("intel-rapl:0:2", "dram", energy_uj=0)
    meter_powercap.zone("intel-rapl:1", "package-1", energy_uj=0)
    found = discover_rapl(meter_powercap.root)
    assert {z.label for z in found.selected} == {
        "intel-rapl:0 (package-0)",
        "intel-rapl:0:2 (dram)",
        "intel-rapl:1 (package-1)",
    }
    backend = RaplBackend(found.selected)
    meter_powercap.set("intel-rapl:0", 3_000_000)
    meter_powercap.set("intel-rapl:0:0", 2_000_000)  # inside package-0: not added
    meter_powercap.set("intel-rapl:0:1", 500_000)
    meter_powercap.set("intel-rapl:0:2", 1_000_000)
    meter_powercap.set("intel-rapl:1", 4_000_000)
    energy = _energy(backend)
    assert energy == {
        "cpu:0": pytest.approx(3.0),
        "dram:0": pytest.approx(1.0),
        "cpu:1": pytest.approx(4.0),
    }
    assert sum(energy.values()) == pytest.approx(8.0)


def test_psys_is_an_alternative_not_an_addition(meter_powercap: PowercapTree) -> None:
    meter_powercap.zone("intel-rapl:0", "package-0")
    meter_powercap.zone("intel-rapl:0:0", "dram")
    meter_powercap.zone("intel-rapl:1", "psys")
    default = discover_rapl(meter_powercap.root)
    assert [z.name for z in default.selected] == ["package-0", "dram"]
    assert any("psys present but not added" in n for n in default.notes)
    psys = discover_rapl(meter_powercap.root, use_psys=True)
    assert [z.name for z in psys.selected] == ["psys"]
    assert psys.counts_dram


def test_psys_alone_is_used(meter_powercap: PowercapTree) -> None:
    meter_powercap.zone("intel-rapl:1", "psys")
    assert [z.name for z in discover_rapl(meter_powercap.root).selected] == ["psys"]


def test_mmio_zones_are_skipped(meter_powercap: PowercapTree) -> None:
    meter_powercap.zone("intel-rapl:0", "package-0")
    (meter_powercap.root / "intel-rapl-mmio:0").mkdir()
    found = discover_rapl(meter_powercap.root)
    assert [z.zone_id for z in found.selected] == ["intel-rapl:0"]
    assert any("mmio" in n for n in found.notes)


def test_zone_that_disappears_keeps_its_energy(
    meter_powercap: PowercapTree, meter_caplog: pytest.LogCaptureFixture
) -> None:
    meter_powercap.zone("intel-rapl:0", "package-0", energy_uj=0)
    meter_powercap.zone("intel-rapl:1", "package-1", energy_uj=0)
    backend = _backend(meter_powercap)
    meter_powercap.set("intel-rapl:0", 2_000_000)
    meter_powercap.set("intel-rapl:1", 1_000_000)
    backend.poll()
    shutil.rmtree(meter_powercap.root / "intel-rapl:1")
    meter_powercap.set("intel-rapl:0", 3_000_000)
    with meter_caplog.at_level(logging.WARNING):
        readings = {r.component: r for r in backend.read()}
    assert readings["cpu:0"].energy_j == pytest.approx(3.0)
    assert readings["cpu:1"].energy_j == pytest.approx(1.0)  # what it measured stays
    assert any("disappeared" in n for n in readings["cpu:1"].notes)
    assert "became unreadable" in meter_caplog.text


def test_garbage_in_energy_uj_is_noted_and_skipped(meter_powercap: PowercapTree) -> None:
    meter_powercap.zone("intel-rapl:0", "package-0", energy_uj=1_000_000)
    backend = _backend(meter_powercap)
    meter_powercap.set("intel-rapl:0", "garbage\x00")
    reading = backend.read()[0]
    assert reading.energy_j == 0.0
    assert any("not a counter value" in n for n in reading.notes)
    meter_powercap.set("intel-rapl:0", 1_500_000)
    # No baseline across the garbage: the next good reading starts a new interval.
    assert backend.read()[0].energy_j == 0.0
    meter_powercap.set("intel-rapl:0", 2_000_000)
    reading = backend.read()[0]
    assert reading.energy_j == pytest.approx(0.5)
    assert len(reading.faults) == 1 and "not a counter value" in reading.faults[0].note


def test_garbage_at_start_falls_back_to_estimate(
    meter_powercap: PowercapTree, meter_caplog: pytest.LogCaptureFixture
) -> None:
    meter_powercap.zone("intel-rapl:0", "package-0", energy_uj="n/a")
    found = discover_rapl(meter_powercap.root)
    assert found.status == "unreadable"
    with meter_caplog.at_level(logging.WARNING), Meter(MeterConfig(gpus="none")) as meter:
        assert {type(b) for b in meter.backends} == {EstimateBackend}
    assert "unreadable" in meter_caplog.text


def test_permission_denied_falls_back_to_estimate_and_warns_once(
    meter_powercap: PowercapTree,
    monkeypatch: pytest.MonkeyPatch,
    meter_caplog: pytest.LogCaptureFixture,
) -> None:
    # chmod 000 does not stop root, so deny at the boundary the backend reads through.
    meter_powercap.zone("intel-rapl:0", "package-0", energy_uj=1)
    real_read = _rapl.read_sysfs

    def denied(path: Path) -> str:
        if path.name == "energy_uj":
            raise PermissionError(13, "Permission denied", str(path))
        return real_read(path)

    monkeypatch.setattr(_rapl, "read_sysfs", denied)
    monkeypatch.setattr(_rapl, "_permission_warned", False)
    found = discover_rapl()
    assert found.status == "permission_denied"
    with meter_caplog.at_level(logging.WARNING, logger="frugalml.meter"):
        for _ in range(2):
            with Meter(MeterConfig(gpus="none")) as meter:
                with meter.window("w") as window:
                    pass
                assert window.measurement is not None
                kinds = {c.component: c.kind for c in window.measurement.components}
                assert kinds == {"cpu": "estimated", "dram": "estimated"}
    warnings = [r for r in meter_caplog.records if "not readable" in r.getMessage()]
    assert len(warnings) == 1
    assert "chmod o+r" in warnings[0].getMessage()
    assert "udev" in warnings[0].getMessage()


def test_no_powercap_directory(meter_no_powercap: Path) -> None:
    found = discover_rapl()
    assert found.status == "no_powercap"
    assert str(meter_no_powercap) in found.reason


def test_meter_windows_over_rapl_nest(meter_powercap: PowercapTree) -> None:
    meter_powercap.zone("intel-rapl:0", "package-0", energy_uj=1_000_000)
    meter_powercap.zone("intel-rapl:0:0", "dram", energy_uj=0)
    with Meter(MeterConfig(gpus="none")) as meter:
        assert [type(b) for b in meter.backends] == [RaplBackend]  # nothing estimated
        outer = meter.begin("outer")
        meter_powercap.set("intel-rapl:0", 3_000_000)
        with meter.window("inner") as inner:
            meter_powercap.set("intel-rapl:0", 6_000_000)
            meter_powercap.set("intel-rapl:0:0", 500_000)
        meter_powercap.set("intel-rapl:0", 10_000_000)
        outer_m = meter.end(outer)
    assert inner.measurement is not None
    assert inner.measurement.energy_j == pytest.approx(3.5)
    assert inner.measurement.parent == "outer"
    assert inner.measurement.provenance == "measured"
    assert outer_m.energy_j == pytest.approx(9.5)
    assert outer_m.parent is None
    assert [m.name for m in meter.measurements] == ["inner", "outer"]


def test_rapl_without_dram_zone_estimates_dram(meter_powercap: PowercapTree) -> None:
    meter_powercap.zone("intel-rapl:0", "package-0", energy_uj=0)
    with Meter(MeterConfig(gpus="none")) as meter, meter.window("w") as window:
        meter_powercap.set("intel-rapl:0", 1_000_000)
    assert window.measurement is not None
    kinds = {c.component: (c.kind, c.source) for c in window.measurement.components}
    assert kinds == {
        "cpu:0": ("measured", "rapl:powercap"),
        "dram": ("estimated", "estimate:w_per_gb*rss"),
    }
    assert window.measurement.provenance == "mixed"

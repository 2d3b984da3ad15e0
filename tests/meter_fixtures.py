"""Helpers for the meter tests: a fake powercap tree, NVML mocked at its boundary, a clock.

Only the vendor boundaries are faked: the sysfs files RAPL reads (real files in tmp_path,
driven between polls) and the pynvml functions (autospecced against the installed
nvidia-ml-py, so a wrong call signature fails the test).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from unittest import mock

import pytest


class FakeClock:
    """A monotonic clock the test advances by hand."""

    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t

    def advance(self, dt: float) -> None:
        self.t += dt


# -- powercap --------------------------------------------------------------------------


class PowercapTree:
    """A powercap tree in a temporary folder, shaped like /sys/class/powercap."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def zone(
        self,
        zone_id: str,
        name: str,
        energy_uj: int | str = 0,
        max_range_uj: int | None = 262_143_328_850,
        constraints: dict[str, int | str] | None = None,
    ) -> Path:
        """A zone; ``constraints`` maps file names (``constraint_0_max_power_uw``) to values."""
        parts = zone_id.split(":")
        if len(parts) == 3:  # a sub-zone lives inside its parent, linked from the root
            parent = self.root / f"{parts[0]}:{parts[1]}"
            path = parent / zone_id
            path.mkdir(parents=True)
            (self.root / zone_id).symlink_to(path, target_is_directory=True)
        else:
            path = self.root / zone_id
            path.mkdir(parents=True)
        (path / "name").write_text(f"{name}\n")
        (path / "energy_uj").write_text(f"{energy_uj}\n")
        if max_range_uj is not None:
            (path / "max_energy_range_uj").write_text(f"{max_range_uj}\n")
        for file_name, value in (constraints or {}).items():
            (path / file_name).write_text(f"{value}\n")
        return path

    def set(self, zone_id: str, energy_uj: int | str) -> None:
        """Set a zone's counter atomically, as sysfs reads are (a reader never sees a
        half-written file)."""
        target = self.root / zone_id / "energy_uj"
        partial = target.with_name("energy_uj.partial")
        partial.write_text(f"{energy_uj}\n")
        os.replace(partial, target)


# -- the attribution tests' trial usage and package spending ---------------------------


class Cpu:
    """A trial's cumulative CPU seconds, set by the test."""

    def __init__(self) -> None:
        self.s = 0.0

    def __call__(self) -> float:
        return self.s


def zones(tree: PowercapTree) -> None:
    """A package-0 zone with its DRAM subzone, both at 0 J."""
    tree.zone("intel-rapl:0", "package-0", energy_uj=0)
    tree.zone("intel-rapl:0:0", "dram", energy_uj=0)


def spend(tree: PowercapTree, clock: FakeClock, package_j: float, total: list[float]) -> None:
    """The package spends ``package_j`` (DRAM a quarter of it) over one second."""
    total[0] += package_j
    clock.advance(1.0)
    tree.set("intel-rapl:0", round(total[0] * 1e6))
    tree.set("intel-rapl:0:0", round(total[0] / 4 * 1e6))


@pytest.fixture
def meter_powercap(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> PowercapTree:
    """An empty fake powercap root, installed through FRUGALML_POWERCAP_ROOT."""
    tree = PowercapTree(tmp_path / "powercap")
    monkeypatch.setenv("FRUGALML_POWERCAP_ROOT", str(tree.root))
    return tree


@pytest.fixture
def meter_no_powercap(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A powercap root that does not exist (as on this machine and CI)."""
    missing = tmp_path / "no-powercap"
    monkeypatch.setenv("FRUGALML_POWERCAP_ROOT", str(missing))
    return missing


# -- NVML ------------------------------------------------------------------------------


@dataclass
class FakeGpu:
    """One GPU as the fake driver sees it. ``None`` readings are "not supported"."""

    uuid: str
    name: str = "NVIDIA Test GPU"
    energy_mj: int | None = 0
    power_mw: int | None = 100_000
    enforced_limit_mw: int | None = 300_000
    management_limit_mw: int | None = 300_000


@dataclass
class FakeNvml:
    """State behind the autospecced pynvml functions."""

    gpus: list[FakeGpu] = field(default_factory=list)
    init_error: int | None = None
    mocks: dict[str, Any] = field(default_factory=dict)
    shutdowns: int = 0


def _error(code: int) -> Exception:
    import pynvml

    return pynvml.NVMLError(code)  # type: ignore[no-any-return]


def install_fake_nvml(monkeypatch: pytest.MonkeyPatch, fake: FakeNvml) -> FakeNvml:
    """Replace the pynvml functions the backend calls with autospecced fakes over ``fake``."""
    import pynvml

    def init() -> None:
        if fake.init_error is not None:
            raise _error(fake.init_error)

    def shutdown() -> None:
        fake.shutdowns += 1

    def handle(index: int) -> FakeGpu:
        if not 0 <= index < len(fake.gpus):
            raise _error(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        return fake.gpus[index]

    def energy(h: FakeGpu) -> int:
        if h.energy_mj is None:
            raise _error(pynvml.NVML_ERROR_NOT_SUPPORTED)
        return h.energy_mj

    def power(h: FakeGpu) -> int:
        if h.power_mw is None:
            raise _error(pynvml.NVML_ERROR_NOT_SUPPORTED)
        return h.power_mw

    def enforced_limit(h: FakeGpu) -> int:
        if h.enforced_limit_mw is None:
            raise _error(pynvml.NVML_ERROR_NOT_SUPPORTED)
        return h.enforced_limit_mw

    def management_limit(h: FakeGpu) -> int:
        if h.management_limit_mw is None:
            raise _error(pynvml.NVML_ERROR_NOT_SUPPORTED)
        return h.management_limit_mw

    impls = {
        "nvmlInit": init,
        "nvmlShutdown": shutdown,
        "nvmlDeviceGetCount": lambda: len(fake.gpus),
        "nvmlDeviceGetHandleByIndex": handle,
        "nvmlDeviceGetUUID": lambda h: h.uuid,
        "nvmlDeviceGetName": lambda h: h.name,
        "nvmlDeviceGetTotalEnergyConsumption": energy,
        "nvmlDeviceGetPowerUsage": power,
        "nvmlDeviceGetEnforcedPowerLimit": enforced_limit,
        "nvmlDeviceGetPowerManagementLimit": management_limit,
        "nvmlSystemGetDriverVersion": lambda: "999.99",
    }
    for name, impl in impls.items():
        fake.mocks[name] = mock.create_autospec(getattr(pynvml, name), side_effect=impl)
        monkeypatch.setattr(pynvml, name, fake.mocks[name])
    return fake


@pytest.fixture
def meter_fake_nvml(monkeypatch: pytest.MonkeyPatch) -> FakeNvml:
    """NVML with no GPU yet; tests append FakeGpu entries before opening the backend."""
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    return install_fake_nvml(monkeypatch, FakeNvml())


@pytest.fixture
def meter_no_nvml(monkeypatch: pytest.MonkeyPatch) -> None:
    """pynvml cannot be imported (nvidia-ml-py not installed)."""
    import sys

    monkeypatch.setitem(sys.modules, "pynvml", None)


UUID_A = "GPU-aaaaaaaa-1111-2222-3333-444444444444"
UUID_B = "GPU-bbbbbbbb-5555-6666-7777-888888888888"
UUID_C = "GPU-bbbbcccc-9999-0000-aaaa-bbbbbbbbbbbb"


# -- machine load ----------------------------------------------------------------------


@pytest.fixture
def meter_idle_load(monkeypatch: pytest.MonkeyPatch) -> list[float | None]:
    """The 1-minute load average the meter reads, set by the test (idle by default).

    Tests change ``loads[0]``; the meter reads it wherever it would call os.getloadavg().
    """
    from frugalml.meter import _meter

    loads: list[float | None] = [0.0]
    monkeypatch.setattr(_meter, "load_avg_1m", lambda: loads[0])
    return loads


# -- logging ---------------------------------------------------------------------------


@pytest.fixture
def meter_caplog(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> pytest.LogCaptureFixture:
    """caplog that still works after a CLI test configured the ``frugalml`` logger."""
    import logging

    monkeypatch.setattr(logging.getLogger("frugalml"), "propagate", True)
    return caplog


@pytest.fixture
def meter_cli_logging() -> Any:
    """Restore the ``frugalml`` logger after the CLI (re)configures it."""
    import logging

    logger = logging.getLogger("frugalml")
    saved = (list(logger.handlers), logger.level, logger.propagate)
    yield
    logger.handlers[:], logger.level, logger.propagate = saved[0], saved[1], saved[2]

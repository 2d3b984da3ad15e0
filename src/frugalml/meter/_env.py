"""``describe_environment()``: what the meter can read on this machine, and what it would
estimate instead, with the assumptions (used by ``frugalml env``)."""

from __future__ import annotations

import os
import platform
import sys
from dataclasses import asdict, dataclass
from typing import Any

from frugalml.meter._carbon import resolve_carbon
from frugalml.meter._config import MeterConfig
from frugalml.meter._estimate import (
    DEFAULT_DRAM_W_PER_GB,
    DRAM_SOURCE,
    cpu_model_name,
    cpu_power_model,
)
from frugalml.meter._nvml import probe_nvml
from frugalml.meter._rapl import RAPL_PERMISSION_FIX, RaplZone, discover_rapl

__all__ = ["CounterStatus", "EnvironmentReport", "describe_environment"]


@dataclass(frozen=True)
class CounterStatus:
    """One hardware counter family: can it be read here, and if not, why not."""

    component: str
    source: str
    readable: bool
    reason: str
    fix: str | None = None
    details: tuple[str, ...] = ()


@dataclass(frozen=True)
class EnvironmentReport:
    """Counters, hardware, carbon settings and the estimates the meter would fall back on."""

    platform: str
    python: str
    cpu_model: str
    logical_cpus: int
    gpus: tuple[str, ...]
    nvidia_driver: str | None
    powercap_root: str
    counters: tuple[CounterStatus, ...]
    measured: tuple[str, ...]
    estimated: tuple[str, ...]
    estimates: tuple[str, ...]
    intensity_g_per_kwh: float
    intensity_source: str
    pue: float
    pue_source: str
    country: str | None
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _rapl_bound(zone: RaplZone) -> str:
    bound = zone.power_bound()
    return f", deltas checked against {bound.max_power_w:g} W ({bound.source})"


def describe_environment(config: MeterConfig | None = None) -> EnvironmentReport:
    """Probe NVML and powercap (read-only, no network) and settle the carbon settings.

    Raises :class:`~frugalml.errors.ConfigError` only for bad carbon settings (an unknown
    country code, a PUE below 1).
    """
    config = config or MeterConfig()
    carbon = resolve_carbon(config.carbon)
    counters: list[CounterStatus] = []
    measured: list[str] = []
    estimated: list[str] = []
    estimates: list[str] = []
    notes: list[str] = []

    nvml = probe_nvml()
    gpus = tuple(
        f"GPU {g.ordinal if g.ordinal is not None else '-'}: {g.name} ({g.uuid}, NVML index "
        f"{g.nvml_index}; "
        + (
            "energy counter"
            if g.energy_counter
            else "power sampling"
            if g.power_usage
            else f"not measurable: {g.problem}"
        )
        + ("" if g.ordinal is not None else "; not visible to this process")
        + f"; deltas checked against {g.power_bound.max_power_w:g} W "
        + f"({g.power_bound.source})"
        + ")"
        for g in nvml.gpus
    )
    gpu_fix = {
        "no_nvml": "pip install nvidia-ml-py",
        "no_driver": "install or load the NVIDIA driver (nvidia-smi must work)",
        "none_visible": "check CUDA_VISIBLE_DEVICES",
    }.get(nvml.status)
    counters.append(
        CounterStatus(
            "gpu",
            "nvml",
            nvml.status == "ok",
            nvml.reason,
            gpu_fix,
            tuple(nvml.notes),
        )
    )
    if nvml.status == "ok":
        measured.extend(f"gpu:{g.ordinal}" for g in nvml.visible if g.problem is None)
    else:
        notes.append(f"no GPU energy: {nvml.reason} (GPU energy is never estimated)")

    rapl = discover_rapl(config.powercap_root, use_psys=config.rapl_psys)
    zones = tuple(
        f"{z.label}: "
        + ("readable" if z.readable else f"not readable ({z.problem})")
        + (
            f", wraps at {z.max_energy_range_uj} uJ"
            if z.max_energy_range_uj is not None
            else ", max_energy_range_uj unknown"
        )
        + _rapl_bound(z)
        + (" [counted]" if z in rapl.selected else "")
        for z in rapl.zones
    )
    rapl_ok = rapl.status == "ok" and config.use_rapl
    counters.append(
        CounterStatus(
            "cpu+dram",
            "rapl",
            rapl_ok,
            rapl.reason if config.use_rapl else "switched off (use_rapl=False)",
            RAPL_PERMISSION_FIX if rapl.status == "permission_denied" else None,
            zones + tuple(rapl.notes),
        )
    )
    cpu_measured = rapl_ok
    dram_measured = rapl_ok and rapl.counts_dram
    if cpu_measured:
        measured.extend(z.label for z in rapl.selected)
    else:
        model = cpu_power_model(config.cpu_tdp_w, config.cpu_logical_cpus)
        estimated.append("cpu")
        estimates.append(f"cpu: {model.describe()}")
    if not dram_measured:
        estimated.append("dram")
        source = DRAM_SOURCE if config.dram_w_per_gb == DEFAULT_DRAM_W_PER_GB else "user setting"
        estimates.append(
            f"dram: energy = integral of process-tree RSS (GB) over time x "
            f"{config.dram_w_per_gb:g} W/GB ({source})"
        )
    from frugalml.meter._registry import _BUILTIN, registered_backends

    extra = [getattr(f, "__name__", repr(f)) for f in registered_backends() if f not in _BUILTIN]
    if extra:
        notes.append(
            f"also registered (register_backend), opened by every meter, not probed here: "
            f"{', '.join(extra)}"
        )
    return EnvironmentReport(
        platform=platform.platform(),
        python=sys.version.split()[0],
        cpu_model=cpu_model_name(),
        logical_cpus=os.cpu_count() or 1,
        gpus=gpus,
        nvidia_driver=nvml.driver_version,
        powercap_root=str(rapl.root),
        counters=tuple(counters),
        measured=tuple(measured),
        estimated=tuple(estimated),
        estimates=tuple(estimates),
        intensity_g_per_kwh=carbon.intensity_g_per_kwh,
        intensity_source=carbon.intensity_source,
        pue=carbon.pue,
        pue_source=carbon.pue_source,
        country=carbon.country,
        notes=tuple(notes),
    )

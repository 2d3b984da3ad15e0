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
from frugalml.meter._nvml import NvmlGpuInfo, NvmlProbe, probe_nvml
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


def _gpu_line(gpu: NvmlGpuInfo) -> str:
    """One GPU as ``frugalml env`` lists it: name, NVML index, how it is measured, bound."""
    how = (
        "energy counter"
        if gpu.energy_counter
        else "power sampling"
        if gpu.power_usage
        else f"not measurable: {gpu.problem}"
    )
    return (
        f"GPU {gpu.ordinal if gpu.ordinal is not None else '-'}: {gpu.name} ({gpu.uuid}, "
        f"NVML index {gpu.nvml_index}; "
        + how
        + ("" if gpu.ordinal is not None else "; not visible to this process")
        + f"; deltas checked against {gpu.power_bound.max_power_w:g} W "
        + f"({gpu.power_bound.source})"
        + ")"
    )


def _gpu_counter(nvml: NvmlProbe, measured: list[str], notes: list[str]) -> CounterStatus:
    """NVML's counter status; the measurable visible GPUs go to ``measured``, and a note
    says why there is no GPU energy when NVML cannot be read (it is never estimated)."""
    gpu_fix = {
        "no_nvml": "pip install nvidia-ml-py",
        "no_driver": "install or load the NVIDIA driver (nvidia-smi must work)",
        "none_visible": "check CUDA_VISIBLE_DEVICES",
    }.get(nvml.status)
    if nvml.status == "ok":
        measured.extend(f"gpu:{g.ordinal}" for g in nvml.visible if g.problem is None)
    else:
        notes.append(f"no GPU energy: {nvml.reason} (GPU energy is never estimated)")
    return CounterStatus(
        "gpu",
        "nvml",
        nvml.status == "ok",
        nvml.reason,
        gpu_fix,
        tuple(nvml.notes),
    )


def _rapl_zone_line(zone: RaplZone, selected: tuple[RaplZone, ...]) -> str:
    """One powercap zone: readable or why not, its wrap range, its bound, counted or not."""
    return (
        f"{zone.label}: "
        + ("readable" if zone.readable else f"not readable ({zone.problem})")
        + (
            f", wraps at {zone.max_energy_range_uj} uJ"
            if zone.max_energy_range_uj is not None
            else ", max_energy_range_uj unknown"
        )
        + _rapl_bound(zone)
        + (" [counted]" if zone in selected else "")
    )


def _host_estimates(
    config: MeterConfig, cpu_measured: bool, dram_measured: bool
) -> tuple[list[str], list[str]]:
    """The components the meter would estimate (CPU, DRAM) and each estimate's rule."""
    estimated: list[str] = []
    estimates: list[str] = []
    if not cpu_measured:
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
    return estimated, estimates


def _extra_backends_note() -> str | None:
    """A note naming the backends added with ``register_backend`` (not probed here)."""
    from frugalml.meter._registry import _BUILTIN, registered_backends

    extra = [getattr(f, "__name__", repr(f)) for f in registered_backends() if f not in _BUILTIN]
    if not extra:
        return None
    return (
        f"also registered (register_backend), opened by every meter, not probed here: "
        f"{', '.join(extra)}"
    )


def describe_environment(config: MeterConfig | None = None) -> EnvironmentReport:
    """Probe NVML and powercap (read-only, no network) and settle the carbon settings.

    Raises :class:`~frugalml.errors.ConfigError` only for bad carbon settings (an unknown
    country code, a PUE below 1).
    """
    config = config or MeterConfig()
    carbon = resolve_carbon(config.carbon)
    measured: list[str] = []
    notes: list[str] = []

    nvml = probe_nvml()
    gpus = tuple(_gpu_line(g) for g in nvml.gpus)
    counters = [_gpu_counter(nvml, measured, notes)]

    rapl = discover_rapl(config.powercap_root, use_psys=config.rapl_psys)
    zones = tuple(_rapl_zone_line(z, rapl.selected) for z in rapl.zones)
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
    if rapl_ok:
        measured.extend(z.label for z in rapl.selected)
    estimated, estimates = _host_estimates(config, rapl_ok, rapl_ok and rapl.counts_dram)
    extra_note = _extra_backends_note()
    if extra_note is not None:
        notes.append(extra_note)
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

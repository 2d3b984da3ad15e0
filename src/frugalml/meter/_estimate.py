"""Stated estimates for the CPU and DRAM where no counter can be read.

CPU: ``energy_j = process-tree CPU seconds x TDP_w / logical CPUs``. The TDP and the number
of logical CPUs it is shared by come from, in order: the user (``MeterConfig.cpu_tdp_w``),
the small table ``cpu_tdp.csv`` shipped with this package (keyed by the CPU model string,
manufacturer figures), or the fallback of 12 W per logical CPU (Green Algorithms' default of
12 W per core for an unknown CPU, Lannelongue et al. 2021, applied per logical CPU, which
overstates on machines with two threads per core).

DRAM: ``energy_j = integral of process-tree RSS (GB, 10^9 bytes) dt x 0.3725 W/GB``
(Green Algorithms' memory power, Lannelongue et al., Adv. Sci. 2021), RSS sampled by the
meter's poller and integrated with the trapezoid rule.

Both assumptions travel inside every measurement as component notes.
"""

from __future__ import annotations

import csv
import functools
import logging
import os
import platform
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from frugalml.errors import ConfigError
from frugalml.meter._backend import (
    BackendCapabilities,
    Clock,
    ComponentReading,
    DeviceKind,
    EnergyBackend,
)
from frugalml.meter._process import ProcessTreeSampler

if TYPE_CHECKING:
    from frugalml.meter._registry import BackendContext

__all__ = [
    "DEFAULT_DRAM_W_PER_GB",
    "FALLBACK_W_PER_LOGICAL_CPU",
    "CpuPowerModel",
    "EstimateBackend",
    "cpu_model_name",
    "cpu_power_model",
    "estimate_unmeasured",
]

logger = logging.getLogger(__name__)

#: Memory power per GB of resident memory (Green Algorithms, Lannelongue et al. 2021).
DEFAULT_DRAM_W_PER_GB = 0.3725
DRAM_SOURCE = "Green Algorithms, Lannelongue et al., Adv. Sci. 2021"
#: Watts per busy logical CPU when the CPU model is not in the table.
FALLBACK_W_PER_LOGICAL_CPU = 12.0
FALLBACK_SOURCE = (
    "fallback: Green Algorithms' default of 12 W per core for an unknown CPU "
    "(Lannelongue et al. 2021), applied per logical CPU"
)

CPU_SOURCE = "estimate:tdp*utilisation"
DRAM_SOURCE_LABEL = "estimate:w_per_gb*rss"
_BYTES_PER_GB = 1e9


@dataclass(frozen=True)
class CpuPowerModel:
    """How busy CPU seconds become joules: ``tdp_w / logical_cpus`` watts per busy CPU."""

    cpu_model: str
    tdp_w: float
    logical_cpus: int
    source: str

    @property
    def w_per_logical_cpu(self) -> float:
        return self.tdp_w / self.logical_cpus

    def describe(self) -> str:
        return (
            f"energy = process-tree CPU seconds x {self.tdp_w:g} W TDP / "
            f"{self.logical_cpus} logical CPUs = {self.w_per_logical_cpu:.3g} W per busy "
            f"logical CPU (CPU {self.cpu_model!r}; {self.source})"
        )


def cpu_model_name(cpuinfo_path: Path = Path("/proc/cpuinfo")) -> str:
    """The CPU model string (``/proc/cpuinfo`` on Linux, else ``platform.processor()``)."""
    try:
        text = cpuinfo_path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        text = ""
    for key in ("model name", "Model", "Hardware", "Processor"):
        for line in text.splitlines():
            name, sep, value = line.partition(":")
            if sep and name.strip() == key and value.strip():
                return value.strip()
    return platform.processor() or platform.machine() or "unknown"


def _normalise(model: str) -> str:
    text = re.sub(r"\((?:r|tm)\)", " ", model.lower())
    text = re.sub(r"\b(?:cpu|processor)\b", " ", text)
    return " ".join(text.split())


@dataclass(frozen=True)
class _TdpRow:
    pattern: str
    tdp_w: float
    cores: int
    threads: int
    source: str


@functools.lru_cache(maxsize=1)
def _tdp_table() -> tuple[_TdpRow, ...]:
    text = resources.files("frugalml.meter").joinpath("cpu_tdp.csv").read_text("utf-8")
    rows = []
    for row in csv.DictReader(text.splitlines()):
        rows.append(
            _TdpRow(
                pattern=_normalise(row["pattern"]),
                tdp_w=float(row["tdp_w"]),
                cores=int(row["cores"]),
                threads=int(row["threads"]),
                source=row["source"],
            )
        )
    return tuple(rows)


def lookup_tdp(model: str) -> _TdpRow | None:
    """The table row whose pattern occurs in ``model`` as whole words, if any."""
    normalised = _normalise(model)
    for row in _tdp_table():
        if re.search(rf"(?<![\w+]){re.escape(row.pattern)}(?![\w+])", normalised):
            return row
    return None


def cpu_power_model(
    tdp_w: float | None = None,
    logical_cpus: int | None = None,
    *,
    model: str | None = None,
) -> CpuPowerModel:
    """Pick the CPU power model: the user's TDP, the table's, or the stated fallback."""
    model = model if model is not None else cpu_model_name()
    if tdp_w is not None:
        if not tdp_w > 0:
            raise ConfigError(
                f"CPU TDP must be > 0 W, not {tdp_w!r}",
                fix="pass the thermal design power of the CPUs in watts, e.g. cpu_tdp_w=65",
            )
        count = logical_cpus or os.cpu_count() or 1
        return CpuPowerModel(model, float(tdp_w), count, "user setting")
    if logical_cpus is not None and logical_cpus < 1:
        raise ConfigError(f"logical CPU count must be >= 1, not {logical_cpus!r}")
    row = lookup_tdp(model)
    if row is not None:
        return CpuPowerModel(
            model, row.tdp_w, row.threads, f"table cpu_tdp.csv, {row.source}, per socket"
        )
    count = logical_cpus or os.cpu_count() or 1
    return CpuPowerModel(model, FALLBACK_W_PER_LOGICAL_CPU * count, count, FALLBACK_SOURCE)


class EstimateBackend(EnergyBackend):
    """CPU and/or DRAM energy computed from the process tree's CPU time and RSS."""

    name = "estimate"

    def __init__(
        self,
        sampler: ProcessTreeSampler,
        *,
        cpu: CpuPowerModel | None,
        dram_w_per_gb: float | None,
        poll_interval_s: float = 0.5,
        clock: Clock | None = None,
        extra_notes: tuple[str, ...] = (),
    ) -> None:
        super().__init__(clock)
        if dram_w_per_gb is not None and not dram_w_per_gb >= 0:
            raise ConfigError(
                f"DRAM power must be >= 0 W/GB, not {dram_w_per_gb!r}",
                fix=f"leave the default ({DEFAULT_DRAM_W_PER_GB} W/GB, {DRAM_SOURCE})",
            )
        self._sampler = sampler
        self._cpu = cpu
        self._dram_w_per_gb = dram_w_per_gb
        self._dram_source = (
            DRAM_SOURCE if dram_w_per_gb == DEFAULT_DRAM_W_PER_GB else "user setting"
        )
        self._interval_s = poll_interval_s
        self._extra_notes = extra_notes
        self._sample = sampler.latest()
        self._base = self._sample

    @property
    def cpu_model(self) -> CpuPowerModel | None:
        return self._cpu

    @property
    def poll_interval_s(self) -> float:
        return self._interval_s

    @property
    def capabilities(self) -> BackendCapabilities:
        """Estimated CPU and/or DRAM, from the process tree the meter samples."""
        kinds: list[DeviceKind] = []
        if self._cpu is not None:
            kinds.append("cpu")
        if self._dram_w_per_gb is not None:
            kinds.append("dram")
        return BackendCapabilities(devices=tuple(kinds), kind="estimated", reads_process_tree=True)

    @property
    def devices(self) -> tuple[str, ...]:
        if self._cpu is None:
            return ()
        return (f"CPU: {self._cpu.cpu_model} ({os.cpu_count() or 1} logical CPUs)",)

    def _poll(self) -> None:
        self._sample = self._sampler.sample()

    def _readings(self) -> list[ComponentReading]:
        out = []
        if self._cpu is not None:
            cpu_s = max(0.0, self._sample.cpu_s - self._base.cpu_s)
            out.append(
                ComponentReading(
                    component="cpu",
                    energy_j=cpu_s * self._cpu.w_per_logical_cpu,
                    source=CPU_SOURCE,
                    kind="estimated",
                    device=f"CPU: {self._cpu.cpu_model}",
                    notes=(self._cpu.describe(), *self._extra_notes),
                )
            )
        if self._dram_w_per_gb is not None:
            byte_s = max(0.0, self._sample.rss_byte_s - self._base.rss_byte_s)
            out.append(
                ComponentReading(
                    component="dram",
                    energy_j=byte_s / _BYTES_PER_GB * self._dram_w_per_gb,
                    source=DRAM_SOURCE_LABEL,
                    kind="estimated",
                    device="DRAM",
                    notes=(
                        f"energy = integral of process-tree RSS (GB = 1e9 bytes) over time x "
                        f"{self._dram_w_per_gb:g} W/GB ({self._dram_source}); RSS sampled every "
                        f"{self._interval_s:g} s and at window edges, trapezoid rule",
                        *self._extra_notes,
                    ),
                )
            )
        return out


def estimate_unmeasured(context: BackendContext) -> list[EnergyBackend]:
    """The stated CPU and DRAM estimates for whatever no backend built so far measures
    (run by :func:`~frugalml.meter.build_backends` after every registered factory)."""
    cpu = not context.measured("cpu")
    dram = not context.measured("dram")
    if not (cpu or dram):
        return []
    config = context.config
    why = "; ".join(context.unmeasured_reasons) or "no registered backend measures it"
    return [
        EstimateBackend(
            context.process,
            cpu=cpu_power_model(config.cpu_tdp_w, config.cpu_logical_cpus) if cpu else None,
            dram_w_per_gb=config.dram_w_per_gb if dram else None,
            poll_interval_s=config.poll_interval_s,
            clock=context.clock,
            extra_notes=(f"estimated because {why}",),
        )
    ]

"""``MeterConfig``: every setting of the meter in one typed, validated object."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

from frugalml.errors import ConfigError
from frugalml.meter._carbon import CarbonConfig
from frugalml.meter._estimate import DEFAULT_DRAM_W_PER_GB

__all__ = ["GpuSelection", "MeterConfig", "parse_gpu_selection"]

#: ``"auto"``: the GPUs this process can see, none quietly; ``"all"``: the same, but an
#: error without any; ``"none"``: no GPU; a tuple: those CUDA ordinals, an error if missing.
GpuSelection = Literal["auto", "all", "none"] | tuple[int, ...]


@dataclass(frozen=True)
class MeterConfig:
    """Settings of a :class:`~frugalml.meter.Meter`.

    - ``gpus``: which GPUs to measure (see :data:`GpuSelection`).
    - ``poll_interval_s``: how often the poller samples the process tree (RSS for the DRAM
      estimate, new child processes); backends may ask for shorter intervals (RAPL wraps,
      GPU power sampling), never longer.
    - ``gpu_sample_interval_s``: power sampling interval for GPUs without an energy counter.
    - ``cpu_tdp_w`` / ``cpu_logical_cpus``: the CPU power model's TDP and the number of
      logical CPUs sharing it (default: this machine's count), overriding the table.
    - ``dram_w_per_gb``: the DRAM estimate's watts per GB of resident memory.
    - ``use_rapl``, ``rapl_psys``, ``rapl_max_power_w``, ``powercap_root``: RAPL reading
      (psys instead of packages + DRAM; the conservative power that sets the poll rate,
      raised to a zone's own stated maximum where that is higher; the sysfs root, default
      ``$FRUGALML_POWERCAP_ROOT`` or ``/sys/class/powercap``). Counter deltas are checked
      against each zone's stated maximum power or the 1,000 W ceiling, not this figure.
    - ``carbon``: intensity and PUE (see :class:`CarbonConfig`).
    - ``pid``: root of the process tree whose CPU time and memory are attributed to the
      measurement (default: this process).
    - ``min_trusted_window_s``: windows shorter than this get a note that the GPU energy
      counter (updated about every 100 ms) cannot resolve them well.
    - ``sync_cuda``: synchronise CUDA at window edges when torch has already initialised it.
    - ``track_cuda_memory``: report torch's peak allocated CUDA memory per window (resets
      torch's peak statistics at window edges).
    """

    gpus: GpuSelection = "auto"
    poll_interval_s: float = 0.5
    gpu_sample_interval_s: float = 0.1
    cpu_tdp_w: float | None = None
    cpu_logical_cpus: int | None = None
    dram_w_per_gb: float = DEFAULT_DRAM_W_PER_GB
    use_rapl: bool = True
    rapl_psys: bool = False
    rapl_max_power_w: float = 1000.0
    powercap_root: str | None = None
    carbon: CarbonConfig = field(default_factory=CarbonConfig)
    pid: int | None = None
    min_trusted_window_s: float = 1.0
    sync_cuda: bool = True
    track_cuda_memory: bool = True

    def __post_init__(self) -> None:
        if isinstance(self.gpus, str):
            if self.gpus not in ("auto", "all", "none"):
                raise ConfigError(
                    f"gpus must be 'auto', 'all', 'none' or a tuple of indices, not {self.gpus!r}",
                    fix="use gpus='auto' to measure the GPUs this process can see",
                )
        elif not all(isinstance(i, int) and i >= 0 for i in self.gpus) or not self.gpus:
            raise ConfigError(
                f"gpus must list CUDA device indices >= 0, not {self.gpus!r}",
                fix="e.g. gpus=(0,) for the first visible GPU, or gpus='none'",
            )
        for name in ("poll_interval_s", "gpu_sample_interval_s", "rapl_max_power_w"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ConfigError(f"{name} must be a number > 0, not {value!r}")
        if self.cpu_tdp_w is not None and not (
            math.isfinite(self.cpu_tdp_w) and self.cpu_tdp_w > 0
        ):
            raise ConfigError(
                f"cpu_tdp_w must be > 0 W, not {self.cpu_tdp_w!r}",
                fix="give the thermal design power of the CPUs in watts, e.g. 65",
            )
        if self.cpu_logical_cpus is not None and self.cpu_logical_cpus < 1:
            raise ConfigError(f"cpu_logical_cpus must be >= 1, not {self.cpu_logical_cpus!r}")
        if not (math.isfinite(self.dram_w_per_gb) and self.dram_w_per_gb >= 0):
            raise ConfigError(f"dram_w_per_gb must be >= 0, not {self.dram_w_per_gb!r}")
        if self.min_trusted_window_s < 0:
            raise ConfigError(
                f"min_trusted_window_s must be >= 0, not {self.min_trusted_window_s!r}"
            )


def parse_gpu_selection(text: str) -> GpuSelection:
    """Parse a command-line GPU choice: ``auto``, ``all``, ``none`` or ``0,2``."""
    value = text.strip().lower()
    if value in ("auto", "all", "none"):
        return value  # type: ignore[return-value]
    try:
        indices = tuple(int(part) for part in value.split(",") if part.strip())
    except ValueError as exc:
        raise ConfigError(
            f"cannot read GPU choice {text!r}",
            fix="use auto, all, none or comma-separated CUDA indices such as 0,1",
        ) from exc
    if not indices or any(i < 0 for i in indices):
        raise ConfigError(
            f"cannot read GPU choice {text!r}",
            fix="use auto, all, none or comma-separated CUDA indices such as 0,1",
        )
    return indices

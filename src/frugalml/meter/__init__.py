"""Energy, carbon, time and memory of a piece of work, with the provenance of every joule.

``with Meter() as meter: with meter.window("epoch 1"): ...`` gives a :class:`Measurement`
per window: energy per component (each ``measured`` from a hardware counter or
``estimated`` from a stated model, with its source and assumptions in notes), CO2, wall and
CPU time, peak memory.

Modules:

- ``_types``: :class:`Measurement` and :class:`ComponentEnergy` (JSON round trip), the
  :data:`Provenance` vocabulary and :func:`combine_provenance`, :data:`J_PER_KWH`.
- ``_backend``: the backend interface (cumulative, monotonic joules per component, the
  :class:`BackendCapabilities` it declares), the power bound every counter delta must
  pass (:class:`PowerBound`) and the intervals a counter could not measure (:class:`CounterFault`).
- ``_nvml``: NVIDIA GPUs via NVML: total-energy counter, power sampling where unsupported,
  ``CUDA_VISIBLE_DEVICES`` mapping.
- ``_rapl``: CPU packages and DRAM via Linux powercap RAPL, wrap-corrected, each delta
  checked against the zone's maximum power.
- ``_estimate``: stated CPU (TDP x utilisation) and DRAM (W per GB of RSS) estimates.
- ``_process``: CPU time and RSS of a process tree.
- ``_carbon``: intensity table (``carbon_intensity.csv``), PUE, ``co2_g``.
- ``_config``: :class:`MeterConfig`.
- ``_registry``: :func:`build_backends` over the factories :func:`register_backend` keeps
  (NVML, RAPL, then any added), and the estimate for what none measures.
- ``_meter``: :class:`Meter` and its poller thread.
- ``_attribution``: :class:`HostSampler`, the one reader of a machine's shared counters,
  and :func:`attribute`, the rule that splits an interval's energy among the trials in it.
- ``_predict``: :func:`predict_total`, :class:`Budget`, :class:`BudgetGuard`,
  :func:`launch_no_more` (the one budget rule of studies, tuning and the guard).
- ``_env``: :func:`describe_environment` (``frugalml env``).
- ``_command``: :func:`measure_command` (``frugalml measure``).
- ``_log``: :func:`append_log`, the CSV log of runs (``frugalml measure --log``).
"""

from __future__ import annotations

from frugalml.meter._attribution import (
    AttributedBackend,
    HostSampler,
    Share,
    ShareRule,
    TrialUsage,
    attribute,
    host_sampler,
    split_energy,
)
from frugalml.meter._backend import (
    BackendCapabilities,
    ComponentReading,
    CounterFault,
    DeviceKind,
    EnergyBackend,
    NullBackend,
    PowerBound,
)
from frugalml.meter._carbon import (
    WORLD_INTENSITY_G_PER_KWH,
    CarbonConfig,
    CountryIntensity,
    ResolvedCarbon,
    carbon_intensity_table,
    co2_g,
    resolve_carbon,
)
from frugalml.meter._command import CommandResult, measure_command
from frugalml.meter._config import GpuSelection, MeterConfig, parse_gpu_selection
from frugalml.meter._env import CounterStatus, EnvironmentReport, describe_environment
from frugalml.meter._estimate import CpuPowerModel, EstimateBackend, cpu_power_model
from frugalml.meter._log import LOG_COLUMNS, append_log, check_log, log_row, read_log
from frugalml.meter._meter import Meter, Window
from frugalml.meter._nvml import NvmlBackend, NvmlProbe, probe_nvml
from frugalml.meter._predict import (
    Budget,
    BudgetDecision,
    BudgetExceeded,
    BudgetGuard,
    LimitVerdict,
    Prediction,
    Projection,
    launch_no_more,
    predict_total,
)
from frugalml.meter._process import ProcessTreeSampler
from frugalml.meter._rapl import RaplBackend, RaplDiscovery, discover_rapl
from frugalml.meter._registry import (
    BackendContext,
    BackendFactory,
    build_backends,
    register_backend,
    registered_backends,
)
from frugalml.meter._types import (
    J_PER_KWH,
    ComponentEnergy,
    Kind,
    Measurement,
    Provenance,
    combine_provenance,
)

__all__ = [
    "J_PER_KWH",
    "LOG_COLUMNS",
    "WORLD_INTENSITY_G_PER_KWH",
    "AttributedBackend",
    "BackendCapabilities",
    "BackendContext",
    "BackendFactory",
    "Budget",
    "BudgetDecision",
    "BudgetExceeded",
    "BudgetGuard",
    "CarbonConfig",
    "CommandResult",
    "ComponentEnergy",
    "ComponentReading",
    "CounterFault",
    "CounterStatus",
    "CountryIntensity",
    "CpuPowerModel",
    "DeviceKind",
    "EnergyBackend",
    "EnvironmentReport",
    "EstimateBackend",
    "GpuSelection",
    "HostSampler",
    "Kind",
    "LimitVerdict",
    "Measurement",
    "Meter",
    "MeterConfig",
    "NullBackend",
    "NvmlBackend",
    "NvmlProbe",
    "PowerBound",
    "Prediction",
    "ProcessTreeSampler",
    "Projection",
    "Provenance",
    "RaplBackend",
    "RaplDiscovery",
    "ResolvedCarbon",
    "Share",
    "ShareRule",
    "TrialUsage",
    "Window",
    "append_log",
    "attribute",
    "build_backends",
    "carbon_intensity_table",
    "check_log",
    "co2_g",
    "combine_provenance",
    "cpu_power_model",
    "describe_environment",
    "discover_rapl",
    "host_sampler",
    "launch_no_more",
    "log_row",
    "measure_command",
    "parse_gpu_selection",
    "predict_total",
    "probe_nvml",
    "read_log",
    "register_backend",
    "registered_backends",
    "resolve_carbon",
    "split_energy",
]

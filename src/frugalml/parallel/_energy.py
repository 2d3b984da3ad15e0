"""Energy across ranks: every counter read by exactly one rank, the totals combined once.

The rule (the project's "who reads which counter"): each GPU is read by the rank that
trains on it (its local device); the host's counters (RAPL, or the CPU/DRAM estimate when
RAPL cannot be read) by local rank 0 of each host only, over the process tree of the
launcher when the ranks were spawned by frugalml (so the estimate sees every rank's CPU
time); other ranks read no host counter. At the end the ranks' window energies are
summed by one all-reduce, so a multi-rank run never counts the host twice (CodeCarbon
issue #544: eight ranks each reporting the whole machine). :class:`RankEnergy` records
say which rank read what.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from frugalml.meter import CarbonConfig, Measurement, Meter

__all__ = [
    "CombinedEnergy",
    "RankEnergy",
    "combine_energy",
    "gather_measurement",
    "merge_measurements",
    "rank_meter",
]


@dataclass(frozen=True)
class RankEnergy:
    """What one rank read: its components (name, source, kind) and their joules."""

    rank: int
    local_rank: int
    reads_host: bool
    energy_j: float
    components: tuple[tuple[str, str, str, float], ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "rank": self.rank,
            "local_rank": self.local_rank,
            "reads_host": self.reads_host,
            "energy_j": self.energy_j,
            "components": [
                {"component": c, "source": s, "kind": k, "energy_j": e}
                for c, s, k, e in self.components
            ],
        }


@dataclass(frozen=True)
class CombinedEnergy:
    """The run's energy: the all-reduced sum of every rank's own counters."""

    energy_j: float
    ranks: tuple[RankEnergy, ...]
    rule: str = (
        "each GPU read by its own rank, host counters (RAPL or the CPU/DRAM estimate) by "
        "local rank 0 only; rank totals summed once by all-reduce"
    )

    @property
    def provenance(self) -> str:
        from frugalml.meter import combine_provenance

        return combine_provenance(c[2] for r in self.ranks for c in r.components)

    def to_dict(self) -> dict[str, Any]:
        return {
            "energy_j": self.energy_j,
            "provenance": self.provenance,
            "rule": self.rule,
            "ranks": [r.to_dict() for r in self.ranks],
        }


def rank_meter(
    local_rank: int,
    device: str,
    *,
    launcher_pid: int | None = None,
    carbon: CarbonConfig | None = None,
) -> Meter:
    """The meter one rank opens: its GPU (if ``device`` is CUDA), and the host's counters
    only on local rank 0 (over ``launcher_pid``'s process tree when given); ``carbon``: the
    intensity and PUE settings (default: the meter's)."""
    from frugalml.meter import (
        CarbonConfig,
        Meter,
        MeterConfig,
        NullBackend,
        ProcessTreeSampler,
        build_backends,
    )

    gpus: Any = "none"
    if device.startswith("cuda"):
        index = int(device.split(":", 1)[1]) if ":" in device else 0
        gpus = (index,)
    carbon = carbon or CarbonConfig()
    if local_rank == 0:
        return Meter(MeterConfig(gpus=gpus, pid=launcher_pid, carbon=carbon))
    config = MeterConfig(gpus=gpus, use_rapl=False, carbon=carbon)
    process = ProcessTreeSampler(None)
    backends: list[Any] = []
    if gpus != "none":
        built = build_backends(config, process)
        backends = [b for b in built if b.capabilities.covers("gpu")]
    if not backends:
        backends = [NullBackend("host counters are read by local rank 0")]
    return Meter(config, backends=backends, process=process)


def combine_energy(measurement: Measurement, rank: int, local_rank: int) -> CombinedEnergy:
    """All-reduce (sum) this rank's window energy with every other rank's; gather the
    per-rank records. Call on every rank of the default process group, once per window."""
    import torch
    import torch.distributed as dist

    mine = RankEnergy(
        rank,
        local_rank,
        local_rank == 0,
        measurement.energy_j,
        tuple((c.component, c.source, c.kind, c.energy_j) for c in measurement.components),
    )
    on = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else None
    total = torch.tensor([measurement.energy_j], dtype=torch.float64, device=on)
    dist.all_reduce(total, op=dist.ReduceOp.SUM)
    gathered: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, mine)
    return CombinedEnergy(float(total.item()), tuple(gathered))


def merge_measurements(per_rank: list[Measurement]) -> Measurement:
    """One window measured by every rank, as one :class:`Measurement`: rank 0's window
    (its name, start, duration, CPU time and carbon settings) with every rank's components
    (each counter read by one rank, so nothing is counted twice) and their sum as
    ``energy_j``. A component name another rank already used (``gpu:0`` on two hosts) is
    prefixed with its rank."""
    import dataclasses

    first = per_rank[0]
    components = []
    names: set[str] = set()
    for rank, measurement in enumerate(per_rank):
        for component in measurement.components:
            if component.component in names:
                component = dataclasses.replace(
                    component, component=f"rank{rank}:{component.component}"
                )
            names.add(component.component)
            components.append(component)
    energy_j = sum(c.energy_j for c in components)
    peaks = [m.peak_gpu_mem_bytes for m in per_rank if m.peak_gpu_mem_bytes is not None]
    note = (
        f"components of {len(per_rank)} ranks: each GPU read by its own rank, host counters "
        "by local rank 0 of each host"
    )
    return dataclasses.replace(
        first,
        energy_j=energy_j,
        components=tuple(components),
        co2_g=sum(m.co2_g for m in per_rank),
        peak_gpu_mem_bytes=max(peaks) if peaks else None,
        devices=tuple(dict.fromkeys(d for m in per_rank for d in m.devices)),
        notes=tuple(dict.fromkeys([*(n for m in per_rank for n in m.notes), note])),
    )


def gather_measurement(measurement: Measurement) -> Measurement:
    """:func:`merge_measurements` of this window as every rank measured it (a collective:
    call on every rank of the default process group, once per window)."""
    import torch.distributed as dist

    from frugalml.meter import Measurement

    gathered: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, measurement.to_dict())
    return merge_measurements([Measurement.from_dict(d) for d in gathered])

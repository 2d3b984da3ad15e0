"""The records a measurement produces: :class:`ComponentEnergy` and :class:`Measurement`.

Both are frozen dataclasses with units in their field names. A measurement round-trips
losslessly through :meth:`Measurement.to_dict` / :meth:`Measurement.from_dict` and JSON.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, cast, get_args

from frugalml.errors import ConfigError

__all__ = [
    "J_PER_KWH",
    "ComponentEnergy",
    "Kind",
    "Measurement",
    "Provenance",
    "combine_provenance",
]

#: How an energy figure was obtained: read from a hardware counter (``measured``), computed
#: from a stated model (``estimated``), or a stated share of a counter that several
#: measured pieces of work read at once (``attributed``; the rule is in the notes).
Kind = Literal["measured", "estimated", "attributed"]
#: The provenance of a whole measurement, a trial or a table: one kind, ``mixed`` when
#: its parts differ, ``none`` without any part.
Provenance = Literal["measured", "estimated", "attributed", "mixed", "none"]

#: Joules in one kilowatt-hour.
J_PER_KWH = 3.6e6

_KINDS: tuple[str, ...] = get_args(Kind)
_SCHEMA = "frugalml.measurement/1"


def combine_provenance(kinds: Iterable[str | None]) -> Provenance:
    """The provenance of several parts: their one kind, ``mixed`` when they differ, ``none``
    when there is none. Empty values, ``none`` and the legacy ``unknown`` (older tuning
    files) are left out; ``mixed`` stays, and a label outside :data:`Provenance` is
    ``mixed`` (never passed on as if it were a kind)."""
    present = {k for k in kinds if k and k not in ("none", "unknown")}
    if not present:
        return "none"
    if len(present) == 1:
        (only,) = present
        if only in get_args(Provenance):
            return cast(Provenance, only)
    return "mixed"


@dataclass(frozen=True)
class ComponentEnergy:
    """The energy of one part of the machine over one window.

    ``component`` names the part (``"gpu:0"``, ``"cpu:0"``, ``"dram"``), ``source`` the
    counter or model the figure came from (``"nvml:total_energy_counter"``,
    ``"estimate:tdp*utilisation"``), ``kind`` whether it was measured or estimated,
    ``device`` the hardware it belongs to, and ``notes`` the assumptions and anything that
    went wrong while measuring it.

    A counter reading the hardware could not have produced is not booked: ``energy_j``
    then covers only the rest of the window, ``unmeasured_s`` says how many seconds of the
    window it misses and ``unmeasured_intervals_s`` which ones (``(start, end)`` seconds
    from the window's start), with what happened in ``notes``. ``power_bound_w`` is the
    maximum power every delta was checked against (None for estimates).
    """

    component: str
    energy_j: float
    source: str
    kind: Kind
    device: str = ""
    notes: tuple[str, ...] = ()
    unmeasured_s: float = 0.0
    unmeasured_intervals_s: tuple[tuple[float, float], ...] = ()
    power_bound_w: float | None = None

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            raise ConfigError(
                f"component {self.component!r}: kind must be one of "
                f"{', '.join(map(repr, _KINDS))}, not {self.kind!r}"
            )
        if not math.isfinite(self.energy_j) or self.energy_j < 0:
            raise ConfigError(
                f"component {self.component!r}: energy_j must be a finite number >= 0, "
                f"not {self.energy_j!r}"
            )
        if not math.isfinite(self.unmeasured_s) or self.unmeasured_s < 0:
            raise ConfigError(
                f"component {self.component!r}: unmeasured_s must be a finite number >= 0, "
                f"not {self.unmeasured_s!r}"
            )

    def to_dict(self) -> dict[str, Any]:
        return {
            "component": self.component,
            "energy_j": self.energy_j,
            "source": self.source,
            "kind": self.kind,
            "device": self.device,
            "notes": list(self.notes),
            "unmeasured_s": self.unmeasured_s,
            "unmeasured_intervals_s": [list(i) for i in self.unmeasured_intervals_s],
            "power_bound_w": self.power_bound_w,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ComponentEnergy:
        try:
            return cls(
                component=str(data["component"]),
                energy_j=float(data["energy_j"]),
                source=str(data["source"]),
                kind=cast(Kind, data["kind"]),
                device=str(data.get("device", "")),
                notes=tuple(str(n) for n in data.get("notes", ())),
                unmeasured_s=float(data.get("unmeasured_s", 0.0)),
                unmeasured_intervals_s=tuple(
                    (float(a), float(b)) for a, b in data.get("unmeasured_intervals_s", ())
                ),
                power_bound_w=_opt_float(data.get("power_bound_w")),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(
                f"not a component energy record: {exc!r}",
                fix="pass a dict written by ComponentEnergy.to_dict()",
            ) from exc


@dataclass(frozen=True)
class Measurement:
    """What one meter window cost.

    ``energy_j`` is the sum of ``components`` (the IT energy, before PUE); ``co2_g`` is
    ``energy_kwh * pue * intensity_g_per_kwh``. ``cpu_time_s`` is the CPU time of the
    measured process tree. ``peak_gpu_mem_bytes`` is None unless torch CUDA was in use.
    ``started_at`` is ISO-8601 in UTC. ``error`` holds the exception that ended the window,
    if one did.

    The machine's state: ``peak_load_avg_1m`` is the highest 1-minute load average seen at
    the window's edges and by the poller (None where the OS has none), ``logical_cpus``
    the logical CPU count, ``torch_threads`` torch's intra-op thread count when torch was
    already imported (None otherwise). When the load exceeds the logical CPUs and a part is
    estimated, ``notes`` says the estimated figures are inflated by contention.
    """

    name: str
    started_at: str
    duration_s: float
    cpu_time_s: float
    energy_j: float
    components: tuple[ComponentEnergy, ...]
    co2_g: float
    intensity_g_per_kwh: float
    intensity_source: str
    pue: float
    peak_rss_bytes: int | None = None
    peak_gpu_mem_bytes: int | None = None
    devices: tuple[str, ...] = ()
    parent: str | None = None
    error: str | None = None
    notes: tuple[str, ...] = field(default=())
    peak_load_avg_1m: float | None = None
    logical_cpus: int | None = None
    torch_threads: int | None = None

    @property
    def unmeasured_s(self) -> float:
        """The most seconds of this window that any one counter could not measure."""
        return max((c.unmeasured_s for c in self.components), default=0.0)

    @property
    def oversubscribed(self) -> bool:
        """True when the load average exceeded the logical CPUs during the window."""
        return (
            self.peak_load_avg_1m is not None
            and self.logical_cpus is not None
            and self.peak_load_avg_1m > self.logical_cpus
        )

    @property
    def energy_kwh(self) -> float:
        """Energy in kilowatt-hours (1 kWh = 3.6e6 J)."""
        return self.energy_j / J_PER_KWH

    @property
    def measured_energy_j(self) -> float:
        """The part of ``energy_j`` read from hardware counters."""
        return sum(c.energy_j for c in self.components if c.kind == "measured")

    @property
    def estimated_energy_j(self) -> float:
        """The part of ``energy_j`` computed from stated models."""
        return sum(c.energy_j for c in self.components if c.kind == "estimated")

    @property
    def attributed_energy_j(self) -> float:
        """The part of ``energy_j`` that is a stated share of a shared counter."""
        return sum(c.energy_j for c in self.components if c.kind == "attributed")

    @property
    def provenance(self) -> Provenance:
        """``measured``, ``estimated``, ``attributed`` or ``mixed`` (``none`` without any
        component)."""
        return combine_provenance(c.kind for c in self.components)

    @property
    def energy_source(self) -> str:
        """One line for tables, e.g. ``gpu:0=nvml:total_energy_counter; cpu=estimate:...``."""
        return "; ".join(f"{c.component}={c.source}" for c in self.components)

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": _SCHEMA,
            "name": self.name,
            "parent": self.parent,
            "started_at": self.started_at,
            "duration_s": self.duration_s,
            "cpu_time_s": self.cpu_time_s,
            "energy_j": self.energy_j,
            "components": [c.to_dict() for c in self.components],
            "co2_g": self.co2_g,
            "intensity_g_per_kwh": self.intensity_g_per_kwh,
            "intensity_source": self.intensity_source,
            "pue": self.pue,
            "peak_rss_bytes": self.peak_rss_bytes,
            "peak_gpu_mem_bytes": self.peak_gpu_mem_bytes,
            "devices": list(self.devices),
            "error": self.error,
            "notes": list(self.notes),
            "peak_load_avg_1m": self.peak_load_avg_1m,
            "logical_cpus": self.logical_cpus,
            "torch_threads": self.torch_threads,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Measurement:
        schema = data.get("schema", _SCHEMA)
        if schema != _SCHEMA:
            raise ConfigError(
                f"unsupported measurement schema {schema!r}",
                fix=f"this frugalml reads {_SCHEMA!r}; upgrade frugalml to read newer files",
            )
        try:
            return cls(
                name=str(data["name"]),
                parent=None if data.get("parent") is None else str(data["parent"]),
                started_at=str(data["started_at"]),
                duration_s=float(data["duration_s"]),
                cpu_time_s=float(data["cpu_time_s"]),
                energy_j=float(data["energy_j"]),
                components=tuple(ComponentEnergy.from_dict(c) for c in data["components"]),
                co2_g=float(data["co2_g"]),
                intensity_g_per_kwh=float(data["intensity_g_per_kwh"]),
                intensity_source=str(data["intensity_source"]),
                pue=float(data["pue"]),
                peak_rss_bytes=_opt_int(data.get("peak_rss_bytes")),
                peak_gpu_mem_bytes=_opt_int(data.get("peak_gpu_mem_bytes")),
                devices=tuple(str(d) for d in data.get("devices", ())),
                error=None if data.get("error") is None else str(data["error"]),
                notes=tuple(str(n) for n in data.get("notes", ())),
                peak_load_avg_1m=_opt_float(data.get("peak_load_avg_1m")),
                logical_cpus=_opt_int(data.get("logical_cpus")),
                torch_threads=_opt_int(data.get("torch_threads")),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(
                f"not a measurement record: {exc!r}",
                fix="pass a dict or JSON text written by Measurement.to_dict()/to_json()",
            ) from exc

    def to_json(self, *, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_json(cls, text: str) -> Measurement:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(
                f"measurement JSON does not parse: {exc}",
                fix="pass text written by Measurement.to_json()",
            ) from exc
        if not isinstance(data, dict):
            raise ConfigError(
                "measurement JSON must be an object",
                fix="pass text written by Measurement.to_json()",
            )
        return cls.from_dict(data)


def _opt_int(value: Any) -> int | None:
    return None if value is None else int(value)


def _opt_float(value: Any) -> float | None:
    return None if value is None else float(value)

"""CPU package and DRAM energy from Linux powercap RAPL counters.

Zones live under the powercap root (``FRUGALML_POWERCAP_ROOT``, default
``/sys/class/powercap``): ``intel-rapl:N`` for packages (and ``psys`` on some laptops),
``intel-rapl:N:M`` for their sub-zones (``core``, ``uncore``, ``dram``). What is counted:
every package plus every ``dram`` zone; ``core``/``uncore`` are inside their package and
never added; ``psys`` covers the whole platform and replaces packages + DRAM when asked for
(or when there is no package zone), never added to them. ``intel-rapl-mmio`` zones
duplicate the package counters and are skipped.

``energy_uj`` wraps to 0 at ``max_energy_range_uj``. The backend asks to be polled at least
twice per shortest possible wrap period (range / a conservative maximum power), so every
wrap is seen and corrected, however many happen in a long run. Without a readable range a
decrease cannot be corrected: the energy after the wrap is counted from 0 and the notes say
what was lost. A zone that disappears or returns garbage keeps what it measured and says so
in its notes; reading problems never stop the training.

RAPL counts the whole package: every process on the machine, not only the measured tree.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from frugalml.meter._backend import Clock, ComponentReading, EnergyBackend

__all__ = [
    "DEFAULT_POWERCAP_ROOT",
    "POWERCAP_ROOT_ENV",
    "RAPL_PERMISSION_FIX",
    "RaplBackend",
    "RaplDiscovery",
    "RaplZone",
    "discover_rapl",
    "powercap_root",
    "read_sysfs",
]

logger = logging.getLogger(__name__)

POWERCAP_ROOT_ENV = "FRUGALML_POWERCAP_ROOT"
DEFAULT_POWERCAP_ROOT = "/sys/class/powercap"
SOURCE = "rapl:powercap"
RAPL_PERMISSION_FIX = (
    "run `sudo chmod o+r /sys/class/powercap/intel-rapl:*/energy_uj "
    "/sys/class/powercap/intel-rapl:*:*/energy_uj` (until reboot), or add a udev rule "
    'such as SUBSYSTEM=="powercap", ACTION=="add", RUN+="/bin/chmod o+r '
    '/sys%p/energy_uj" to make it permanent'
)
_ZONE_RE = re.compile(r"^intel-rapl:(\d+)(?::(\d+))?$")
_MIN_INTERVAL_S = 0.01

RaplStatus = Literal["ok", "no_powercap", "no_zones", "permission_denied", "unreadable"]


def powercap_root(override: str | os.PathLike[str] | None = None) -> Path:
    """The powercap root: ``override``, else ``$FRUGALML_POWERCAP_ROOT``, else the default."""
    if override is not None:
        return Path(override)
    return Path(os.environ.get(POWERCAP_ROOT_ENV) or DEFAULT_POWERCAP_ROOT)


def read_sysfs(path: Path) -> str:
    """Read one sysfs attribute (the boundary tests replace to simulate permissions)."""
    with open(path, encoding="ascii", errors="replace") as handle:
        return handle.read().strip()


Reader = Callable[[Path], str]


def _read_via_module(path: Path) -> str:
    return read_sysfs(path)  # looked up at call time, so tests can replace read_sysfs


@dataclass(frozen=True)
class RaplZone:
    """One powercap zone and what discovery learned about it."""

    zone_id: str
    name: str
    path: Path
    parent_id: str | None
    max_energy_range_uj: int | None
    readable: bool
    problem: str | None = None

    @property
    def label(self) -> str:
        return f"{self.zone_id} ({self.name})"


@dataclass(frozen=True)
class RaplDiscovery:
    """The zones found under a powercap root and which of them would be counted."""

    root: Path
    status: RaplStatus
    reason: str
    zones: tuple[RaplZone, ...] = ()
    selected: tuple[RaplZone, ...] = ()
    notes: tuple[str, ...] = field(default=())

    @property
    def counts_dram(self) -> bool:
        return any(z.name in ("dram", "psys") for z in self.selected)

    @property
    def counts_cpu(self) -> bool:
        return bool(self.selected)


def _probe_zone(path: Path, reader: Reader) -> RaplZone:
    match = _ZONE_RE.match(path.name)
    parent = f"intel-rapl:{match.group(1)}" if match and match.group(2) is not None else None
    try:
        name = reader(path / "name")
    except OSError:
        name = "unknown"
    max_range: int | None
    try:
        max_range = int(reader(path / "max_energy_range_uj"))
        if max_range <= 0:
            max_range = None
    except (OSError, ValueError):
        max_range = None
    problem = None
    readable = True
    try:
        int(reader(path / "energy_uj"))
    except PermissionError:
        readable, problem = False, "permission denied reading energy_uj"
    except FileNotFoundError:
        readable, problem = False, "no energy_uj file"
    except OSError as exc:
        readable, problem = False, f"energy_uj unreadable ({exc.strerror or exc})"
    except ValueError:
        readable, problem = False, "energy_uj does not hold an integer"
    return RaplZone(path.name, name, path, parent, max_range, readable, problem)


def discover_rapl(
    root: str | os.PathLike[str] | None = None,
    *,
    use_psys: bool = False,
    reader: Reader | None = None,
) -> RaplDiscovery:
    """Find the RAPL zones under ``root`` and choose the ones to count (see module doc).

    ``reader`` reads one sysfs file (default :func:`read_sysfs`, looked up at call time).
    """
    read = reader if reader is not None else read_sysfs
    base = powercap_root(root)
    if not base.is_dir():
        return RaplDiscovery(base, "no_powercap", f"no powercap directory at {base}")
    notes: list[str] = []
    try:
        names = sorted(p.name for p in base.iterdir())
    except OSError as exc:
        return RaplDiscovery(base, "unreadable", f"cannot list {base}: {exc.strerror or exc}")
    if any(n.startswith("intel-rapl-mmio:") for n in names):
        notes.append("intel-rapl-mmio zones duplicate the package counters and are not added")
    paths = [base / n for n in names if _ZONE_RE.match(n)]
    if not paths:
        return RaplDiscovery(base, "no_zones", f"no intel-rapl zones under {base}", notes=())
    zones = tuple(_probe_zone(p, read) for p in paths)
    packages = [z for z in zones if z.parent_id is None and z.name.startswith("package")]
    dram = [z for z in zones if z.name == "dram"]
    psys = [z for z in zones if z.parent_id is None and z.name == "psys"]
    if psys and (use_psys or not packages):
        selected = psys
        if packages:
            notes.append("psys (whole platform) counted instead of packages + DRAM")
    else:
        selected = packages + dram
        if psys:
            notes.append("psys present but not added: it already contains packages and DRAM")
    if not selected:
        return RaplDiscovery(
            base, "no_zones", "no package, dram or psys zone found", zones, notes=tuple(notes)
        )
    denied = [z for z in selected if z.problem and "permission" in z.problem]
    usable = tuple(z for z in selected if z.readable)
    for z in selected:
        if not z.readable:
            notes.append(f"{z.label} not counted: {z.problem}")
    if not usable:
        if denied:
            return RaplDiscovery(
                base,
                "permission_denied",
                f"energy_uj is not readable by this user under {base}",
                zones,
                notes=tuple(notes),
            )
        return RaplDiscovery(
            base, "unreadable", "no RAPL zone could be read", zones, notes=tuple(notes)
        )
    for z in usable:
        if z.max_energy_range_uj is None:
            notes.append(
                f"{z.label}: max_energy_range_uj missing or unreadable; counter wraps cannot "
                "be corrected (a decrease is counted from 0 and the energy before it is lost)"
            )
    return RaplDiscovery(base, "ok", "readable", zones, usable, tuple(notes))


def _component_name(zone: RaplZone) -> str:
    if zone.name == "psys":
        return "psys"
    socket = zone.zone_id.split(":")[1]
    if zone.name == "dram":
        return f"dram:{socket}"
    number = re.search(r"(\d+)$", zone.name)
    return f"cpu:{number.group(1) if number else socket}"


@dataclass
class _ZoneState:
    zone: RaplZone
    component: str
    last_uj: int
    last_t: float
    total_uj: int = 0
    gone: bool = False
    notes: list[str] = field(default_factory=list)
    garbage_reads: int = 0


class RaplBackend(EnergyBackend):
    """Cumulative, wrap-corrected joules per selected RAPL zone."""

    name = "rapl"

    def __init__(
        self,
        zones: Sequence[RaplZone],
        *,
        max_power_w: float = 1000.0,
        reader: Reader | None = None,
        clock: Clock | None = None,
        notes: Sequence[str] = (),
    ) -> None:
        super().__init__(clock)
        self._reader: Reader = reader if reader is not None else _read_via_module
        self._max_power_w = max_power_w
        self._t0 = self._clock()
        self._common_notes = (
            "whole CPU package or DRAM: every process on the machine, not only the "
            "measured process tree",
            *notes,
        )
        self._states: list[_ZoneState] = []
        for zone in zones:
            raw = self._read_uj(zone)
            if raw is None:
                logger.warning("RAPL zone %s unreadable at start; not counted", zone.label)
                continue
            state = _ZoneState(zone, _component_name(zone), raw, self._t0)
            if zone.max_energy_range_uj is None:
                logger.warning(
                    "RAPL zone %s has no readable max_energy_range_uj: counter wraps cannot "
                    "be corrected",
                    zone.label,
                )
                state.notes.append("max_energy_range_uj unknown: counter wraps cannot be corrected")
            self._states.append(state)

    def _read_uj(self, zone: RaplZone) -> int | None:
        try:
            return int(self._reader(zone.path / "energy_uj"))
        except (OSError, ValueError):
            return None

    @property
    def zone_count(self) -> int:
        return len(self._states)

    @property
    def poll_interval_s(self) -> float:
        """Half the shortest time any zone could take to wrap at ``max_power_w``."""
        periods = [
            s.zone.max_energy_range_uj / 1e6 / self._max_power_w
            for s in self._states
            if s.zone.max_energy_range_uj is not None and not s.gone
        ]
        if not periods:
            return 1.0
        return max(_MIN_INTERVAL_S, min(periods) / 2.0)

    @property
    def devices(self) -> tuple[str, ...]:
        return tuple(f"RAPL {s.zone.label}" for s in self._states)

    def _poll(self) -> None:
        now = self._clock()
        for state in self._states:
            if not state.gone:
                self._poll_zone(state, now)

    def _poll_zone(self, state: _ZoneState, now: float) -> None:
        zone = state.zone
        elapsed = now - self._t0
        try:
            text = self._reader(zone.path / "energy_uj")
        except OSError as exc:
            state.gone = True
            state.notes.append(
                f"zone disappeared or became unreadable at +{elapsed:.1f} s "
                f"({exc.strerror or exc}); energy after its last reading is not counted"
            )
            logger.warning("RAPL zone %s became unreadable: %s", zone.label, exc)
            return
        try:
            raw = int(text)
            if raw < 0:
                raise ValueError(text)
        except ValueError:
            state.garbage_reads += 1
            if state.garbage_reads == 1:
                state.notes.append(
                    f"energy_uj held {text[:40]!r} (not a counter value) at +{elapsed:.1f} s; "
                    "such readings are skipped"
                )
                logger.warning("RAPL zone %s: energy_uj held %r; skipped", zone.label, text[:40])
            return
        max_range = zone.max_energy_range_uj
        if max_range is not None:
            period_s = max_range / 1e6 / self._max_power_w
            gap_s = now - state.last_t
            if gap_s > period_s and not any("may have been missed" in n for n in state.notes):
                state.notes.append(
                    f"{gap_s:.1f} s between two reads exceeds the shortest wrap period "
                    f"({period_s:.1f} s at {self._max_power_w:g} W): a wrap may have been missed"
                )
        if raw >= state.last_uj:
            delta = raw - state.last_uj
        elif max_range is not None:
            delta = max_range - state.last_uj + raw
        else:
            delta = raw
            state.notes.append(
                f"counter decreased at +{elapsed:.1f} s with unknown max_energy_range_uj: "
                "counted from 0 after the wrap, the energy up to the wrap since the last "
                "reading is lost"
            )
        state.total_uj += delta
        state.last_uj = raw
        state.last_t = now

    def _readings(self) -> list[ComponentReading]:
        return [
            ComponentReading(
                component=s.component,
                energy_j=s.total_uj / 1e6,
                source=SOURCE,
                kind="measured",
                device=f"RAPL {s.zone.label}",
                notes=(*self._common_notes, *s.notes),
            )
            for s in self._states
        ]

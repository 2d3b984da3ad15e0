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
wrap is seen and corrected, however many happen in a long run.

Every delta must be physically possible: at most the zone's maximum power (the largest of
its ``constraint_*_max_power_uw`` and ``constraint_*_power_limit_uw`` files, else the
stated ceiling :data:`RAPL_CEILING_W`) x :data:`~frugalml.meter._backend.POWER_SLACK` x
(the time between the reads + 10 ms). A decrease is booked as a wrap only if the wrapped
delta passes that bound; any other decrease is a counter fault or reset, and so is an
increase above the bound: that interval is not booked, and the new reading is the next
baseline. A reading above ``max_energy_range_uj`` (outside the counter's stated range), a
non-integer or an unreadable file is not a reading: the counter has no baseline until the
next good one, and the time in between is not booked. Without a readable (non-zero) range a
wrap cannot be corrected: an interval with a decrease is not booked (the raw counter is
never added). What was not booked is kept as fault intervals and unmeasured seconds (see
:class:`~frugalml.meter._backend.CounterLedger`); reading problems never stop the training.

RAPL counts the whole package: every process on the machine, not only the measured tree.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from frugalml.meter._backend import (
    BackendCapabilities,
    Clock,
    ComponentReading,
    CounterLedger,
    DeviceKind,
    EnergyBackend,
    PowerBound,
)

if TYPE_CHECKING:
    from frugalml.meter._registry import BackendContext

__all__ = [
    "DEFAULT_POWERCAP_ROOT",
    "POWERCAP_ROOT_ENV",
    "RAPL_CEILING_W",
    "RAPL_PERMISSION_FIX",
    "RaplBackend",
    "RaplDiscovery",
    "RaplZone",
    "discover_rapl",
    "powercap_root",
    "rapl_backends",
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
_CONSTRAINT_RE = re.compile(r"^constraint_\d+_(max_power|power_limit)_uw$")
_MIN_INTERVAL_S = 0.01
#: The stated ceiling for a zone that states no maximum power: no x86 package sold up to
#: 2025 is rated above 500 W (AMD EPYC 9005, Intel Xeon 6), twice that per zone.
RAPL_CEILING_W = 1000.0
#: RAPL updates its counters about every millisecond; ten times that as slack.
RAPL_UPDATE_SLACK_S = 0.01

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
    max_power_w: float | None = None
    max_power_files: tuple[str, ...] = ()

    def power_bound(self, ceiling_w: float = RAPL_CEILING_W) -> PowerBound:
        """The most power this zone can draw: its constraints, else ``ceiling_w``."""
        if self.max_power_w is not None:
            files = ", ".join(self.max_power_files)
            return PowerBound(self.max_power_w, f"largest of {files}", RAPL_UPDATE_SLACK_S)
        return PowerBound(
            ceiling_w,
            "stated ceiling: the zone states no constraint_*_max_power_uw",
            RAPL_UPDATE_SLACK_S,
        )

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
    max_power_w, files = _max_power(path, reader)
    return RaplZone(path.name, name, path, parent, max_range, readable, problem, max_power_w, files)


def _max_power(path: Path, reader: Reader) -> tuple[float | None, tuple[str, ...]]:
    """The largest readable, positive ``constraint_*_{max_power,power_limit}_uw`` in watts."""
    try:
        names = sorted(p.name for p in path.iterdir() if _CONSTRAINT_RE.match(p.name))
    except OSError:
        return None, ()
    best_uw = 0
    used: list[str] = []
    for name in names:
        try:
            value = int(reader(path / name))
        except (OSError, ValueError):
            continue
        if value > 0:
            used.append(name)
            best_uw = max(best_uw, value)
    return (best_uw / 1e6, tuple(used)) if best_uw > 0 else (None, ())


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
                f"{z.label}: max_energy_range_uj missing, unreadable or 0; counter wraps "
                "cannot be corrected (an interval in which the counter decreases is not "
                "booked)"
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
    bound: PowerBound
    last_uj: int
    last_t: float
    last_before_t: float
    total_uj: int = 0
    gone: bool = False
    notes: list[str] = field(default_factory=list)
    garbage_reads: int = 0
    ledger: CounterLedger = field(default_factory=CounterLedger)


class RaplBackend(EnergyBackend):
    """Cumulative, wrap-corrected joules per selected RAPL zone; only plausible deltas.

    ``max_power_w`` sets the poll rate (with a zone's own stated maximum, if higher);
    ``ceiling_w`` is the bound for zones that state no maximum power.
    """

    name = "rapl"

    def __init__(
        self,
        zones: Sequence[RaplZone],
        *,
        max_power_w: float = 1000.0,
        ceiling_w: float = RAPL_CEILING_W,
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
            before = self._clock()
            raw = self._read_uj(zone)
            if raw is None:
                logger.warning("RAPL zone %s unreadable at start; not counted", zone.label)
                continue
            bound = zone.power_bound(ceiling_w)
            state = _ZoneState(zone, _component_name(zone), bound, raw, self._clock(), before)
            state.notes.append(f"every delta checked against {bound.describe()}")
            if zone.max_energy_range_uj is None:
                logger.warning(
                    "RAPL zone %s has no readable max_energy_range_uj: counter wraps cannot "
                    "be corrected",
                    zone.label,
                )
                state.notes.append(
                    "max_energy_range_uj unknown or 0: counter wraps cannot be corrected; an "
                    "interval in which the counter decreases is not booked"
                )
            elif raw > zone.max_energy_range_uj:
                state.ledger.lose(state.last_t, self._outside_note(raw, zone))
            self._states.append(state)

    def _read_uj(self, zone: RaplZone) -> int | None:
        try:
            return int(self._reader(zone.path / "energy_uj"))
        except (OSError, ValueError):
            return None

    @staticmethod
    def _outside_note(raw: int, zone: RaplZone) -> str:
        return (
            f"energy_uj read {raw} uJ, above the counter's stated range "
            f"(max_energy_range_uj {zone.max_energy_range_uj}): not a reading the counter "
            "can produce, so no baseline until the next reading inside the range"
        )

    @property
    def zone_count(self) -> int:
        return len(self._states)

    @property
    def power_bounds(self) -> dict[str, PowerBound]:
        """The bound every delta of each component is checked against."""
        return {s.component: s.bound for s in self._states}

    def _plan_power_w(self, state: _ZoneState) -> float:
        return max(self._max_power_w, state.zone.max_power_w or 0.0)

    @property
    def poll_interval_s(self) -> float:
        """Half the shortest time any zone could take to wrap at ``max_power_w``."""
        periods = [
            s.zone.max_energy_range_uj / 1e6 / self._plan_power_w(s)
            for s in self._states
            if s.zone.max_energy_range_uj is not None and not s.gone
        ]
        if not periods:
            return 1.0
        return max(_MIN_INTERVAL_S, min(periods) / 2.0)

    @property
    def devices(self) -> tuple[str, ...]:
        return tuple(f"RAPL {s.zone.label}" for s in self._states)

    @property
    def capabilities(self) -> BackendCapabilities:
        """The CPU (package zones), DRAM (dram zones) or both (psys), measured."""
        kinds: list[DeviceKind] = []
        names = {s.zone.name for s in self._states}
        if any(n.startswith("package") for n in names):
            kinds.append("cpu")
        if "dram" in names:
            kinds.append("dram")
        if "psys" in names:
            kinds.append("platform")
        return BackendCapabilities(devices=tuple(kinds), kind="measured")

    def _poll(self) -> None:
        for state in self._states:
            if not state.gone:
                self._poll_zone(state)

    def _poll_zone(self, state: _ZoneState) -> None:
        zone = state.zone
        before = self._clock()
        try:
            text = self._reader(zone.path / "energy_uj")
        except OSError as exc:
            now = self._clock()
            state.gone = True
            state.notes.append(
                f"zone disappeared or became unreadable at +{now - self._t0:.1f} s "
                f"({exc.strerror or exc}); energy after its last reading is not counted"
            )
            state.ledger.lose(state.last_t, "zone disappeared or became unreadable")
            logger.warning("RAPL zone %s became unreadable: %s", zone.label, exc)
            return
        now = self._clock()
        try:
            raw = int(text)
            if raw < 0:
                raise ValueError(text)
        except ValueError:
            state.garbage_reads += 1
            if state.garbage_reads == 1:
                state.notes.append(
                    f"energy_uj held {text[:40]!r} (not a counter value) at "
                    f"+{now - self._t0:.1f} s; such readings are skipped and the time until "
                    "the next good reading is not booked"
                )
                logger.warning("RAPL zone %s: energy_uj held %r; skipped", zone.label, text[:40])
            state.ledger.lose(state.last_t, f"energy_uj held {text[:40]!r}, not a counter value")
            return
        max_range = zone.max_energy_range_uj
        if max_range is not None and raw > max_range:
            if not state.ledger.lost:
                logger.warning("RAPL zone %s: energy_uj %d above its range", zone.label, raw)
            state.ledger.lose(state.last_t, self._outside_note(raw, zone))
            return
        if state.ledger.lost:
            state.ledger.regain(now)
        else:
            self._book(state, raw, now, before)
        state.last_uj = raw
        state.last_t = now
        state.last_before_t = before

    def _book(self, state: _ZoneState, raw: int, now: float, before: float) -> None:
        """Book the delta from the last reading to ``raw`` if it is physically possible."""
        zone = state.zone
        max_range = zone.max_energy_range_uj
        gap_s = now - state.last_t
        if max_range is not None:
            period_s = max_range / 1e6 / self._plan_power_w(state)
            if gap_s > period_s and not any("may have been missed" in n for n in state.notes):
                state.notes.append(
                    f"{gap_s:.1f} s between two reads exceeds the shortest wrap period "
                    f"({period_s:.1f} s at {self._plan_power_w(state):g} W): a wrap may have "
                    "been missed"
                )
        elapsed_s = now - state.last_before_t
        allowed_uj = state.bound.allowed_j(elapsed_s) * 1e6
        limit = (
            f"the bound is {allowed_uj / 1e6:.3g} J for {elapsed_s:.3g} s at "
            f"{state.bound.max_power_w:g} W"
        )
        fault: str | None = None
        delta = raw - state.last_uj
        if raw < state.last_uj:
            back_j = (state.last_uj - raw) / 1e6
            if max_range is None:
                fault = (
                    f"energy_uj stepped back {back_j:.6g} J ({state.last_uj} -> {raw} uJ) and "
                    "max_energy_range_uj is unknown: a wrap cannot be corrected"
                )
            else:
                delta = max_range - state.last_uj + raw
                if delta > allowed_uj:
                    fault = (
                        f"energy_uj stepped back {back_j:.6g} J ({state.last_uj} -> {raw} uJ): "
                        f"not a plausible wrap (a wrap would mean {delta / 1e6:.6g} J; "
                        f"{limit}): a counter fault or reset"
                    )
        elif delta > allowed_uj:
            fault = (
                f"energy_uj jumped {delta / 1e6:.6g} J ({state.last_uj} -> {raw} uJ), more "
                f"than the hardware can draw ({limit}): a counter fault"
            )
        if fault is None:
            state.total_uj += delta
            return
        state.ledger.skip(state.last_t, now, fault)
        logger.warning("RAPL zone %s: %s; interval not booked", zone.label, fault)

    def _readings(self) -> list[ComponentReading]:
        now = self._clock()
        return [
            ComponentReading(
                component=s.component,
                energy_j=s.total_uj / 1e6,
                source=SOURCE,
                kind="measured",
                device=f"RAPL {s.zone.label}",
                notes=(*self._common_notes, *s.notes),
                faults=s.ledger.snapshot(now),
                unmeasured_s=s.ledger.unmeasured_s(now),
                power_bound=s.bound,
            )
            for s in self._states
        ]


_permission_warned = False


def _warn_permission_once(reason: str) -> None:
    global _permission_warned
    if not _permission_warned:
        _permission_warned = True
        logger.warning(
            "RAPL energy counters are not readable (%s): CPU and DRAM energy will be "
            "estimated. To measure them: %s",
            reason,
            RAPL_PERMISSION_FIX,
        )


def rapl_backends(context: BackendContext) -> list[EnergyBackend]:
    """The registered RAPL factory: the zones :func:`discover_rapl` selects, or nothing
    (with the reason in ``context.unmeasured_reasons``, for the estimate's notes)."""
    config = context.config
    if not config.use_rapl:
        context.unmeasured_reasons.append("RAPL switched off (use_rapl=False)")
        return []
    found = discover_rapl(config.powercap_root, use_psys=config.rapl_psys)
    if found.status != "ok":
        context.unmeasured_reasons.append(f"RAPL not used: {found.reason}")
        if found.status == "permission_denied":
            _warn_permission_once(found.reason)
        elif found.status == "unreadable":
            logger.warning("RAPL counters unreadable (%s); estimating instead", found.reason)
        return []
    rapl = RaplBackend(
        found.selected, max_power_w=config.rapl_max_power_w, clock=context.clock, notes=found.notes
    )
    if not rapl.zone_count:
        context.unmeasured_reasons.append("no RAPL counters")
        return []
    if not found.counts_dram:
        context.unmeasured_reasons.append("RAPL has no DRAM zone here")
    return [rapl]

"""Energy attribution when trials share a machine: one reader per counter, stated shares.

Machine-wide counters (RAPL per socket, NVML per GPU) see every trial running on the
machine. The rule, stated in every record it produces:

1. Each counter has exactly one reader per host at a time: a :class:`HostSampler`, shared
   by every trial on the host (:func:`host_sampler` returns the open one), never one per
   trial.
2. The sampler reads its counters and every running trial's usage at each interval edge
   (a trial joining or leaving, a trial's window edge, the poller). An interval's energy
   on a counter is split among the trials running in it that use the counter's device, in
   proportion to their share (:func:`attribute`): for CPU, DRAM and platform zones the
   trials' process-tree CPU time in the interval; for a GPU their GPU time on it where every
   such trial can report one, else equal shares. An interval in which nobody used CPU (or
   GPU) is split equally; an interval with no trial is not given to anyone
   (:attr:`HostSampler.unattributed_j`).
3. The shares of an interval add up to what the counter measured: never more, never twice.
   Each trial's figure is labelled ``attributed`` with the counter and the rule in its
   source and notes.

A trial reads its cumulative shares through a view (:meth:`HostSampler.join`), an
:class:`~frugalml.meter.EnergyBackend` whose readings are the trial's attributed joules, so
a :class:`~frugalml.meter.Meter` over it (:meth:`HostSampler.meter`) gives nested windows
as usual; :meth:`HostSampler.leave` returns what the trial was given over its whole stay.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from frugalml.errors import ConfigError, MeterError
from frugalml.meter._backend import (
    BackendCapabilities,
    Clock,
    ComponentReading,
    DeviceKind,
    EnergyBackend,
)
from frugalml.meter._config import MeterConfig
from frugalml.meter._meter import BackendPoller
from frugalml.meter._process import ProcessTreeSampler
from frugalml.meter._types import ComponentEnergy

if TYPE_CHECKING:
    from frugalml.meter._meter import Meter

__all__ = [
    "AttributedBackend",
    "HostSampler",
    "Share",
    "ShareRule",
    "TrialUsage",
    "attribute",
    "host_sampler",
    "rule_note",
    "split_energy",
]

logger = logging.getLogger(__name__)

#: How a counter's interval energy is split: by process-tree CPU time, by GPU time, or
#: equally.
ShareRule = Literal["cpu_time", "gpu_time", "equal"]

_MIN_INTERVAL_S = 0.01


@dataclass(frozen=True)
class TrialUsage:
    """What one trial used in an interval: process-tree CPU seconds, GPU seconds per GPU
    component (``"gpu:0"``; a GPU missing here has no GPU time that could be read), and the
    components it uses (None: every counter)."""

    cpu_s: float
    gpu_s: Mapping[str, float] = field(default_factory=dict)
    components: frozenset[str] | None = None

    def uses(self, component: str) -> bool:
        return self.components is None or component in self.components


@dataclass(frozen=True)
class Share:
    """One trial's part of one counter's interval energy."""

    energy_j: float
    fraction: float
    rule: ShareRule


def is_gpu(component: str) -> bool:
    return component.split(":", 1)[0] == "gpu"


def split_energy(energy_j: float, weights: Mapping[str, float]) -> dict[str, float]:
    """``energy_j`` split in proportion to ``weights`` (equally when they are all zero).

    Negative or non-finite weights count as zero. The parts are never negative and add up
    to ``energy_j`` (the last part is what the others leave, less any rounding excess):
    never more.
    """
    if not math.isfinite(energy_j) or energy_j < 0:
        raise ConfigError(
            f"energy to split must be a finite number >= 0 J, not {energy_j!r}",
            fix="pass the difference of two counter readings",
        )
    if not weights:
        return {}
    clean = {k: (w if math.isfinite(w) and w > 0 else 0.0) for k, w in weights.items()}
    total = sum(clean.values())
    if total <= 0:
        clean = dict.fromkeys(clean, 1.0)
        total = float(len(clean))
    keys = list(clean)
    parts: dict[str, float] = {}
    given = 0.0
    for key in keys[:-1]:
        part = min(energy_j - given, energy_j * clean[key] / total)
        parts[key] = max(0.0, part)
        given += parts[key]
    parts[keys[-1]] = max(0.0, energy_j - given)
    _trim_to(parts, energy_j)
    return parts


def _trim_to(parts: dict[str, float], energy_j: float) -> None:
    """Take the rounding excess (an ulp or two) off the last parts, so that adding them up
    never gives more than ``energy_j``."""
    for key in reversed(list(parts)):
        for _ in range(4):
            excess = sum(parts.values()) - energy_j
            if excess <= 0:
                return
            part = parts[key]
            if part <= 0:
                break
            smaller = part - excess
            if smaller >= part:  # the excess is below this part's resolution
                smaller = math.nextafter(part, 0.0)
            parts[key] = max(0.0, smaller)


def attribute(
    energy_j: Mapping[str, float], usage: Mapping[str, TrialUsage]
) -> dict[str, dict[str, Share]]:
    """Split one interval's energy per counter component among the trials in ``usage``.

    CPU, DRAM and platform components go by CPU time; a GPU component by GPU time when
    every trial using it reports one, else equally. Only trials that use a component share
    it; a component no trial uses is left out. Returns ``{trial: {component: Share}}``;
    per component, the shares add up to its energy.
    """
    out: dict[str, dict[str, Share]] = {trial: {} for trial in usage}
    for component, joules in energy_j.items():
        users = {t: u for t, u in usage.items() if u.uses(component)}
        if not users:
            continue
        rule: ShareRule
        if is_gpu(component):
            if all(component in u.gpu_s for u in users.values()):
                rule, weights = "gpu_time", {t: u.gpu_s[component] for t, u in users.items()}
            else:
                rule, weights = "equal", dict.fromkeys(users, 1.0)
        else:
            rule, weights = "cpu_time", {t: u.cpu_s for t, u in users.items()}
        if sum(w for w in weights.values() if math.isfinite(w) and w > 0) <= 0:
            rule = "equal"
        parts = split_energy(max(0.0, joules), weights)
        for trial, part in parts.items():
            fraction = part / joules if joules > 0 else 1.0 / len(parts)
            out[trial][component] = Share(part, fraction, rule)
    return out


def rule_note(component: str, gpu_time: bool) -> str:
    """The attribution rule as it is stated in a trial's component notes."""
    if is_gpu(component):
        share = (
            "their GPU time on this device (equal shares in an interval where a trial's "
            "GPU time could not be read)"
            if gpu_time
            else "equal shares (no per-trial GPU time could be read)"
        )
    else:
        share = "their process-tree CPU time (equal shares in an interval where none used CPU)"
    return (
        "attributed: this trial's share of a counter that one host sampler reads for every "
        "trial on the machine; in every interval between readings the counter's energy is "
        f"split among the trials running in it that use {component} by {share}; the shares "
        "of an interval add up to what the counter measured (never more, never twice)"
    )


UsageReader = Callable[[], float]


@dataclass
class _Trial:
    name: str
    cpu_time: UsageReader
    gpu_time: Mapping[str, UsageReader]
    components: frozenset[str] | None
    last_cpu_s: float
    last_gpu_s: dict[str, float]
    energy_j: dict[str, float] = field(default_factory=dict)
    unmeasured_s: dict[str, float] = field(default_factory=dict)
    joined_t: float = 0.0
    view: AttributedBackend | None = None
    #: Where its cumulative shares are published at every interval (another process reads
    #: them: meter._published), or None.
    publish: str | None = None

    def usage(self) -> tuple[TrialUsage, float, dict[str, float]]:
        cpu = _safe(self.cpu_time, self.last_cpu_s)
        gpu = {c: _safe(read, self.last_gpu_s.get(c, 0.0)) for c, read in self.gpu_time.items()}
        used = TrialUsage(
            cpu_s=max(0.0, cpu - self.last_cpu_s),
            gpu_s={c: max(0.0, g - self.last_gpu_s.get(c, 0.0)) for c, g in gpu.items()},
            components=self.components,
        )
        return used, cpu, gpu


def _safe(read: UsageReader, fallback: float) -> float:
    try:
        value = float(read())
    except Exception as exc:  # a trial that just exited: no more usage in this interval
        logger.debug("reading a trial's usage failed: %s", exc)
        return fallback
    return value if math.isfinite(value) else fallback


_open_lock = threading.Lock()
_open: dict[str, HostSampler] = {}


#: The key of the sampler over this host's own counters (whatever its config): one reader.
_HOST = "host"


class HostSampler(BackendPoller):
    """The one reader of a machine's shared counters, splitting them among trials.

    ``backends`` default to the registered counter backends for ``config`` (NVML, RAPL;
    no estimate: estimates are per process tree, not shared counters). ``interval_s`` is
    how often the poller thread closes an interval (default: the backends' own poll
    interval); ``thread=False`` leaves that to the caller (:meth:`tick`, in tests).
    Opening a second sampler over this host's counters while one is open (with any
    config) raises :class:`MeterError`; :func:`host_sampler` returns the open one.
    """

    _poller_name = "frugalml-host-sampler"

    def __init__(
        self,
        config: MeterConfig | None = None,
        *,
        backends: Sequence[EnergyBackend] | None = None,
        clock: Clock | None = None,
        interval_s: float | None = None,
        thread: bool = True,
    ) -> None:
        from frugalml.meter._registry import build_counter_backends

        self.config = config or MeterConfig()
        self._clock: Clock = clock or time.monotonic
        self._key = _HOST if backends is None else f"backends:{id(self)}"
        with _open_lock:
            if self._key in _open:
                raise MeterError(
                    "a host sampler is already reading this machine's counters",
                    fix="share it: frugalml.meter.host_sampler() returns the open one",
                )
            _open[self._key] = self
        try:
            built = (
                list(backends)
                if backends is not None
                else build_counter_backends(self.config, ProcessTreeSampler(), self._clock)
            )
        except BaseException:
            self._unregister()
            raise
        estimated = [b.name for b in built if b.capabilities.kind == "estimated"]
        if estimated:
            self._unregister()
            raise ConfigError(
                f"a host sampler shares counters, not estimates ({', '.join(estimated)})",
                fix="give it counter backends only (NVML, RAPL); each trial estimates its own",
            )
        super().__init__(built)
        self._lock = threading.RLock()
        self._trials: dict[str, _Trial] = {}
        self._last: dict[str, ComponentReading] = {}
        self.unattributed_j: dict[str, float] = {}
        self.counter_j: dict[str, float] = {}
        self._interval_s = interval_s
        self._use_thread = thread

    # -- lifecycle -------------------------------------------------------------------
    def start(self) -> HostSampler:
        with self._lock:
            if self._closed:
                raise MeterError("this host sampler is closed", fix="open a new HostSampler")
            if self._started:
                return self
            self._started = True
            self._last = self._read()
        if self._use_thread:
            self._start_poller()
        return self

    def close(self) -> None:
        """Close the last interval, stop the poller and release the counters."""
        if self._closed:
            return
        if self._started:
            self.tick()
        if self._trials:
            logger.warning(
                "host sampler closed while trials %s were still running: their shares end here",
                ", ".join(sorted(self._trials)),
            )
        self._closed = True
        self._stop_poller()
        self._unregister()

    def __enter__(self) -> HostSampler:
        return self.start()

    @property
    def trials(self) -> tuple[str, ...]:
        """The trials running now."""
        with self._lock:
            return tuple(self._trials)

    @property
    def interval_s(self) -> float:
        if self._interval_s is not None:
            return max(_MIN_INTERVAL_S, self._interval_s)
        return max(_MIN_INTERVAL_S, min((b.poll_interval_s for b in self._backends), default=1.0))

    # -- trials ----------------------------------------------------------------------
    def join(
        self,
        trial: str,
        *,
        pid: int | None = None,
        cpu_time: UsageReader | None = None,
        gpu_time: Mapping[str, UsageReader] | None = None,
        components: Collection[str] | None = None,
        publish: str | os.PathLike[str] | None = None,
    ) -> AttributedBackend:
        """``trial`` starts running; returns its view (cumulative attributed joules).

        Its CPU time is ``cpu_time()`` (cumulative seconds) or, by default, the CPU time
        of the process tree rooted at ``pid``; ``gpu_time`` maps GPU components
        (``"gpu:0"``) to cumulative GPU-busy seconds of the trial there; ``components``
        are the counters it uses (default: all, e.g. name its GPUs to keep other GPUs'
        energy off it). ``publish``: a file where its cumulative shares are written at
        every interval (:func:`frugalml.meter._published.write_published`), for a trial
        whose own process meters with
        :class:`~frugalml.meter._published.PublishedShareBackend`.
        """
        if not self._started:
            self.start()
        if cpu_time is None:
            if pid is None:
                raise ConfigError(
                    f"trial {trial!r} joined without a way to read its CPU time",
                    fix="pass pid= (its process) or cpu_time= (cumulative CPU seconds)",
                )
            sampler = ProcessTreeSampler(pid, clock=self._clock)
            cpu_time = lambda: sampler.poll().cpu_s  # noqa: E731
        with self._lock:
            if self._closed:
                raise MeterError("this host sampler is closed", fix="open a new HostSampler")
            if trial in self._trials:
                raise ConfigError(
                    f"trial {trial!r} is already running on this host sampler",
                    fix="give every trial a unique name, and leave() before joining again",
                )
            self._tick_locked()
            readers = dict(gpu_time or {})
            entry = _Trial(
                trial,
                cpu_time,
                readers,
                None if components is None else frozenset(components),
                last_cpu_s=_safe(cpu_time, 0.0),
                last_gpu_s={c: _safe(r, 0.0) for c, r in readers.items()},
                joined_t=self._clock(),
            )
            self._trials[trial] = entry
            entry.view = AttributedBackend(self, entry)
            if publish is not None:
                entry.publish = os.fspath(publish)
                self._publish(entry)
            return entry.view

    def leave(self, trial: str) -> tuple[ComponentEnergy, ...]:
        """``trial`` stops running: closes the interval and returns its attributed energy
        over its whole stay (one record per shared counter, kind ``attributed``)."""
        with self._lock:
            entry = self._trials.get(trial)
            if entry is None:
                raise ConfigError(
                    f"trial {trial!r} is not running on this host sampler",
                    fix="leave() a trial once, after join()",
                )
            self._tick_locked()
            del self._trials[trial]
            self._publish(entry, "left")
            readings = entry.view._readings_now() if entry.view else []
            duration_s = max(0.0, self._clock() - entry.joined_t)
        return tuple(
            ComponentEnergy(
                component=r.component,
                energy_j=r.energy_j,
                source=r.source,
                kind="attributed",
                device=r.device,
                notes=r.notes,
                unmeasured_s=min(duration_s, r.unmeasured_s),
                power_bound_w=None if r.power_bound is None else r.power_bound.max_power_w,
            )
            for r in readings
        )

    def meter(
        self,
        trial: str,
        config: MeterConfig | None = None,
        *,
        pid: int | None = None,
        cpu_time: UsageReader | None = None,
        gpu_time: Mapping[str, UsageReader] | None = None,
        components: Collection[str] | None = None,
    ) -> Meter:
        """A :class:`~frugalml.meter.Meter` for ``trial``: its attributed view of the
        shared counters, and stated estimates for whatever they do not cover. Closing
        the meter makes the trial leave.

        For a trial that runs in this process. Without ``pid`` or ``cpu_time`` its CPU time
        is this whole process's: right only when it is the only trial here; trials on
        threads pass their thread's CPU clock, e.g. ``cpu_time=lambda:
        time.clock_gettime(time.pthread_getcpuclockid(ident))``. A trial in another
        process (a subprocess, a Ray worker) is :meth:`join`-ed with its ``pid`` and
        :meth:`leave`-s with its record.
        """
        from frugalml.meter._estimate import estimate_unmeasured
        from frugalml.meter._meter import Meter
        from frugalml.meter._registry import BackendContext

        cfg = config or self.config
        process = ProcessTreeSampler(pid if pid is not None else cfg.pid, clock=self._clock)
        if cpu_time is None and pid is None:
            cpu_time = lambda: process.sample().cpu_s  # noqa: E731
        view = self.join(
            trial, pid=pid, cpu_time=cpu_time, gpu_time=gpu_time, components=components
        )
        context = BackendContext(cfg, process, self._clock, backends=[view])
        context.unmeasured_reasons.append("the host sampler's counters do not cover it")
        backends = [view, *estimate_unmeasured(context)]
        return Meter(cfg, backends=backends, process=process, clock=self._clock)

    # -- intervals -------------------------------------------------------------------
    def tick(self) -> None:
        """Close an interval now: read the counters and the trials' usage, split."""
        with self._lock:
            if self._started and not self._closed:
                self._tick_locked()

    def _read(self) -> dict[str, ComponentReading]:
        return {r.component: r for b in self._backends for r in b.read()}

    def _tick_locked(self) -> None:
        readings = self._read()
        usage: dict[str, TrialUsage] = {}
        for name, entry in self._trials.items():
            used, cpu, gpu = entry.usage()
            usage[name] = used
            entry.last_cpu_s, entry.last_gpu_s = cpu, gpu
        deltas: dict[str, float] = {}
        unmeasured: dict[str, float] = {}
        for component, reading in readings.items():
            before = self._last.get(component)
            deltas[component] = max(0.0, reading.energy_j - (before.energy_j if before else 0.0))
            unmeasured[component] = max(
                0.0, reading.unmeasured_s - (before.unmeasured_s if before else 0.0)
            )
            self.counter_j[component] = self.counter_j.get(component, 0.0) + deltas[component]
        shares = attribute(deltas, usage)
        for component, joules in deltas.items():
            if not any(component in s for s in shares.values()):
                self.unattributed_j[component] = self.unattributed_j.get(component, 0.0) + joules
        for name, parts in shares.items():
            entry = self._trials[name]
            for component, share in parts.items():
                entry.energy_j[component] = entry.energy_j.get(component, 0.0) + share.energy_j
                entry.unmeasured_s[component] = (
                    entry.unmeasured_s.get(component, 0.0) + unmeasured[component]
                )
        self._last = readings
        for entry in self._trials.values():
            self._publish(entry)

    def _publish(self, entry: _Trial, state: str = "running") -> None:
        """Write ``entry``'s cumulative shares to its file, if it has one (a failed write
        is logged: the trial's reader then says its attribution failed)."""
        if entry.publish is None:
            return
        from frugalml.meter._published import write_published

        try:
            write_published(
                entry.publish,
                self._trial_readings(entry),
                trial=entry.name,
                interval_s=self.interval_s,
                state=state,
            )
        except OSError as exc:
            logger.warning("host sampler: publishing %s's share failed: %s", entry.name, exc)

    def _poll_every_s(self) -> float:
        return self.interval_s

    def _poll_once(self) -> None:
        try:
            for backend in self._backends:
                backend.poll()
            self.tick()
        except Exception:  # the sampler must never take a trial down
            logger.warning("host sampler: an interval failed", exc_info=True)

    def _unregister(self) -> None:
        with _open_lock:
            if _open.get(self._key) is self:
                del _open[self._key]

    def _trial_readings(self, entry: _Trial) -> list[ComponentReading]:
        out = []
        for component, counter in self._last.items():
            if entry.components is not None and component not in entry.components:
                continue
            gpu_time = component in entry.gpu_time
            rule: ShareRule = (
                ("gpu_time" if gpu_time else "equal") if is_gpu(component) else "cpu_time"
            )
            out.append(
                ComponentReading(
                    component=component,
                    energy_j=entry.energy_j.get(component, 0.0),
                    source=f"{counter.source} share:{rule}",
                    kind="attributed",
                    device=counter.device,
                    notes=(rule_note(component, gpu_time), *counter.notes),
                    faults=counter.faults,
                    unmeasured_s=entry.unmeasured_s.get(component, 0.0),
                    power_bound=counter.power_bound,
                )
            )
        return out


class AttributedBackend(EnergyBackend):
    """One trial's view of a :class:`HostSampler`: cumulative attributed joules per shared
    counter. Reading it closes an interval on the sampler (so a window's edges are
    interval edges); closing it makes the trial leave."""

    name = "attributed"

    def __init__(self, sampler: HostSampler, trial: _Trial) -> None:
        super().__init__(sampler._clock)
        self._sampler = sampler
        self._trial = trial
        self._frozen: list[ComponentReading] | None = None

    @property
    def trial(self) -> str:
        return self._trial.name

    @property
    def poll_interval_s(self) -> float:
        return self._sampler.interval_s

    @property
    def devices(self) -> tuple[str, ...]:
        return tuple(d for b in self._sampler.backends for d in b.devices)

    @property
    def capabilities(self) -> BackendCapabilities:
        kinds: list[DeviceKind] = []
        sync = False
        minimum = 0.0
        reason = ""
        for backend in self._sampler.backends:
            caps = backend.capabilities
            kinds.extend(k for k in caps.devices if k not in kinds)
            sync = sync or caps.sync_cuda
            if caps.min_trusted_window_s > minimum:
                minimum, reason = caps.min_trusted_window_s, caps.short_window_reason
        return BackendCapabilities(
            devices=tuple(kinds),
            kind="attributed",
            sync_cuda=sync,
            min_trusted_window_s=minimum,
            short_window_reason=reason,
        )

    def _readings_now(self) -> list[ComponentReading]:
        return self._sampler._trial_readings(self._trial)

    def _poll(self) -> None:
        if self._frozen is None and self._trial.name in self._sampler._trials:
            self._sampler.tick()

    def _readings(self) -> list[ComponentReading]:
        if self._frozen is not None:
            return self._frozen
        return self._readings_now()

    def _release(self) -> None:
        if self._trial.name in self._sampler._trials:
            self._sampler.leave(self._trial.name)
        self._frozen = self._readings_now()


def host_sampler(config: MeterConfig | None = None, **kwargs: Any) -> HostSampler:
    """The open :class:`HostSampler` over this host's counters (opened with whatever
    config it was given), or a new, started one for ``config``: the one reader per
    counter."""
    with _open_lock:
        found = _open.get(_HOST)
    if found is not None:
        if config is not None and found.config != config:
            logger.info("host_sampler: the open sampler's config is used, not the one given")
        return found
    return HostSampler(config or MeterConfig(), **kwargs).start()

"""The interface every energy backend implements.

A backend reports, per component, the cumulative joules since it started. The figures are
monotonic (never decrease) and non-negative; a window is the difference of two readings,
so windows nest for free. :meth:`EnergyBackend.poll` is called by the meter's poller thread
often enough (at most :attr:`EnergyBackend.poll_interval_s` apart) to keep counter wraps,
driver reloads and power integration correct; :meth:`EnergyBackend.read` takes a fresh
reading at a window edge. Both are thread-safe.

A counter reading is booked only when it is physically possible: every delta between two
reads must stay within :meth:`PowerBound.allowed_j` for the time between them (the
hardware's maximum power, a stated slack). What cannot be booked is kept by a
:class:`CounterLedger` as a :class:`CounterFault` interval with what happened, and as
cumulative unmeasured seconds, so a window (a difference of two readings) knows which part
of it was not measured.
"""

from __future__ import annotations

import logging
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from frugalml.meter._types import Kind

__all__ = [
    "POWER_SLACK",
    "BackendCapabilities",
    "Clock",
    "ComponentReading",
    "CounterFault",
    "CounterLedger",
    "DeviceKind",
    "EnergyBackend",
    "NullBackend",
    "PowerBound",
]

logger = logging.getLogger(__name__)

#: A monotonic clock in seconds; injectable so tests need no sleeps.
Clock = Callable[[], float]


#: A delta may exceed the hardware's maximum power by this factor (power limits are
#: enforced as running averages, so short excursions above them happen).
POWER_SLACK = 1.25
_MAX_FAULTS = 1000


@dataclass(frozen=True)
class PowerBound:
    """The most power a counter's hardware can draw, where that figure came from, and the
    counter's update period (a read may hold up to one period more energy than the time
    between reads)."""

    max_power_w: float
    source: str
    update_slack_s: float

    def allowed_j(self, elapsed_s: float) -> float:
        """The most energy a delta over ``elapsed_s`` seconds can physically hold."""
        return self.max_power_w * POWER_SLACK * (max(0.0, elapsed_s) + self.update_slack_s)

    def describe(self) -> str:
        return (
            f"{self.max_power_w:g} W ({self.source}) x {POWER_SLACK:g} slack x "
            f"(elapsed + {self.update_slack_s:g} s)"
        )


@dataclass(frozen=True)
class CounterFault:
    """An interval a counter could not measure (nothing booked for it), on the backend's
    clock; ``end_t`` of an interval still open is the time of the reading."""

    start_t: float
    end_t: float
    note: str


@dataclass
class CounterLedger:
    """The intervals one counter could not measure: closed faults, and an open one while
    the counter has no trustworthy baseline (unreadable, garbage, outside its range)."""

    faults: list[CounterFault] = field(default_factory=list)
    closed_unmeasured_s: float = 0.0
    lost_since: float | None = None
    lost_note: str = ""

    def skip(self, start_t: float, end_t: float, note: str) -> None:
        """The interval ``(start_t, end_t]`` is not booked."""
        self.closed_unmeasured_s += max(0.0, end_t - start_t)
        self._add(CounterFault(start_t, end_t, note))

    def lose(self, since_t: float, note: str) -> None:
        """No baseline from ``since_t`` on (the last good reading) until :meth:`regain`."""
        if self.lost_since is None:
            self.lost_since, self.lost_note = since_t, note

    def regain(self, now_t: float) -> None:
        """A good reading at ``now_t`` is the new baseline; the gap is not booked."""
        if self.lost_since is not None:
            since, note = self.lost_since, self.lost_note
            self.lost_since, self.lost_note = None, ""
            self.skip(since, now_t, note)

    @property
    def lost(self) -> bool:
        return self.lost_since is not None

    def unmeasured_s(self, now_t: float) -> float:
        """Cumulative seconds not measured, up to ``now_t``."""
        open_s = 0.0 if self.lost_since is None else max(0.0, now_t - self.lost_since)
        return self.closed_unmeasured_s + open_s

    def snapshot(self, now_t: float) -> tuple[CounterFault, ...]:
        """The faults so far, an open one ending at ``now_t``."""
        if self.lost_since is None:
            return tuple(self.faults)
        return (*self.faults, CounterFault(self.lost_since, now_t, self.lost_note))

    def _add(self, fault: CounterFault) -> None:
        last = self.faults[-1] if self.faults else None
        if last is not None and last.note == fault.note and last.end_t >= fault.start_t:
            self.faults[-1] = CounterFault(last.start_t, max(last.end_t, fault.end_t), last.note)
        else:
            self.faults.append(fault)
        if len(self.faults) > _MAX_FAULTS:  # the seconds stay exact; the oldest notes go
            del self.faults[0]


#: The hardware a backend's components cover: a ``platform`` counter (RAPL psys) covers
#: the CPU and DRAM as well.
DeviceKind = Literal["gpu", "cpu", "dram", "platform"]


@dataclass(frozen=True)
class BackendCapabilities:
    """What a backend reads and what the meter must do for its figures to be right.

    - ``devices``: the kinds of hardware its components cover (:data:`DeviceKind`); the
      CPU/DRAM estimate fills in the kinds no measuring backend covers.
    - ``kind``: whether its figures are ``measured`` (a counter) or ``estimated``.
    - ``sync_cuda``: CUDA must be synchronised at window edges (queued GPU work would
      otherwise be booked to the next window).
    - ``min_trusted_window_s``: windows shorter than this get a note, saying
      ``short_window_reason`` (0: any window can be trusted).
    - ``reads_process_tree``: its figures come from the meter's process-tree sampler, which
      it polls itself (the meter then reads the sampler's latest sample at window edges).
    """

    devices: tuple[DeviceKind, ...] = ()
    kind: Kind = "measured"
    sync_cuda: bool = False
    min_trusted_window_s: float = 0.0
    short_window_reason: str = ""
    reads_process_tree: bool = False

    def covers(self, device: DeviceKind) -> bool:
        """True when this backend's components include ``device``'s energy."""
        return device in self.devices or (device in ("cpu", "dram") and "platform" in self.devices)


@dataclass(frozen=True)
class ComponentReading:
    """Cumulative energy of one component since its backend started.

    ``faults`` are the intervals its counter could not measure so far and
    ``unmeasured_s`` their cumulative length; ``power_bound`` is what deltas were checked
    against (None for estimates).
    """

    component: str
    energy_j: float
    source: str
    kind: Kind
    device: str
    notes: tuple[str, ...] = ()
    faults: tuple[CounterFault, ...] = ()
    unmeasured_s: float = 0.0
    power_bound: PowerBound | None = None


class EnergyBackend(ABC):
    """Base class: a lock around ``_poll``/``_readings`` and an idempotent ``close``."""

    #: Short name for logs and the environment report (``"nvml"``, ``"rapl"``, ...).
    name: str = "backend"

    def __init__(self, clock: Clock | None = None) -> None:
        self._clock: Clock = clock or time.monotonic
        self._lock = threading.Lock()
        self._closed = False
        self._poll_failures = 0

    @property
    def poll_interval_s(self) -> float:
        """The longest gap between polls that keeps this backend's figures correct."""
        return 1.0

    @property
    def devices(self) -> tuple[str, ...]:
        """Human-readable names of the hardware this backend reads."""
        return ()

    @property
    def capabilities(self) -> BackendCapabilities:
        """What this backend covers and needs (see :class:`BackendCapabilities`)."""
        return BackendCapabilities()

    def poll(self) -> None:
        """Update the cumulative figures (called by the poller thread)."""
        with self._lock:
            if self._closed:
                return
            try:
                self._poll()
            except Exception:  # a measurement problem must never stop the training
                self._poll_failures += 1
                if self._poll_failures == 1:
                    logger.warning("%s backend: polling failed", self.name, exc_info=True)

    def read(self) -> list[ComponentReading]:
        """A fresh reading of every component (polls first unless closed)."""
        with self._lock:
            if not self._closed:
                try:
                    self._poll()
                except Exception:
                    self._poll_failures += 1
                    if self._poll_failures == 1:
                        logger.warning("%s backend: reading failed", self.name, exc_info=True)
            return self._readings()

    def close(self) -> None:
        """Take a last reading and release the hardware; safe to call more than once."""
        with self._lock:
            if self._closed:
                return
            try:
                self._poll()
            except Exception:
                logger.debug("%s backend: last poll before close failed", self.name)
            self._closed = True
            self._release()

    @property
    def closed(self) -> bool:
        return self._closed

    @abstractmethod
    def _poll(self) -> None:
        """Update cumulative state from the hardware; called with the lock held."""

    @abstractmethod
    def _readings(self) -> list[ComponentReading]:
        """The cumulative figures as they stand; called with the lock held."""

    def _release(self) -> None:
        """Free vendor resources; called once, with the lock held."""
        return None


class NullBackend(EnergyBackend):
    """No components: what a machine without the hardware gets, quietly."""

    name = "null"

    def __init__(self, reason: str = "", clock: Clock | None = None) -> None:
        super().__init__(clock)
        self.reason = reason

    @property
    def poll_interval_s(self) -> float:
        return float("inf")

    def _poll(self) -> None:
        return None

    def _readings(self) -> list[ComponentReading]:
        return []

"""The interface every energy backend implements.

A backend reports, per component, the cumulative joules since it started. The figures are
monotonic (never decrease) and non-negative; a window is the difference of two readings,
so windows nest for free. :meth:`EnergyBackend.poll` is called by the meter's poller thread
often enough (at most :attr:`EnergyBackend.poll_interval_s` apart) to keep counter wraps,
driver reloads and power integration correct; :meth:`EnergyBackend.read` takes a fresh
reading at a window edge. Both are thread-safe.
"""

from __future__ import annotations

import logging
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass

from frugalml.meter._types import Kind

__all__ = ["Clock", "ComponentReading", "EnergyBackend", "NullBackend"]

logger = logging.getLogger(__name__)

#: A monotonic clock in seconds; injectable so tests need no sleeps.
Clock = Callable[[], float]


@dataclass(frozen=True)
class ComponentReading:
    """Cumulative energy of one component since its backend started."""

    component: str
    energy_j: float
    source: str
    kind: Kind
    device: str
    notes: tuple[str, ...] = ()


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

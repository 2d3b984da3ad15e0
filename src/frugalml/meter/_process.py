"""CPU time and resident memory of a process tree, sampled cheaply.

The CPU time of a tree is the sum, over the processes alive in it, of their own CPU time
plus the CPU time of the children they have waited for (the kernel moves a child's time to
its parent when the parent reaps it, so nothing is counted twice). It is kept monotonic: a
child that exits without being waited for by a process in the tree takes its last unseen
fraction of a poll interval with it.

Resident memory is the sum of RSS over the tree (pages shared between processes count once
per process, so this is an upper bound) and is integrated over time with the trapezoid rule
(the DRAM estimate uses the integral).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass

import psutil

from frugalml.meter._backend import Clock

__all__ = ["ProcessSample", "ProcessTreeSampler"]

logger = logging.getLogger(__name__)

_GONE = (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied)
#: Rescans for new child processes run at most this often...
MIN_SCAN_INTERVAL_S = 2.0
#: ...and less often where a rescan is slow (many processes on the machine).
MAX_SCAN_CPU_SHARE = 0.002


@dataclass(frozen=True)
class ProcessSample:
    """The tree's cumulative CPU seconds and RSS integral since the sampler started."""

    t: float
    cpu_s: float
    rss_bytes: int
    rss_byte_s: float


def _proc_cpu_s(proc: psutil.Process) -> float:
    times = proc.cpu_times()
    return float(times.user + times.system + times.children_user + times.children_system)


class ProcessTreeSampler:
    """Samples the process tree rooted at ``pid`` (default: this process).

    :meth:`poll` (the poller's call) rescans the tree for new descendants when a rescan is
    due and re-reads the known processes (tens of microseconds); :meth:`sample` only
    re-reads, for window edges. With ``pid=None`` and ``attach_later=True`` the sampler
    reads nothing until :meth:`attach` names a freshly started process, whose whole life is
    then counted.
    """

    def __init__(
        self,
        pid: int | None = None,
        *,
        clock: Clock | None = None,
        attach_later: bool = False,
    ) -> None:
        self._clock: Clock = clock or time.monotonic
        self._lock = threading.Lock()
        self._own = False
        self._root: psutil.Process | None = None
        self._descendants: dict[int, psutil.Process] = {}
        self._base_cpu_s = 0.0
        self._cpu_floor_s = 0.0
        self._cpu_s = 0.0
        self._rss_bytes = 0
        self._rss_byte_s = 0.0
        self._raw_cpu_s = 0.0
        self._t = self._clock()
        self._last_scan_t = -float("inf")
        #: Seconds between rescans of the tree for new processes (adapts to their cost).
        self.scan_interval_s = MIN_SCAN_INTERVAL_S
        if not attach_later:
            self._set_root(os.getpid() if pid is None else pid, count_from_zero=False)
            self._poll_locked(rescan=True)
            self._base_cpu_s = self._raw_cpu_s
            self._cpu_s = 0.0
            self._rss_byte_s = 0.0

    def _set_root(self, pid: int, *, count_from_zero: bool) -> None:
        self._own = pid == os.getpid()
        try:
            self._root = psutil.Process(pid)
        except psutil.NoSuchProcess:
            self._root = None
            logger.warning("process %d does not exist; CPU time and memory read as 0", pid)
        if count_from_zero:
            self._base_cpu_s = 0.0

    def rescan(self) -> ProcessSample:
        """Rescan the tree for new processes now and take a sample."""
        with self._lock:
            return self._poll_locked(rescan=True)

    def attach(self, pid: int) -> None:
        """Follow ``pid`` (a process started after this sampler) for the rest of the run."""
        with self._lock:
            self._set_root(pid, count_from_zero=True)
            self._poll_locked(rescan=True)

    @property
    def root_pid(self) -> int | None:
        return None if self._root is None else self._root.pid

    def raise_cpu_floor(self, cpu_s: float) -> None:
        """Lift the cumulative CPU time to at least ``cpu_s`` (an exact figure from
        ``getrusage`` once the tree has been waited for)."""
        with self._lock:
            self._cpu_floor_s = max(self._cpu_floor_s, cpu_s)
            self._cpu_s = max(self._cpu_s, self._cpu_floor_s)

    def poll(self) -> ProcessSample:
        """Take a sample, rescanning the tree for new processes when a rescan is due.

        A rescan reads every process's parent on the machine (about 1 ms per 100
        processes), so it runs at most every :attr:`scan_interval_s`, which adapts to keep
        rescans under 0.2 % of one CPU. Processes found late lose nothing of their CPU time
        (it is cumulative since they started); only their RSS samples before discovery.
        """
        with self._lock:
            due = self._clock() - self._last_scan_t >= self.scan_interval_s
            return self._poll_locked(rescan=due)

    def sample(self) -> ProcessSample:
        """Take a sample of the processes already known (cheap; for window edges)."""
        with self._lock:
            return self._poll_locked(rescan=False)

    def latest(self) -> ProcessSample:
        with self._lock:
            return ProcessSample(self._t, self._cpu_s, self._rss_bytes, self._rss_byte_s)

    def _root_cpu_s(self, root: psutil.Process) -> float:
        if self._own:
            t = os.times()  # process_time() has ns resolution; os.times() 10 ms ticks
            return time.process_time() + t.children_user + t.children_system
        return _proc_cpu_s(root)

    def _poll_locked(self, *, rescan: bool) -> ProcessSample:
        now = self._clock()
        rss = 0
        raw_cpu = 0.0
        root = self._root
        if root is not None:
            try:
                raw_cpu += self._root_cpu_s(root)
                rss += int(root.memory_info().rss)
            except _GONE:
                self._root = root = None
        if root is not None and rescan:
            started = time.perf_counter()
            try:
                for child in root.children(recursive=True):
                    self._descendants.setdefault(child.pid, child)
            except _GONE:
                pass
            cost_s = time.perf_counter() - started
            self._last_scan_t = now
            self.scan_interval_s = max(MIN_SCAN_INTERVAL_S, cost_s / MAX_SCAN_CPU_SHARE)
        for pid, proc in list(self._descendants.items()):
            try:
                cpu = _proc_cpu_s(proc)
                rss += int(proc.memory_info().rss)
            except _GONE:
                del self._descendants[pid]
                continue
            raw_cpu += cpu
        self._raw_cpu_s = raw_cpu
        dt = now - self._t
        if dt > 0:
            self._rss_byte_s += 0.5 * (self._rss_bytes + rss) * dt
            self._t = now
        self._rss_bytes = rss
        self._cpu_s = max(self._cpu_s, raw_cpu - self._base_cpu_s, self._cpu_floor_s)
        return ProcessSample(self._t, self._cpu_s, self._rss_bytes, self._rss_byte_s)

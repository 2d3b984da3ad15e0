"""``Meter``: named, nestable measurement windows over a set of energy backends.

Each backend reports cumulative, monotonic joules per component since the meter started;
a poller thread keeps those figures correct between windows (RAPL wraps, NVML driver
reloads, GPU power integration, process-tree RSS for the DRAM estimate). A window is the
difference of two snapshots, so windows nest and overlap freely and opening one costs a few
counter reads.

Backends book only physically possible counter deltas and keep the intervals they could
not measure (:class:`~frugalml.meter._backend.CounterFault`, cumulative unmeasured
seconds); a window reports the part of those inside it, per component, so a fault between
two polls loses only that interval. Each window also records the machine's load (the
highest 1-minute load average seen), its logical CPUs and torch's thread count.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, ParamSpec, TypeVar

from frugalml.errors import MeterError
from frugalml.meter._backend import Clock, ComponentReading, CounterFault, EnergyBackend
from frugalml.meter._carbon import ResolvedCarbon, resolve_carbon
from frugalml.meter._config import MeterConfig
from frugalml.meter._process import ProcessSample, ProcessTreeSampler
from frugalml.meter._registry import build_backends
from frugalml.meter._types import ComponentEnergy, Measurement

__all__ = ["Meter", "Window", "build_backends"]

logger = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")

_MIN_POLL_INTERVAL_S = 0.01
_MAX_FAULT_NOTES = 5


def load_avg_1m() -> float | None:
    """The 1-minute load average, or None where the OS has none."""
    try:
        return float(os.getloadavg()[0])
    except (AttributeError, OSError):
        return None


def torch_threads() -> int | None:
    """torch's intra-op thread count if torch is already imported (never imports it)."""
    torch = sys.modules.get("torch")
    get = getattr(torch, "get_num_threads", None) if torch is not None else None
    if not callable(get):
        return None
    try:
        return int(get())
    except Exception:
        return None


def _max_opt(a: float | None, b: float | None) -> float | None:
    if a is None:
        return b
    return a if b is None else max(a, b)


@dataclass(frozen=True)
class _Snapshot:
    t: float
    wall: datetime
    process: ProcessSample
    readings: dict[str, ComponentReading]
    load_avg_1m: float | None = None


@dataclass(eq=False)
class Window:
    """An open (or finished) measurement window; :attr:`measurement` is set by ``end``."""

    name: str
    parent: str | None
    _start: _Snapshot = field(repr=False)
    peak_rss_bytes: int = 0
    peak_gpu_mem_bytes: int | None = None
    peak_load_avg_1m: float | None = None
    measurement: Measurement | None = None

    @property
    def open(self) -> bool:
        return self.measurement is None


class BackendPoller:
    """What a :class:`Meter` and a :class:`~frugalml.meter.HostSampler` share: the
    backends they read, a daemon poller thread that calls :meth:`_poll_once` every
    :meth:`_poll_every_s` seconds from start until close, the backends closed after it, and
    the context manager (``start`` on enter, ``close`` on exit). Subclasses write ``start``
    and ``close`` (what happens at each edge is theirs) with :meth:`_start_poller` and
    :meth:`_stop_poller`."""

    _poller_name = "frugalml-poller"

    def __init__(self, backends: Sequence[EnergyBackend]) -> None:
        self._backends: tuple[EnergyBackend, ...] = tuple(backends)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._started = False
        self._closed = False

    @property
    def backends(self) -> tuple[EnergyBackend, ...]:
        return self._backends

    @property
    def devices(self) -> tuple[str, ...]:
        return tuple(d for b in self._backends for d in b.devices)

    def start(self) -> BackendPoller:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> BackendPoller:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _poll_every_s(self) -> float:
        raise NotImplementedError

    def _poll_once(self) -> None:
        raise NotImplementedError

    def _start_poller(self) -> None:
        self._thread = threading.Thread(target=self._run, name=self._poller_name, daemon=True)
        self._thread.start()

    def _stop_poller(self) -> None:
        """Stop the poller thread (waiting up to 5 s for it) and close the backends."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
        for backend in self._backends:
            backend.close()

    def _run(self) -> None:
        while not self._stop.wait(self._poll_every_s()):
            self._poll_once()


class Meter(BackendPoller):
    """Measures energy, CO2, time, CPU time and memory over named windows.

    ``with Meter(config) as meter:`` starts the backends and the poller and closes them at
    the end. Inside, ``with meter.window("epoch 3"):``, ``meter.begin(name)`` /
    ``meter.end(window)`` and ``@meter.measure("step")`` record one :class:`Measurement`
    each into :attr:`measurements`; windows nest, and one that ends with an exception is
    still recorded (its ``error`` field says what happened) before the exception goes on.
    A meter that closes without any window having been opened records one measurement,
    ``"total"``, for the whole time it was started (CodeCarbon's ``with`` habit).

    ``backends``, ``process`` and ``clock`` are for tests and special callers; by default
    the backends come from :func:`build_backends`.
    """

    _poller_name = "frugalml-meter-poller"

    def __init__(
        self,
        config: MeterConfig | None = None,
        *,
        backends: Sequence[EnergyBackend] | None = None,
        process: ProcessTreeSampler | None = None,
        clock: Clock | None = None,
        carbon: ResolvedCarbon | None = None,
    ) -> None:
        self.config = config or MeterConfig()
        self._clock: Clock = clock or time.monotonic
        self.carbon = carbon or resolve_carbon(self.config.carbon)
        self._process = process or ProcessTreeSampler(self.config.pid, clock=self._clock)
        super().__init__(
            backends
            if backends is not None
            else build_backends(self.config, self._process, self._clock)
        )
        self._lock = threading.Lock()
        self._open: list[Window] = []
        self._measurements: list[Measurement] = []
        self._whole: Window | None = None  # the "total" of a block that opens no window
        self._tick_failures = 0
        capabilities = [b.capabilities for b in self._backends]
        self._sync_cuda_at_edges = any(c.sync_cuda for c in capabilities)
        self._process_polled_by_backend = any(c.reads_process_tree for c in capabilities)
        intervals = [self.config.poll_interval_s, *(b.poll_interval_s for b in self._backends)]
        self.poll_interval_s = max(_MIN_POLL_INTERVAL_S, min(intervals))

    # -- lifecycle -------------------------------------------------------------------
    def start(self) -> Meter:
        """Start the poller (done automatically by ``with`` and the first window)."""
        if self._closed:
            raise MeterError("this meter is closed", fix="create a new Meter for a new measurement")
        if not self._started:
            self._started = True
            snap = self._snapshot()
            self._whole = Window(
                "total",
                None,
                snap,
                peak_rss_bytes=snap.process.rss_bytes,
                peak_load_avg_1m=snap.load_avg_1m,
            )
            self._start_poller()
        return self

    def close(self) -> None:
        """Stop the poller and release the hardware. Safe to call more than once."""
        if self._closed:
            return
        self._closed = True
        if self._whole is not None and not self._measurements and not self._open:
            # ``with Meter() as m: work()`` without windows still measures the whole block
            total = self._measure(self._whole, self._snapshot(), None)
            with self._lock:
                self._measurements.append(total)
        for window in list(self._open):
            logger.warning("meter closed while window %r was still open", window.name)
        self._stop_poller()

    def __enter__(self) -> Meter:
        return self.start()

    # -- what the meter reads --------------------------------------------------------
    @property
    def measurements(self) -> tuple[Measurement, ...]:
        """Every finished window, in the order they ended."""
        with self._lock:
            return tuple(self._measurements)

    @property
    def process(self) -> ProcessTreeSampler:
        return self._process

    # -- windows ---------------------------------------------------------------------
    def begin(self, name: str) -> Window:
        """Open a window; pair with :meth:`end`."""
        if not self._started:
            self.start()
        if self._closed:
            raise MeterError("this meter is closed", fix="open windows before closing it")
        self._sync_cuda()
        gpu_peak = self._cuda_peak_and_reset()
        snap = self._snapshot()
        with self._lock:
            parent = self._open[-1].name if self._open else None
            self._update_peaks(snap.process.rss_bytes, gpu_peak, snap.load_avg_1m)
            window = Window(
                name,
                parent,
                snap,
                peak_rss_bytes=snap.process.rss_bytes,
                peak_load_avg_1m=snap.load_avg_1m,
            )
            if gpu_peak is not None:
                window.peak_gpu_mem_bytes = 0
            self._open.append(window)
        return window

    def end(self, window: Window, *, error: str | None = None) -> Measurement:
        """Close ``window`` and return (and record) its :class:`Measurement`."""
        if window.measurement is not None:
            raise MeterError(
                f"window {window.name!r} has already ended",
                fix="call end() once per begin()",
            )
        self._sync_cuda()
        gpu_peak = self._cuda_peak_and_reset()
        snap = self._snapshot()
        with self._lock:
            if window not in self._open:
                raise MeterError(
                    f"window {window.name!r} was not opened by this meter",
                    fix="end a window with the meter that began it",
                )
            self._update_peaks(snap.process.rss_bytes, gpu_peak, snap.load_avg_1m)
            self._open.remove(window)
        measurement = self._measure(window, snap, error)
        window.measurement = measurement
        with self._lock:
            self._measurements.append(measurement)
        return measurement

    @contextlib.contextmanager
    def window(self, name: str) -> Iterator[Window]:
        """``with meter.window("epoch 1") as w:``; ``w.measurement`` is set afterwards."""
        opened = self.begin(name)
        try:
            yield opened
        except BaseException as exc:
            self.end(opened, error=f"{type(exc).__name__}: {exc}")
            raise
        self.end(opened)

    def measure(self, name: str | None = None) -> Callable[[Callable[P, R]], Callable[P, R]]:
        """Decorator: every call of the function is one window (named after it by default)."""

        def decorate(func: Callable[P, R]) -> Callable[P, R]:
            label = name if name is not None else str(getattr(func, "__qualname__", func))

            @functools.wraps(func)
            def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
                with self.window(label):
                    return func(*args, **kwargs)

            return wrapper

        return decorate

    # -- internals -------------------------------------------------------------------
    def _snapshot(self) -> _Snapshot:
        readings = {r.component: r for b in self._backends for r in b.read()}
        process = (
            self._process.latest() if self._process_polled_by_backend else self._process.sample()
        )
        return _Snapshot(
            self._clock(), datetime.now(timezone.utc), process, readings, load_avg_1m()
        )

    def _update_peaks(
        self, rss_bytes: int, gpu_peak: int | None, load: float | None = None
    ) -> None:
        for window in (*self._open, *((self._whole,) if self._whole else ())):
            window.peak_rss_bytes = max(window.peak_rss_bytes, rss_bytes)
            if gpu_peak is not None:
                window.peak_gpu_mem_bytes = max(window.peak_gpu_mem_bytes or 0, gpu_peak)
            window.peak_load_avg_1m = _max_opt(window.peak_load_avg_1m, load)

    def _measure(self, window: Window, end: _Snapshot, error: str | None) -> Measurement:
        start = window._start
        duration_s = max(0.0, end.t - start.t)
        notes: list[str] = []
        if end.t < start.t:
            notes.append(
                f"the clock went back {start.t - end.t:.3g} s within the window: duration "
                "booked as 0 s"
            )
        components = [
            _component(reading, start.readings.get(name), start.t, end.t, duration_s)
            for name, reading in end.readings.items()
        ]
        for capability in dict.fromkeys(b.capabilities for b in self._backends):
            if duration_s < capability.min_trusted_window_s:
                notes.append(
                    f"window of {duration_s:.3f} s is shorter than "
                    f"{capability.min_trusted_window_s:g} s: {capability.short_window_reason}"
                )
        notes.extend(
            f"{c.component}: {c.unmeasured_s:.3g} s of the {duration_s:.3g} s window not "
            "measured (its counter gave readings the hardware could not have produced, or "
            "none; see the component's notes): its energy_j covers the rest of the window only"
            for c in components
            if c.unmeasured_s > 0
        )
        cpu_s = end.process.cpu_s - start.process.cpu_s
        if cpu_s < 0:
            notes.append(
                f"the process tree's CPU time went back {-cpu_s:.3g} s (a process left the "
                "tree): cpu_time_s booked as 0 s"
            )
        logical_cpus = os.cpu_count()
        peak_load = _max_opt(window.peak_load_avg_1m, end.load_avg_1m)
        estimated = [c.component for c in components if c.kind == "estimated"]
        if peak_load is not None and logical_cpus and peak_load > logical_cpus and estimated:
            notes.append(
                f"the 1-minute load average reached {peak_load:.2f} on {logical_cpus} logical "
                f"CPUs: the machine was oversubscribed, so the estimated figures "
                f"({', '.join(estimated)}) are inflated by contention (the same work takes "
                "more CPU time and memory-seconds)"
            )
        energy_j = sum(c.energy_j for c in components)
        return Measurement(
            name=window.name,
            parent=window.parent,
            started_at=start.wall.isoformat(timespec="microseconds"),
            duration_s=duration_s,
            cpu_time_s=max(0.0, cpu_s),
            energy_j=energy_j,
            components=tuple(components),
            co2_g=self.carbon.co2_g(energy_j),
            intensity_g_per_kwh=self.carbon.intensity_g_per_kwh,
            intensity_source=self.carbon.intensity_source,
            pue=self.carbon.pue,
            peak_rss_bytes=window.peak_rss_bytes,
            peak_gpu_mem_bytes=window.peak_gpu_mem_bytes,
            devices=self.devices,
            error=error,
            notes=tuple(notes),
            peak_load_avg_1m=peak_load,
            logical_cpus=logical_cpus,
            torch_threads=torch_threads(),
        )

    def _poll_every_s(self) -> float:
        return self.poll_interval_s

    def _poll_once(self) -> None:
        self._tick()

    def _tick(self) -> None:
        try:
            sample = self._process.poll()
            load = load_avg_1m()
            with self._lock:
                self._update_peaks(sample.rss_bytes, None, load)
        except Exception:  # the poller must never take the training down
            self._tick_failures += 1
            if self._tick_failures == 1:
                logger.warning("sampling the process tree failed", exc_info=True)
        for backend in self._backends:
            backend.poll()

    def _torch_cuda(self) -> Any:
        torch = sys.modules.get("torch")
        if torch is None:
            return None
        try:
            cuda = torch.cuda
            return cuda if cuda.is_initialized() else None
        except Exception:
            return None

    def _sync_cuda(self) -> None:
        if not (self.config.sync_cuda and self._sync_cuda_at_edges):
            return
        cuda = self._torch_cuda()
        if cuda is None:
            return
        try:
            for index in range(cuda.device_count()):
                cuda.synchronize(index)
        except Exception as exc:
            logger.debug("CUDA synchronise at a window edge failed: %s", exc)

    def _cuda_peak_and_reset(self) -> int | None:
        if not self.config.track_cuda_memory:
            return None
        cuda = self._torch_cuda()
        if cuda is None:
            return None
        try:
            devices = range(cuda.device_count())
            peak = sum(int(cuda.max_memory_allocated(d)) for d in devices)
            for d in devices:
                cuda.reset_peak_memory_stats(d)
        except Exception as exc:
            logger.debug("reading CUDA peak memory failed: %s", exc)
            return None
        return peak


def _component(
    reading: ComponentReading,
    before: ComponentReading | None,
    start_t: float,
    end_t: float,
    duration_s: float,
) -> ComponentEnergy:
    """One component's share of a window: the difference of two cumulative readings, and
    the faults of its counter that fall inside the window."""
    notes = list(reading.notes)
    energy_j = reading.energy_j - (before.energy_j if before else 0.0)
    if energy_j < 0:
        notes.append(
            f"the cumulative reading went back {-energy_j:.6g} J within the window (a "
            "backend fault): booked as 0 J"
        )
        energy_j = 0.0
    unmeasured_s = reading.unmeasured_s - (before.unmeasured_s if before else 0.0)
    unmeasured_s = min(duration_s, max(0.0, unmeasured_s))
    inside = [f for f in reading.faults if f.end_t > start_t and f.start_t < end_t]
    intervals = tuple(
        (max(f.start_t, start_t) - start_t, min(f.end_t, end_t) - start_t) for f in inside
    )
    shown = zip(inside[:_MAX_FAULT_NOTES], intervals[:_MAX_FAULT_NOTES], strict=True)
    notes.extend(_fault_note(f, a, b) for f, (a, b) in shown)
    if len(inside) > _MAX_FAULT_NOTES:
        notes.append(f"and {len(inside) - _MAX_FAULT_NOTES} more intervals not booked")
    bound = reading.power_bound
    return ComponentEnergy(
        component=reading.component,
        energy_j=energy_j,
        source=reading.source,
        kind=reading.kind,
        device=reading.device,
        notes=tuple(notes),
        unmeasured_s=unmeasured_s,
        unmeasured_intervals_s=intervals,
        power_bound_w=None if bound is None else bound.max_power_w,
    )


def _fault_note(fault: CounterFault, start_s: float, end_s: float) -> str:
    return (
        f"not booked: {start_s:.3f}-{end_s:.3f} s into the window ({end_s - start_s:.3g} s): "
        f"{fault.note}"
    )

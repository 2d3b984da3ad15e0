"""Which backends a meter reads: a list of registered factories, then the estimate.

:func:`build_backends` calls every registered factory in order with one
:class:`BackendContext`; each returns the backends it could open (none where its hardware
is absent) and may raise :class:`~frugalml.errors.MeterError` only for hardware the user
asked for explicitly. After the factories, the stated CPU/DRAM estimate covers whatever no
measuring backend covers (read from each backend's
:attr:`~frugalml.meter.EnergyBackend.capabilities`).

Adding a backend (an AMD GPU through amdsmi, an Apple SoC through powermetrics) is one
file with the backend (an :class:`~frugalml.meter.EnergyBackend` that declares its
:class:`~frugalml.meter.BackendCapabilities`) and its factory, plus one line:
``register_backend(amd_backends)`` (or the factory added to ``_BUILTIN`` below). Its
tests subclass :class:`frugalml.testing.EnergyBackendContract`.

A trial whose host sampler attributes the machine's shared counters (a study's local worker
with ``--attribution``) opens no factory's counters: its meter reads its published share
(:func:`frugalml.meter._published.published_meter_backends`), then the same estimate.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from frugalml.errors import ConfigError
from frugalml.meter._backend import Clock, DeviceKind, EnergyBackend
from frugalml.meter._config import MeterConfig
from frugalml.meter._estimate import estimate_unmeasured
from frugalml.meter._nvml import nvml_backends
from frugalml.meter._process import ProcessTreeSampler
from frugalml.meter._rapl import rapl_backends

__all__ = [
    "BackendContext",
    "BackendFactory",
    "build_backends",
    "build_counter_backends",
    "register_backend",
    "registered_backends",
]

logger = logging.getLogger(__name__)


@dataclass
class BackendContext:
    """What a factory gets: the settings, the process-tree sampler, the clock, the
    backends built so far, and the reasons parts of the machine went unmeasured (a
    factory appends one when its hardware is absent; the estimate states them)."""

    config: MeterConfig
    process: ProcessTreeSampler
    clock: Clock | None = None
    backends: list[EnergyBackend] = field(default_factory=list)
    unmeasured_reasons: list[str] = field(default_factory=list)

    def measured(self, device: DeviceKind) -> bool:
        """True when a backend built so far reads ``device`` from a counter (its own, or
        its attributed share of a shared one)."""
        return any(
            b.capabilities.kind != "estimated" and b.capabilities.covers(device)
            for b in self.backends
        )


#: A factory: the backends it can open on this machine for ``context.config``.
BackendFactory = Callable[[BackendContext], Sequence[EnergyBackend]]

_BUILTIN: tuple[BackendFactory, ...] = (nvml_backends, rapl_backends)
_factories: list[BackendFactory] = list(_BUILTIN)


def register_backend(factory: BackendFactory) -> BackendFactory:
    """Add ``factory`` to the backends every default meter reads (after those already
    registered; registering one twice is a no-op). Returns it, so it works as a decorator."""
    if not callable(factory):
        raise ConfigError(
            f"a backend factory must be callable, not {factory!r}",
            fix="pass a function taking a BackendContext and returning a list of backends",
        )
    if factory not in _factories:
        _factories.append(factory)
    return factory


def registered_backends() -> tuple[BackendFactory, ...]:
    """The registered factories, in the order :func:`build_backends` calls them."""
    return tuple(_factories)


def build_backends(
    config: MeterConfig, process: ProcessTreeSampler, clock: Clock | None = None
) -> list[EnergyBackend]:
    """The backends for ``config``: every registered factory's (NVML for GPUs, RAPL, then
    any registered later), and stated estimates for the CPU and DRAM none of them measure.

    Raises :class:`~frugalml.errors.MeterError` only when hardware was asked for
    explicitly and cannot be measured (the backends opened before are closed).
    """
    context = _run_factories(BackendContext(config, process, clock))
    context.backends.extend(estimate_unmeasured(context))
    return context.backends


def build_counter_backends(
    config: MeterConfig, process: ProcessTreeSampler, clock: Clock | None = None
) -> list[EnergyBackend]:
    """Only the registered factories' backends (hardware counters, no estimate): what a
    :class:`~frugalml.meter.HostSampler` reads once for every trial on the machine."""
    return _run_factories(BackendContext(config, process, clock)).backends


def _run_factories(context: BackendContext) -> BackendContext:
    try:
        for factory in _factories:
            context.backends.extend(factory(context))
    except BaseException:
        for backend in context.backends:
            backend.close()
        raise
    return context

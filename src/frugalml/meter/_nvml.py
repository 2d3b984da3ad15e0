"""NVIDIA GPU energy through NVML (the ``nvidia-ml-py`` package, imported as ``pynvml``).

Where the GPU supports it (Volta and newer), the backend reads the total-energy counter
(``nvmlDeviceGetTotalEnergyConsumption``, mJ since the driver loaded). A decrease means the
driver reloaded: the reading after it is counted from 0 and the energy between the last
read and the reload (at most one poll interval) is lost, never subtracted. Elsewhere it
samples ``nvmlDeviceGetPowerUsage`` (mW) in the meter's poller thread and integrates it
with the trapezoid rule on a monotonic clock.

The GPUs measured by default are those this process can see: ``CUDA_VISIBLE_DEVICES``
entries (indices, full UUIDs with or without the ``GPU-`` prefix, or unique UUID prefixes)
are mapped to NVML devices by UUID; parsing stops at the first invalid entry, as CUDA does.
Integer entries and an unset variable follow NVML's (PCI bus) order, which matches CUDA's
only with ``CUDA_DEVICE_ORDER=PCI_BUS_ID``.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, Literal

from frugalml.meter._backend import Clock, ComponentReading, EnergyBackend

__all__ = [
    "COUNTER_SOURCE",
    "SAMPLING_SOURCE",
    "NvmlBackend",
    "NvmlGpuInfo",
    "NvmlProbe",
    "open_nvml",
    "parse_cuda_visible_devices",
    "probe_nvml",
]

logger = logging.getLogger(__name__)

COUNTER_SOURCE = "nvml:total_energy_counter"
SAMPLING_SOURCE = "nvml:power_usage_integral"
NvmlStatus = Literal["ok", "no_nvml", "no_driver", "no_gpus", "none_visible"]
_UNSET = object()


def _import_pynvml() -> ModuleType:
    import pynvml

    module: ModuleType = pynvml
    return module


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def parse_cuda_visible_devices(
    value: str | None, uuids: Sequence[str]
) -> tuple[list[int], list[str]]:
    """Map a ``CUDA_VISIBLE_DEVICES`` value to NVML indices, in CUDA ordinal order.

    ``uuids`` are the NVML devices' UUIDs (``GPU-...``) by NVML index. Returns the indices
    and notes on entries that were ignored.
    """
    if value is None:
        return list(range(len(uuids))), []
    if not value.strip():
        return [], ["CUDA_VISIBLE_DEVICES is empty: no GPU is visible to this process"]
    chosen: list[int] = []
    notes: list[str] = []
    for raw in value.split(","):
        token = raw.strip()
        index: int | None = None
        if re.fullmatch(r"-?\d+", token):
            number = int(token)
            if 0 <= number < len(uuids):
                index = number
        elif token.upper().startswith("MIG-"):
            notes.append(
                f"CUDA_VISIBLE_DEVICES entry {token!r} is a MIG instance: NVML has no energy "
                "counter per MIG instance, so it is not measured"
            )
            break
        elif token:
            prefix = token.lower() if token.upper().startswith("GPU-") else f"gpu-{token.lower()}"
            matches = [i for i, u in enumerate(uuids) if u.lower().startswith(prefix)]
            if len(matches) == 1:
                index = matches[0]
            elif len(matches) > 1:
                notes.append(f"CUDA_VISIBLE_DEVICES entry {token!r} matches several GPUs")
                break
        if index is None:
            notes.append(
                f"CUDA_VISIBLE_DEVICES entry {token!r} names no GPU; it and the entries "
                "after it are ignored (as CUDA does)"
            )
            break
        if index in chosen:
            notes.append(f"CUDA_VISIBLE_DEVICES names GPU {token!r} twice; counted once")
            continue
        chosen.append(index)
    return chosen, notes


@dataclass(frozen=True)
class NvmlGpuInfo:
    """One NVML device: identity, visibility and which energy readings it supports."""

    nvml_index: int
    name: str
    uuid: str
    ordinal: int | None
    energy_counter: bool
    power_usage: bool
    problem: str | None = None


@dataclass(frozen=True)
class NvmlProbe:
    """What NVML reports on this machine (from :func:`probe_nvml`)."""

    status: NvmlStatus
    reason: str
    driver_version: str | None = None
    gpus: tuple[NvmlGpuInfo, ...] = ()
    notes: tuple[str, ...] = ()

    @property
    def visible(self) -> tuple[NvmlGpuInfo, ...]:
        ordered = sorted(
            (g for g in self.gpus if g.ordinal is not None), key=lambda g: g.ordinal or 0
        )
        return tuple(ordered)


def _supports(call: Any, handle: Any, nvml: ModuleType) -> tuple[bool, str | None]:
    try:
        call(handle)
    except nvml.NVMLError as exc:
        return False, str(exc)
    return True, None


def _enumerate(
    nvml: ModuleType, visible: str | None
) -> tuple[list[NvmlGpuInfo], list[Any], list[str]]:
    count = int(nvml.nvmlDeviceGetCount())
    handles = [nvml.nvmlDeviceGetHandleByIndex(i) for i in range(count)]
    uuids = [_text(nvml.nvmlDeviceGetUUID(h)) for h in handles]
    order, notes = parse_cuda_visible_devices(visible, uuids)
    gpus = []
    for i, handle in enumerate(handles):
        counter, counter_problem = _supports(nvml.nvmlDeviceGetTotalEnergyConsumption, handle, nvml)
        power, power_problem = _supports(nvml.nvmlDeviceGetPowerUsage, handle, nvml)
        problem = None
        if not counter and not power:
            problem = (
                f"neither the energy counter ({counter_problem}) nor power readings "
                f"({power_problem}) are available"
            )
        gpus.append(
            NvmlGpuInfo(
                nvml_index=i,
                name=_text(nvml.nvmlDeviceGetName(handle)),
                uuid=uuids[i],
                ordinal=order.index(i) if i in order else None,
                energy_counter=counter,
                power_usage=power,
                problem=problem,
            )
        )
    names = {g.name for g in gpus if g.ordinal is not None}
    if (
        len(names) > 1
        and os.environ.get("CUDA_DEVICE_ORDER") != "PCI_BUS_ID"
        and (visible is None or all(re.fullmatch(r"\s*\d+\s*", t) for t in visible.split(",")))
    ):
        notes.append(
            "GPUs of different models are numbered in NVML (PCI bus) order; CUDA numbers "
            "them fastest first unless CUDA_DEVICE_ORDER=PCI_BUS_ID"
        )
    return gpus, handles, notes


def _start() -> ModuleType | NvmlProbe:
    """The started pynvml module, or a probe saying why NVML is not there."""
    try:
        nvml = _import_pynvml()
    except ImportError as exc:
        return NvmlProbe("no_nvml", f"nvidia-ml-py (pynvml) is not installed ({exc})")
    try:
        nvml.nvmlInit()
    except nvml.NVMLError as exc:
        return NvmlProbe("no_driver", f"NVML could not start: {exc}")
    return nvml


def probe_nvml(visible: str | object | None = _UNSET) -> NvmlProbe:
    """Ask NVML which GPUs exist, which are visible and what they can report.

    ``visible`` defaults to ``$CUDA_VISIBLE_DEVICES``. Never raises for a missing library,
    driver or GPU: the status and reason say what is missing.
    """
    cuda_visible = _visible(visible)
    nvml = _start()
    if isinstance(nvml, NvmlProbe):
        return nvml
    try:
        return _probe_started(nvml, cuda_visible)[0]
    finally:
        _shutdown(nvml)


def _visible(visible: str | object | None) -> str | None:
    if visible is _UNSET:
        return os.environ.get("CUDA_VISIBLE_DEVICES")
    return visible if isinstance(visible, str) else None


def _probe_started(nvml: ModuleType, visible: str | None) -> tuple[NvmlProbe, list[Any]]:
    try:
        driver = _text(nvml.nvmlSystemGetDriverVersion())
    except nvml.NVMLError:
        driver = None
    try:
        gpus, handles, notes = _enumerate(nvml, visible)
    except nvml.NVMLError as exc:
        return NvmlProbe("no_driver", f"NVML could not list GPUs: {exc}", driver), []
    if not gpus:
        return NvmlProbe("no_gpus", "NVML reports no GPU", driver, notes=tuple(notes)), handles
    if not any(g.ordinal is not None for g in gpus):
        return (
            NvmlProbe(
                "none_visible",
                "no GPU is visible to this process (CUDA_VISIBLE_DEVICES)",
                driver,
                tuple(gpus),
                tuple(notes),
            ),
            handles,
        )
    return NvmlProbe("ok", "NVML available", driver, tuple(gpus), tuple(notes)), handles


def _shutdown(nvml: ModuleType) -> None:
    try:
        nvml.nvmlShutdown()
    except nvml.NVMLError as exc:
        logger.debug("nvmlShutdown failed: %s", exc)


@dataclass
class _GpuState:
    info: NvmlGpuInfo
    ordinal: int
    handle: Any
    counter: bool
    last_mj: int = 0
    total_mj: int = 0
    last_power_w: float = 0.0
    last_t: float = 0.0
    total_j: float = 0.0
    read_failures: int = 0
    notes: list[str] = field(default_factory=list)


class NvmlBackend(EnergyBackend):
    """Cumulative joules per selected GPU, from the energy counter or sampled power."""

    name = "nvml"

    def __init__(
        self,
        nvml: ModuleType,
        gpus: Sequence[tuple[NvmlGpuInfo, Any]],
        *,
        sample_interval_s: float = 0.1,
        counter_interval_s: float = 1.0,
        clock: Clock | None = None,
        notes: Sequence[str] = (),
    ) -> None:
        super().__init__(clock)
        self._nvml = nvml
        self._sample_interval_s = sample_interval_s
        self._counter_interval_s = counter_interval_s
        self._notes = tuple(notes)
        now = self._clock()
        self._states: list[_GpuState] = []
        for info, handle in gpus:
            state = _GpuState(info, info.ordinal or 0, handle, counter=info.energy_counter)
            state.last_t = now
            if state.counter:
                state.last_mj = int(nvml.nvmlDeviceGetTotalEnergyConsumption(handle))
            else:
                state.last_power_w = float(nvml.nvmlDeviceGetPowerUsage(handle)) / 1000.0
                state.notes.append(
                    "this GPU has no total-energy counter: power (nvmlDeviceGetPowerUsage, mW) "
                    f"sampled about every {sample_interval_s:g} s and at window edges, "
                    "integrated with the trapezoid rule on a monotonic clock; some drivers "
                    "report power averaged over up to 1 s"
                )
            self._states.append(state)

    @property
    def sampling(self) -> bool:
        return any(not s.counter for s in self._states)

    @property
    def poll_interval_s(self) -> float:
        return self._sample_interval_s if self.sampling else self._counter_interval_s

    @property
    def devices(self) -> tuple[str, ...]:
        return tuple(
            f"GPU {s.ordinal}: {s.info.name} ({s.info.uuid}, NVML index {s.info.nvml_index})"
            for s in self._states
        )

    @property
    def ordinals(self) -> tuple[int, ...]:
        return tuple(s.ordinal for s in self._states)

    def _poll(self) -> None:
        now = self._clock()
        for state in self._states:
            try:
                if state.counter:
                    self._poll_counter(state)
                else:
                    self._poll_power(state, now)
            except self._nvml.NVMLError as exc:
                state.read_failures += 1
                if state.read_failures == 1:
                    state.notes.append(f"NVML reading failed ({exc}); such readings skipped")
                    logger.warning("GPU %d: NVML reading failed: %s", state.ordinal, exc)

    def _poll_counter(self, state: _GpuState) -> None:
        raw = int(self._nvml.nvmlDeviceGetTotalEnergyConsumption(state.handle))
        if raw >= state.last_mj:
            state.total_mj += raw - state.last_mj
        else:
            state.total_mj += raw
            state.notes.append(
                "the energy counter decreased (driver reloaded): counted from 0 after the "
                "reload; the energy between the last read and the reload is lost"
            )
            logger.warning("GPU %d: NVML energy counter decreased (driver reload)", state.ordinal)
        state.last_mj = raw

    def _poll_power(self, state: _GpuState, now: float) -> None:
        power_w = float(self._nvml.nvmlDeviceGetPowerUsage(state.handle)) / 1000.0
        dt = now - state.last_t
        if dt > 0:
            state.total_j += 0.5 * (state.last_power_w + power_w) * dt
        state.last_power_w = power_w
        state.last_t = now

    def _readings(self) -> list[ComponentReading]:
        return [
            ComponentReading(
                component=f"gpu:{s.ordinal}",
                energy_j=s.total_mj / 1000.0 if s.counter else s.total_j,
                source=COUNTER_SOURCE if s.counter else SAMPLING_SOURCE,
                kind="measured",
                device=f"GPU {s.ordinal}: {s.info.name} ({s.info.uuid})",
                notes=(*self._notes, *s.notes),
            )
            for s in self._states
        ]

    def _release(self) -> None:
        _shutdown(self._nvml)


def open_nvml(
    ordinals: Sequence[int] | None,
    *,
    visible: str | object | None = _UNSET,
    sample_interval_s: float = 0.1,
    counter_interval_s: float = 1.0,
    clock: Clock | None = None,
) -> tuple[NvmlBackend | None, NvmlProbe]:
    """Start NVML and a backend over the chosen visible GPUs (``None``: all visible).

    Returns ``(None, probe)`` when nothing can be measured; ``probe`` says why. Requested
    ordinals that do not exist or cannot be read are reported in ``probe.notes``; the
    caller decides whether that is an error.
    """
    cuda_visible = _visible(visible)
    nvml = _start()
    if isinstance(nvml, NvmlProbe):
        return None, nvml
    try:
        probe, handles = _probe_started(nvml, cuda_visible)
        if probe.status != "ok":
            _shutdown(nvml)
            return None, probe
        visible_gpus = probe.visible
        wanted = (
            list(visible_gpus)
            if ordinals is None
            else [g for g in visible_gpus if g.ordinal in set(ordinals)]
        )
        chosen = [(g, handles[g.nvml_index]) for g in wanted if g.problem is None]
        for g in wanted:
            if g.problem is not None:
                logger.warning("GPU %s (%s) not measured: %s", g.ordinal, g.name, g.problem)
        if not chosen:
            _shutdown(nvml)
            missing = sorted(set(ordinals or ()) - {g.ordinal for g in wanted})
            visible_ordinals = [g.ordinal for g in visible_gpus]
            reason = (
                f"GPU indices {missing} are not visible to this process "
                f"(visible: {visible_ordinals})"
                if missing
                else "none of the chosen GPUs can report energy or power"
            )
            return None, NvmlProbe(
                "none_visible",
                reason,
                probe.driver_version,
                probe.gpus,
                probe.notes,
            )
        backend = NvmlBackend(
            nvml,
            chosen,
            sample_interval_s=sample_interval_s,
            counter_interval_s=counter_interval_s,
            clock=clock,
            notes=probe.notes,
        )
    except nvml.NVMLError as exc:
        _shutdown(nvml)
        return None, NvmlProbe("no_driver", f"NVML failed while opening the GPUs: {exc}")
    return backend, probe

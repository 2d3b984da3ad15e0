"""NVIDIA GPU energy through NVML (the ``nvidia-ml-py`` package, imported as ``pynvml``).

Where the GPU supports it (Volta and newer), the backend reads the total-energy counter
(``nvmlDeviceGetTotalEnergyConsumption``, mJ since the driver loaded; it never wraps).
Elsewhere it samples ``nvmlDeviceGetPowerUsage`` (mW) in the meter's poller thread and
integrates it with the trapezoid rule on a monotonic clock.

Every delta must be physically possible: at most the GPU's enforced power limit
(``nvmlDeviceGetEnforcedPowerLimit``, mW; else ``nvmlDeviceGetPowerManagementLimit``; else
the stated ceiling :data:`NVML_CEILING_W`) x :data:`~frugalml.meter._backend.POWER_SLACK` x
(the time between the reads + 0.1 s, the counter's update period); a sampled power at most
the limit x the slack. The limit is read again before a delta is refused (an administrator
may have raised it). A decrease (a driver reload or a counter fault) and an increase above
the bound are not booked: that interval is lost, the reading after it is the next baseline,
and the measurement says which interval it could not measure. A failed read leaves the GPU
without a baseline until the next good one; the time in between is not booked.

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
from typing import TYPE_CHECKING, Any, Literal

from frugalml.errors import MeterError
from frugalml.meter._backend import (
    POWER_SLACK,
    BackendCapabilities,
    Clock,
    ComponentReading,
    CounterLedger,
    EnergyBackend,
    PowerBound,
)

if TYPE_CHECKING:
    from frugalml.meter._registry import BackendContext

__all__ = [
    "COUNTER_SOURCE",
    "NVML_CEILING_W",
    "SAMPLING_SOURCE",
    "NvmlBackend",
    "NvmlGpuInfo",
    "NvmlProbe",
    "nvml_backends",
    "open_nvml",
    "parse_cuda_visible_devices",
    "probe_nvml",
]

logger = logging.getLogger(__name__)

COUNTER_SOURCE = "nvml:total_energy_counter"
SAMPLING_SOURCE = "nvml:power_usage_integral"
NvmlStatus = Literal["ok", "no_nvml", "no_driver", "no_gpus", "none_visible"]
_UNSET = object()
#: The stated ceiling for a GPU whose power limit NVML cannot report: no NVIDIA GPU sold up
#: to 2025 has a board power limit above 1,200 W (GB200).
NVML_CEILING_W = 1500.0
#: The total-energy counter updates about every 100 ms.
NVML_UPDATE_SLACK_S = 0.1
SHORT_WINDOW_REASON = (
    "the NVML energy counter updates about every 100 ms, so the GPU figure may be off by up "
    "to ~0.1 s of GPU power; measure longer windows to trust it"
)


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
    power_limit_w: float | None = None
    power_limit_source: str = ""

    @property
    def power_bound(self) -> PowerBound:
        """What this GPU's deltas are checked against (the ceiling without a limit)."""
        if self.power_limit_w is None:
            return PowerBound(
                NVML_CEILING_W,
                "stated ceiling: NVML reports no power limit",
                NVML_UPDATE_SLACK_S,
            )
        return PowerBound(self.power_limit_w, self.power_limit_source, NVML_UPDATE_SLACK_S)


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


def _power_limit(nvml: ModuleType, handle: Any) -> tuple[float | None, str]:
    """The GPU's enforced power limit in W and which call gave it (None: unknown)."""
    for call in ("nvmlDeviceGetEnforcedPowerLimit", "nvmlDeviceGetPowerManagementLimit"):
        try:
            milliwatts = float(getattr(nvml, call)(handle))
        except Exception as exc:  # NVMLError, or a binding without the call
            logger.debug("%s failed: %s", call, exc)
            continue
        if milliwatts > 0:
            return milliwatts / 1000.0, f"{call}"
    return None, ""


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
        limit_w, limit_source = _power_limit(nvml, handle)
        gpus.append(
            NvmlGpuInfo(
                nvml_index=i,
                name=_text(nvml.nvmlDeviceGetName(handle)),
                uuid=uuids[i],
                ordinal=order.index(i) if i in order else None,
                energy_counter=counter,
                power_usage=power,
                problem=problem,
                power_limit_w=limit_w,
                power_limit_source=limit_source,
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
    bound: PowerBound
    last_mj: int = 0
    total_mj: int = 0
    last_power_w: float = 0.0
    last_t: float = 0.0
    last_before_t: float = 0.0
    total_j: float = 0.0
    read_failures: int = 0
    notes: list[str] = field(default_factory=list)
    ledger: CounterLedger = field(default_factory=CounterLedger)


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
        min_trusted_window_s: float = 1.0,
    ) -> None:
        super().__init__(clock)
        self._nvml = nvml
        self._min_trusted_window_s = min_trusted_window_s
        self._sample_interval_s = sample_interval_s
        self._counter_interval_s = counter_interval_s
        self._notes = tuple(notes)
        self._states: list[_GpuState] = []
        for info, handle in gpus:
            state = _GpuState(
                info, info.ordinal or 0, handle, counter=info.energy_counter, bound=info.power_bound
            )
            state.last_before_t = self._clock()
            if state.counter:
                state.last_mj = int(nvml.nvmlDeviceGetTotalEnergyConsumption(handle))
                state.notes.append(f"every delta checked against {state.bound.describe()}")
            else:
                state.last_power_w = float(nvml.nvmlDeviceGetPowerUsage(handle)) / 1000.0
                state.notes.append(
                    "this GPU has no total-energy counter: power (nvmlDeviceGetPowerUsage, mW) "
                    f"sampled about every {sample_interval_s:g} s and at window edges, "
                    "integrated with the trapezoid rule on a monotonic clock; some drivers "
                    "report power averaged over up to 1 s"
                )
                state.notes.append(
                    f"every sample checked against {state.bound.max_power_w:g} W "
                    f"({state.bound.source}) x {POWER_SLACK:g} slack"
                )
            state.last_t = self._clock()
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
    def capabilities(self) -> BackendCapabilities:
        """GPUs, measured; CUDA synchronised at window edges; windows shorter than
        ``min_trusted_window_s`` noted while a total-energy counter is read."""
        counter = any(s.counter for s in self._states)
        return BackendCapabilities(
            devices=("gpu",),
            kind="measured",
            sync_cuda=True,
            min_trusted_window_s=self._min_trusted_window_s if counter else 0.0,
            short_window_reason=SHORT_WINDOW_REASON if counter else "",
        )

    @property
    def ordinals(self) -> tuple[int, ...]:
        return tuple(s.ordinal for s in self._states)

    @property
    def power_bounds(self) -> dict[str, PowerBound]:
        """The bound every delta of each component is checked against."""
        return {f"gpu:{s.ordinal}": s.bound for s in self._states}

    def _poll(self) -> None:
        for state in self._states:
            before = self._clock()
            try:
                if state.counter:
                    raw = int(self._nvml.nvmlDeviceGetTotalEnergyConsumption(state.handle))
                    self._poll_counter(state, raw, before, self._clock())
                else:
                    power_w = float(self._nvml.nvmlDeviceGetPowerUsage(state.handle)) / 1000.0
                    self._poll_power(state, power_w, before, self._clock())
            except self._nvml.NVMLError as exc:
                state.read_failures += 1
                state.ledger.lose(state.last_t, f"NVML reading failed ({exc})")
                if state.read_failures == 1:
                    state.notes.append(
                        f"NVML reading failed ({exc}); such readings skipped and the time "
                        "until the next good reading is not booked"
                    )
                    logger.warning("GPU %d: NVML reading failed: %s", state.ordinal, exc)

    def _refresh_bound(self, state: _GpuState) -> None:
        """Read the power limit again (it may have been raised since the start)."""
        limit_w, source = _power_limit(self._nvml, state.handle)
        if limit_w is not None and limit_w > state.bound.max_power_w:
            state.bound = PowerBound(limit_w, source, NVML_UPDATE_SLACK_S)
            state.notes.append(f"power limit raised during the run to {limit_w:g} W ({source})")

    def _poll_counter(self, state: _GpuState, raw: int, before: float, now: float) -> None:
        if state.ledger.lost:
            state.ledger.regain(now)
        else:
            fault = self._counter_fault(state, raw, now - state.last_before_t)
            if fault is None:
                state.total_mj += raw - state.last_mj
            else:
                state.ledger.skip(state.last_t, now, fault)
                logger.warning("GPU %d: %s; interval not booked", state.ordinal, fault)
        state.last_mj, state.last_t, state.last_before_t = raw, now, before

    def _counter_fault(self, state: _GpuState, raw: int, elapsed_s: float) -> str | None:
        delta_mj = raw - state.last_mj
        if delta_mj < 0:
            return (
                f"the energy counter stepped back {-delta_mj / 1000:.6g} J "
                f"({state.last_mj} -> {raw} mJ): a driver reload or a counter fault"
            )
        if delta_mj / 1000 > state.bound.allowed_j(elapsed_s):
            self._refresh_bound(state)
            allowed_j = state.bound.allowed_j(elapsed_s)
            if delta_mj / 1000 > allowed_j:
                return (
                    f"the energy counter jumped {delta_mj / 1000:.6g} J ({state.last_mj} -> "
                    f"{raw} mJ), more than the GPU can draw (the bound is {allowed_j:.3g} J "
                    f"for {elapsed_s:.3g} s at {state.bound.max_power_w:g} W): a counter fault"
                )
        return None

    def _poll_power(self, state: _GpuState, power_w: float, before: float, now: float) -> None:
        limit_w = state.bound.max_power_w * POWER_SLACK
        if power_w > limit_w:
            self._refresh_bound(state)
            limit_w = state.bound.max_power_w * POWER_SLACK
        if not 0 <= power_w <= limit_w:
            state.ledger.lose(
                state.last_t,
                f"sampled power {power_w:g} W is outside 0-{limit_w:g} W "
                f"({state.bound.max_power_w:g} W, {state.bound.source}, x {POWER_SLACK:g})",
            )
            logger.warning("GPU %d: implausible power sample %g W skipped", state.ordinal, power_w)
            return
        if state.ledger.lost:
            state.ledger.regain(now)
        else:
            dt = now - state.last_t
            if dt > 0:
                state.total_j += 0.5 * (state.last_power_w + power_w) * dt
        state.last_power_w = power_w
        state.last_t, state.last_before_t = now, before

    def _readings(self) -> list[ComponentReading]:
        now = self._clock()
        return [
            ComponentReading(
                component=f"gpu:{s.ordinal}",
                energy_j=s.total_mj / 1000.0 if s.counter else s.total_j,
                source=COUNTER_SOURCE if s.counter else SAMPLING_SOURCE,
                kind="measured",
                device=f"GPU {s.ordinal}: {s.info.name} ({s.info.uuid})",
                notes=(*self._notes, *s.notes),
                faults=s.ledger.snapshot(now),
                unmeasured_s=s.ledger.unmeasured_s(now),
                power_bound=s.bound,
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
    min_trusted_window_s: float = 1.0,
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
            min_trusted_window_s=min_trusted_window_s,
        )
    except nvml.NVMLError as exc:
        _shutdown(nvml)
        return None, NvmlProbe("no_driver", f"NVML failed while opening the GPUs: {exc}")
    return backend, probe


def _gpu_fix(probe: NvmlProbe) -> str:
    if probe.status == "no_nvml":
        return "pip install nvidia-ml-py, or measure without GPUs (gpus='none')"
    if probe.status == "no_driver":
        return (
            "install or load the NVIDIA driver (`nvidia-smi` must work), or measure without "
            "GPUs (gpus='none')"
        )
    return (
        "check CUDA_VISIBLE_DEVICES and the indices asked for (`frugalml env` lists the "
        "visible GPUs), or use gpus='auto'"
    )


def nvml_backends(context: BackendContext) -> list[EnergyBackend]:
    """The registered NVML factory: the GPUs ``context.config.gpus`` selects.

    Raises :class:`MeterError` only when GPUs were asked for explicitly and cannot be
    measured; with ``gpus="auto"`` a machine without them gets a quiet null backend.
    """
    from frugalml.meter._backend import NullBackend

    config = context.config
    if config.gpus == "none":
        return []
    ordinals = None if isinstance(config.gpus, str) else config.gpus
    gpu, probe = open_nvml(
        ordinals,
        sample_interval_s=config.gpu_sample_interval_s,
        clock=context.clock,
        min_trusted_window_s=config.min_trusted_window_s,
    )
    if gpu is None:
        if config.gpus != "auto":
            raise MeterError(
                f"GPUs were asked for (gpus={config.gpus!r}) but none can be measured: "
                f"{probe.reason}",
                fix=_gpu_fix(probe),
            )
        logger.debug("no GPU measured: %s", probe.reason)
        return [NullBackend(f"no GPU measured: {probe.reason}")]
    missing = sorted(set(ordinals or ()) - set(gpu.ordinals))
    if missing:
        gpu.close()
        raise MeterError(
            f"GPU indices {missing} were asked for but are not visible or cannot "
            f"report energy (visible: {list(gpu.ordinals)})",
            fix=_gpu_fix(probe),
        )
    return [gpu]

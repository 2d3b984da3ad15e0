"""A trial's attributed share of the shared counters, read from the file its host sampler
publishes: the cross-process view of :class:`~frugalml.meter.HostSampler`.

A study with several trials in flight on one machine has one reader per counter: the
runner's host sampler. It publishes each joined trial's cumulative attributed readings
(per component: joules, source, device, notes, unmeasured seconds, faults, power bound) to
one small JSON file per trial at every interval (:func:`write_published`: a temporary file
then ``os.replace``, so a reader never sees half a file). The trial's process, told the
path, meters with :class:`PublishedShareBackend` instead of opening RAPL or NVML itself, so
its windows (set-up, epochs, evaluation) are attributed joules, labelled ``attributed``
with the counter and the rule, and the windows of all the trials add up to no more than the
counter measured.

A window's edges are accurate to the sampler's interval (the file is at most one interval
old when a window opens or closes): every reading says so in its notes. A file that is
missing, cannot be parsed, or has not been rewritten for :attr:`PublishedShareBackend.
stale_after_s` is a failure of attribution: nothing is booked for the time it lasts (its
seconds are unmeasured, with a note saying why), and when the file comes back what the
sampler gave the trial in between is not booked either. No energy is ever made up.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from frugalml.meter._backend import (
    BackendCapabilities,
    Clock,
    ComponentReading,
    CounterFault,
    CounterLedger,
    DeviceKind,
    EnergyBackend,
    PowerBound,
)

__all__ = [
    "PUBLISHED_FORMAT",
    "PublishedShareBackend",
    "published_meter_backends",
    "write_published",
]

logger = logging.getLogger(__name__)

#: The version of the published file's layout.
PUBLISHED_FORMAT = 1

#: How long :class:`PublishedShareBackend` waits for the first publication (the runner
#: joins a trial to its sampler just after starting its process).
WAIT_FOR_FILE_S = 10.0

_DEVICE_KINDS: dict[str, DeviceKind] = {
    "cpu": "cpu",
    "dram": "dram",
    "gpu": "gpu",
    "platform": "platform",
}


def _reading_to_dict(reading: ComponentReading) -> dict[str, Any]:
    bound = reading.power_bound
    return {
        "component": reading.component,
        "energy_j": reading.energy_j,
        "source": reading.source,
        "kind": reading.kind,
        "device": reading.device,
        "notes": list(reading.notes),
        "faults": [[f.start_t, f.end_t, f.note] for f in reading.faults],
        "unmeasured_s": reading.unmeasured_s,
        "power_bound": None
        if bound is None
        else {
            "max_power_w": bound.max_power_w,
            "source": bound.source,
            "update_slack_s": bound.update_slack_s,
        },
    }


def _reading_from_dict(data: Mapping[str, Any]) -> ComponentReading:
    bound = data.get("power_bound")
    energy_j = float(data["energy_j"])
    unmeasured_s = float(data.get("unmeasured_s") or 0.0)
    if not (math.isfinite(energy_j) and energy_j >= 0 and math.isfinite(unmeasured_s)):
        raise ValueError(f"{data.get('component')!r}: energy_j {energy_j!r} is not a joule figure")
    return ComponentReading(
        component=str(data["component"]),
        energy_j=energy_j,
        source=str(data["source"]),
        kind="attributed",
        device=str(data.get("device") or ""),
        notes=tuple(str(n) for n in data.get("notes") or ()),
        faults=tuple(
            CounterFault(float(s), float(e), str(n)) for s, e, n in data.get("faults") or ()
        ),
        unmeasured_s=max(0.0, unmeasured_s),
        power_bound=None
        if not bound
        else PowerBound(
            float(bound["max_power_w"]), str(bound["source"]), float(bound["update_slack_s"])
        ),
    )


def write_published(
    path: str | os.PathLike[str],
    readings: Sequence[ComponentReading],
    *,
    trial: str,
    interval_s: float,
    state: str = "running",
) -> None:
    """Write ``trial``'s cumulative attributed ``readings`` to ``path`` atomically (a
    temporary file in the same folder, then ``os.replace``). ``state`` is ``running``
    while the trial is on the sampler, ``left`` once it has left (its share ends there)."""
    target = Path(path)
    data = {
        "format": PUBLISHED_FORMAT,
        "trial": trial,
        "state": state,
        "written_at": time.time(),  # for people; staleness goes by the monotonic clock
        "written_t": time.monotonic(),  # system-wide on Linux: the reader is on this host
        "interval_s": interval_s,
        "components": [_reading_to_dict(r) for r in readings],
    }
    partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
    partial.write_text(json.dumps(data), encoding="utf-8")
    os.replace(partial, target)


def _edge_note(interval_s: float) -> str:
    return (
        "read from the host sampler's published share (one file per trial, rewritten at "
        f"every interval of {interval_s:g} s): a window's edges are accurate to that interval"
    )


class PublishedShareBackend(EnergyBackend):
    """A trial's cumulative attributed joules, read from the file its host sampler
    publishes (:func:`write_published`), in the trial's own process.

    It waits up to ``wait_s`` for the first publication. Each poll re-reads the file; a
    file that is missing, unreadable or older than ``stale_after_s`` (default: 20 sampler
    intervals, at least 2 s) books nothing from then until it is good again (the
    components' unmeasured seconds grow, with a fault saying why), and what the sampler
    gave the trial in the meantime is not booked when it comes back.
    """

    name = "attributed"

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        clock: Clock | None = None,
        wait_s: float = WAIT_FOR_FILE_S,
        stale_after_s: float | None = None,
    ) -> None:
        super().__init__(clock)
        self.path = Path(path)
        self.interval_s = 0.1
        self._stale_after_s = stale_after_s
        self._ledger = CounterLedger()
        self._published: dict[str, ComponentReading] = {}
        self._offset_j: dict[str, float] = {}
        self._frozen_j: dict[str, float] = {}
        self._last_good_t = self._clock()
        deadline = time.monotonic() + max(0.0, wait_s)
        problem = self._load()
        while problem is not None and problem.startswith("missing") and wait_s > 0:
            if time.monotonic() >= deadline:
                break
            time.sleep(0.02)
            problem = self._load()
        self._note(problem)

    @property
    def stale_after_s(self) -> float:
        if self._stale_after_s is not None:
            return self._stale_after_s
        return max(2.0, 20 * self.interval_s)

    @property
    def poll_interval_s(self) -> float:
        return self.interval_s

    @property
    def devices(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(r.device for r in self._published.values() if r.device))

    @property
    def capabilities(self) -> BackendCapabilities:
        kinds: list[DeviceKind] = []
        for component in self._published:
            kind = _DEVICE_KINDS.get(component.split(":", 1)[0])
            if kind is not None and kind not in kinds:
                kinds.append(kind)
        return BackendCapabilities(
            devices=tuple(kinds),
            kind="attributed",
            sync_cuda="gpu" in kinds,
            min_trusted_window_s=self.interval_s,
            short_window_reason=(
                "its edges are accurate to the host sampler's interval only, so most of it "
                "may belong to the windows before or after"
            ),
        )

    @property
    def failure(self) -> str | None:
        """Why attribution is failing now (None while the file is good)."""
        return self._ledger.lost_note if self._ledger.lost else None

    def _load(self) -> str | None:
        """Read the file; None when it is good (its readings taken), else what is wrong."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return f"missing: {self.path} does not exist"
        except OSError as exc:
            return f"unreadable: {self.path}: {exc}"
        try:
            data = json.loads(text)
            if data.get("format") != PUBLISHED_FORMAT:
                raise ValueError(f"format {data.get('format')!r}, not {PUBLISHED_FORMAT}")
            readings = [_reading_from_dict(c) for c in data["components"]]
            interval_s = float(data.get("interval_s") or self.interval_s)
            if "written_t" in data:
                age_s = time.monotonic() - float(data["written_t"])
            else:
                age_s = time.time() - float(data["written_at"])
            state = str(data.get("state"))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            return f"corrupt: {self.path} is not a published share ({exc})"
        if math.isfinite(interval_s) and interval_s > 0:
            self.interval_s = interval_s
        if state != "running":
            return f"ended: the host sampler's share in {self.path} ended (the trial left it)"
        if age_s > self.stale_after_s:
            return (
                f"stale: {self.path} was last written {age_s:.3g} s ago (more than "
                f"{self.stale_after_s:g} s): the host sampler stopped publishing"
            )
        for reading in readings:
            self._published[reading.component] = reading
        return None

    def _note(self, problem: str | None) -> None:
        now = self._clock()
        if problem is None:
            if self._ledger.lost:  # the share the sampler gave meanwhile is not booked
                for component, reading in self._published.items():
                    frozen = self._frozen_j.get(component, 0.0)
                    self._offset_j[component] = reading.energy_j - frozen
                self._ledger.regain(now)
            self._last_good_t = now
            return
        if not self._ledger.lost:
            logger.warning("trial energy not attributed from here on: %s", problem)
            self._frozen_j = {c: self._booked_j(r) for c, r in self._published.items()}
        self._ledger.lose(self._last_good_t, f"attribution failed: {problem}; nothing booked")

    def _booked_j(self, reading: ComponentReading) -> float:
        return max(0.0, reading.energy_j - self._offset_j.get(reading.component, 0.0))

    def _poll(self) -> None:
        self._note(self._load())

    def _readings(self) -> list[ComponentReading]:
        now = self._clock()
        lost_s = self._ledger.unmeasured_s(now)
        faults = self._ledger.snapshot(now)
        note = _edge_note(self.interval_s)
        out = []
        for component, reading in self._published.items():
            energy_j = (
                self._frozen_j.get(component, 0.0) if self._ledger.lost else self._booked_j(reading)
            )
            out.append(
                ComponentReading(
                    component=component,
                    energy_j=energy_j,
                    source=reading.source,
                    kind="attributed",
                    device=reading.device,
                    notes=(*reading.notes, note),
                    faults=(*reading.faults, *faults),
                    unmeasured_s=reading.unmeasured_s + lost_s,
                    power_bound=reading.power_bound,
                )
            )
        if not out and self._ledger.lost:  # never read: the failure is the record
            out.append(
                ComponentReading(
                    component="attributed",
                    energy_j=0.0,
                    source="host sampler share (not readable)",
                    kind="attributed",
                    device=str(self.path),
                    notes=(self._ledger.lost_note, note),
                    faults=faults,
                    unmeasured_s=lost_s,
                )
            )
        return out


def published_meter_backends(
    path: str | os.PathLike[str],
    config: Any,
    process: Any,
    clock: Clock | None = None,
    *,
    wait_s: float = WAIT_FOR_FILE_S,
) -> list[EnergyBackend]:
    """A trial meter's backends when a host sampler attributes the shared counters: the
    trial's :class:`PublishedShareBackend` over ``path`` (no RAPL or NVML opened here),
    then the stated estimate for what its share does not cover (as a default meter's)."""
    from frugalml.meter._estimate import estimate_unmeasured
    from frugalml.meter._registry import BackendContext

    share = PublishedShareBackend(path, clock=clock, wait_s=wait_s)
    context = BackendContext(config, process, clock, backends=[share])
    if share.failure is not None:
        context.unmeasured_reasons.append(f"attribution failed ({share.failure})")
    else:
        context.unmeasured_reasons.append("the host sampler's shared counters do not cover it")
    return [share, *estimate_unmeasured(context)]

"""The contract every energy backend passes (:class:`EnergyBackendContract`)."""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from frugalml.meter import BackendCapabilities, ComponentReading, EnergyBackend

__all__ = ["BackendCase", "EnergyBackendContract"]


@dataclass
class BackendCase:
    """A backend under test and how to make its hardware spend energy.

    ``drive()`` must make every component's counter (or modelled usage) grow by a
    positive amount the hardware could draw, then poll the backend if it needs polling
    between reads (power sampling, wrap tracking).
    """

    backend: EnergyBackend
    drive: Callable[[], None]


def _by_component(readings: list[ComponentReading]) -> dict[str, ComponentReading]:
    return {r.component: r for r in readings}


class EnergyBackendContract:
    """Contract tests for an :class:`~frugalml.meter.EnergyBackend`.

    Subclass it (the name starting with ``Test``) and implement :meth:`make_case`; use
    the fixtures of ``request`` (``request.getfixturevalue("tmp_path")``) to fake the
    vendor boundary. The contract: the backend declares :class:`BackendCapabilities`
    that match its readings; it reports at least one component, each with a unique name,
    a source, a device and the declared kind; cumulative joules are finite, non-negative
    and never decrease, and grow when the hardware spends energy; unmeasured seconds
    never decrease and faults are well-formed intervals with a note; every counter
    (measured or attributed) carries the power bound its deltas were checked against,
    estimates none; reads and polls from several threads are safe; ``close()`` is
    idempotent and freezes the figures.
    """

    #: Polls between reads in :meth:`test_cumulative_energy_is_non_negative_and_monotonic`.
    drives: int = 6

    def make_case(self, request: pytest.FixtureRequest) -> BackendCase:
        """The backend under test, freshly opened, and how to drive it."""
        raise NotImplementedError("implement make_case(request) -> BackendCase")

    @pytest.fixture
    def case(self, request: pytest.FixtureRequest) -> Iterator[BackendCase]:
        made = self.make_case(request)
        try:
            yield made
        finally:
            made.backend.close()

    def test_capabilities_match_the_readings(self, case: BackendCase) -> None:
        caps = case.backend.capabilities
        assert isinstance(caps, BackendCapabilities)
        assert caps.devices, "a backend that reads something covers some hardware"
        assert caps.kind in ("measured", "estimated", "attributed")
        assert math.isfinite(caps.min_trusted_window_s) and caps.min_trusted_window_s >= 0
        if caps.min_trusted_window_s > 0:
            assert caps.short_window_reason, "a shortest trusted window says why"
        for reading in case.backend.read():
            assert reading.kind == caps.kind, reading.component

    def test_labels(self, case: BackendCase) -> None:
        readings = case.backend.read()
        assert readings, "a backend under test reports at least one component"
        assert len({r.component for r in readings}) == len(readings)
        for r in readings:
            assert r.component and r.source and r.device
            assert all(isinstance(n, str) and n for n in r.notes)
        assert case.backend.poll_interval_s > 0
        assert case.backend.devices
        assert case.backend.name

    def test_cumulative_energy_is_non_negative_and_monotonic(self, case: BackendCase) -> None:
        first = {r.component: r.energy_j for r in case.backend.read()}
        previous = dict(first)
        assert all(math.isfinite(v) and v >= 0 for v in previous.values())
        for _ in range(self.drives):
            case.drive()
            current = {r.component: r.energy_j for r in case.backend.read()}
            assert current.keys() == previous.keys(), "the set of components is stable"
            for component, value in current.items():
                assert math.isfinite(value)
                assert value >= previous[component] >= 0, component
            previous = current
        assert sum(previous.values()) > sum(first.values()), "driving spends energy"

    def test_unmeasured_time_and_power_bounds(self, case: BackendCase) -> None:
        previous = {r.component: r.unmeasured_s for r in case.backend.read()}
        for _ in range(3):
            case.drive()
            for r in case.backend.read():
                assert r.unmeasured_s >= previous[r.component] >= 0, r.component
                assert all(f.end_t >= f.start_t and f.note for f in r.faults)
                previous[r.component] = r.unmeasured_s
                assert (r.power_bound is not None) == (r.kind != "estimated"), r.component
                if r.power_bound is not None:
                    assert r.power_bound.max_power_w > 0 and r.power_bound.source

    def test_concurrent_reads_and_polls(self, case: BackendCase) -> None:
        errors: list[BaseException] = []

        def hammer() -> None:
            try:
                for _ in range(20):
                    case.backend.poll()
                    case.backend.read()
            except BaseException as exc:  # reported below, in the test's thread
                errors.append(exc)

        threads = [threading.Thread(target=hammer) for _ in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        assert not errors, errors

    def test_close_is_idempotent_and_freezes(self, case: BackendCase) -> None:
        case.drive()
        case.backend.close()
        frozen = _by_component(case.backend.read())
        case.backend.close()
        case.drive()
        case.backend.poll()
        assert {c: r.energy_j for c, r in _by_component(case.backend.read()).items()} == {
            c: r.energy_j for c, r in frozen.items()
        }
        assert case.backend.closed

"""Conformance suites: the contract tests every extension of frugalml passes.

Subclass a contract in your tests and say how to make the thing under test; pytest then
runs every contract test against it (as Optuna's ``BasicSamplerTestCase`` does for
samplers). The project's own tests use the same classes.

- :class:`EnergyBackendContract`: an :class:`~frugalml.meter.EnergyBackend` (implement
  ``make_case(request) -> BackendCase``).
- :class:`DatasetSchemeContract`: every registered dataset scheme (checked names, clear
  errors, an example that loads where it can).
- :class:`BuiltinModelContract`: every registered built-in model (knobs, defaults, a
  forward pass of the right shape, bad knobs refused).
- :class:`TuningStrategyContract`, :class:`TuningPrunerContract`: every registered tuning
  strategy (two real trials on a tiny space, recorded) and pruner (its per-epoch verdict).

Needs pytest (``pip install 'frugalml[testing]'``).
"""

from __future__ import annotations

try:
    import pytest  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("frugalml.testing needs pytest: pip install 'frugalml[testing]'") from exc

from frugalml.testing._backend import BackendCase, EnergyBackendContract
from frugalml.testing._data import DatasetSchemeContract
from frugalml.testing._models import BuiltinModelContract
from frugalml.testing._tune import TuningPrunerContract, TuningStrategyContract

__all__ = [
    "BackendCase",
    "BuiltinModelContract",
    "DatasetSchemeContract",
    "EnergyBackendContract",
    "TuningPrunerContract",
    "TuningStrategyContract",
]

"""frugalml: resource-frugal deep learning.

Measure the energy, carbon, time and memory of training for real, rank candidate models by
performance per resource unit (PePR), tune under an energy budget, and shrink models.

Sub-packages, from measurement to decision:

- :mod:`frugalml.meter`: energy and resources (NVML, RAPL, stated estimates) and carbon.
- :mod:`frugalml.data`: dataset registry (``digits``, ``medmnist:<flag>``, ``folder:<path>``).
- :mod:`frugalml.models`: timm and built-in models, presets, cost counting.
- :mod:`frugalml.train`: one metered training loop (the PePR paper's protocol by default).
- :mod:`frugalml.study`: YAML specs expanded into isolated trials, kept in SQLite.
- :mod:`frugalml.analysis`: PePR scores, Pareto fronts, significance tests.
- :mod:`frugalml.report`: tables, plots and a self-contained HTML report.
- :mod:`frugalml.tune`: Optuna-based tuning where every trial is metered.
- :mod:`frugalml.cli`: the ``frugalml`` command, a thin layer over the library.

Importing ``frugalml`` is cheap: heavy dependencies (torch, timm) load on first use.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from frugalml.errors import ConfigError, DataError, FrugalError, MeterError, ModelError, StoreError

__version__ = "0.1.0"

logging.getLogger(__name__).addHandler(logging.NullHandler())

__all__ = [
    "ConfigError",
    "DataError",
    "FrugalError",
    "Measurement",
    "Meter",
    "MeterError",
    "ModelError",
    "StoreError",
    "__version__",
    "pepr",
]

_LAZY = {
    "Meter": ("frugalml.meter", "Meter"),
    "Measurement": ("frugalml.meter", "Measurement"),
    "pepr": ("frugalml.analysis", "pepr"),
}

if TYPE_CHECKING:
    from frugalml.analysis import pepr
    from frugalml.meter import Measurement, Meter


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'frugalml' has no attribute {name!r}")

"""Thin adapters from other training and tracking tools to the one frugalml meter.

Each is an optional extra, imported only when used; a missing library is a one-line
error naming the extra to install.

- :func:`log_measurement` (``frugalml[mlflow]``): a measurement into an MLflow run.
- :class:`FrugalTrainerCallback` (``frugalml[hf]``, module ``huggingface``): a Hugging Face
  ``TrainerCallback``, a meter window per epoch and per evaluation.
- :class:`FrugalLightningCallback` (``frugalml[lightning]``, module ``lightning``): a
  Lightning ``Callback``, correct under DDP (one reader per host).
- Optuna objectives are metered by :func:`frugalml.tune.metered`.
"""

from __future__ import annotations

from typing import Any

from frugalml.integrations._mlflow import log_measurement

__all__ = ["FrugalLightningCallback", "FrugalTrainerCallback", "log_measurement"]

_LAZY = {
    "FrugalTrainerCallback": "frugalml.integrations.huggingface",
    "FrugalLightningCallback": "frugalml.integrations.lightning",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'frugalml.integrations' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)

"""Models: timm architectures, frugalml's small built-ins, presets, and what they cost.

Modules (private; everything public is re-exported here):

- ``_factory``: :func:`create_model`, one entry point for timm names and built-ins.
- ``_timm``: timm name lookup (deprecated aliases, weight tags) and creation with pretrained
  weights from a local file, the local cache or the Hugging Face hub; an unreachable hub
  fails within seconds with :class:`~frugalml.errors.ModelError`.
- ``_builtin``: the built-in registry (:func:`register_builtin`,
  :func:`list_builtin_models`) and the knobs of ``frugal_cnn`` and ``frugal_mlp``
  (:class:`FrugalCNNConfig`, :class:`FrugalMLPConfig`); ``_nets`` holds their networks.
- ``_refs``: :class:`ModelRef` (name + args + preferred image size, hashable, with a table
  ``key``) and :class:`ResolvedModels`.
- ``_presets``: :func:`list_presets`, :func:`get_preset` (``cpu-tiny``, ``pepr131``) and
  :func:`pepr_reference` (the PePR study's model table, ``pepr_model_names.csv``).
- ``_resolve``: :func:`resolve_models` (presets, name checks, renames, unresolved names)
  and :func:`model_input_size`.
- ``_costs``: :func:`count_costs` -> :class:`ModelCosts` (parameters, bytes, FLOPs counted
  by ``torch.utils.flop_counter``).

Importing this package loads neither torch nor timm; they load when a model is built, costs
are counted, or a timm name has to be checked.
"""

from __future__ import annotations

from frugalml.models._builtin import (
    BuiltinModel,
    FrugalCNNConfig,
    FrugalMLPConfig,
    list_builtin_models,
    register_builtin,
)
from frugalml.models._costs import FLOPS_SOURCE, ModelCosts, count_costs, extra_flop_formulas
from frugalml.models._factory import create_model
from frugalml.models._presets import PeprEntry, get_preset, list_presets, pepr_reference
from frugalml.models._refs import ModelRef, ResolvedModels
from frugalml.models._resolve import model_input_size, resolve_models

__all__ = [
    "FLOPS_SOURCE",
    "BuiltinModel",
    "FrugalCNNConfig",
    "FrugalMLPConfig",
    "ModelCosts",
    "ModelRef",
    "PeprEntry",
    "ResolvedModels",
    "count_costs",
    "create_model",
    "extra_flop_formulas",
    "get_preset",
    "list_builtin_models",
    "list_presets",
    "model_input_size",
    "pepr_reference",
    "register_builtin",
    "resolve_models",
]

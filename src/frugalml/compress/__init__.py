"""Shrinking models, with every saving measured: the ``frugalml compress`` command's library.

Every method ends in an ordinary, smaller dense network, timed and metered against the dense
baseline (latency at batch 1 and at a batch, each with an interval from interleaved
repeats; energy per 1,000 inferences with its provenance; what the compression itself cost
and after how many inferences it pays back).

Modules (private; everything public is re-exported here):

- ``_regularisers``: ``l1``, ``hoyer``, ``hoyer_square``, ``group_lasso``,
  ``group_hoyer_square`` and :class:`Regulariser` (strength, constant or warm-up schedule),
  a loss term for ``frugalml.train.train(..., regulariser=...)``.
- ``_l0``: hard-concrete L0 gates (beta 2/3, gamma -0.1, zeta 1.1) on output channels/units.
- ``_prune``: thresholds (absolute, per-layer std ratio, target sparsity) and :class:`Masks`
  (``train(..., on_step=masks)`` keeps zeros at zero while fine-tuning).
- ``_graph``: :func:`trace_channels`, which channels depend on which (``torch.fx``),
  residual connections joined, unknown operations frozen.
- ``_shrink``: :func:`shrink` removes all-zero filters, channels and units physically.
- ``_penni``: PENNI kernel sharing (PCA basis, coefficients, alternate training, factorised
  form).
- ``_channels``: Torch-Pruning channel pruning (optional extra ``frugalml[compress]``).
- ``_measure``: :func:`measure_latency`, :func:`measure_energy`, :func:`median_interval`.
- ``_save``: :func:`save_compressed` / :func:`load_compressed` (architecture reference,
  pruning record, state_dict; ``torch.load(weights_only=True)``).
- ``_spec``: :class:`CompressSpec` and the method registry :data:`METHODS`.
- ``_pipeline``: :func:`compress_method`, :func:`run_compress`, the CSV columns.
- ``_plot``: :func:`plot_compress` (accuracy vs sparsity, latency and energy per method).

Importing this package loads no torch; it loads when a method runs.
"""

from __future__ import annotations

from frugalml.compress._graph import ChannelGraph, SpaceGroup, trace_channels
from frugalml.compress._l0 import attach_gates, deterministic_gates, fold_gates, gate_penalty
from frugalml.compress._measure import (
    EnergyResult,
    Interval,
    LatencyResult,
    measure_energy,
    measure_latency,
    median_interval,
    ratio_interval,
)
from frugalml.compress._pipeline import (
    CSV_COLUMNS,
    CompressResult,
    MethodOutcome,
    compress_method,
    run_compress,
)
from frugalml.compress._plot import plot_compress
from frugalml.compress._prune import (
    Masks,
    Threshold,
    parse_threshold,
    threshold_groups,
    threshold_weights,
)
from frugalml.compress._regularisers import (
    MEASURES,
    Regulariser,
    group_hoyer_square,
    group_lasso,
    hoyer,
    hoyer_square,
    l1,
    prunable_weights,
)
from frugalml.compress._save import (
    ArchitectureRef,
    load_compressed,
    save_compressed,
)
from frugalml.compress._shrink import ShrinkResult, apply_record, shape_record, shrink
from frugalml.compress._spec import METHODS, CompressSpec, MethodInfo, MethodSpec

__all__ = [
    "CSV_COLUMNS",
    "MEASURES",
    "METHODS",
    "ArchitectureRef",
    "ChannelGraph",
    "CompressResult",
    "CompressSpec",
    "EnergyResult",
    "Interval",
    "LatencyResult",
    "Masks",
    "MethodInfo",
    "MethodOutcome",
    "MethodSpec",
    "Regulariser",
    "ShrinkResult",
    "SpaceGroup",
    "Threshold",
    "apply_record",
    "attach_gates",
    "compress_method",
    "deterministic_gates",
    "fold_gates",
    "gate_penalty",
    "group_hoyer_square",
    "group_lasso",
    "hoyer",
    "hoyer_square",
    "l1",
    "load_compressed",
    "measure_energy",
    "measure_latency",
    "median_interval",
    "parse_threshold",
    "plot_compress",
    "prunable_weights",
    "ratio_interval",
    "run_compress",
    "save_compressed",
    "shape_record",
    "shrink",
    "threshold_groups",
    "threshold_weights",
    "trace_channels",
]

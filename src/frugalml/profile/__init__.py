"""Where the joules go inside a network, and the factorial layer experiment.

Yarally et al. (CAIN 2023) found that convolution layers dominate training energy (4 conv
layers -> 1 cut it by 40-49%) while linear layers and ReLU add a few percent. This package
lets a user check that on their own model and data.

Modules (private; everything public is re-exported here):

- ``_profile``: :func:`profile_network` -> :class:`NetworkProfile`: per layer and per layer
  type, parameters and forward FLOPs (counted), share of forward + backward time (measured
  with hooks), and the energy of a metered window of unhooked training steps attributed by
  that share.
- ``_classify``: :func:`classify_module`, the :data:`LAYER_TYPES`.
- ``_flops``: :func:`module_flops`, own forward FLOPs per module (FlopCounterMode).
- ``_timing``: :func:`time_training_steps`, per-module forward and backward time of real
  training steps (forward hooks, a TorchFunctionMode and autograd-node hooks).
- ``_factorial``: :func:`run_factorial`, the paper's {1, 4} conv x {3, 7} linear x ReLU
  on/off design on ``frugal_cnn``, written to a study store, analysed and plotted.
- ``_stats``: :func:`factor_effects`, :func:`kruskal_test`, :func:`epsilon_squared`.
- ``_plot``: :func:`plot_profile`, :func:`plot_factorial` (PNG).

Importing this package loads numpy only; torch, scipy and matplotlib load when used.
"""

from __future__ import annotations

from frugalml.profile._classify import LAYER_TYPES, OUTSIDE_MODEL, LayerType, classify_module
from frugalml.profile._factorial import (
    FACTORS,
    PAPER_CONV_CUT_PCT,
    FactorialConfig,
    FactorialProgress,
    FactorialResult,
    conv_sentence,
    dominance_sentence,
    run_factorial,
)
from frugalml.profile._flops import ModuleFlops, module_flops
from frugalml.profile._plot import plot_factorial, plot_profile
from frugalml.profile._profile import (
    ROOT_NAME,
    LayerProfile,
    NetworkProfile,
    ProfileConfig,
    TypeProfile,
    profile_network,
)
from frugalml.profile._stats import (
    Factor,
    FactorEffect,
    KruskalResult,
    epsilon_squared,
    factor_effects,
    kruskal_test,
)
from frugalml.profile._timing import LOSS_KEY, OPTIMIZER_KEY, StepTimes, time_training_steps

__all__ = [
    "FACTORS",
    "LAYER_TYPES",
    "LOSS_KEY",
    "OPTIMIZER_KEY",
    "OUTSIDE_MODEL",
    "PAPER_CONV_CUT_PCT",
    "ROOT_NAME",
    "Factor",
    "FactorEffect",
    "FactorialConfig",
    "FactorialProgress",
    "FactorialResult",
    "KruskalResult",
    "LayerProfile",
    "LayerType",
    "ModuleFlops",
    "NetworkProfile",
    "ProfileConfig",
    "StepTimes",
    "TypeProfile",
    "classify_module",
    "conv_sentence",
    "dominance_sentence",
    "epsilon_squared",
    "factor_effects",
    "kruskal_test",
    "module_flops",
    "plot_factorial",
    "plot_profile",
    "profile_network",
    "run_factorial",
    "time_training_steps",
]

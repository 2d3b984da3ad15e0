"""Which kind of layer a module is: convolution, linear, activation, normalisation, pooling,
attention or other.

PyTorch's own classes are recognised by type (subclasses included, so timm's ``Conv2dSame``
or ``BatchNormAct2d`` count as their base); other libraries' modules by the module they are
defined in (timm's activations) and by words in their class name (``...Attention...``,
``...Norm...``, ``...Pool...``). Anything else is ``other``: dropout, identity, flatten,
embeddings, and the modules whose own code only glues children together (residual adds).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    import torch

__all__ = ["LAYER_TYPES", "OUTSIDE_MODEL", "LayerType", "classify_module"]

LayerType = Literal[
    "convolution",
    "linear",
    "activation",
    "normalisation",
    "pooling",
    "attention",
    "other",
    "outside model",
]

#: The layer types, in the order tables and plots show them.
LAYER_TYPES: tuple[LayerType, ...] = (
    "convolution",
    "linear",
    "activation",
    "normalisation",
    "pooling",
    "attention",
    "other",
)

#: The type of the parts of a training step that are not in the model (loss, optimizer).
OUTSIDE_MODEL: LayerType = "outside model"

_NAME_RULES: tuple[tuple[re.Pattern[str], LayerType], ...] = (
    (re.compile(r"attention|attn", re.IGNORECASE), "attention"),
    (re.compile(r"conv", re.IGNORECASE), "convolution"),
    (re.compile(r"norm", re.IGNORECASE), "normalisation"),
    (re.compile(r"pool", re.IGNORECASE), "pooling"),
    (
        re.compile(
            r"relu|gelu|silu|swish|mish|sigmoid|tanh|softmax|softmin|softplus|elu|hardswish|"
            r"hardsigmoid|hardtanh|threshold|glu|quickgelu|activation",
            re.IGNORECASE,
        ),
        "activation",
    ),
    (re.compile(r"linear|dense", re.IGNORECASE), "linear"),
)


def classify_module(module: torch.nn.Module) -> LayerType:
    """The :data:`LayerType` of ``module`` (by its class; see the module docstring)."""
    from torch import nn
    from torch.nn.modules import batchnorm, conv, instancenorm, pooling

    if isinstance(module, nn.MultiheadAttention):
        return "attention"
    if isinstance(module, conv._ConvNd):
        return "convolution"
    if isinstance(module, (nn.Linear, nn.Bilinear)):
        return "linear"
    if isinstance(
        module,
        (
            batchnorm._NormBase,
            instancenorm._InstanceNorm,
            nn.LayerNorm,
            nn.GroupNorm,
            nn.LocalResponseNorm,
            nn.RMSNorm,
        ),
    ):
        return "normalisation"
    if isinstance(
        module,
        (
            pooling._MaxPoolNd,
            pooling._AvgPoolNd,
            pooling._AdaptiveAvgPoolNd,
            pooling._AdaptiveMaxPoolNd,
            pooling._LPPoolNd,
            nn.FractionalMaxPool2d,
            nn.FractionalMaxPool3d,
        ),
    ):
        return "pooling"
    cls = type(module)
    defined_in = cls.__module__
    if defined_in == "torch.nn.modules.activation" or defined_in.startswith(
        "timm.layers.activations"
    ):
        return "activation"
    for pattern, layer_type in _NAME_RULES:
        if pattern.search(cls.__name__):
            return layer_type
    return "other"

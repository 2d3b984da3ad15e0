"""Hard-concrete L0 gates on output channels and units (Louizos, Welling and Kingma, 2018).

Each gated layer's output channel ``c`` is multiplied by a gate ``z_c``. While training,
``u ~ U(0, 1)``, ``s = sigmoid((log u - log(1 - u) + log_alpha) / beta)``, stretched to
``(gamma, zeta)`` and clipped to ``[0, 1]``; at test time ``z = clip(sigmoid(log_alpha) x
(zeta - gamma) + gamma, 0, 1)``. The penalty is the expected number of open gates,
``sum sigmoid(log_alpha - beta log(-gamma / zeta))``, scaled by ``1 / N`` (N training
samples) and the strength. ``log_alpha`` (:data:`LOG_ALPHA_SCALE` x the trained parameter)
starts at ``log(1 - p) - log(p)`` for a drop rate
``p = 0.5`` (that is 0), plus a little noise.

:func:`attach_gates` wraps the model with the gates (so the training loop's optimizer sees
them) and :func:`fold_gates` multiplies the test-time gates into the layers' weights and
removes them, leaving the ordinary model whose closed gates are zero filters.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from frugalml.errors import ConfigError

if TYPE_CHECKING:
    import torch

__all__ = [
    "BETA",
    "GAMMA",
    "GATES_ATTR",
    "ZETA",
    "attach_gates",
    "deterministic_gates",
    "fold_gates",
    "gate_penalty",
]

BETA = 2.0 / 3.0
GAMMA = -0.1
ZETA = 1.1
DROP_RATE = 0.5
GATES_ATTR = "frugalml_l0_gates"
#: ``log_alpha`` is this times the trained parameter, so the gates move this many times faster
#: than the weights under the loop's one Adam learning rate: at 5e-4 a gate could otherwise
#: move about 0.2 in 400 steps, and none would close (closing needs log_alpha below
#: logit(-gamma / (zeta - gamma)) = -2.4). Adam's steps do not depend on the scale otherwise.
LOG_ALPHA_SCALE = 100.0
_EPS = 1e-6


def deterministic_gates(log_alpha: torch.Tensor) -> torch.Tensor:
    """The deterministic test-time gates."""
    import torch

    return torch.clamp(torch.sigmoid(log_alpha) * (ZETA - GAMMA) + GAMMA, 0.0, 1.0)


def sample_gates(log_alpha: torch.Tensor) -> torch.Tensor:
    """One hard-concrete sample per gate."""
    import torch

    u = torch.rand_like(log_alpha).clamp(_EPS, 1 - _EPS)
    s = torch.sigmoid((torch.log(u) - torch.log(1 - u) + log_alpha) / BETA)
    return torch.clamp(s * (ZETA - GAMMA) + GAMMA, 0.0, 1.0)


def expected_l0(log_alpha: torch.Tensor) -> torch.Tensor:
    """Expected number of non-zero gates: ``sum P(z > 0)``."""
    import torch

    return torch.sigmoid(log_alpha - BETA * math.log(-GAMMA / ZETA)).sum()


def _gates_module(model: torch.nn.Module) -> Any:
    if not getattr(model, GATES_ATTR, False):
        raise ConfigError(
            "this model has no L0 gates", fix="wrap it with attach_gates(model, layers) first"
        )
    return model


def attach_gates(
    model: torch.nn.Module, layers: Sequence[str], *, seed: int = 0
) -> torch.nn.Module:
    """A wrapper of ``model`` whose named Conv2d/Linear ``layers`` have gated outputs.

    Train the wrapper (its parameters are the model's and the gates' ``log_alpha``), then
    :func:`fold_gates` it back into the (changed) ``model``.
    """
    import torch
    from torch import nn

    if not layers:
        raise ConfigError(
            "no layer to gate: L0 gates need a Conv2d or Linear layer whose outputs can go",
            fix="use a model with hidden layers",
        )
    generator = torch.Generator().manual_seed(seed)
    gates = nn.ParameterDict()
    handles = []
    init = math.log(1 - DROP_RATE) - math.log(DROP_RATE)
    for name in layers:
        layer: Any = model.get_submodule(name)
        if not isinstance(layer, (nn.Conv2d, nn.Linear)):
            raise ConfigError(f"{name} is not a Conv2d or Linear layer", fix="gate those only")
        out = layer.weight.shape[0]
        noise = torch.randn(out, generator=generator) * 0.01
        key = name.replace(".", "__")
        gates[key] = nn.Parameter(((init + noise) / LOG_ALPHA_SCALE).to(layer.weight.device))

        def hook(module: nn.Module, args: Any, output: torch.Tensor, key: str = key) -> Any:
            log_alpha = gates[key] * LOG_ALPHA_SCALE
            z = sample_gates(log_alpha) if module.training else deterministic_gates(log_alpha)
            shape = (1, -1) + (1,) * (output.dim() - 2)
            return output * z.view(shape)

        handles.append(layer.register_forward_hook(hook))

    class _Gated(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model
            self.gates = gates
            self.layer_names = list(layers)
            self.handles = handles
            setattr(self, GATES_ATTR, True)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out: torch.Tensor = self.model(x)
            return out

    wrapper = _Gated()
    return wrapper


def gate_penalty(model: torch.nn.Module, strength: float, n_train: int) -> torch.Tensor:
    """``strength x expected L0 / n_train`` over every gate of ``model``."""
    holder = _gates_module(model)
    total: torch.Tensor = sum(expected_l0(p * LOG_ALPHA_SCALE) for p in holder.gates.values())  # type: ignore[assignment]
    return total * (strength / max(n_train, 1))


def fold_gates(gated: torch.nn.Module) -> tuple[torch.nn.Module, dict[str, int]]:
    """Multiply the test-time gates into each gated layer and remove the gates: the plain
    model (closed gates are now zero filters) and the closed gates per layer."""
    import torch

    holder = _gates_module(gated)
    model: torch.nn.Module = holder.model
    closed: dict[str, int] = {}
    with torch.no_grad():
        for handle in holder.handles:
            handle.remove()
        for name in holder.layer_names:
            z = deterministic_gates(holder.gates[name.replace(".", "__")] * LOG_ALPHA_SCALE)
            layer: Any = model.get_submodule(name)
            shape = (-1,) + (1,) * (layer.weight.dim() - 1)
            layer.weight.mul_(z.view(shape).to(layer.weight.dtype))
            if layer.bias is not None:
                layer.bias.mul_(z.to(layer.bias.dtype))
            closed[name] = int((z == 0).sum())
    return model, closed

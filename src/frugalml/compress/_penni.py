"""PENNI kernel sharing (Li et al., ICML 2020): each k x k kernel as coefficients x a basis.

Per convolution with weight ``W`` of shape (O, I, k, k), the O*I kernels are the rows of a
matrix ``K`` (O*I x k^2). Its top ``d`` right singular vectors (PCA without centring) are
the layer's shared basis ``B`` (d x k^2) and ``C = K B^T`` its coefficients, so that
``K ~ C B``, exactly when ``d = k^2``. :class:`PenniConv2d` computes the convolution from
``C`` and ``B``; training puts L1 on ``C`` and updates ``C`` and ``B`` on alternate steps
(:class:`Alternate`); pruning zeroes small coefficients; :func:`from_penni` turns each layer
back into an ordinary Conv2d, whose all-zero filters and channels :func:`shrink` removes.

:func:`factorise` gives the two-convolution form (a depthwise convolution with the ``d``
basis kernels per input channel, then a 1 x 1 convolution with the coefficients) so that it
can be timed against the dense form.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from frugalml.errors import ConfigError

if TYPE_CHECKING:
    import torch

__all__ = [
    "Alternate",
    "PenniConv2d",
    "coefficient_l1",
    "factorise",
    "from_penni",
    "pca_basis",
    "penni_layers",
    "to_penni",
]


def pca_basis(weight: torch.Tensor, d: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(coefficients (O, I, d'), basis (d', k, k))`` of a conv weight, ``d' = min(d, rank
    bound)``."""
    import torch

    o, i, kh, kw = weight.shape
    if isinstance(d, bool) or not isinstance(d, int) or d < 1:
        raise ConfigError(f"basis must be a positive integer, got {d!r}", fix="e.g. basis: 5")
    kernels = weight.detach().reshape(o * i, kh * kw).double()
    _, _, vh = torch.linalg.svd(kernels, full_matrices=False)
    basis = vh[: min(d, vh.shape[0])]
    coefficients = kernels @ basis.T
    return (
        coefficients.reshape(o, i, -1).to(weight.dtype),
        basis.reshape(-1, kh, kw).to(weight.dtype),
    )


def _penni_class() -> type[Any]:
    import torch
    import torch.nn.functional as F
    from torch import nn

    class _PenniConv2d(nn.Module):
        """A Conv2d whose weight is ``einsum(coefficients, basis)``."""

        def __init__(self, conv: nn.Conv2d, d: int) -> None:
            super().__init__()
            coefficients, basis = pca_basis(conv.weight, d)
            self.coefficients = nn.Parameter(coefficients)
            self.basis = nn.Parameter(basis)
            self.bias = nn.Parameter(conv.bias.detach().clone()) if conv.bias is not None else None
            self.stride = conv.stride
            self.padding = conv.padding
            self.dilation = conv.dilation

        def weight(self) -> torch.Tensor:
            return torch.einsum("oid,dhw->oihw", self.coefficients, self.basis)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return F.conv2d(x, self.weight(), self.bias, self.stride, self.padding, self.dilation)

    return _PenniConv2d


_CLASS: list[type[Any]] = []


def PenniConv2d() -> type[Any]:
    """The PENNI layer class (defined on first use so that importing needs no torch)."""
    if not _CLASS:
        _CLASS.append(_penni_class())
    return _CLASS[0]


def _parent(model: torch.nn.Module, name: str) -> tuple[torch.nn.Module, str]:
    parent_name, _, child = name.rpartition(".")
    return (model.get_submodule(parent_name) if parent_name else model), child


def _eligible(conv: Any) -> bool:
    return bool(conv.groups == 1 and conv.kernel_size[0] * conv.kernel_size[1] > 1)


def to_penni(model: torch.nn.Module, d: int) -> list[str]:
    """Replace every non-grouped k x k (k > 1) Conv2d of ``model`` by a PENNI layer."""
    from torch import nn

    names = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d) and _eligible(m)]
    if not names:
        raise ConfigError(
            "PENNI needs a k x k convolution (k > 1) and this model has none",
            fix="use penni on a CNN (frugal_cnn, resnet10t), or another method",
        )
    cls = PenniConv2d()
    for name in names:
        parent, child = _parent(model, name)
        setattr(parent, child, cls(model.get_submodule(name), d))
    return names


def penni_layers(model: torch.nn.Module) -> list[tuple[str, Any]]:
    """``(name, layer)`` of every PENNI layer of ``model``."""
    cls = PenniConv2d()
    return [(n, m) for n, m in model.named_modules() if isinstance(m, cls)]


def coefficient_l1(strength: float) -> Any:
    """A loss term: ``strength x sum |coefficients|`` over every PENNI layer."""

    def term(model: torch.nn.Module) -> torch.Tensor:
        layers = penni_layers(model)
        total: torch.Tensor = layers[0][1].coefficients.abs().sum()
        for _, layer in layers[1:]:
            total = total + layer.coefficients.abs().sum()
        return strength * total

    return term


class Alternate:
    """``on_step`` callback: the next step trains the coefficients, the one after the
    basis, and so on (the other is frozen)."""

    def __init__(self, after: Any = None) -> None:
        self.steps = 0
        self.after = after

    def __call__(self, model: torch.nn.Module) -> None:
        if self.after is not None:
            self.after(model)
        self.steps += 1
        basis_turn = self.steps % 2 == 1
        for _, layer in penni_layers(model):
            layer.coefficients.requires_grad_(not basis_turn)
            layer.basis.requires_grad_(basis_turn)

    def release(self, model: torch.nn.Module) -> None:
        for _, layer in penni_layers(model):
            layer.coefficients.requires_grad_(True)
            layer.basis.requires_grad_(True)


def from_penni(model: torch.nn.Module) -> None:
    """Turn every PENNI layer of ``model`` back into an ordinary Conv2d, in place."""
    import torch
    from torch import nn

    for name, layer in penni_layers(model):
        weight = layer.weight().detach()
        o, i, kh, kw = weight.shape
        conv = nn.Conv2d(
            i,
            o,
            (kh, kw),
            stride=layer.stride,
            padding=layer.padding,
            dilation=layer.dilation,
            bias=layer.bias is not None,
        ).to(weight.device)
        with torch.no_grad():
            conv.weight.copy_(weight)
            if layer.bias is not None and conv.bias is not None:
                conv.bias.copy_(layer.bias)
        parent, child = _parent(model, name)
        setattr(parent, child, conv)


def factorise(model: torch.nn.Module, d: int) -> torch.nn.Module:
    """A copy of ``model`` with each eligible Conv2d as depthwise-basis + 1 x 1 coefficient
    convolutions (PCA at ``d``; exact when the layer's kernels span at most ``d`` dims)."""
    import copy

    import torch
    from torch import nn

    out = copy.deepcopy(model)
    names = [n for n, m in out.named_modules() if isinstance(m, nn.Conv2d) and _eligible(m)]
    for name in names:
        conv: Any = out.get_submodule(name)
        coefficients, basis = pca_basis(conv.weight, d)
        o, i, dd = coefficients.shape
        depthwise = nn.Conv2d(
            i,
            i * dd,
            conv.kernel_size,
            stride=conv.stride,
            padding=conv.padding,
            dilation=conv.dilation,
            groups=i,
            bias=False,
        )
        pointwise = nn.Conv2d(i * dd, o, 1, bias=conv.bias is not None)
        with torch.no_grad():
            depthwise.weight.copy_(basis.unsqueeze(1).repeat(i, 1, 1, 1))
            pointwise.weight.copy_(coefficients.reshape(o, i * dd, 1, 1))
            if conv.bias is not None and pointwise.bias is not None:
                pointwise.bias.copy_(conv.bias)
        parent, child = _parent(out, name)
        setattr(parent, child, nn.Sequential(depthwise, pointwise).to(conv.weight.device))
    return out

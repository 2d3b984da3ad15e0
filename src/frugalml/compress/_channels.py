"""Structured channel pruning through Torch-Pruning (the optional extra ``frugalml[compress]``).

Torch-Pruning builds the model's dependency graph (residual and grouped layers included),
ranks channel groups by magnitude (L2 of the weights) and removes ``ratio`` of the channels
of every prunable layer but the classifier, physically: the result is an ordinary smaller
model, described afterwards by :func:`frugalml.compress.shape_record`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from frugalml.errors import ConfigError

if TYPE_CHECKING:
    import torch

__all__ = ["prune_channels", "require_torch_pruning"]


def require_torch_pruning() -> Any:
    try:
        import torch_pruning  # type: ignore[import-untyped]
    except ModuleNotFoundError as exc:
        raise ConfigError(
            "method 'channels' needs Torch-Pruning, which is not installed",
            fix="pip install 'frugalml[compress]' (or pip install torch-pruning)",
        ) from exc
    return torch_pruning


def _classifier(model: torch.nn.Module, example: torch.Tensor) -> list[torch.nn.Module]:
    """The layers whose outputs are the model's outputs (never pruned)."""
    from torch import nn

    num_out = None
    with_out: list[torch.nn.Module] = [
        m for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d))
    ]
    import torch

    with torch.no_grad():
        out = model.eval()(example)
    num_out = int(out.shape[1])
    last = [m for m in with_out if getattr(m, "out_features", None) == num_out]
    return last[-1:] if last else with_out[-1:]


def prune_channels(model: torch.nn.Module, example: torch.Tensor, ratio: float) -> int:
    """Remove ``ratio`` of the channels of ``model`` in place; returns parameters removed."""
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0 < ratio < 1:
        raise ConfigError(
            f"channels: ratio must be a fraction in (0, 1), got {ratio!r}", fix="e.g. ratio: 0.5"
        )
    tp = require_torch_pruning()
    before = sum(p.numel() for p in model.parameters())
    ignored = _classifier(model, example)
    pruner = tp.pruner.MetaPruner(
        model,
        example,
        importance=tp.importance.MagnitudeImportance(p=2),
        pruning_ratio=float(ratio),
        ignored_layers=ignored,
    )
    pruner.step()
    return before - sum(p.numel() for p in model.parameters())

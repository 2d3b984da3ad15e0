"""Forward FLOPs per module, from :class:`torch.utils.flop_counter.FlopCounterMode`.

The counter attributes every operator to each module whose forward is running (its
``ModuleTracker``), so a module's count includes its children's. A module's *own* FLOPs are
its count minus its direct children's; the own FLOPs of all modules then add up to the
model's total, and operators a container runs itself (a residual add, the matrix products of
an attention block that calls ``F.multi_head_attention_forward``) stay with that container.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

__all__ = ["ModuleFlops", "module_flops"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModuleFlops:
    """Forward FLOPs of one batch: ``own_flops`` per module name (``""`` is the root),
    ``total_flops`` of the whole forward as the counter reports it (its ``Global`` row), and
    ``unattributed_flops``: what the counter saw outside the model's modules or could not
    place in the module tree (0 for ordinary models)."""

    own_flops: dict[str, int]
    total_flops: int
    unattributed_flops: int


def module_flops(model: torch.nn.Module, example: torch.Tensor) -> ModuleFlops:
    """Count the forward FLOPs of ``model(example)`` per module.

    Runs one forward in the model's training mode (the mode it is profiled in; in eval mode
    some modules, such as ``nn.MultiheadAttention``, take a fused fast path the counter has
    no formula for) without gradients, and afterwards restores every buffer (BatchNorm
    running statistics) and the random number generators, so the model is as before. FLOPs
    are the counter's formulas (2 per multiply-add of convolutions and matrix products),
    plus the attention formula :func:`frugalml.models.count_costs` adds; operators without a
    formula (element-wise ones, normalisation) count 0.
    """
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from frugalml.models import extra_flop_formulas

    saved = [(buffer, buffer.detach().clone()) for buffer in model.buffers()]
    devices = [example.device] if example.device.type == "cuda" else []
    counter = FlopCounterMode(
        display=False,
        depth=None,  # type: ignore[arg-type]
        custom_mapping=extra_flop_formulas(),  # as count_costs counts
    )
    try:
        with torch.random.fork_rng(devices=devices), torch.no_grad(), counter:
            model(example)
    finally:
        with torch.no_grad():
            for buffer, value in saved:
                buffer.copy_(value)
    counts = {name: sum(ops.values()) for name, ops in counter.get_flop_counts().items()}
    total = int(counter.get_total_flops())

    # The counter names modules "<RootClass>.<fqn>" and the root "<RootClass>".
    root_label = type(model).__name__
    own: dict[str, int] = {}
    for fqn, module in model.named_modules():
        label = f"{root_label}.{fqn}" if fqn else root_label
        inclusive = counts.get(label, 0)
        children = 0
        for child_name, _ in module.named_children():
            child_fqn = f"{fqn}.{child_name}" if fqn else child_name
            children += counts.get(f"{root_label}.{child_fqn}", 0)
        own_flops = inclusive - children
        if own_flops < 0:
            logger.warning(
                "module %s counted fewer FLOPs (%d) than its children (%d): it is called from "
                "outside its place in the module tree; its own FLOPs are set to 0",
                fqn or root_label,
                inclusive,
                children,
            )
            own_flops = 0
        own[fqn] = own_flops
    unattributed = total - sum(own.values())
    if unattributed != 0:
        logger.debug("%d FLOPs could not be placed in the module tree", unattributed)
    return ModuleFlops(own_flops=own, total_flops=total, unattributed_flops=unattributed)

"""What a model costs to hold and to run: parameters, bytes, FLOPs (counted, not estimated)."""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from frugalml.errors import ConfigError, ModelError

if TYPE_CHECKING:
    import torch

__all__ = ["FLOPS_SOURCE", "ModelCosts", "count_costs"]

logger = logging.getLogger(__name__)

#: How :func:`count_costs` counts FLOPs.
FLOPS_SOURCE = "torch.utils.flop_counter (forward, batch 1)"

# PyTorch runs scaled_dot_product_attention on CPU through this kernel, which
# torch.utils.flop_counter has no formula for (it counts 0 FLOPs for attention on CPU, so a
# ViT-B/16 comes out 4% low). count_costs adds the same formula torch uses for the CUDA kernels.
_CPU_SDPA_OP = "_scaled_dot_product_flash_attention_for_cpu"


@dataclass(frozen=True)
class ModelCosts:
    """Static costs of one model at one input shape.

    - ``params``: parameters (shared ones once); ``trainable_params``: those with
      ``requires_grad``.
    - ``flops_per_sample``: floating-point operations of one forward pass on one sample
      (a multiply-accumulate counts as 2 FLOPs), counted by ``flops_source``. Only the
      operators the counter has formulas for are counted (matmuls, convolutions, attention);
      elementwise work (activations, normalisation, pooling) is not.
    - ``weight_bytes``: bytes of parameters and buffers at their actual dtypes.
    - ``input_shape``: (channels, height, width) of one sample.
    """

    params: int
    trainable_params: int
    flops_per_sample: int
    weight_bytes: int
    input_shape: tuple[int, int, int]
    flops_source: str = FLOPS_SOURCE

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["input_shape"] = list(self.input_shape)
        return out


def _check_shape(input_shape: Any) -> tuple[int, int, int]:
    ok = (
        isinstance(input_shape, (tuple, list))
        and len(input_shape) == 3
        and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in input_shape)
    )
    if not ok:
        raise ConfigError(
            f"input_shape must be three positive integers (channels, height, width), "
            f"got {input_shape!r}",
            fix="pass e.g. (3, 224, 224)",
        )
    c, h, w = input_shape
    return (c, h, w)


def _sdpa_flops(
    query_shape: Any, key_shape: Any, value_shape: Any, *args: Any, **kwargs: Any
) -> int:
    """FLOPs of softmax(Q K^T) V: two batched matmuls (b, h, s_q, d) x (b, h, d, s_k) etc."""
    b, h, s_q, d_q = (int(v) for v in query_shape)
    s_k = int(key_shape[-2])
    d_v = int(value_shape[-1])
    return 2 * b * h * s_q * s_k * d_q + 2 * b * h * s_q * s_k * d_v


def _extra_formulas() -> dict[Any, Any]:
    import torch
    from torch.utils import flop_counter

    op = getattr(torch.ops.aten, _CPU_SDPA_OP, None)
    if op is None or op in flop_counter.flop_registry:
        return {}
    return {op: _sdpa_flops}


def count_costs(model: torch.nn.Module, input_shape: tuple[int, int, int]) -> ModelCosts:
    """Count parameters, bytes and forward FLOPs of ``model`` for one ``input_shape`` sample.

    FLOPs come from ``torch.utils.flop_counter.FlopCounterMode`` on a batch of one random
    sample (on the model's device and dtype) in eval mode under ``torch.no_grad()``; each
    module's train/eval mode is restored afterwards and no weights change. Raises
    :class:`ModelError` when the model cannot run at that shape.
    """
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    shape = _check_shape(input_shape)
    params = list(model.parameters())
    buffers = list(model.buffers())
    n_params = sum(p.numel() for p in params)
    n_trainable = sum(p.numel() for p in params if p.requires_grad)
    weight_bytes = sum(t.numel() * t.element_size() for t in (*params, *buffers))

    floating = [t for t in (*params, *buffers) if t.is_floating_point()]
    device = floating[0].device if floating else torch.device("cpu")
    dtype = floating[0].dtype if floating else torch.float32
    generator = torch.Generator().manual_seed(0)
    x = torch.randn((1, *shape), generator=generator).to(device=device, dtype=dtype)

    modes = [(m, m.training) for m in model.modules()]
    extra = _extra_formulas()
    counter = FlopCounterMode(display=False, custom_mapping=extra)
    try:
        model.eval()
        with torch.no_grad(), counter:
            model(x)
    except Exception as exc:
        raise ModelError(
            f"could not run {type(model).__name__} on an input of shape {(1, *shape)}: "
            f"{type(exc).__name__}: {exc}",
            fix="check the channels (in_chans) and image size; some models need a minimum or "
            "fixed input size (see frugalml.models.model_input_size)",
        ) from exc
    finally:
        for module, training in modes:
            module.training = training
    flops = int(counter.get_total_flops())
    source = FLOPS_SOURCE
    counted = counter.get_flop_counts().get("Global", {})
    if any(op in counted for op in extra):
        source += " + frugalml formula for aten." + _CPU_SDPA_OP
    return ModelCosts(
        params=n_params,
        trainable_params=n_trainable,
        flops_per_sample=flops,
        weight_bytes=weight_bytes,
        input_shape=shape,
        flops_source=source,
    )

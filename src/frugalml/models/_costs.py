"""What a model costs to hold and to run: parameters, bytes, FLOPs (counted, not estimated)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from frugalml.errors import ConfigError, ModelError

if TYPE_CHECKING:
    import torch

__all__ = ["FLOPS_SOURCE", "ModelCosts", "count_costs"]

logger = logging.getLogger(__name__)

#: How :func:`count_costs` counts FLOPs.
FLOPS_SOURCE = "torch.utils.flop_counter (forward, batch 1)"

# Operators that torch.utils.flop_counter has no formula for, so it counts 0 FLOPs for them:
# - scaled_dot_product_attention runs on CPU through ``_scaled_dot_product_flash_attention_
#   for_cpu`` (a ViT-B/16 would come out 4 % low);
# - in eval mode without gradients, nn.MultiheadAttention and nn.TransformerEncoderLayer take
#   fused fast paths (``_native_multi_head_attention``, ``_transformer_encoder_layer_fwd``)
#   whose inner matmuls the counter never sees (0 FLOPs for the whole layer).
# count_costs adds formulas for them that give what the counter counts for the unfused ops
# (2 FLOPs per multiply-accumulate of every projection and attention matmul).


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


def _batch_and_length(shape: Any) -> tuple[int, int]:
    """(batch, sequence length) of a (B, L, E) or unbatched (L, E) input."""
    dims = [int(v) for v in shape]
    return (dims[0], dims[1]) if len(dims) == 3 else (1, dims[0])


def _sdpa_flops(
    query_shape: Any, key_shape: Any, value_shape: Any, *args: Any, **kwargs: Any
) -> int:
    """softmax(Q K^T) V with Q (b, h, s_q, d), K (b, h, s_k, d), V (b, h, s_k, d_v)."""
    b, h, s_q, d_q = (int(v) for v in query_shape)
    s_k = int(key_shape[-2])
    d_v = int(value_shape[-1])
    return 2 * b * h * s_q * s_k * d_q + 2 * b * h * s_q * s_k * d_v


def _attention_block_flops(b: int, l_q: int, l_k: int, e: int) -> int:
    """Q, K, V projections + Q K^T + A V (all heads: E wide) + output projection."""
    projections = 2 * b * (l_q + 2 * l_k) * e * e + 2 * b * l_q * e * e
    return projections + 4 * b * l_q * l_k * e


def _mha_flops(
    query_shape: Any, key_shape: Any, value_shape: Any, embed_dim: int, *args: Any, **kwargs: Any
) -> int:
    b, l_q = _batch_and_length(query_shape)
    _, l_k = _batch_and_length(key_shape)
    return _attention_block_flops(b, l_q, l_k, int(embed_dim))


def _encoder_layer_flops(src_shape: Any, embed_dim: int, *args: Any, **kwargs: Any) -> int:
    # args after embed_dim: num_heads, qkv_weight, qkv_bias, proj_weight, proj_bias, use_gelu,
    # norm_first, eps, 4 norm tensors, ffn_weight_1 (F, E), ...
    b, length = _batch_and_length(src_shape)
    e = int(embed_dim)
    hidden = int(args[13][0])
    return _attention_block_flops(b, length, length, e) + 4 * b * length * e * hidden


_FORMULAS: dict[str, Callable[..., int]] = {
    "_scaled_dot_product_flash_attention_for_cpu": _sdpa_flops,
    "_native_multi_head_attention": _mha_flops,
    "_transformer_encoder_layer_fwd": _encoder_layer_flops,
}


def extra_flop_formulas() -> dict[Any, Any]:
    """The formulas count_costs adds to FlopCounterMode (``custom_mapping``), keyed by op."""
    import torch
    from torch.utils import flop_counter

    extra: dict[Any, Any] = {}
    for name, formula in _FORMULAS.items():
        op = getattr(torch.ops.aten, name, None)
        if op is not None and op not in flop_counter.flop_registry:
            extra[op] = formula
    return extra


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
    extra = extra_flop_formulas()
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
    used = [f"aten.{op.__name__}" for op in extra if op in counted]
    if used:
        source += " + frugalml formulas for " + ", ".join(sorted(used))
    return ModelCosts(
        params=n_params,
        trainable_params=n_trainable,
        flops_per_sample=flops,
        weight_bytes=weight_bytes,
        input_shape=shape,
        flops_source=source,
    )

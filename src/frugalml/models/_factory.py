"""``create_model``: one entry point for timm names and frugalml built-ins."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from frugalml.errors import ConfigError
from frugalml.models._builtin import build_builtin, is_builtin_model

if TYPE_CHECKING:
    import torch

__all__ = ["create_model"]


def _check_positive(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(
            f"{name} must be a positive integer, got {value!r}",
            fix=f"pass {name}= the dataset's number of "
            + ("classes" if name == "num_classes" else "image channels (1 or 3)"),
        )


def create_model(
    name: str,
    *,
    num_classes: int,
    in_chans: int,
    pretrained: bool = False,
    pretrained_file: str | Path | None = None,
    **kwargs: Any,
) -> torch.nn.Module:
    """Build model ``name`` for ``num_classes`` classes and ``in_chans`` input channels.

    ``name`` is a frugalml built-in (:func:`list_builtin_models`; ``kwargs`` are its knobs) or
    any ``timm.list_models()`` entry, optionally with a weight tag (``resnet18.a1_in1k``);
    deprecated aliases that timm still maps are built under their new name (logged).
    ``kwargs`` go to the timm constructor (e.g. ``drop_rate``).

    ``pretrained=True`` loads ImageNet weights through timm, which replaces the classifier
    for ``num_classes`` and adapts the first convolution to ``in_chans``: from
    ``pretrained_file`` (a local ``.safetensors``/``.pth`` state_dict) when given, else from
    the local cache or the Hugging Face hub. When the weights cannot be had (no such
    weights, hub unreachable, a file that does not fit) this raises :class:`ModelError`
    within seconds; it never trains from scratch instead.

    Raises :class:`ModelError` for an unknown name (with close matches) and
    :class:`ConfigError` for bad values.
    """
    _check_positive("num_classes", num_classes)
    _check_positive("in_chans", in_chans)
    if not isinstance(name, str) or not name:
        raise ConfigError(
            f"model name must be a non-empty string, got {name!r}",
            fix="name a timm model or a frugalml built-in",
        )
    if is_builtin_model(name):
        return build_builtin(
            name,
            num_classes=num_classes,
            in_chans=in_chans,
            pretrained=pretrained,
            pretrained_file=pretrained_file,
            **kwargs,
        )
    from frugalml.models._timm import create_timm_model

    return create_timm_model(
        name,
        num_classes=num_classes,
        in_chans=in_chans,
        pretrained=pretrained,
        pretrained_file=pretrained_file,
        **kwargs,
    )

"""Saving a compressed model as data, never as a pickled module.

The file (``torch.save`` of plain dicts, lists, strings, numbers and tensors) holds the
architecture reference (model name, ``model_args``, classes, input channels), the layer
shapes after pruning, the pruning record (method, settings, what was removed) and the
``state_dict``. :func:`load_compressed` builds the architecture with
:func:`frugalml.models.create_model`, gives its layers the recorded shapes and loads the
weights with ``torch.load(..., weights_only=True)``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from frugalml.compress._shrink import apply_record, shape_record
from frugalml.errors import ModelError

if TYPE_CHECKING:
    import torch

__all__ = ["FORMAT", "ArchitectureRef", "load_compressed", "save_compressed"]

FORMAT = "frugalml.compressed/1"


@dataclass(frozen=True)
class ArchitectureRef:
    """What :func:`frugalml.models.create_model` needs to rebuild the dense architecture."""

    name: str
    num_classes: int
    in_chans: int
    args: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "num_classes": self.num_classes,
            "in_chans": self.in_chans,
            "args": dict(self.args),
        }

    def build(self) -> torch.nn.Module:
        from frugalml.models import create_model

        return create_model(
            self.name, num_classes=self.num_classes, in_chans=self.in_chans, **dict(self.args)
        )


def save_compressed(
    path: str | Path,
    model: torch.nn.Module,
    architecture: ArchitectureRef,
    pruning: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``model`` (a compressed instance of ``architecture``) to ``path``."""
    import torch

    path = Path(path)
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    payload = {
        "format": FORMAT,
        "architecture": architecture.to_dict(),
        "shapes": shape_record(model),
        "pruning": dict(pruning or {}),
        "state_dict": state,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(payload, path)
    return path


def load_compressed(
    path: str | Path, *, map_location: str = "cpu"
) -> tuple[torch.nn.Module, dict[str, Any]]:
    """The model saved at ``path`` (in eval mode) and its pruning record."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise ModelError(
            f"compressed model file {str(path)!r} does not exist",
            fix="give a file written by save_compressed (frugalml compress writes DIR/models/)",
        )
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:
        raise ModelError(
            f"{str(path)!r} is not a compressed-model file: {type(exc).__name__}",
            fix="give a file written by save_compressed",
        ) from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        found = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        raise ModelError(
            f"{str(path)!r} is not a {FORMAT} file (found {found!r})",
            fix="give a file written by save_compressed",
        )
    arch = payload["architecture"]
    ref = ArchitectureRef(
        name=str(arch["name"]),
        num_classes=int(arch["num_classes"]),
        in_chans=int(arch["in_chans"]),
        args=dict(arch.get("args") or {}),
    )
    model = ref.build()
    apply_record(model, payload["shapes"])
    try:
        model.load_state_dict(payload["state_dict"], strict=True)
    except RuntimeError as exc:
        raise ModelError(
            f"the weights in {str(path)!r} do not fit {ref.name}: {str(exc).splitlines()[0]}",
            fix="the file was written by another frugalml or edited; compress again",
        ) from exc
    model.eval()
    return model, dict(payload["pruning"])

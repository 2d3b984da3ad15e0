"""Model references: a name plus the arguments that build it, usable as a table key.

Pure Python (no torch, no timm) so that specs can be checked quickly.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from frugalml.errors import ConfigError

if TYPE_CHECKING:
    from pathlib import Path

    import torch

__all__ = ["ModelRef", "ResolvedModels"]

_SCALARS = (bool, int, float, str, type(None))


def _freeze_value(name: str, key: str, value: Any) -> Any:
    """Check that an argument is a plain scalar (or a list of them); lists become tuples."""
    if isinstance(value, _SCALARS):
        return value
    if isinstance(value, (list, tuple)) and all(isinstance(v, _SCALARS) for v in value):
        return tuple(value)
    raise ConfigError(
        f"model {name!r}: argument {key}={value!r} is a {type(value).__name__}; "
        "model arguments must be numbers, strings, booleans, null or lists of those",
        fix=f"give {key} a plain value",
    )


def _format_value(value: Any) -> str:
    if isinstance(value, tuple):
        return "[" + ",".join(_format_value(v) for v in value) + "]"
    if isinstance(value, float):
        return repr(value)
    return str(value)


@dataclass(frozen=True, eq=True)
class ModelRef:
    """A model to build: a timm or built-in ``name`` plus keyword ``args`` for its constructor.

    ``image_size`` is the input side length (pixels) a preset recommends for this model, or
    ``None`` for "use the dataset's size" (see :func:`frugalml.models.model_input_size`). It is
    not passed to the model; a trainer resizes the dataset to it when it is given.

    ``args`` must hold plain values (numbers, strings, booleans, null, lists of those); they
    are copied and sorted by name, so two refs with the same arguments compare and hash equal.
    :attr:`key` is a short, stable string for tables, e.g. ``frugal_cnn(conv_layers=4,width=16)``.
    """

    name: str
    args: Mapping[str, Any] = field(default_factory=dict)
    image_size: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise ConfigError(
                f"a model name must be a non-empty string, got {self.name!r}",
                fix="name a timm model or a frugalml built-in",
            )
        if not isinstance(self.args, Mapping):
            raise ConfigError(
                f"model {self.name!r}: args must be a mapping of argument names to values, "
                f"got {type(self.args).__name__}",
                fix="write args as {knob: value, ...}",
            )
        frozen: dict[str, Any] = {}
        for key in sorted(self.args):
            if not isinstance(key, str) or not key.isidentifier():
                raise ConfigError(
                    f"model {self.name!r}: argument name {key!r} is not a valid keyword",
                    fix="use keyword names such as width or drop_rate",
                )
            frozen[key] = _freeze_value(self.name, key, self.args[key])
        object.__setattr__(self, "args", frozen)
        size = self.image_size
        if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 1):
            raise ConfigError(
                f"model {self.name!r}: image_size must be a positive integer, got {size!r}",
                fix="give the input side length in pixels, e.g. image_size: 32",
            )

    @property
    def key(self) -> str:
        """The name plus its arguments, e.g. ``frugal_cnn(conv_layers=4,width=16)``."""
        if not self.args:
            return self.name
        inner = ",".join(f"{k}={_format_value(v)}" for k, v in self.args.items())
        return f"{self.name}({inner})"

    def __hash__(self) -> int:
        return hash((self.key, self.image_size))

    def __str__(self) -> str:
        return self.key

    def to_dict(self) -> dict[str, Any]:
        """A plain mapping that :meth:`from_mapping` (and ``resolve_models``) read back."""
        out: dict[str, Any] = {"name": self.name, "args": dict(self.args)}
        if self.image_size is not None:
            out["image_size"] = self.image_size
        return out

    @classmethod
    def from_mapping(cls, entry: Mapping[str, Any]) -> ModelRef:
        """Build from ``{name: ..., args: {...}, image_size: ...}`` (args and size optional)."""
        unknown = sorted(set(entry) - {"name", "args", "image_size"})
        if unknown:
            raise ConfigError(
                f"model entry {dict(entry)!r} has unknown keys {unknown}",
                fix="a model entry takes name, args and image_size (or preset alone)",
            )
        if "name" not in entry:
            raise ConfigError(
                f"model entry {dict(entry)!r} has no name",
                fix="add name: <timm or built-in model name>",
            )
        args = entry.get("args") or {}
        return cls(name=entry["name"], args=args, image_size=entry.get("image_size"))

    def create(
        self,
        *,
        num_classes: int,
        in_chans: int,
        pretrained: bool = False,
        pretrained_file: str | Path | None = None,
    ) -> torch.nn.Module:
        """Build this model: :func:`frugalml.models.create_model` with ``args`` as keywords."""
        from frugalml.models._factory import create_model

        return create_model(
            self.name,
            num_classes=num_classes,
            in_chans=in_chans,
            pretrained=pretrained,
            pretrained_file=pretrained_file,
            **self.args,
        )


@dataclass(frozen=True)
class ResolvedModels:
    """What :func:`frugalml.models.resolve_models` made of a list of entries.

    - ``models``: the models to run, in order, duplicates removed.
    - ``unresolved``: ``(name, reason)`` for names that could not be resolved (never
      silently dropped): names in a preset that this timm no longer knows, and, with
      ``strict=False``, unknown explicit names.
    - ``renamed``: ``(old, new)`` for deprecated aliases that timm maps to a current name;
      ``models`` holds the new name.
    """

    models: list[ModelRef] = field(default_factory=list)
    unresolved: list[tuple[str, str]] = field(default_factory=list)
    renamed: list[tuple[str, str]] = field(default_factory=list)

    @property
    def names(self) -> list[str]:
        """The resolved model names, in order."""
        return [ref.name for ref in self.models]

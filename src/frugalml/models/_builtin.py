"""frugalml's own small models and the registry that names them.

The registry works like timm's: a decorator registers a builder under a name, and
:func:`list_builtin_models` lists them. Each built-in has a frozen config dataclass whose
fields are its knobs; the dataclass checks its values on creation, so a spec can be validated
without importing torch. The networks themselves live in ``_nets.py`` (imported on build).

Built-ins:

- ``frugal_cnn``: a plain CNN with explicit knobs for layer experiments (Yarally et al.,
  CAIN 2023: {1, 4} conv layers x {3, 7} linear layers x ReLU on/off).
- ``frugal_mlp``: a multi-layer perceptron baseline on a pooled copy of the image.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from frugalml.errors import ConfigError, ModelError

if TYPE_CHECKING:
    import torch

__all__ = [
    "BuiltinModel",
    "FrugalCNNConfig",
    "FrugalMLPConfig",
    "build_builtin",
    "builtin_config",
    "get_builtin",
    "is_builtin_model",
    "list_builtin_models",
    "register_builtin",
]

logger = logging.getLogger(__name__)

_POOLS = ("max", "avg", "none")
_WIDEN = ("double", "constant")


def _check_int(model: str, knob: str, value: Any, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConfigError(
            f"{model}: {knob}={value!r} is out of range; it must be an integer in [{low}, {high}]",
            fix=f"set {knob} to an integer in [{low}, {high}]",
        )


def _check_bool(model: str, knob: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise ConfigError(
            f"{model}: {knob}={value!r} must be true or false",
            fix=f"set {knob} to true or false",
        )


def _check_choice(model: str, knob: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(
            f"{model}: {knob}={value!r} is not one of {', '.join(choices)}",
            fix=f"set {knob} to one of {', '.join(choices)}",
        )


def _check_dropout(model: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise ConfigError(
            f"{model}: dropout={value!r} must be a probability in [0, 1)",
            fix="set dropout to a number such as 0.0 or 0.2",
        )


@dataclass(frozen=True)
class FrugalCNNConfig:
    """Knobs of ``frugal_cnn``.

    Body: ``conv_layers`` convolutions (``kernel_size`` x ``kernel_size``, stride 1, "same"
    padding), each followed by an optional BatchNorm and a ReLU when ``relu`` is true. The
    layers come in stages of two: after every second conv layer a 2 x 2 ``pool`` ("max",
    "avg" or "none"; ceil mode, so a 1 x 1 map stays 1 x 1) halves the map, and with
    ``widen="double"`` the next stage has twice the channels. Conv layer ``i`` (from 0) thus
    has ``width * 2 ** (i // 2)`` channels, or ``width`` throughout with ``widen="constant"``.

    Head: adaptive average pooling of the last map to ``head_grid`` x ``head_grid`` (any input
    from 8 x 8 to 224 x 224 gives the same head), flatten, then ``linear_layers`` Linear layers:
    ``linear_layers - 1`` hidden ones of ``hidden`` units (each with ReLU when ``relu`` and
    ``dropout``), and the classifier.
    """

    conv_layers: int = 2
    width: int = 16
    widen: str = "double"
    kernel_size: int = 3
    pool: str = "max"
    batch_norm: bool = False
    linear_layers: int = 2
    hidden: int = 64
    relu: bool = True
    dropout: float = 0.0
    head_grid: int = 2

    def __post_init__(self) -> None:
        m = "frugal_cnn"
        _check_int(m, "conv_layers", self.conv_layers, 1, 16)
        _check_int(m, "width", self.width, 1, 1024)
        _check_choice(m, "widen", self.widen, _WIDEN)
        _check_int(m, "kernel_size", self.kernel_size, 1, 11)
        if self.kernel_size % 2 == 0:
            raise ConfigError(
                f"{m}: kernel_size={self.kernel_size} must be odd (for same padding)",
                fix="set kernel_size to 1, 3, 5, 7, 9 or 11",
            )
        _check_choice(m, "pool", self.pool, _POOLS)
        _check_bool(m, "batch_norm", self.batch_norm)
        _check_int(m, "linear_layers", self.linear_layers, 1, 16)
        _check_int(m, "hidden", self.hidden, 1, 8192)
        _check_bool(m, "relu", self.relu)
        _check_dropout(m, self.dropout)
        _check_int(m, "head_grid", self.head_grid, 1, 8)
        if max(self.channels) > 4096:
            raise ConfigError(
                f"{m}: width={self.width} doubled over {self.conv_layers} conv layers reaches "
                f"{max(self.channels)} channels (limit 4096)",
                fix='lower width or conv_layers, or set widen="constant"',
            )

    @property
    def channels(self) -> list[int]:
        """Output channels of each conv layer."""
        if self.widen == "constant":
            return [self.width] * self.conv_layers
        return [self.width * 2 ** (i // 2) for i in range(self.conv_layers)]


@dataclass(frozen=True)
class FrugalMLPConfig:
    """Knobs of ``frugal_mlp``.

    The image is average-pooled to ``input_grid`` x ``input_grid`` (adaptive, so 8 x 8 digits
    pass unchanged and larger images shrink to the same size), flattened, and fed to
    ``linear_layers`` Linear layers: ``linear_layers - 1`` hidden ones of ``hidden`` units
    (ReLU when ``relu``, then ``dropout``), and the classifier.
    """

    input_grid: int = 8
    linear_layers: int = 3
    hidden: int = 128
    relu: bool = True
    dropout: float = 0.0

    def __post_init__(self) -> None:
        m = "frugal_mlp"
        _check_int(m, "input_grid", self.input_grid, 1, 64)
        _check_int(m, "linear_layers", self.linear_layers, 1, 16)
        _check_int(m, "hidden", self.hidden, 1, 8192)
        _check_bool(m, "relu", self.relu)
        _check_dropout(m, self.dropout)


BuildFn = Callable[[Any, int, int], "torch.nn.Module"]
_F = TypeVar("_F", bound=BuildFn)


@dataclass(frozen=True)
class BuiltinModel:
    """A registered built-in: its name, one-line description, config class and builder.

    ``build(config, num_classes, in_chans)`` returns the network.
    """

    name: str
    description: str
    config_cls: type[Any]
    build: BuildFn

    @property
    def knobs(self) -> dict[str, Any]:
        """Knob names with their defaults."""
        return {f.name: f.default for f in dataclasses.fields(self.config_cls)}


_REGISTRY: dict[str, BuiltinModel] = {}


def register_builtin(name: str, *, config: type[Any], description: str) -> Callable[[_F], _F]:
    """Register ``fn(config, num_classes, in_chans) -> nn.Module`` as built-in ``name``.

    ``config`` is a frozen dataclass of knobs that validates itself in ``__post_init__``.
    """
    if not dataclasses.is_dataclass(config):
        raise TypeError(f"config for {name!r} must be a dataclass, got {config!r}")

    def decorator(fn: _F) -> _F:
        if name in _REGISTRY:
            raise ValueError(f"built-in model {name!r} is already registered")
        _REGISTRY[name] = BuiltinModel(name, description, config, fn)
        return fn

    return decorator


def list_builtin_models() -> list[str]:
    """Names of frugalml's built-in models, sorted."""
    return sorted(_REGISTRY)


def is_builtin_model(name: str) -> bool:
    return name in _REGISTRY


def get_builtin(name: str) -> BuiltinModel:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ModelError(
            f"{name!r} is not a frugalml built-in model",
            fix=f"use one of {', '.join(list_builtin_models())}",
        ) from None


def builtin_config(name: str, args: Mapping[str, Any]) -> Any:
    """Validate ``args`` as the knobs of built-in ``name``; returns its config object.

    Raises :class:`ConfigError` for an unknown knob or a value out of range.
    """
    entry = get_builtin(name)
    known = entry.knobs
    unknown = sorted(set(args) - set(known))
    if unknown:
        raise ConfigError(
            f"{name} has no knob(s) {', '.join(unknown)}",
            fix=f"{name} takes {', '.join(sorted(known))}",
        )
    return entry.config_cls(**args)


def build_builtin(
    name: str,
    *,
    num_classes: int,
    in_chans: int,
    pretrained: bool = False,
    pretrained_file: str | Path | None = None,
    **kwargs: Any,
) -> torch.nn.Module:
    """Build built-in ``name``; weights only from a local file (no built-in has hub weights)."""
    config = builtin_config(name, kwargs)
    if pretrained_file is not None and not pretrained:
        raise ConfigError(
            f"pretrained_file={str(pretrained_file)!r} was given with pretrained=False",
            fix="set pretrained=True to load the file, or drop pretrained_file",
        )
    if pretrained and pretrained_file is None:
        raise ModelError(
            f"{name} is a frugalml built-in and has no published pretrained weights",
            fix="set pretrained=False, or give pretrained_file= a state_dict saved from the "
            "same built-in with the same knobs",
        )
    model = get_builtin(name).build(config, num_classes, in_chans)
    if pretrained_file is not None:
        _load_local_state_dict(model, name, Path(pretrained_file))
    return model


def _load_local_state_dict(model: torch.nn.Module, name: str, path: Path) -> None:
    if not path.is_file():
        raise ModelError(
            f"pretrained_file {str(path)!r} for {name} does not exist",
            fix="give the path of a .safetensors or .pth state_dict",
        )
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path), device="cpu")
        else:
            import torch

            loaded = torch.load(path, map_location="cpu", weights_only=True)
            if isinstance(loaded, dict) and isinstance(loaded.get("state_dict"), dict):
                loaded = loaded["state_dict"]
            state = loaded
        model.load_state_dict(state, strict=True)
    except Exception as exc:
        raise ModelError(
            f"could not load {str(path)!r} into {name}: {type(exc).__name__}: {exc}",
            fix="save the file with torch.save(model.state_dict(), path) from the same built-in "
            "with the same knobs, num_classes and in_chans",
        ) from exc
    logger.info("loaded %s weights from %s", name, path)


@register_builtin(
    "frugal_cnn",
    config=FrugalCNNConfig,
    description="plain CNN with explicit depth, width, head depth, ReLU and pooling knobs",
)
def _frugal_cnn(config: FrugalCNNConfig, num_classes: int, in_chans: int) -> torch.nn.Module:
    from frugalml.models._nets import FrugalCNN

    return FrugalCNN(config, num_classes=num_classes, in_chans=in_chans)


@register_builtin(
    "frugal_mlp",
    config=FrugalMLPConfig,
    description="multi-layer perceptron on the image average-pooled to a small grid",
)
def _frugal_mlp(config: FrugalMLPConfig, num_classes: int, in_chans: int) -> torch.nn.Module:
    from frugalml.models._nets import FrugalMLP

    return FrugalMLP(config, num_classes=num_classes, in_chans=in_chans)

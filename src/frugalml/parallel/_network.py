"""Layer descriptions the partition planner works on.

A :class:`LayerSpec` is what AccPar's layer-description format holds (channels in and out,
kernel, feature-map sizes) plus, optionally, the forward FLOPs per sample and the layer
whose output joins this layer's input through a residual shortcut. Three sources:

- :func:`read_accpar_network`: AccPar's text format (``networks/Alexnet.txt``).
- :func:`accpar_resnet`: the ResNet-18/34/50 layer lists AccPar generates (with its
  simplifications: every block of a stage has the stage's channels, the FC layer reads 2,048
  features, no projection shortcuts), so its published tables can be compared.
- :func:`network_from_model`: the conv and linear layers of any torch model (timm or
  built-in), traced on one sample, FLOPs per layer from :func:`frugalml.models.count_costs`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from frugalml.errors import ConfigError, DataError

if TYPE_CHECKING:
    import torch

__all__ = [
    "LayerKind",
    "LayerSpec",
    "Network",
    "accpar_resnet",
    "network_from_model",
    "read_accpar_network",
]

LayerKind = Literal["fc", "conv"]


@dataclass(frozen=True)
class LayerSpec:
    """One weighted layer: ``in_channels`` x ``out_channels`` weights of ``kernel`` x ``kernel``
    (1 for FC), input and output feature maps of ``in_hw`` and ``out_hw``.

    ``flops_per_sample`` (forward, one sample) is None when unknown (the text format);
    ``shortcut_from`` is the index of the earlier layer whose type the residual join pays for.
    """

    name: str
    kind: LayerKind
    in_channels: int
    out_channels: int
    kernel: tuple[int, int] = (1, 1)
    in_hw: tuple[int, int] = (1, 1)
    out_hw: tuple[int, int] = (1, 1)
    flops_per_sample: float | None = None
    shortcut_from: int | None = None

    @property
    def kernel_size(self) -> float:
        return float(self.kernel[0]) * float(self.kernel[1])

    @property
    def ifmap_size(self) -> float:
        return float(self.in_hw[0]) * float(self.in_hw[1])

    @property
    def ofmap_size(self) -> float:
        return float(self.out_hw[0]) * float(self.out_hw[1])

    def forward_flops(self) -> float:
        """Forward FLOPs of one sample: the counted figure, else 2 x MACs of the shapes."""
        if self.flops_per_sample is not None:
            return self.flops_per_sample
        return 2.0 * self.in_channels * self.out_channels * self.kernel_size * self.ofmap_size


@dataclass(frozen=True)
class Network:
    """A named sequence of layers (the order the planner's chain follows)."""

    name: str
    layers: tuple[LayerSpec, ...]

    def __post_init__(self) -> None:
        if not self.layers:
            raise ConfigError(
                f"network {self.name!r} has no conv or linear layers",
                fix="give a model or layer file with at least one weighted layer",
            )

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(layer.name for layer in self.layers)


_CONV_KEYS = (
    "in_ch",
    "in_fmap_h",
    "in_fmap_w",
    "kernel",
    "out_ch",
    "out_fmap_h",
    "out_fmap_w",
    "pool",
)
_FC_KEYS = ("in_ch", "out_ch")


def _positive_number(path: Path, token: str, key: str) -> float:
    try:
        value = float(token)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise DataError(
            f"{path}: {key} must be a number > 0, got {token!r}",
            fix="see networks/Alexnet.txt in AccPar for the format",
        )
    return value


def read_accpar_network(path: str | Path) -> Network:
    """Read AccPar's layer-description format: ``num_layers N``, then per layer ``NAME
    CONV|FC`` and ``key value`` lines (CONV: in_ch, in_fmap_h, in_fmap_w, kernel, out_ch,
    out_fmap_h, out_fmap_w, pool; FC: in_ch, out_ch). FC layers have 1 x 1 maps."""
    file = Path(path)
    try:
        tokens = file.read_text(encoding="utf-8").split()
    except FileNotFoundError as exc:
        raise DataError(
            f"layer file {file} does not exist", fix="give the path of a layer file"
        ) from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read layer file {file}: {exc}") from exc
    pos = 0

    def take(expected: str | None = None) -> str:
        nonlocal pos
        if pos >= len(tokens):
            raise DataError(
                f"{file}: ends early (expected {expected or 'more'})",
                fix="each layer needs all its key/value lines",
            )
        token = tokens[pos]
        pos += 1
        if expected is not None and token != expected:
            raise DataError(
                f"{file}: expected {expected!r}, found {token!r}",
                fix="see networks/Alexnet.txt in AccPar for the format",
            )
        return token

    take("num_layers")
    count = int(_positive_number(file, take(), "num_layers"))
    layers: list[LayerSpec] = []
    for _ in range(count):
        name = take()
        kind = take()
        if kind not in ("CONV", "FC"):
            raise DataError(f"{file}: layer {name!r} has type {kind!r}", fix="use CONV or FC")
        keys = _CONV_KEYS if kind == "CONV" else _FC_KEYS
        values = {key: _positive_number(file, (take(key), take())[1], key) for key in keys}
        if kind == "FC":
            layers.append(LayerSpec(name, "fc", int(values["in_ch"]), int(values["out_ch"])))
        else:
            k = int(values["kernel"])
            layers.append(
                LayerSpec(
                    name,
                    "conv",
                    int(values["in_ch"]),
                    int(values["out_ch"]),
                    (k, k),
                    (int(values["in_fmap_h"]), int(values["in_fmap_w"])),
                    (int(values["out_fmap_h"]), int(values["out_fmap_w"])),
                )
            )
    if pos != len(tokens):
        raise DataError(
            f"{file}: {len(tokens) - pos} token(s) after the {count} layers num_layers names",
            fix="make num_layers match the layers in the file",
        )
    return Network(file.stem, tuple(layers))


def accpar_resnet(depth: Literal[18, 34, 50]) -> Network:
    """The ResNet layer list AccPar's ``gen_resnet`` builds (names as it prints them)."""
    if depth not in (18, 34, 50):
        raise ConfigError(f"AccPar generates ResNet-18, -34 and -50, not {depth!r}")
    layers = [LayerSpec("cv1", "conv", 3, 64, (7, 7), (224, 224), (56, 56))]
    stages = ((2, 56, 64), (3, 28, 128), (4, 14, 256), (5, 7, 512))
    repeats = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3), 50: (3, 4, 6, 3)}[depth]
    for (stage, hw, width), repeat in zip(stages, repeats, strict=True):
        # (in, out, kernel) of the convs of one block
        block = (
            ((width, width, 3), (width, width, 3))
            if depth != 50
            else ((width, width, 1), (width, width, 3), (width, 4 * width, 1))
        )
        for _ in range(repeat):
            for c_in, c_out, k in block:
                name = f"cv{stage}{len(layers) + 1}"
                layers.append(LayerSpec(name, "conv", c_in, c_out, (k, k), (hw, hw), (hw, hw)))
    layers.append(LayerSpec("fc", "fc", 2048, 1000))
    step = 3 if depth == 50 else 2
    # AccPar's is_layer_short_cut_in: layers l > step with l % step == 1 join a shortcut
    # that started `step` layers earlier.
    layers = [
        replace(layer, shortcut_from=i - step) if i > step and i % step == 1 else layer
        for i, layer in enumerate(layers)
    ]
    return Network(f"resnet{depth}-accpar", tuple(layers))


def network_from_model(
    model: torch.nn.Module, input_shape: tuple[int, int, int], name: str | None = None
) -> Network:
    """The Conv2d and Linear layers of ``model`` in call order, shapes traced on one sample
    of ``input_shape`` (C, H, W); forward FLOPs per layer counted by
    :func:`frugalml.models.count_costs` on that layer alone. Residual joins are not traced."""
    import torch

    from frugalml.models import count_costs

    seen: list[tuple[str, torch.nn.Module, tuple[int, ...], tuple[int, ...]]] = []
    names = {module: n for n, module in model.named_modules()}

    def hook(module: torch.nn.Module, args: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        seen.append((names.get(module, "?"), module, tuple(args[0].shape), tuple(out.shape)))

    handles = [
        m.register_forward_hook(hook)
        for m in model.modules()
        if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))
    ]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros((1, *input_shape)))
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    layers: list[LayerSpec] = []
    for layer_name, module, in_shape, out_shape in seen:
        if isinstance(module, torch.nn.Conv2d):
            k = module.kernel_size
            sample = (int(in_shape[1]), int(in_shape[2]), int(in_shape[3]))
            flops = float(count_costs(module, sample).flops_per_sample)
            layers.append(
                LayerSpec(
                    layer_name,
                    "conv",
                    module.in_channels // module.groups,
                    module.out_channels,
                    (int(k[0]), int(k[1])),
                    (int(in_shape[2]), int(in_shape[3])),
                    (int(out_shape[2]), int(out_shape[3])),
                    flops,
                )
            )
        elif isinstance(module, torch.nn.Linear) and len(in_shape) == 2:
            as_image = torch.nn.Sequential(torch.nn.Flatten(), module)
            flops = float(count_costs(as_image, (module.in_features, 1, 1)).flops_per_sample)
            layers.append(
                LayerSpec(
                    layer_name,
                    "fc",
                    module.in_features,
                    module.out_features,
                    flops_per_sample=flops,
                )
            )
    return Network(name or type(model).__name__, tuple(layers))

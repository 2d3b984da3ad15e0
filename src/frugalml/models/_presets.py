"""Named lists of models (presets) and the PePR study's model table.

- ``cpu-tiny``: five models that each train 10 epochs on ``digits`` in seconds on a laptop
  CPU: three built-ins of different sizes at 8 x 8 and two small timm networks at 32 x 32.
- ``pepr131``: the 131 timm architectures of the PePR study (``pepr_model_names.csv``,
  from saintslab/PePR, MIT License, Copyright (c) 2024 Selvan). Eight of its names are
  deprecated in timm 1.x; :func:`frugalml.models.resolve_models` maps or reports them.

Pure Python: listing or expanding a preset needs neither torch nor timm.
"""

from __future__ import annotations

import csv
import functools
import io
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from typing import TypedDict

from frugalml.errors import ModelError
from frugalml.models._refs import ModelRef

__all__ = ["PeprEntry", "get_preset", "is_preset", "list_presets", "pepr_reference"]

_PEPR_CSV = "pepr_model_names.csv"


class PeprEntry(TypedDict):
    """One row of the PePR study's model table."""

    model: str
    num_param: int
    type: str
    efficient: bool
    link: str


@functools.lru_cache(maxsize=1)
def _pepr_rows() -> tuple[PeprEntry, ...]:
    text = resources.files("frugalml.models").joinpath(_PEPR_CSV).read_text(encoding="utf-8")
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    rows: list[PeprEntry] = []
    for row in csv.DictReader(io.StringIO("\n".join(lines))):
        rows.append(
            PeprEntry(
                model=row["model"],
                num_param=int(row["num_param"]),
                type=row["type"],
                efficient=row["efficient"] == "1",
                link=row["link"],
            )
        )
    return tuple(rows)


def pepr_reference() -> list[PeprEntry]:
    """The PePR study's 131 models with their metadata, in the study's order.

    Each row: ``model`` (the name as the study used it, possibly a deprecated timm alias),
    ``num_param`` (parameters with a 1000-class head), ``type`` (``CNN`` or ``Other``),
    ``efficient`` (whether the study counted it as an efficient architecture), ``link``.
    """
    return [PeprEntry(**row) for row in _pepr_rows()]


def _cpu_tiny() -> list[ModelRef]:
    # Measured on a 2-core VM (benchmarks/bench_model_costs.py and plain timm loops), one
    # epoch of digits (1,257 images, batch 32, Adam): the built-ins at 8 x 8 take 0.04 to
    # 0.2 s; at 32 x 32, lcnet_050 takes 1.3 to 1.9 s of wall time on 2 threads (1.8 to 2.0 s
    # of CPU time on 1 thread) and mobilenetv3_small_050 1.8 to 2.6 s (2.3 to 2.4 s CPU), so
    # 10 epochs take about 15 to 25 s. lcnet_050 was the fastest real timm architecture
    # tried; mobilenetv3_small_050 (squeeze-excitation, hard-swish: a second family) is about
    # as fast as mobilenetv4_conv_small_035 and mobilenetv2_035 (2.0 to 2.2 s wall) and
    # clearly faster than resnet10t (3.5 s), tinynet_e (3.1 s), ghostnet_050 (3.6 s),
    # regnetx_002 (3.7 s CPU) or efficientnet_b0 (11 s). Both have ImageNet weights in timm.
    return [
        ModelRef("frugal_mlp", {"hidden": 64}, image_size=8),
        ModelRef("frugal_cnn", {"conv_layers": 1, "width": 8}, image_size=8),
        ModelRef("frugal_cnn", {"conv_layers": 4, "width": 16}, image_size=8),
        ModelRef("lcnet_050", image_size=32),
        ModelRef("mobilenetv3_small_050", image_size=32),
    ]


def _pepr131() -> list[ModelRef]:
    return [ModelRef(row["model"]) for row in _pepr_rows()]


@dataclass(frozen=True)
class _Preset:
    description: str
    expand: Callable[[], list[ModelRef]]


_PRESETS: dict[str, _Preset] = {
    "cpu-tiny": _Preset(
        "5 models that train 10 epochs on digits in seconds on a CPU: frugal_mlp and two "
        "frugal_cnn sizes at 8x8, lcnet_050 and mobilenetv3_small_050 at 32x32",
        _cpu_tiny,
    ),
    "pepr131": _Preset(
        "the 131 timm models of the PePR study (Selvan et al., NLDL 2025), 1.1M to 133M parameters",
        _pepr131,
    ),
}


def list_presets() -> dict[str, str]:
    """Preset names with a one-line description."""
    return {name: preset.description for name, preset in _PRESETS.items()}


def is_preset(name: str) -> bool:
    return name in _PRESETS


def get_preset(name: str) -> list[ModelRef]:
    """The models of preset ``name``, as listed (names are not checked against timm here;
    :func:`frugalml.models.resolve_models` does that and reports what it could not resolve).
    """
    preset = _PRESETS.get(name)
    if preset is None:
        import difflib

        close = difflib.get_close_matches(name, list(_PRESETS), n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ModelError(
            f"unknown model preset {name!r}{hint}",
            fix=f"use one of {', '.join(_PRESETS)}",
        )
    return preset.expand()

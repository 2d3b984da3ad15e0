"""``frugalml models [PATTERN]``: the model names a spec can use, from the registries."""

from __future__ import annotations

import argparse
import fnmatch
from typing import Any

from frugalml.cli._format import HelpFormatter


def register(subparsers: Any) -> None:
    models = subparsers.add_parser(
        "models",
        help="list built-in models, presets and (with a pattern) timm names",
        description=(
            "Without PATTERN: frugalml's built-in models (with their knobs and defaults) and "
            "the model presets. With PATTERN (shell wildcards, e.g. 'resnet*'): the matching "
            "built-ins, presets and architectures of the installed timm. Every name listed "
            "can go in a spec's models: list."
        ),
        formatter_class=HelpFormatter,
    )
    models.add_argument(
        "pattern", nargs="?", default=None, help="shell wildcard pattern, e.g. 'resnet*'"
    )
    models.add_argument(
        "--pretrained",
        action="store_true",
        help="timm names: only architectures that have pretrained weights in timm",
    )
    models.set_defaults(handler=_models)


def _models(args: argparse.Namespace) -> int:
    from frugalml.errors import ConfigError
    from frugalml.models import get_preset, list_builtin_models, list_presets
    from frugalml.models._builtin import get_builtin

    pattern = args.pattern
    if pattern is not None and not pattern.strip():
        raise ConfigError("the pattern is empty", fix="e.g. frugalml models 'resnet*'")

    def wanted(name: str) -> bool:
        return pattern is None or fnmatch.fnmatchcase(name, pattern)

    builtins = [n for n in list_builtin_models() if wanted(n)]
    presets = {n: d for n, d in list_presets().items() if wanted(n)}
    if builtins:
        print("built-in models (frugalml):")
        for name in builtins:
            model = get_builtin(name)
            knobs = ", ".join(f"{k}={v!r}" for k, v in model.knobs.items())
            print(f"  {name}: {model.description}")
            print(f"    knobs: {knobs}")
    if presets:
        print("presets:")
        for name, description in presets.items():
            print(f"  {name} ({len(get_preset(name))} models): {description}")
    if pattern is None:
        print("timm: 'frugalml models PATTERN' lists the installed timm's architectures")
        return 0
    import timm

    names = timm.list_models(pattern, pretrained=args.pretrained)
    if args.pretrained:
        names = sorted({str(n).split(".", 1)[0] for n in names})
    kind = "with pretrained weights " if args.pretrained else ""
    print(f"timm {timm.__version__} architectures {kind}matching {pattern!r}: {len(names)}")
    for name in names:
        print(f"  {name}")
    if not (builtins or presets or names):
        raise ConfigError(
            f"no model name matches {pattern!r}",
            fix="use shell wildcards, e.g. 'resnet*' or '*mobilenet*'",
        )
    return 0

"""Turn a spec's list of model entries into checked :class:`ModelRef` objects."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from frugalml.errors import ConfigError, ModelError
from frugalml.models._builtin import builtin_config, is_builtin_model, list_builtin_models
from frugalml.models._presets import get_preset, is_preset, list_presets
from frugalml.models._refs import ModelRef, ResolvedModels

__all__ = ["model_input_size", "resolve_models"]

logger = logging.getLogger(__name__)


def resolve_models(
    entries: Sequence[str | Mapping[str, Any] | ModelRef], *, strict: bool = True
) -> ResolvedModels:
    """Expand presets, check names and arguments, and map deprecated timm aliases.

    Each entry is one of:

    - a preset name (``"cpu-tiny"``, ``"pepr131"``; presets win over model names),
    - a model name (a built-in or any ``timm.list_models()`` entry, optionally ``arch.tag``),
    - a mapping ``{name: ..., args: {...}, image_size: ...}`` (args and image_size optional),
    - a mapping ``{preset: ...}``,
    - a :class:`ModelRef`.

    Built-in arguments are validated (:class:`ConfigError` when out of range). timm is
    imported only when a timm name has to be checked. Deprecated aliases timm maps are
    replaced by the current name and listed in ``renamed``. Names inside a preset that timm
    does not know are listed in ``unresolved`` with the reason; an unknown explicit name
    raises :class:`ModelError` with close matches, or with ``strict=False`` goes to
    ``unresolved`` as well. Duplicates are dropped, keeping the first.
    """
    if isinstance(entries, (str, Mapping)):
        raise ConfigError(
            f"models must be a list of entries, got a single {type(entries).__name__}",
            fix="wrap it in a list: [name] or [{name: ..., args: {...}}]",
        )
    models: list[ModelRef] = []
    seen: set[ModelRef] = set()
    unresolved: list[tuple[str, str]] = []
    renamed: list[tuple[str, str]] = []

    def add(ref: ModelRef, *, from_preset: str | None) -> None:
        checked = _check_ref(ref, from_preset=from_preset, strict=strict)
        if isinstance(checked, str):
            if (ref.key, checked) not in unresolved:
                unresolved.append((ref.key, checked))
            return
        if checked.name != ref.name and (ref.name, checked.name) not in renamed:
            renamed.append((ref.name, checked.name))
        if checked not in seen:
            seen.add(checked)
            models.append(checked)

    for entry in entries:
        for ref, preset in _entry_refs(entry):
            add(ref, from_preset=preset)
    return ResolvedModels(models=models, unresolved=unresolved, renamed=renamed)


def _entry_refs(
    entry: str | Mapping[str, Any] | ModelRef,
) -> list[tuple[ModelRef, str | None]]:
    """The refs one spec entry stands for, each with the preset it came from (or None)."""
    if isinstance(entry, ModelRef):
        return [(entry, None)]
    if isinstance(entry, str):
        if is_preset(entry):
            return [(ref, entry) for ref in get_preset(entry)]
        return [(ModelRef(entry), None)]
    if isinstance(entry, Mapping):
        if "preset" not in entry:
            return [(ModelRef.from_mapping(entry), None)]
        if set(entry) != {"preset"}:
            raise ConfigError(
                f"model entry {dict(entry)!r} mixes preset with other keys",
                fix="write a preset as {preset: <name>} on its own",
            )
        name = entry["preset"]
        if not isinstance(name, str) or not is_preset(name):
            raise ModelError(
                f"unknown model preset {name!r}",
                fix=f"use one of {', '.join(list_presets())}",
            )
        return [(ref, name) for ref in get_preset(name)]
    raise ConfigError(
        f"model entry {entry!r} is a {type(entry).__name__}",
        fix="give a model or preset name, or a mapping {name: ..., args: {...}}",
    )


def _check_ref(ref: ModelRef, *, from_preset: str | None, strict: bool) -> ModelRef | str:
    """The checked ref (possibly renamed), or the reason it could not be resolved."""
    if is_builtin_model(ref.name):
        builtin_config(ref.name, ref.args)  # raises ConfigError for bad knobs
        return ref
    from frugalml.models._timm import lookup_timm_name, suggest_names, timm_model_names

    lookup = lookup_timm_name(ref.name)
    if lookup.status == "ok":
        return ref
    if lookup.status == "renamed" and lookup.resolved is not None:
        # debug: callers report renames once, from ResolvedModels.renamed
        logger.debug("%s", lookup.reason)
        return ModelRef(lookup.resolved, ref.args, image_size=ref.image_size)
    if from_preset is not None or not strict:
        where = f" (in preset {from_preset})" if from_preset else ""
        # debug: callers report unresolved models once, from ResolvedModels.unresolved
        logger.debug("cannot resolve model %s%s: %s", ref.name, where, lookup.explanation)
        return lookup.explanation
    close = suggest_names(ref.name, [*timm_model_names(), *list_builtin_models(), *list_presets()])
    did_you_mean = f"; did you mean {', '.join(close)}?" if close else ""
    raise ModelError(
        f"unknown model {ref.name!r}: {lookup.reason}{did_you_mean}",
        fix="use a name from timm.list_models(), frugalml.models.list_builtin_models() or a "
        "preset from frugalml.models.list_presets()",
    )


def model_input_size(ref: ModelRef | str, dataset_size: int) -> int:
    """The input side length (pixels) to train ``ref`` on a dataset of ``dataset_size``.

    In order: the ref's own ``image_size`` (a preset's choice); for a timm model whose
    architecture needs a fixed input (``fixed_input_size`` in its pretrained config, e.g.
    ViTs, Swin, CrossViT), that size; its ``min_input_size`` when the dataset is smaller;
    otherwise the dataset's size. Built-ins take any size. A timm ``img_size`` argument in
    ``ref.args`` (which rebuilds a fixed-size model for that size) wins over the config.
    """
    if isinstance(ref, str):
        ref = ModelRef(ref)
    if isinstance(dataset_size, bool) or not isinstance(dataset_size, int) or dataset_size < 1:
        raise ConfigError(
            f"dataset_size must be a positive integer, got {dataset_size!r}",
            fix="pass the dataset's image side length in pixels",
        )
    if ref.image_size is not None:
        return ref.image_size
    if is_builtin_model(ref.name):
        return dataset_size
    img_size = ref.args.get("img_size")
    if isinstance(img_size, int) and not isinstance(img_size, bool) and img_size > 0:
        return img_size  # timm's own keyword for models built for a fixed size
    from frugalml.models._timm import lookup_timm_name

    lookup = lookup_timm_name(ref.name)
    if lookup.resolved is None or lookup.resolved.startswith(("hf-hub:", "hf_hub:", "local-dir:")):
        return dataset_size
    from timm.models import get_pretrained_cfg

    try:
        cfg = get_pretrained_cfg(lookup.resolved)
    except RuntimeError:  # an unknown weight tag
        cfg = None
    if cfg is None:
        return dataset_size
    if cfg.fixed_input_size and cfg.input_size:
        return int(cfg.input_size[-1])
    if cfg.min_input_size and dataset_size < cfg.min_input_size[-1]:
        return int(cfg.min_input_size[-1])
    return dataset_size

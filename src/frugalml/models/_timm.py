"""timm models: name lookup (with deprecated aliases) and creation with pretrained weights.

timm is imported inside the functions, so importing this module is cheap.

Pretrained weights come from, in this order: ``pretrained_file`` (passed to timm as
``pretrained_cfg_overlay=dict(file=...)``, so timm's own loader adapts the classifier to
``num_classes`` and the first conv to ``in_chans``); the local Hugging Face (or torch hub)
cache; the hub itself. Before asking the hub, a single request with a short timeout checks
that it answers: huggingface_hub retries a dead connection for about 25 s per file name (and
timm tries two names), so without this check an offline machine would wait close to a
minute before failing. A run that cannot get its weights raises :class:`ModelError`; it
never falls back to random initialisation.
"""

from __future__ import annotations

import difflib
import functools
import logging
import os
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from frugalml.errors import ConfigError, FrugalError, ModelError

if TYPE_CHECKING:
    import torch

__all__ = [
    "HUB_PROBE_TIMEOUT_S",
    "TimmLookup",
    "create_timm_model",
    "lookup_timm_name",
    "suggest_names",
    "timm_model_names",
]

logger = logging.getLogger(__name__)

#: Seconds to wait for the weight host to answer before declaring it unreachable.
HUB_PROBE_TIMEOUT_S = 5.0

#: Name prefixes timm resolves itself (remote or local weight repositories).
_SOURCE_PREFIXES = ("hf-hub:", "hf_hub:", "local-dir:")

#: File names timm looks for in a Hugging Face repository, in its order of preference.
_HF_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


@functools.lru_cache(maxsize=1)
def timm_model_names() -> frozenset[str]:
    """Every current architecture name of the installed timm (``timm.list_models()``)."""
    import timm

    return frozenset(timm.list_models())


def suggest_names(name: str, candidates: Iterable[str], n: int = 5) -> list[str]:
    """Close matches for a mistyped name (difflib), best first."""
    return difflib.get_close_matches(name, list(candidates), n=n, cutoff=0.6)


@dataclass(frozen=True)
class TimmLookup:
    """How the installed timm knows ``name``.

    ``status`` is ``ok`` (current name, ``resolved == name``), ``renamed`` (a deprecated
    alias timm maps to ``resolved``, which may carry a weight tag such as
    ``resnet34.gluon_in1k``), ``removed`` (a deprecated name with no replacement) or
    ``unknown``. ``reason`` explains anything but ``ok``; ``close`` holds similar current
    names for an unknown one.
    """

    name: str
    status: Literal["ok", "renamed", "removed", "unknown"]
    resolved: str | None
    reason: str = ""
    close: tuple[str, ...] = ()

    @property
    def explanation(self) -> str:
        """``reason`` plus the close matches, for reports."""
        if not self.close:
            return self.reason
        return f"{self.reason}; close matches: {', '.join(self.close)}"


def lookup_timm_name(name: str) -> TimmLookup:
    """Check ``name`` against the installed timm without building anything.

    Accepts ``arch`` and ``arch.tag`` (a pretrained weight tag), and passes through names
    with a source prefix (``hf-hub:``, ``local-dir:``) that only timm can resolve.
    """
    import timm
    from timm.models import get_deprecated_models, split_model_name_tag

    if name.startswith(_SOURCE_PREFIXES):
        return TimmLookup(name, "ok", name)
    arch, tag = split_model_name_tag(name)
    current = timm_model_names()
    if arch in current:
        if not tag:
            return TimmLookup(name, "ok", name)
        tags = _pretrained_tags(arch)
        if tag in tags:
            return TimmLookup(name, "ok", name)
        listed = ", ".join(f"{arch}.{t}" for t in tags) or "none"
        return TimmLookup(
            name,
            "unknown",
            None,
            f"timm {timm.__version__} has no weight tag {tag!r} for {arch} (tags: {listed})",
        )
    deprecated = get_deprecated_models()
    if arch in deprecated and not tag:
        new = deprecated[arch]
        if new is None:
            return TimmLookup(
                name,
                "removed",
                None,
                f"timm {timm.__version__} removed {name} with no successor",
                tuple(suggest_names(name, current)),
            )
        return TimmLookup(
            name, "renamed", new, f"timm {timm.__version__} maps deprecated {name} to {new}"
        )
    return TimmLookup(
        name,
        "unknown",
        None,
        f"timm {timm.__version__} does not know this model",
        tuple(suggest_names(name, current)),
    )


def _pretrained_tags(arch: str) -> list[str]:
    import timm

    prefix = f"{arch}."
    return [n[len(prefix) :] for n in timm.list_pretrained(f"{arch}.*") if n.startswith(prefix)]


def create_timm_model(
    name: str,
    *,
    num_classes: int,
    in_chans: int,
    pretrained: bool = False,
    pretrained_file: str | Path | None = None,
    **kwargs: Any,
) -> torch.nn.Module:
    """Build timm model ``name`` (see :func:`frugalml.models.create_model`)."""
    import timm

    lookup = lookup_timm_name(name)
    if lookup.status not in ("ok", "renamed") or lookup.resolved is None:
        raise _unknown_model_error(name, lookup)
    if lookup.status == "renamed":
        logger.info("%s; building %s", lookup.reason, lookup.resolved)
    arch = lookup.resolved

    if pretrained_file is not None and not pretrained:
        raise ConfigError(
            f"pretrained_file={str(pretrained_file)!r} was given with pretrained=False",
            fix="set pretrained=True to load the file, or drop pretrained_file",
        )
    overlay: dict[str, Any] = dict(kwargs.pop("pretrained_cfg_overlay", None) or {})
    if pretrained:
        if pretrained_file is not None:
            path = Path(pretrained_file).expanduser()
            if not path.is_file():
                raise ModelError(
                    f"pretrained_file {str(path)!r} for {arch} does not exist",
                    fix="give the path of the model's ImageNet weights (.safetensors, .pth or "
                    ".bin state_dict)",
                )
            overlay["file"] = str(path)
        elif not name.startswith(_SOURCE_PREFIXES):
            cached = _find_weights_or_fail(arch)
            if cached is not None:
                overlay["file"] = cached
    if name.startswith(("hf-hub:", "hf_hub:")) and "file" not in overlay:
        _check_hub_for_remote_name(name)  # timm fetches its config even without weights
    try:
        model = timm.create_model(
            arch,
            pretrained=pretrained,
            num_classes=num_classes,
            in_chans=in_chans,
            pretrained_cfg_overlay=overlay or None,
            **kwargs,
        )
    except FrugalError:
        raise
    except TypeError as exc:
        raise ConfigError(
            f"timm model {arch} rejected its arguments {sorted(kwargs)}: {exc}",
            fix="drop or rename the argument (see the model's constructor in timm)",
        ) from exc
    except Exception as exc:
        if pretrained:
            where = overlay.get("file", "the Hugging Face hub")
            raise ModelError(
                f"could not load pretrained weights for {arch} from {where}: {_brief(exc)}",
                fix="check the file is this architecture's ImageNet state_dict (or that the hub "
                "is reachable), or set pretrained=False to train from scratch on purpose",
            ) from exc
        raise ModelError(
            f"timm could not build {arch}: {_brief(exc)}",
            fix="check the model's arguments, num_classes and in_chans",
        ) from exc
    if pretrained and "file" in overlay:
        _check_file_covers_model(model, overlay["file"], arch)
    return model


def _brief(exc: BaseException, limit: int = 600) -> str:
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _check_file_covers_model(model: torch.nn.Module, file: str, arch: str) -> None:
    """Fail unless ``file`` held a tensor for every parameter outside the classifier.

    When ``num_classes`` differs from the weights', timm loads non-strictly and only logs the
    missing keys, so a file of another architecture (with other key names) would leave the
    model randomly initialised without an error. This check turns that into a ModelError.
    """
    from timm.models import load_state_dict

    cfg = getattr(model, "pretrained_cfg", None) or {}
    classifier = cfg.get("classifier") or ()
    heads = (classifier,) if isinstance(classifier, str) else tuple(classifier)
    if file.endswith(".safetensors"):
        from safetensors import safe_open

        with safe_open(file, framework="pt") as f:
            names = list(f.keys())
    else:
        names = list(load_state_dict(file, weights_only=True))
    keys = {k[len("module.") :] if k.startswith("module.") else k for k in names}
    missing = [
        name
        for name, _ in model.named_parameters()
        if name not in keys and not any(name.startswith(f"{h}.") for h in heads)
    ]
    if missing:
        total = sum(1 for _ in model.named_parameters())
        hub_id = cfg.get("hf_hub_id")
        source = f"model.safetensors from https://huggingface.co/{hub_id}" if hub_id else None
        raise ModelError(
            f"{file} has no weights for {len(missing)} of {total} parameter tensors of {arch} "
            f"(e.g. {', '.join(missing[:3])}); they would silently start from random values",
            fix=f"pass {arch}'s ImageNet weights in timm's format"
            + (f" ({source})" if source else "")
            + ", or set pretrained=False to train from scratch on purpose",
        )


def _unknown_model_error(name: str, lookup: TimmLookup) -> ModelError:
    from frugalml.models._builtin import list_builtin_models

    close = suggest_names(name, [*timm_model_names(), *list_builtin_models()])
    did_you_mean = f"; did you mean {', '.join(close)}?" if close else ""
    return ModelError(
        f"unknown model {name!r}: {lookup.reason}{did_you_mean}",
        fix="use a name from timm.list_models() or frugalml.models.list_builtin_models()",
    )


def _find_weights_or_fail(arch: str) -> str | None:
    """Where timm should get ``arch``'s weights: a cached file, or ``None`` (ask the hub).

    Raises :class:`ModelError` at once when the model has no pretrained weights, or when they
    are not cached and the weight host cannot be reached.
    """
    from timm.models import get_pretrained_cfg

    cfg = get_pretrained_cfg(arch)
    hub_id = getattr(cfg, "hf_hub_id", None) if cfg is not None else None
    url = getattr(cfg, "url", None) if cfg is not None else None
    if cfg is None or getattr(cfg, "file", None) or getattr(cfg, "state_dict", None):
        if cfg is None:
            raise ModelError(
                f"timm has no pretrained weights for {arch}",
                fix="set pretrained=False to train from scratch, pick a model listed by "
                "timm.list_pretrained(), or give pretrained_file=",
            )
        return None  # timm's config already points at a local file or state dict
    if hub_id:
        cached = _hf_cached_file(hub_id, getattr(cfg, "hf_hub_filename", None))
        if cached is not None:
            logger.info("using cached weights for %s: %s", arch, cached)
            return cached
        from huggingface_hub import constants

        repo = hub_id.split("@")[0]
        fix = (
            f"download the weights (https://huggingface.co/{repo}, file model.safetensors) on a "
            "machine with network access and pass pretrained_file=<path>, or set "
            "pretrained=False to train from scratch on purpose"
        )
        if constants.HF_HUB_OFFLINE:
            raise ModelError(
                f"pretrained weights for {arch} are not in the local Hugging Face cache and "
                "HF_HUB_OFFLINE is set",
                fix=fix,
            )
        endpoint = constants.ENDPOINT
        if not _reachable(endpoint):
            raise ModelError(
                f"pretrained weights for {arch} are not in the local cache and the Hugging Face "
                f"hub ({endpoint}) is unreachable (no answer within {HUB_PROBE_TIMEOUT_S:g} s)",
                fix=fix,
            )
        return None
    if url:
        cached = _torch_hub_cached_file(url)
        if cached is not None:
            logger.info("using cached weights for %s: %s", arch, cached)
            return cached
        if not _reachable(url):
            raise ModelError(
                f"pretrained weights for {arch} are not in the torch hub cache and {url} is "
                f"unreachable (no answer within {HUB_PROBE_TIMEOUT_S:g} s)",
                fix=f"download {url} on a machine with network access and pass "
                "pretrained_file=<path>, or set pretrained=False to train from scratch on purpose",
            )
        return None
    raise ModelError(
        f"timm has no pretrained weights for {arch}",
        fix="set pretrained=False to train from scratch, pick a model listed by "
        "timm.list_pretrained(), or give pretrained_file=",
    )


def _check_hub_for_remote_name(name: str) -> None:
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return  # huggingface_hub reads its cache without asking the network
    if not _reachable(constants.ENDPOINT):
        raise ModelError(
            f"{name} is defined on the Hugging Face hub, which is unreachable "
            f"({constants.ENDPOINT}, no answer within {HUB_PROBE_TIMEOUT_S:g} s)",
            fix="use a timm.list_models() name (with pretrained_file= for weights), or set "
            "HF_HUB_OFFLINE=1 if the model is already in the local Hugging Face cache",
        )


def _hf_cached_file(hub_id: str, filename: str | None) -> str | None:
    from huggingface_hub import try_to_load_from_cache

    repo, _, revision = hub_id.partition("@")
    for candidate in (filename,) if filename else _HF_WEIGHT_FILES:
        found = try_to_load_from_cache(repo, candidate, revision=revision or None)
        if isinstance(found, str) and os.path.isfile(found):
            return found
    return None


def _torch_hub_cached_file(url: str) -> str | None:
    import torch.hub

    name = os.path.basename(urllib.parse.urlparse(url).path)
    path = Path(torch.hub.get_dir()) / "checkpoints" / name
    return str(path) if name and path.is_file() else None


def _reachable(url: str, timeout_s: float = HUB_PROBE_TIMEOUT_S) -> bool:
    """Whether the host of ``url`` answers an HTTP HEAD request (any status) in time.

    Uses urllib, so the usual proxy variables apply.
    """
    if urllib.parse.urlparse(url).scheme not in ("http", "https"):
        return True  # not a network location; let timm deal with it
    request = urllib.request.Request(url, method="HEAD")
    try:
        with urllib.request.urlopen(request, timeout=timeout_s):
            return True
    except urllib.error.HTTPError:
        return True  # the server answered, with an error status
    except (OSError, ValueError) as exc:
        logger.debug("%s is unreachable: %s", url, exc)
        return False

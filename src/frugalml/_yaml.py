"""Reading a YAML spec file into a mapping, with one clear error for each way it can fail."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from frugalml.errors import ConfigError


def read_yaml_mapping(path: str | Path, *, keys_hint: str, example: str) -> Mapping[str, Any]:
    """The top-level mapping of the YAML file at ``path`` (read with ``yaml.safe_load``).

    ``keys_hint`` names a few expected keys and ``example`` a file to copy, both for the
    messages: a missing file, a directory, non-UTF-8 text, a syntax error (with its line and
    column) and a document that is not a mapping each raise :class:`ConfigError`.
    """
    import yaml

    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            f"spec file {path} does not exist", fix=f"check the path (see {example})"
        ) from None
    except IsADirectoryError:
        raise ConfigError(
            f"{path} is a directory, not a spec file", fix="give the YAML file"
        ) from None
    except UnicodeDecodeError:
        raise ConfigError(f"spec file {path} is not UTF-8 text", fix="save it as UTF-8") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(
            f"spec file {path} is not valid YAML{where}: {problem}",
            fix="fix the YAML syntax (indentation, colons, brackets)",
        ) from None
    if not isinstance(data, Mapping):
        raise ConfigError(
            f"spec file {path} must hold a mapping of keys ({keys_hint})",
            fix=f"see {example}",
        )
    return data

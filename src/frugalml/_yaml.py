"""Reading and checking YAML spec files (study and tuning specs share these checks)."""

from __future__ import annotations

import logging
import math
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from frugalml.errors import ConfigError

logger = logging.getLogger(__name__)


#: The most values a spec may expand into (YAML aliases can make a few lines expand into
#: billions: "billion laughs"); a real spec holds a few hundred.
MAX_SPEC_VALUES = 100_000


def _safe_loader() -> Any:
    """``yaml.SafeLoader`` (the constructors of ``yaml.safe_load``, nothing more) that
    refuses a key given twice in one mapping: YAML would silently keep the last one."""
    import yaml

    class SpecLoader(yaml.SafeLoader):
        def construct_mapping(self, node: Any, deep: bool = False) -> Any:
            seen: dict[Any, int] = {}
            for key_node, _ in node.value:
                if not isinstance(key_node, yaml.ScalarNode) or key_node.value == "<<":
                    continue
                key = (key_node.tag, key_node.value)
                line = key_node.start_mark.line + 1
                if key in seen:
                    raise ConfigError(
                        f"key {key_node.value!r} is given twice (lines {seen[key]} and {line}); "
                        "YAML would silently keep the second",
                        fix="keep one of the two",
                    )
                seen[key] = line
            return super().construct_mapping(node, deep=deep)

    return SpecLoader


_PLAIN = (str, int, float, bool, type(None))


def _check_values(data: Any, path: Path) -> None:
    """Refuse a document that expands into more than :data:`MAX_SPEC_VALUES` values,
    counting an aliased value each time it is used (iteratively: no recursion), or that holds
    a value that is not plain data: YAML reads ``2024-01-31`` as a date and ``!!set``,
    ``!!binary`` as sets and bytes, which no spec key takes (and JSON cannot store)."""
    stack, count = [data], 0
    while stack:
        item = stack.pop()
        count += 1
        if count > MAX_SPEC_VALUES:
            raise ConfigError(
                f"spec file {path} expands into more than {MAX_SPEC_VALUES:,} values "
                "(YAML aliases that repeat one another?)",
                fix="write the values out, without nested &anchor/*alias repeats",
            )
        if isinstance(item, Mapping):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif not isinstance(item, _PLAIN):
            raise ConfigError(
                f"spec file {path} holds {item!r}, which YAML read as a "
                f"{type(item).__name__}, not as text, a number or a list",
                fix="put it in quotes if it is text, or write a plain value",
            )


#: The largest spec file read (a real one is a few kB; this keeps a wrong file from filling
#: the memory).
MAX_SPEC_BYTES = 4 * 2**20


def read_yaml_mapping(path: str | Path, *, keys_hint: str, example: str) -> Mapping[str, Any]:
    """The top-level mapping of the YAML file at ``path``, read with ``yaml.safe_load``'s
    constructors.

    ``keys_hint`` names a few expected keys and ``example`` a file to copy, both for the
    messages: a missing file, a directory, non-UTF-8 text, a syntax error (with its line and
    column), a key given twice, nesting too deep to read, aliases that expand into more than
    :data:`MAX_SPEC_VALUES` values, and a document that is not a mapping each raise
    :class:`ConfigError`.
    """
    import yaml

    path = Path(path)
    try:
        size = path.stat().st_size if path.is_file() else 0
        if size > MAX_SPEC_BYTES:
            raise ConfigError(
                f"spec file {path} is {size / 2**20:.1f} MiB, more than a spec can be "
                f"({MAX_SPEC_BYTES // 2**20} MiB)",
                fix=f"check that this is the spec you meant (see {example})",
            )
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
        data = yaml.load(text, Loader=_safe_loader())  # a SafeLoader: safe_load's constructors
    except ConfigError as exc:  # a key given twice
        raise ConfigError(f"spec file {path}: {exc.message}", fix=exc.fix) from None
    except RecursionError:
        raise ConfigError(
            f"spec file {path} nests its values too deeply to read",
            fix="flatten the spec: a spec needs at most a few levels of nesting",
        ) from None
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
    _check_values(data, path)
    return data


_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


def check_spec_keys(
    data: Mapping[str, Any],
    keys: Mapping[str, str],
    *,
    required: tuple[str, ...],
    source: str,
    kind: str = "spec",
) -> None:
    """Unknown keys and missing required ones are errors that name them.

    ``keys`` maps every valid key to a short description, used in the fix.
    """
    unknown = sorted(set(map(str, data)) - set(keys))
    if unknown:
        raise ConfigError(
            f"unknown {kind} key(s) in {source}: {', '.join(unknown)}",
            fix=f"valid keys are: {', '.join(keys)}",
        )
    for key in required:
        if key not in data:
            raise ConfigError(f"{kind} {source} lacks {key!r}", fix=f"add {key}: {keys[key]}")


def check_name(name: Any) -> str:
    """A study name: letters, digits, ``_ . -``, up to 100 characters."""
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise ConfigError(
            f"spec name {name!r} is not a valid study name",
            fix="use letters, digits, _ . - (up to 100 characters)",
        )
    return name


def parse_number(value: Any, where: str) -> float:
    """A finite number from YAML (which reads ``5e-4`` without a dot as a string).

    A boolean is not a number, and ``.nan``/``.inf`` are refused.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ConfigError(f"{where} must be a number, got {value!r}", fix="write a number")
    try:
        number = float(value)
    except (ValueError, OverflowError):
        raise ConfigError(
            f"{where} must be a number, got {value!r}", fix="write a number"
        ) from None
    if not math.isfinite(number):
        raise ConfigError(f"{where} must be a finite number, got {value!r}", fix="write a number")
    return number


#: The longest time limit a study or tuning run takes (a year: beyond is a typo).
MAX_SECONDS = 365 * 24 * 3600.0


def parse_seconds(
    value: Any, where: str, *, example: str = "3600", warn_below: float | None = None
) -> float:
    """A time limit: a finite number of seconds in (0, one year].

    Shared by spec keys (``trial_timeout_s``) and command-line options
    (``--trial-timeout-s``, ``--calibration-cap-s``), so ``-5`` and ``nan`` are refused the
    same way everywhere. A limit below ``warn_below`` is legal but logged as a warning.
    """
    try:
        seconds = parse_number(value, where)
    except ConfigError as exc:
        raise ConfigError(
            exc.message, fix=f"give a positive number of seconds, e.g. {example}"
        ) from None
    if not 0 < seconds <= MAX_SECONDS:
        raise ConfigError(
            f"{where} must be a positive number of seconds up to {MAX_SECONDS:.0f} (a year), "
            f"got {value!r}",
            fix=f"give e.g. {example}",
        )
    if warn_below is not None and seconds < warn_below:
        logger.warning(
            "warning: %s is %g s: a trial's set-up alone (imports, data, model) takes a few "
            "seconds, so most trials would time out",
            where,
            seconds,
        )
    return seconds


def parse_image_size(value: Any) -> int | None:
    """``image_size``: None, or an integer number of pixels a side in [4, 1024]."""
    if value is not None and (
        isinstance(value, bool) or not isinstance(value, int) or not 4 <= value <= 1024
    ):
        raise ConfigError(
            f"image_size must be an integer in [4, 1024], got {value!r}",
            fix="e.g. image_size: 32, or remove it",
        )
    return value


_CARBON_KEYS = ("country", "intensity_g_per_kwh", "pue")


def parse_carbon(value: Any) -> dict[str, Any]:
    """A spec's ``carbon:`` mapping (country, intensity_g_per_kwh, pue), checked now.

    Study and tuning specs share it: the country code is looked up in the shipped table and
    the numbers are range-checked, so a spec that validates never fails on carbon later.
    """
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(
            f"carbon must be a mapping, got {value!r}",
            fix="e.g. carbon: {country: DK, pue: 1.2}",
        )
    carbon = {str(k): v for k, v in value.items()}
    unknown = sorted(set(carbon) - set(_CARBON_KEYS))
    if unknown:
        raise ConfigError(
            f"unknown carbon key(s): {', '.join(unknown)}", fix=f"use {', '.join(_CARBON_KEYS)}"
        )
    for key in ("intensity_g_per_kwh", "pue"):
        if carbon.get(key) is not None:
            carbon[key] = parse_number(carbon[key], f"carbon.{key}")
    country = carbon.get("country")
    if country is not None and not isinstance(country, str):
        raise ConfigError(
            f"carbon.country must be a country code, got {country!r}", fix="e.g. country: DK"
        )
    carbon = {k: v for k, v in carbon.items() if v is not None}
    from frugalml.meter import CarbonConfig, resolve_carbon

    resolve_carbon(CarbonConfig(**carbon))  # ranges and the country code, now
    return carbon


#: The most trials side by side, or torch threads per trial, a study takes.
MAX_PARALLEL = 1024


def parse_count(value: Any, where: str, *, high: int = MAX_PARALLEL, example: str = "2") -> int:
    """A whole number in [1, ``high``]: ``workers``/``threads`` in a spec and ``--workers``/
    ``--threads`` on the command line (100,000 threads fail every trial with "can't start
    new thread"). More than this machine's cores is legal and logged as a warning."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= high:
        raise ConfigError(
            f"{where} must be a whole number in [1, {high}], got {value!r}",
            fix=f"e.g. {where} {example}" if where.startswith("--") else f"e.g. {where}: {example}",
        )
    cores = os.cpu_count() or 1
    if value > cores:
        logger.warning("%s is %d, more than this machine's %d logical CPUs", where, value, cores)
    return value

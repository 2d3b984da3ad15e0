"""Column mappings: report on anyone's results table as it is.

``--column ROLE=COL`` says which column of a table plays which part; the mapped columns are
added to the table under frugalml's names (the table's own columns stay as they are):

========================  =====================================================
role                      added as
========================  =====================================================
``model``                 ``model``
``performance``           ``accuracy`` (a fraction in [0, 1])
``energy_j``              ``energy_j`` and ``train_energy_j`` (joules)
``energy_kwh``            the same, converted from kWh (x 3.6e6)
``co2_g``                 ``co2_g`` and ``train_co2_g`` (grams CO2e)
``time_s`` / ``time_h``   ``duration_s`` and ``train_duration_s`` (seconds)
``params``                ``params`` (parameter count)
``setting`` (repeatable)  the columns that make a setting (PePR's normalisation group)
========================  =====================================================

A published table's energy is that of the training, so it is PePR-E's resource
(``train_energy_j``) as well as the total. Setting columns are kept as they are for
``frugalml pepr --group``; for the report, whose settings are ``dataset``, ``pretrained`` and
``fraction``, setting columns by other names are joined into ``dataset`` (``derma | pt``).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, get_args

import pandas as pd

from frugalml.errors import ConfigError
from frugalml.meter import J_PER_KWH

__all__ = [
    "ROLES",
    "ColumnMapping",
    "Role",
    "apply_mapping",
    "mapped_resources",
    "parse_column_mapping",
]

Role = Literal[
    "model",
    "performance",
    "energy_j",
    "energy_kwh",
    "co2_g",
    "time_s",
    "time_h",
    "params",
    "setting",
]
ROLES: tuple[str, ...] = get_args(Role)

_S_PER_H = 3600.0
#: role -> (the names it is added as, the factor to frugalml's unit)
_TARGETS: dict[str, tuple[tuple[str, ...], float]] = {
    "model": (("model",), 1.0),
    "performance": (("accuracy",), 1.0),
    "energy_j": (("energy_j", "train_energy_j"), 1.0),
    "energy_kwh": (("energy_j", "train_energy_j"), J_PER_KWH),
    "co2_g": (("co2_g", "train_co2_g"), 1.0),
    "time_s": (("duration_s", "train_duration_s"), 1.0),
    "time_h": (("duration_s", "train_duration_s"), _S_PER_H),
    "params": (("params",), 1.0),
}
_REPORT_SETTINGS = ("dataset", "pretrained", "fraction")
_FIX = (
    "give ROLE=COLUMN with ROLE one of " + ", ".join(ROLES) + ", e.g. --column performance=test_09"
)


@dataclass(frozen=True)
class ColumnMapping:
    """Which column plays which role (``columns``) and the setting columns, in order."""

    columns: Mapping[str, str] = field(default_factory=dict)
    settings: tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        return not self.columns and not self.settings

    def has(self, role: str) -> bool:
        return role in self.columns


def parse_column_mapping(items: Iterable[str]) -> ColumnMapping:
    """``["performance=test_09", "energy_kwh=energy (kWh)", "setting=dataset"]`` -> mapping."""
    columns: dict[str, str] = {}
    settings: list[str] = []
    for item in items:
        role, sep, column = str(item).partition("=")
        role, column = role.strip(), column.strip()
        if not sep or not role or not column:
            raise ConfigError(f"--column {item!r} is not ROLE=COLUMN", fix=_FIX)
        if role not in ROLES:
            raise ConfigError(f"--column {item!r}: unknown role {role!r}", fix=_FIX)
        if role == "setting":
            if column not in settings:
                settings.append(column)
            continue
        if role in columns and columns[role] != column:
            raise ConfigError(
                f"--column {role}= is given twice ({columns[role]!r} and {column!r})",
                fix="give each role once (setting may repeat)",
            )
        columns[role] = column
    units = [r for r in ("energy_j", "energy_kwh") if r in columns]
    times = [r for r in ("time_s", "time_h") if r in columns]
    for clash in (units, times):
        if len(clash) > 1:
            raise ConfigError(
                f"--column {clash[0]}= and {clash[1]}= both give the same quantity",
                fix=f"keep one of {clash[0]} and {clash[1]}",
            )
    return ColumnMapping(columns, tuple(settings))


def _missing(table: pd.DataFrame, column: str, role: str) -> ConfigError:
    names = [str(c) for c in table.columns]
    close = difflib.get_close_matches(column, names, n=1, cutoff=0.5)
    starts = [n for n in names if n.lower().startswith(column.lower())]
    hint = close[0] if close else (starts[0] if starts else None)
    return ConfigError(
        f"--column {role}={column}: the table has no column {column!r}"
        + (f" (did you mean {hint!r}?)" if hint else ""),
        fix="its columns are: " + ", ".join(repr(n) for n in names[:30]),
    )


def _numeric(series: pd.Series, column: str, role: str) -> pd.Series:
    values = pd.to_numeric(series, errors="coerce")
    bad = series.notna() & values.isna()
    if bool(bad.any()):
        first = series.index[bad][0]
        raise ConfigError(
            f"--column {role}={column}: {series[first]!r} (row {first}) is not a number",
            fix=f"map a numeric column to {role}, or clean the table",
        )
    return values.astype("float64")


def apply_mapping(
    table: pd.DataFrame, mapping: ColumnMapping, *, join_settings: bool = False
) -> tuple[pd.DataFrame, list[str]]:
    """The table with the mapped columns added under frugalml's names, and its setting
    columns. With ``join_settings`` (the report), settings not named ``dataset``,
    ``pretrained`` or ``fraction`` are joined into one ``dataset`` column."""
    for role, column in mapping.columns.items():
        if column not in table.columns:
            raise _missing(table, column, role)
    for column in mapping.settings:
        if column not in table.columns:
            raise _missing(table, column, "setting")
    out = table.copy()
    sources = set(mapping.columns.values()) | set(mapping.settings)
    for role, column in mapping.columns.items():
        targets, factor = _TARGETS[role]
        values = out[column] if role == "model" else _numeric(out[column], column, role)
        if factor != 1.0:
            values = values * factor
        for target in targets:
            if target in table.columns and target not in sources:
                raise ConfigError(
                    f"--column {role}={column}: the table already has a column {target!r}",
                    fix=f"map {target!r} itself (--column {role}={target}), or rename one",
                )
            out[target] = values
    settings = list(mapping.settings)
    if join_settings and settings and not set(settings) <= set(_REPORT_SETTINGS):
        if "dataset" in table.columns and "dataset" not in settings:
            raise ConfigError(
                "the setting columns would be joined into 'dataset', which the table has",
                fix="add --column setting=dataset, or rename that column",
            )
        out["dataset"] = (
            out[settings].astype("string").fillna("").agg(" | ".join, axis=1).astype(object)
        )
        settings = ["dataset"]
    return out, settings


def mapped_resources(mapping: ColumnMapping) -> Sequence[str]:
    """The frugalml resource columns the mapping provides (for ``frugalml pepr``)."""
    found = []
    for role, name in (
        ("energy_j", "energy_j"),
        ("energy_kwh", "energy_j"),
        ("co2_g", "co2_g"),
        ("time_s", "duration_s"),
        ("time_h", "duration_s"),
        ("params", "params"),
    ):
        if mapping.has(role) and name not in found:
            found.append(name)
    return found

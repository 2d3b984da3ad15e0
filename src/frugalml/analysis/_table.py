"""Checks shared by the analysis modules: column look-up, numeric columns, group keys.

Every check raises a :mod:`frugalml.errors` exception whose message names the column and,
for bad values, the first offending row. Rows are named by the table's index label: ``row 3``
for an unnamed index, ``data row 3`` when the index is named ``data row`` (the command line
numbers the rows of a CSV that way, from 1 after the header).
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pandas as pd

from frugalml.errors import ConfigError, DataError

#: Float array with one entry per table row.
FloatArray = npt.NDArray[np.float64]
#: Integer array with one entry per table row (group codes, positions).
IntArray = npt.NDArray[np.intp]
#: Boolean mask with one entry per table row.
BoolArray = npt.NDArray[np.bool_]

_MAX_LISTED = 40


def as_columns(columns: str | Sequence[str] | None, *, role: str) -> list[str]:
    """``None``, one name or a sequence of names as a list of distinct names."""
    if columns is None:
        return []
    if isinstance(columns, str):
        return [columns]
    names = list(columns)
    for name in names:
        if not isinstance(name, str):
            raise ConfigError(
                f"{role} column names must be strings, got {name!r}",
                fix=f"pass the {role} column by its name",
            )
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise ConfigError(f"{role} column {name!r} is given twice", fix="name each column once")
        seen.add(name)
    return names


def check_table(table: object) -> pd.DataFrame:
    """The table itself, if it is a DataFrame with at least one row."""
    if not isinstance(table, pd.DataFrame):
        raise ConfigError(
            f"expected a pandas DataFrame, got {type(table).__name__}",
            fix="load the table first, e.g. pandas.read_csv(path)",
        )
    if len(table.index) == 0:
        raise DataError("the table has no rows", fix="pass a table with at least one result row")
    return table


def list_columns(table: pd.DataFrame) -> str:
    """The table's column names for an error message (the first few if there are many)."""
    names = [str(c) for c in table.columns]
    if not names:
        return "(none)"
    shown = ", ".join(names[:_MAX_LISTED])
    if len(names) > _MAX_LISTED:
        shown += f", ... ({len(names) - _MAX_LISTED} more)"
    return shown


def require_columns(table: pd.DataFrame, columns: Sequence[str], *, role: str) -> None:
    """Raise :class:`ConfigError` naming the missing columns and listing those present."""
    missing = [c for c in columns if c not in table.columns]
    if missing:
        what = ", ".join(repr(c) for c in missing)
        noun = "column" if len(missing) == 1 else "columns"
        raise ConfigError(
            f"{role} {noun} {what} not in the table; available columns: {list_columns(table)}",
            fix="use one of the available column names",
        )


def row_name(table: pd.DataFrame, position: int) -> str:
    """How messages refer to the row at ``position``: ``row 3``, or ``<index name> 3``."""
    label: Hashable = table.index[position]
    kind = table.index.name if isinstance(table.index.name, str) else "row"
    return f"{kind} {label}"


def row_names(table: pd.DataFrame, mask: BoolArray, *, limit: int = 5) -> str:
    """The rows selected by ``mask`` for a message, e.g. ``rows 3, 7, ...``."""
    positions = np.flatnonzero(mask)
    kind = table.index.name if isinstance(table.index.name, str) else "row"
    labels = [str(table.index[p]) for p in positions[:limit]]
    more = ", ..." if len(positions) > limit else ""
    plural = "s" if len(positions) > 1 else ""
    return f"{kind}{plural} {', '.join(labels)}{more}"


def numeric_column(table: pd.DataFrame, column: str, *, role: str) -> FloatArray:
    """The column as float64 values; missing values become NaN.

    Raises :class:`DataError` for text that is not a number, for True/False columns and for
    infinite values, naming the column and the first bad row.
    """
    raw = table[column]
    if pd.api.types.is_bool_dtype(raw.dtype):
        raise DataError(
            f"{role} column {column!r} holds True/False values, not numbers",
            fix=f"choose a numeric {role} column",
        )
    values = pd.to_numeric(raw, errors="coerce")
    bad: BoolArray = (values.isna() & raw.notna()).to_numpy(dtype=bool)
    if bad.any():
        first = int(np.argmax(bad))
        raise DataError(
            f"{role} column {column!r} has a non-numeric value {raw.iloc[first]!r} "
            f"at {row_name(table, first)}",
            fix=f"make every value of {column!r} a number, or leave it empty if it is missing",
        )
    array: FloatArray = values.to_numpy(dtype=np.float64, na_value=np.nan)
    infinite: BoolArray = np.isinf(array)
    if infinite.any():
        first = int(np.argmax(infinite))
        raise DataError(
            f"{role} column {column!r} has an infinite value at {row_name(table, first)}",
            fix=f"replace it with a finite number, or leave it empty if {column!r} is missing",
        )
    return array


def group_codes(table: pd.DataFrame, group: Sequence[str]) -> IntArray:
    """One integer per row naming its group, in order of first appearance.

    Without group columns every row is in group 0. A missing value in a group column forms
    its own group rather than dropping the row.
    """
    if not group:
        return np.zeros(len(table.index), dtype=np.intp)
    codes = table.groupby(list(group), sort=False, dropna=False).ngroup()
    result: IntArray = np.asarray(codes.to_numpy(), dtype=np.intp)
    return result


def group_label(table: pd.DataFrame, group: Sequence[str], position: int) -> str:
    """The group of the row at ``position`` in words, e.g. ``dataset='derma', fraction=0.1``."""
    return ", ".join(f"{g}={_plain(table[g].iloc[position])!r}" for g in group)


def group_setting(table: pd.DataFrame, group: Sequence[str], position: int) -> dict[str, object]:
    """The group of the row at ``position`` as a ``{column: value}`` mapping."""
    return {g: _plain(table[g].iloc[position]) for g in group}


def human_count(value: float) -> str:
    """A count in words: 24600000 -> ``24.6M``, 1500 -> ``1.5k``."""
    for factor, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= factor:
            return f"{value / factor:.3g}{suffix}"
    return f"{value:.3g}"


def _plain(value: object) -> object:
    """NumPy scalars as Python scalars, so settings print as ``True`` and ``0.1``."""
    if isinstance(value, np.generic):
        return value.item()
    return value


def read_csv_table(
    source: str | Path, *, row_noun: str = "row", nullable: bool = False
) -> pd.DataFrame:
    """Read a CSV of results (``"-"``: standard input) with one clear error per problem.

    ``row_noun`` names a row in the messages ("result", "trial"); ``nullable`` reads with
    pandas' nullable dtypes, so an integer column with gaps stays integer.

    Raises:
        DataError: the file is missing, a directory, empty, not a CSV, not UTF-8, or has a
            header but no rows.
    """
    import sys

    name = "stdin" if source == "-" else str(source)
    if source != "-" and Path(source).is_dir():
        raise DataError(f"{name} is a directory, not a CSV file", fix="give the CSV file")
    options = {"dtype_backend": "numpy_nullable"} if nullable else {}
    try:
        table: pd.DataFrame = pd.read_csv(  # type: ignore[call-overload]
            sys.stdin if source == "-" else source, **options
        )
    except FileNotFoundError as exc:
        raise DataError(f"no such file: {name}", fix="check the path of the CSV") from exc
    except pd.errors.EmptyDataError as exc:
        raise DataError(
            f"{name} is empty", fix=f"pass a CSV with a header row and one row per {row_noun}"
        ) from exc
    except pd.errors.ParserError as exc:
        detail = " ".join(str(exc).split())
        raise DataError(f"{name} is not a valid CSV: {detail}", fix="check the file") from exc
    except UnicodeDecodeError as exc:
        raise DataError(f"{name} is not UTF-8 text", fix="save the CSV as UTF-8") from exc
    if len(table.index) == 0:
        raise DataError(
            f"{name} has a header but no data rows", fix=f"pass a CSV with one row per {row_noun}"
        )
    return table

"""Numbers and names as a person reads them, with the unit in every string.

Every formatter takes a float that may be NaN (a missing value) and returns ``"n/a"`` for
it, so tables never show ``nan``. Text from users (model names, error messages) passes
through :func:`plain_text` before it reaches a terminal, which drops control characters
(a model name cannot move the cursor or change colours).

The energy and time formatters are written once in :mod:`frugalml._format` (beside the
terminal's compact forms) and re-exported here with the table formatters.
"""

from __future__ import annotations

import math
import unicodedata

import pandas as pd

from frugalml._format import (
    J_PER_WH,
    MISSING,
    fmt_duration,
    fmt_energy,
    fmt_joules,
    fmt_wh,
)
from frugalml._format import sig as _sig

__all__ = [
    "J_PER_WH",
    "MISSING",
    "fmt_bytes",
    "fmt_co2",
    "fmt_count",
    "fmt_duration",
    "fmt_energy",
    "fmt_fixed",
    "fmt_flops",
    "fmt_joules",
    "fmt_p_value",
    "fmt_percent",
    "fmt_wh",
    "is_missing",
    "plain_text",
]


def is_missing(value: object) -> bool:
    """True for None, NaN and pandas' NA."""
    if value is None:
        return True
    try:
        return bool(pd.isna(value))  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return False


def fmt_fixed(value: float, decimals: int = 3) -> str:
    """A score or fraction with a fixed number of decimals: ``0.928``."""
    return MISSING if math.isnan(value) else f"{value:.{decimals}f}"


def fmt_co2(value_g: float) -> str:
    """CO2-equivalent mass in grams (kg above 1,000 g): ``0.0213 g``."""
    if math.isnan(value_g):
        return MISSING
    if value_g >= 1000.0:
        return f"{_sig(value_g / 1000.0)} kg"
    return f"{_sig(value_g)} g"


def fmt_bytes(value: float) -> str:
    """A size in decimal units: ``712 MB`` (1 MB = 10^6 bytes)."""
    if math.isnan(value):
        return MISSING
    for factor, unit in ((1e12, "TB"), (1e9, "GB"), (1e6, "MB"), (1e3, "kB")):
        if abs(value) >= factor:
            return f"{_sig(value / factor)} {unit}"
    return f"{value:.0f} B"


def fmt_count(value: float) -> str:
    """A count in words: ``24.6M``, ``1.5k``, ``812``."""
    if math.isnan(value):
        return MISSING
    for factor, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= factor:
            return f"{value / factor:.3g}{suffix}"
    return f"{value:.3g}"


def fmt_flops(value: float) -> str:
    """FLOPs per sample: ``12.3M``."""
    return fmt_count(value)


def fmt_percent(fraction: float) -> str:
    """A fraction as a percentage: 0.1 -> ``10%``, 0.125 -> ``12.5%``."""
    return MISSING if math.isnan(fraction) else f"{100.0 * fraction:g}%"


def fmt_p_value(p: float) -> str:
    """``p = 0.031``, ``p = 2.1e-05``, ``p = n/a``."""
    if math.isnan(p):
        return f"p = {MISSING}"
    if p < 0.001:
        return f"p = {p:.1e}"
    return f"p = {p:.3f}"


def plain_text(value: object, *, limit: int | None = None) -> str:
    """Text safe for a terminal or a table cell: one line, no control characters.

    Line breaks and tabs become spaces; other control and format characters (escape
    sequences, bidirectional overrides) are dropped. ``limit`` cuts long text with ``...``.
    """
    if is_missing(value):
        return ""
    text = str(value)
    kept = []
    for char in text:
        if char in "\r\n\t":
            kept.append(" ")
        elif unicodedata.category(char) in ("Cc", "Cf"):
            continue
        else:
            kept.append(char)
    line = " ".join("".join(kept).split())
    if limit is not None and len(line) > limit:
        line = line[: max(0, limit - 3)] + "..."
    return line

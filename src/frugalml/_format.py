"""Energy and time as a person reads them: the one place their formatting is written.

Two forms of each, for two kinds of reader:

- the report's (:func:`fmt_energy`, :func:`fmt_duration`): NaN is ``n/a``, energy in J with
  Wh or kWh beside it (``178 J (0.0494 Wh)``), seconds to three significant figures;
  re-exported by :mod:`frugalml.report._format` with the other table formatters;
- the terminal's compact one (:func:`fmt_energy_compact`, :func:`fmt_time`): one unit that
  fits a progress line (``2,480 J``, ``1.41 Wh``, ``4.5 min``), None or NaN is ``?``; the
  commands use it as ``frugalml.cli._format.fmt_energy`` / ``fmt_time``.

Importing this module loads nothing beyond the standard library and ``frugalml.meter``'s
constants.
"""

from __future__ import annotations

import math

from frugalml.meter import J_PER_KWH

__all__ = [
    "J_PER_WH",
    "MISSING",
    "fmt_duration",
    "fmt_energy",
    "fmt_energy_compact",
    "fmt_joules",
    "fmt_time",
    "fmt_wh",
    "sig",
]

#: Joules in one watt-hour.
J_PER_WH = 3600.0
#: How a missing value is shown in a report.
MISSING = "n/a"


def sig(value: float, digits: int = 3) -> str:
    """``value`` with ``digits`` significant figures, thousands separated, never ``1e+03``."""
    if value == 0:
        return "0"
    magnitude = math.floor(math.log10(abs(value)))
    decimals = max(0, digits - 1 - magnitude)
    return f"{value:,.{decimals}f}"


def fmt_joules(value: float) -> str:
    """Energy in joules: ``178 J``, ``12,345 J``, ``0.512 J``."""
    return MISSING if math.isnan(value) else f"{sig(value)} J"


def fmt_wh(value_j: float) -> str:
    """Energy given in joules, shown in watt-hours: ``0.0494 Wh``."""
    return MISSING if math.isnan(value_j) else f"{sig(value_j / J_PER_WH)} Wh"


def fmt_energy(value_j: float) -> str:
    """Energy in J and Wh (or kWh above 1,000 Wh): ``178 J (0.0494 Wh)``."""
    if math.isnan(value_j):
        return MISSING
    wh = value_j / J_PER_WH
    other = f"{sig(wh / 1000.0)} kWh" if wh >= 1000.0 else f"{sig(wh)} Wh"
    return f"{sig(value_j)} J ({other})"


def fmt_duration(value_s: float) -> str:
    """A duration: ``16.4 s``, ``12.5 min``, ``3.2 h``."""
    if math.isnan(value_s):
        return MISSING
    if value_s >= 3600.0:
        return f"{value_s / 3600.0:.1f} h"
    if value_s >= 120.0:
        return f"{value_s / 60.0:.1f} min"
    return f"{sig(value_s)} s"


def fmt_energy_compact(joules: float | None) -> str:
    """``0.42 mJ``, ``12.3 J``, ``2,480 J``, ``1.41 Wh``, ``0.123 kWh``; ``?`` when unknown."""
    if joules is None or not math.isfinite(joules):
        return "?"
    if joules >= 0.1 * J_PER_KWH:
        return f"{joules / J_PER_KWH:.4g} kWh"
    if joules >= J_PER_WH:
        return f"{joules / J_PER_WH:.3g} Wh"
    if joules >= 1000:
        return f"{joules:,.0f} J"
    if 0 < joules < 0.1:
        return f"{joules * 1e3:.3g} mJ"
    return f"{joules:.3g} J"


def fmt_time(seconds: float) -> str:
    """``12.3 s``, ``4.5 min``, ``1.2 h``."""
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    if seconds >= 60:
        return f"{seconds / 60:.1f} min"
    return f"{seconds:.1f} s"

"""How the commands write energy and time on the terminal (one way for every command)."""

from __future__ import annotations

import math


def fmt_energy(joules: float | None) -> str:
    """``0.42 mJ``, ``12.3 J``, ``2,480 J``, ``1.41 Wh``, ``0.123 kWh``; ``?`` when unknown."""
    if joules is None or not math.isfinite(joules):
        return "?"
    if joules >= 3.6e5:
        return f"{joules / 3.6e6:.4g} kWh"
    if joules >= 3600:
        return f"{joules / 3600:.3g} Wh"
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

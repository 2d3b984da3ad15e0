"""The figures of a :class:`Measurement` as flat log fields, shared by every integration."""

from __future__ import annotations

from frugalml.meter import Measurement

__all__ = ["metric_fields", "provenance_fields"]


def metric_fields(m: Measurement, prefix: str = "") -> dict[str, float]:
    """Energy, CO2 and time as numbers, units in the names (``energy_j``, ``co2_g``, ...)."""
    return {
        f"{prefix}energy_j": m.energy_j,
        f"{prefix}energy_kwh": m.energy_kwh,
        f"{prefix}measured_energy_j": m.measured_energy_j,
        f"{prefix}estimated_energy_j": m.estimated_energy_j,
        f"{prefix}co2_g": m.co2_g,
        f"{prefix}duration_s": m.duration_s,
        f"{prefix}cpu_time_s": m.cpu_time_s,
    }


def provenance_fields(m: Measurement, prefix: str = "") -> dict[str, str]:
    """Where the figures came from: measured/estimated/mixed, the counters, the intensity."""
    return {
        f"{prefix}energy_provenance": m.provenance,
        f"{prefix}energy_source": m.energy_source,
        f"{prefix}intensity_g_per_kwh": f"{m.intensity_g_per_kwh:g}",
        f"{prefix}intensity_source": m.intensity_source,
        f"{prefix}pue": f"{m.pue:g}",
    }

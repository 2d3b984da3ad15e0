"""Carbon: ``co2_g = energy_kwh x PUE x intensity_g_per_kwh``, offline, always.

The intensity of electricity (gCO2e/kWh) comes from, in order: ``CarbonConfig``'s
``intensity_g_per_kwh``, its ``country``, the environment variables
``FRUGALML_INTENSITY_G_PER_KWH`` and ``FRUGALML_COUNTRY``, and last the world average
(:data:`WORLD_INTENSITY_G_PER_KWH`). Countries are looked up in ``carbon_intensity.csv``,
shipped with this package (ISO 3166-1 alpha-2 or alpha-3 codes; lifecycle intensities from
Our World in Data, based on Ember and the Energy Institute; each row states its year). The
PUE (data-centre overhead, >= 1) comes from ``CarbonConfig.pue``, then ``FRUGALML_PUE``,
then 1.0 (no overhead assumed). No network call is ever made.
"""

from __future__ import annotations

import csv
import difflib
import functools
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources

from frugalml.errors import ConfigError
from frugalml.meter._types import J_PER_KWH

__all__ = [
    "COUNTRY_ENV",
    "INTENSITY_ENV",
    "PUE_ENV",
    "WORLD_INTENSITY_G_PER_KWH",
    "WORLD_INTENSITY_SOURCE",
    "CarbonConfig",
    "CountryIntensity",
    "ResolvedCarbon",
    "carbon_intensity_table",
    "co2_g",
    "resolve_carbon",
]

INTENSITY_ENV = "FRUGALML_INTENSITY_G_PER_KWH"
COUNTRY_ENV = "FRUGALML_COUNTRY"
PUE_ENV = "FRUGALML_PUE"

#: The world average carbon intensity of electricity generation in 2023 (lifecycle).
WORLD_INTENSITY_G_PER_KWH = 480.0
WORLD_INTENSITY_SOURCE = (
    "world average 2023, Ember Global Electricity Review 2024 (default; set a country "
    f"or an intensity, e.g. {COUNTRY_ENV}=DE)"
)


@dataclass(frozen=True)
class CarbonConfig:
    """Where the carbon intensity and PUE come from; ``None`` means "not set here"."""

    intensity_g_per_kwh: float | None = None
    country: str | None = None
    pue: float | None = None

    def __post_init__(self) -> None:
        if self.intensity_g_per_kwh is not None:
            _check_intensity(self.intensity_g_per_kwh, "intensity_g_per_kwh")
        if self.pue is not None:
            _check_pue(self.pue, "pue")


@dataclass(frozen=True)
class CountryIntensity:
    """One row of the shipped intensity table."""

    code: str
    alpha3: str
    name: str
    intensity_g_per_kwh: float
    source: str
    year: int


@dataclass(frozen=True)
class ResolvedCarbon:
    """The intensity and PUE in force, with where each came from."""

    intensity_g_per_kwh: float
    intensity_source: str
    pue: float
    pue_source: str
    country: str | None = None

    def co2_g(self, energy_j: float) -> float:
        return co2_g(energy_j, self.intensity_g_per_kwh, self.pue)


def co2_g(energy_j: float, intensity_g_per_kwh: float, pue: float = 1.0) -> float:
    """Grams of CO2e for ``energy_j`` joules of IT energy: kWh x PUE x intensity."""
    return energy_j / J_PER_KWH * pue * intensity_g_per_kwh


def _check_intensity(value: float, where: str) -> float:
    if not math.isfinite(value) or value < 0:
        raise ConfigError(
            f"carbon intensity from {where} must be a number >= 0 gCO2e/kWh, not {value!r}",
            fix="give grams of CO2e per kWh, e.g. 380 for Germany in 2023",
        )
    return float(value)


def _check_pue(value: float, where: str) -> float:
    if not math.isfinite(value) or value < 1.0:
        raise ConfigError(
            f"PUE from {where} must be a number >= 1, not {value!r}",
            fix="PUE is total facility power / IT power: 1.0 for no overhead, ~1.1-1.6 in "
            "data centres",
        )
    return float(value)


def _env_float(env: Mapping[str, str], name: str) -> float | None:
    raw = env.get(name, "").strip()
    if not raw:
        return None
    try:
        return float(raw)
    except ValueError as exc:
        raise ConfigError(
            f"environment variable {name}={raw!r} is not a number",
            fix=f"set {name} to a number or unset it",
        ) from exc


@functools.lru_cache(maxsize=1)
def carbon_intensity_table() -> dict[str, CountryIntensity]:
    """The shipped table, keyed by upper-case alpha-2 code."""
    text = resources.files("frugalml.meter").joinpath("carbon_intensity.csv").read_text("utf-8")
    table: dict[str, CountryIntensity] = {}
    for row in csv.DictReader(text.splitlines()):
        entry = CountryIntensity(
            code=row["code"].upper(),
            alpha3=row["alpha3"].upper(),
            name=row["name"],
            intensity_g_per_kwh=float(row["intensity_g_per_kwh"]),
            source=row["source"],
            year=int(row["year"]),
        )
        table[entry.code] = entry
    return table


def lookup_country(code: str) -> CountryIntensity:
    """The table row for an ISO alpha-2 or alpha-3 code (case-insensitive)."""
    table = carbon_intensity_table()
    key = code.strip().upper()
    if key in table:
        return table[key]
    for entry in table.values():
        if entry.alpha3 == key:
            return entry
    names = {e.name.lower(): e.code for e in table.values()}
    close = difflib.get_close_matches(code.strip().lower(), list(names), n=3, cutoff=0.75)
    hint = f" ({', '.join(f'{names[n]} = {n.title()}' for n in close)}?)" if close else ""
    raise ConfigError(
        f"unknown country code {code!r}{hint}",
        fix="use an ISO 3166-1 alpha-2 or alpha-3 code such as DE, FR, US or DEU; the "
        f"{len(table)} known codes are in frugalml/meter/carbon_intensity.csv (listed by "
        "frugalml.meter.carbon_intensity_table()), or give an intensity in gCO2e/kWh instead",
    )


def resolve_carbon(
    config: CarbonConfig | None = None, env: Mapping[str, str] | None = None
) -> ResolvedCarbon:
    """Settle the intensity and PUE from ``config``, the environment and the defaults."""
    config = config or CarbonConfig()
    env = os.environ if env is None else env
    country: str | None = None
    if config.intensity_g_per_kwh is not None:
        intensity = config.intensity_g_per_kwh
        source = "user setting"
    elif config.country:
        entry = lookup_country(config.country)
        intensity, source, country = _from_entry(entry)
    elif (value := _env_float(env, INTENSITY_ENV)) is not None:
        intensity = _check_intensity(value, INTENSITY_ENV)
        source = f"environment variable {INTENSITY_ENV}"
    elif env.get(COUNTRY_ENV, "").strip():
        entry = lookup_country(env[COUNTRY_ENV])
        intensity, source, country = _from_entry(entry)
        source += f" (from {COUNTRY_ENV})"
    else:
        intensity, source = WORLD_INTENSITY_G_PER_KWH, WORLD_INTENSITY_SOURCE
    if config.pue is not None:
        pue, pue_source = config.pue, "user setting"
    elif (value := _env_float(env, PUE_ENV)) is not None:
        pue, pue_source = _check_pue(value, PUE_ENV), f"environment variable {PUE_ENV}"
    else:
        pue, pue_source = 1.0, f"default 1.0: no data-centre overhead assumed (set {PUE_ENV})"
    return ResolvedCarbon(intensity, source, pue, pue_source, country)


def _from_entry(entry: CountryIntensity) -> tuple[float, str, str]:
    source = f"{entry.name} ({entry.code}) {entry.year}, {entry.source}"
    return entry.intensity_g_per_kwh, source, entry.code

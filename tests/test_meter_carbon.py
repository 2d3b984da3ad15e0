"""Carbon arithmetic (hand-computed), the offline intensity table and its overrides."""

from __future__ import annotations

import pytest

from frugalml.errors import ConfigError
from frugalml.meter import (
    WORLD_INTENSITY_G_PER_KWH,
    CarbonConfig,
    carbon_intensity_table,
    co2_g,
    resolve_carbon,
)
from frugalml.meter._carbon import lookup_country


def test_co2_hand_computed() -> None:
    # 7.2 MJ = 2 kWh; x PUE 1.5 = 3 kWh; x 400 g/kWh = 1200 g.
    assert co2_g(7.2e6, 400.0, 1.5) == pytest.approx(1200.0)
    # 3.6 kJ = 1 Wh = 0.001 kWh at 56 g/kWh and PUE 1 = 0.056 g.
    assert co2_g(3600.0, 56.0) == pytest.approx(0.056)
    assert co2_g(0.0, 500.0, 2.0) == 0.0


def test_default_is_the_stated_world_average() -> None:
    carbon = resolve_carbon(env={})
    assert carbon.intensity_g_per_kwh == WORLD_INTENSITY_G_PER_KWH == 480.0
    assert "world average 2023" in carbon.intensity_source
    assert "Ember" in carbon.intensity_source
    assert carbon.pue == 1.0 and "default" in carbon.pue_source
    assert carbon.co2_g(3.6e6) == pytest.approx(480.0)


def test_table_is_offline_and_well_formed() -> None:
    table = carbon_intensity_table()
    assert len(table) > 150
    for code, row in table.items():
        assert len(code) == 2 and len(row.alpha3) == 3
        assert 0 <= row.intensity_g_per_kwh < 2000
        assert 2000 <= row.year <= 2030
        assert row.source
    assert table["FR"].intensity_g_per_kwh < table["DE"].intensity_g_per_kwh


@pytest.mark.parametrize("code", ["DE", "de", "DEU", " deu "])
def test_country_alpha2_and_alpha3(code: str) -> None:
    assert lookup_country(code).code == "DE"


def test_country_sets_intensity_and_source() -> None:
    carbon = resolve_carbon(CarbonConfig(country="FR"), env={})
    row = carbon_intensity_table()["FR"]
    assert carbon.intensity_g_per_kwh == row.intensity_g_per_kwh
    assert carbon.country == "FR"
    assert "France" in carbon.intensity_source and str(row.year) in carbon.intensity_source


def test_unknown_country_lists_how_to_find_valid_ones() -> None:
    with pytest.raises(ConfigError) as info:
        resolve_carbon(CarbonConfig(country="Germnay"), env={})
    assert "Germnay" in str(info.value)
    assert info.value.fix is not None
    assert "carbon_intensity.csv" in info.value.fix and "alpha-2" in info.value.fix
    assert "DE = Germany" in str(info.value)


def test_precedence_options_then_environment_then_default() -> None:
    env = {
        "FRUGALML_INTENSITY_G_PER_KWH": "123",
        "FRUGALML_COUNTRY": "FR",
        "FRUGALML_PUE": "1.2",
    }
    from_env = resolve_carbon(env=env)
    assert from_env.intensity_g_per_kwh == 123.0
    assert "FRUGALML_INTENSITY_G_PER_KWH" in from_env.intensity_source
    assert from_env.pue == 1.2
    country_env = resolve_carbon(env={"FRUGALML_COUNTRY": "FR"})
    assert country_env.country == "FR" and "FRUGALML_COUNTRY" in country_env.intensity_source
    option = resolve_carbon(CarbonConfig(country="DE", pue=1.5), env=env)
    assert option.country == "DE" and option.pue == 1.5
    explicit = resolve_carbon(CarbonConfig(intensity_g_per_kwh=50.0, country="DE"), env=env)
    assert explicit.intensity_g_per_kwh == 50.0 and explicit.intensity_source == "user setting"


def test_environment_is_read_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FRUGALML_COUNTRY", "SE")
    monkeypatch.delenv("FRUGALML_INTENSITY_G_PER_KWH", raising=False)
    assert resolve_carbon().country == "SE"


@pytest.mark.parametrize(
    "env",
    [
        {"FRUGALML_PUE": "0.9"},
        {"FRUGALML_PUE": "lots"},
        {"FRUGALML_INTENSITY_G_PER_KWH": "-5"},
        {"FRUGALML_COUNTRY": "ZZ"},
    ],
)
def test_bad_environment_values(env: dict[str, str]) -> None:
    with pytest.raises(ConfigError) as info:
        resolve_carbon(env=env)
    assert next(iter(env)) in str(info.value) or "ZZ" in str(info.value)


@pytest.mark.parametrize(
    "kwargs", [{"pue": 0.99}, {"pue": float("nan")}, {"intensity_g_per_kwh": -1}]
)
def test_bad_options(kwargs: dict[str, float]) -> None:
    with pytest.raises(ConfigError):
        CarbonConfig(**kwargs)  # type: ignore[arg-type]

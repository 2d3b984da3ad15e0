"""Measurement records: derived properties, validation and a lossless JSON round trip."""

from __future__ import annotations

import json

import pytest

from frugalml.errors import ConfigError
from frugalml.meter import ComponentEnergy, Measurement


def _measurement(**overrides: object) -> Measurement:
    fields: dict[str, object] = {
        "name": "epoch 3",
        "parent": "trial",
        "started_at": "2026-11-23T00:54:36.379359+00:00",
        "duration_s": 12.345678901234567,
        "cpu_time_s": 20.1,
        "energy_j": 1234.5 + 0.1 + 1e-17,
        "components": (
            ComponentEnergy(
                "gpu:0",
                1234.5,
                "nvml:total_energy_counter",
                "measured",
                "GPU 0: NVIDIA H100 (GPU-abc)",
                (),
            ),
            ComponentEnergy(
                "cpu",
                0.1 + 1e-17,
                "estimate:tdp*utilisation",
                "estimated",
                "CPU: x",
                ("energy = ...", "ünïcode note"),
            ),
        ),
        "co2_g": 0.1 / 3,
        "intensity_g_per_kwh": 380.95,
        "intensity_source": "Germany (DE) 2023, ...",
        "pue": 1.2,
        "peak_rss_bytes": 2**40 + 1,
        "peak_gpu_mem_bytes": None,
        "devices": ("GPU 0", "CPU"),
        "error": "ValueError: boom",
        "notes": ("window short",),
    }
    fields.update(overrides)
    return Measurement(**fields)  # type: ignore[arg-type]


def test_json_round_trip_is_lossless() -> None:
    m = _measurement()
    again = Measurement.from_json(m.to_json())
    assert again == m
    assert Measurement.from_dict(json.loads(json.dumps(m.to_dict()))) == m
    compact = _measurement(parent=None, error=None, peak_gpu_mem_bytes=3, peak_rss_bytes=None)
    assert Measurement.from_json(compact.to_json(indent=None)) == compact


def test_derived_properties() -> None:
    m = _measurement()
    assert m.energy_kwh == pytest.approx(m.energy_j / 3.6e6)
    assert m.measured_energy_j == 1234.5
    assert m.estimated_energy_j == pytest.approx(0.1)
    assert m.provenance == "mixed"
    assert m.energy_source == "gpu:0=nvml:total_energy_counter; cpu=estimate:tdp*utilisation"
    only_gpu = _measurement(components=_measurement().components[:1])
    assert only_gpu.provenance == "measured"
    assert _measurement(components=()).provenance == "none"


def test_component_validation() -> None:
    with pytest.raises(ConfigError, match="kind"):
        ComponentEnergy("cpu", 1.0, "x", "guessed")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="energy_j"):
        ComponentEnergy("cpu", -1.0, "x", "measured")


@pytest.mark.parametrize(
    "text",
    ["not json", "[]", '{"schema": "frugalml.measurement/9"}', '{"name": "x"}'],
)
def test_bad_json_is_a_config_error(text: str) -> None:
    with pytest.raises(ConfigError):
        Measurement.from_json(text)


def test_combine_provenance_is_the_one_vocabulary() -> None:
    from frugalml.meter import J_PER_KWH, combine_provenance

    assert combine_provenance([]) == "none"
    assert combine_provenance(["", None, "none", "unknown"]) == "none"
    assert combine_provenance(["measured", "measured", ""]) == "measured"
    assert combine_provenance(["attributed", "none"]) == "attributed"
    assert combine_provenance(["measured", "estimated"]) == "mixed"
    assert combine_provenance(["mixed"]) == "mixed"
    assert combine_provenance(["measured", "attributed"]) == "mixed"
    assert combine_provenance(["made-up"]) == "mixed"  # never a label outside Provenance
    assert J_PER_KWH == 3_600_000.0


def test_attributed_component_round_trips_and_counts_apart() -> None:
    from frugalml.meter import ComponentEnergy

    part = ComponentEnergy("cpu:0", 6.0, "rapl:powercap share:cpu_time", "attributed")
    assert ComponentEnergy.from_dict(part.to_dict()) == part
    with pytest.raises(ConfigError, match="'measured', 'estimated', 'attributed'"):
        ComponentEnergy("cpu:0", 1.0, "x", "guessed")  # type: ignore[arg-type]

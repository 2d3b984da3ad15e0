"""The measured comparison (latency, intervals, break-even), the spec, the command end to end,
and Torch-Pruning channels."""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from frugalml.cli import main
from frugalml.compress import (
    CSV_COLUMNS,
    ArchitectureRef,
    CompressSpec,
    EnergyResult,
    LatencyResult,
    MethodOutcome,
    load_compressed,
    measure_energy,
    measure_latency,
    median_interval,
    save_compressed,
)
from frugalml.compress._pipeline import build_rows
from frugalml.errors import ConfigError
from frugalml.meter import Meter


class _Time:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


class _Costly(nn.Module):
    """Each forward pass advances the fake clock by ``cost_s`` and logs its name."""

    def __init__(self, name: str, cost_s: float, clock: _Time, log: list[str]) -> None:
        super().__init__()
        self.name, self.cost_s, self.clock, self.log = name, cost_s, clock, log

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.clock.t += self.cost_s
        self.log.append(self.name)
        return x


def test_latency_interleaves_repeats_and_divides_by_calls() -> None:
    clock, log = _Time(), []  # type: ignore[var-annotated]
    models = {n: _Costly(n, c, clock, log) for n, c in (("a", 0.002), ("b", 0.001))}
    result = measure_latency(
        models, torch.zeros(4, 1), repeats=4, calls={"a": 3, "b": 2}, clock=clock
    )
    assert result.samples_ms["a"] == pytest.approx([2.0] * 4)
    assert result.samples_ms["b"] == pytest.approx([1.0] * 4)
    assert log == ["a"] * 3 + ["b"] * 2 + ["b"] * 2 + ["a"] * 3 + ["a"] * 3 + ["b"] * 2 + (
        ["b"] * 2 + ["a"] * 3
    )
    assert result.ratio("b", "a").median == pytest.approx(0.5)
    calibrated = measure_latency(models, torch.zeros(1, 1), repeats=3, min_time_s=0.02, clock=clock)
    assert calibrated.calls == {"a": 10, "b": 20}


def test_median_interval_order_statistics() -> None:
    five = median_interval([5, 1, 3, 2, 4])
    assert (five.median, five.low, five.high) == (3, 1, 5)
    assert five.confidence == pytest.approx(1 - 2 / 32)
    fifteen = median_interval(range(1, 16))
    assert (fifteen.low, fifteen.high) == (4, 12)  # ranks 4 and 12 of 15 at 95 %
    assert fifteen.excludes(13) and not fifteen.excludes(8)
    assert not median_interval([1.0, 1.0]).excludes(2.0)  # too few samples exclude nothing


def _linear(n_in: int, n_out: int) -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(n_in, n_out))


def test_rows_break_even_only_for_a_real_energy_saving() -> None:
    dense, small, same = _linear(4, 3), _linear(4, 3), _linear(4, 3)
    with torch.no_grad():
        small[1].weight[:, :2] = 0
    outcomes = {
        "dense": MethodOutcome("dense", "dense", dense, 0.90),
        "small": MethodOutcome("small", "l1", small, 0.895),
        "same": MethodOutcome("same", "l1", same, 0.90),
    }
    for name in ("small", "same"):
        outcomes[name].phases = []
    models = {n: o.model for n, o in outcomes.items()}
    lat = {"dense": [1.0] * 5, "small": [0.5] * 5, "same": [1.2, 0.8, 1.0, 1.1, 0.9]}
    lat1 = LatencyResult(1, lat, {n: 1 for n in lat})
    energy = EnergyResult(
        {"dense": [10.0] * 5, "small": [6.0] * 5, "same": [9.0, 11.0, 10.0, 10.5, 9.5]},
        {n: "estimated" for n in lat},
        {n: "cpu=estimate" for n in lat},
    )

    class _Phase:
        energy_j, provenance = 2.0, "estimated"

    outcomes["small"].phases = [_Phase(), _Phase()]  # type: ignore[list-item]
    rows = {
        r["method"]: r for r in build_rows(outcomes, models, lat1, lat1, energy, (1, 2, 2), "cpu")
    }
    assert list(rows["dense"]) == list(CSV_COLUMNS)
    # 4 J per 1,000 inferences saved repays 4 J of compression after 1,000 inferences
    assert rows["small"]["break_even_inferences"] == 1000
    assert rows["small"]["compress_energy_j"] == pytest.approx(4.0)
    assert rows["small"]["accuracy_change_points"] == pytest.approx(-0.5)
    assert rows["small"]["nonzero_params"] == 15 - 6
    assert rows["small"]["sparsity"] == pytest.approx(6 / 15)
    assert "real latency saving" in rows["small"]["notes"]
    assert rows["same"]["break_even_inferences"] == ""
    assert "no energy saving" in rows["same"]["notes"]
    assert "cannot tell from noise" in rows["same"]["notes"] or "noise" in rows["same"]["notes"]
    assert rows["dense"]["compress_energy_j"] == ""
    assert "points below dense" not in rows["small"]["notes"]  # 0.5 points: within 1


def test_fewer_flops_with_more_latency_is_said_in_words() -> None:
    dense = nn.Sequential(nn.Flatten(), nn.Linear(4, 8), nn.Linear(8, 3))
    small = nn.Sequential(nn.Flatten(), nn.Linear(4, 4), nn.Linear(4, 3))  # half the FLOPs
    outcomes = {
        "dense": MethodOutcome("dense", "dense", dense, 0.9),
        "small": MethodOutcome("small", "channels", small, 0.9),
    }
    lat = {"dense": [1.0] * 6, "small": [1.5] * 6}
    energy = EnergyResult({"dense": [1.0] * 6, "small": [1.0] * 6}, {}, {})
    lat1 = LatencyResult(1, lat, {})
    rows = build_rows(
        outcomes, {"dense": dense, "small": small}, lat1, lat1, energy, (1, 2, 2), "cpu"
    )
    assert "fewer FLOPs (50% of dense) but more latency" in rows[1]["notes"]
    outcomes["small"].accuracy = 0.85
    rows = build_rows(
        outcomes, {"dense": dense, "small": small}, lat1, lat1, energy, (1, 2, 2), "cpu"
    )
    assert "accuracy 5.0 points below dense" in rows[1]["notes"]


def test_measure_energy_books_each_window_with_its_provenance() -> None:
    models = {"a": nn.Linear(8, 8), "b": nn.Linear(8, 2)}
    with Meter() as meter:
        result = measure_energy(models, torch.randn(4, 8), meter, repeats=2, min_window_s=0.01)
        names = [m.name for m in meter.measurements]
    assert names == ["inference a 1", "inference b 1", "inference b 2", "inference a 2"]
    for name in models:
        assert len(result.samples_j[name]) == 2
        assert all(v >= 0 and math.isfinite(v) for v in result.samples_j[name])
        assert result.provenance[name] in ("measured", "estimated", "mixed")


BASE: dict[str, Any] = {
    "name": "t",
    "dataset": "digits",
    "model": "frugal_cnn",
    "methods": [{"method": "l1"}],
}


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"methods": []}, "non-empty list"),
        ({"methods": [{"method": "dropconnect"}]}, "unknown method"),
        ({"methods": [{"method": "l1", "ratio": 0.5}]}, "has no setting"),
        ({"methods": [{"method": "l1", "threshold": {"median": 1}}]}, "threshold"),
        ({"methods": [{"method": "channels", "ratio": 1.5}]}, "ratio"),
        ({"methods": [{"method": "l1"}, {"method": "l1"}]}, "repeat the row name"),
        ({"methods": [{"method": "l1", "strength": "lots"}]}, "strength"),
        ({"latency": {"repeat": 3}}, "latency"),
        ({"colour": "red"}, "unknown spec key"),
    ],
)
def test_spec_errors_are_one_line(change: dict[str, Any], words: str) -> None:
    with pytest.raises(ConfigError) as info:
        CompressSpec.from_mapping({**BASE, **change})
    assert words in str(info.value) and "\n" not in str(info.value) and info.value.fix


def test_spec_defaults_come_from_the_registry() -> None:
    spec = CompressSpec.from_mapping({**BASE, "methods": [{"method": "magnitude"}, "penni"][:1]})
    method = spec.methods[0]
    assert method.threshold is not None and method.threshold.mode == "sparsity"
    assert CompressSpec.from_mapping(
        {**BASE, "methods": [{"method": "l1", "strength": "1e-4"}]}
    ).methods[0].strength == pytest.approx(1e-4)


def test_cli_bad_spec_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = tmp_path / "s.yaml"
    spec.write_text("name: t\ndataset: digits\nmodel: frugal_cnn\nmethods: [{method: nope}]\n")
    assert main(["compress", str(spec), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("frugalml: error: methods[0]: unknown method 'nope'")
    assert "\n" not in err and "(fix:" in err


SPEC = """\
name: tiny
dataset: digits
model: frugal_cnn
model_args: {conv_layers: 2, width: 8, hidden: 16}
training: {epochs: 1, device: cpu}
latency: {repeats: 3, batch_size: 8, min_time_s: 0.002}
energy: {repeats: 1, min_window_s: 0.02}
methods:
  - {method: group_lasso, strength: 1.0e-3, threshold: {sparsity: 0.5}}
  - {method: magnitude, threshold: {sparsity: 0.8}}
  - {method: l0, strength: 10.0}
  - {method: penni, basis: 3, threshold: {sparsity: 0.6}}
"""


def test_compress_command_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / "s.yaml"
    spec.write_text(SPEC)
    out = tmp_path / "out"
    assert main(["compress", str(spec), "--out", str(out)]) == 0
    with (out / "compress.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert tuple(rows[0]) == CSV_COLUMNS
    assert [r["method"] for r in rows] == [
        "dense",
        "group_lasso",
        "magnitude",
        "l0",
        "penni",
        "penni_factorised",
    ]
    by = {r["method"]: r for r in rows}
    assert int(by["group_lasso"]["params"]) < int(by["dense"]["params"])  # filters went
    assert float(by["group_lasso"]["shrink_max_abs_diff"]) < 1e-4
    assert "dense kernels gain no speed" in by["magnitude"]["notes"]
    assert float(by["magnitude"]["sparsity"]) >= 0.75
    assert "factorised form" in by["penni"]["notes"]
    for row in rows:
        assert row["energy_per_1k_provenance"] in ("measured", "estimated", "mixed")
        assert (
            float(row["latency_ms_low"])
            <= float(row["latency_ms"])
            <= float(row["latency_ms_high"])
        )
        if row["method"] != "dense":
            assert float(row["compress_energy_j"]) > 0
    assert (out / "compress.png").read_bytes()[:4] == b"\x89PNG"
    # PePR over these rows: the model with the most parameters scores accuracy / 2
    most = max(rows, key=lambda r: int(r["params"]))
    assert float(most["pepr_params"]) == pytest.approx(float(most["accuracy"]) / 2, rel=1e-4)
    model, record = load_compressed(out / "models" / "group_lasso.pt")
    assert record["method"] == "group_lasso" and record["removed"]
    assert sum(p.numel() for p in model.parameters()) == int(by["group_lasso"]["params"])
    # a second run into the same directory refuses, and changes nothing
    before = (out / "compress.csv").read_bytes()
    assert main(["compress", str(spec), "--out", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert (out / "compress.csv").read_bytes() == before


@pytest.mark.parametrize("name", ["resnet10t", "mobilenetv3_small_050"])
def test_channels_prunes_a_timm_model_and_saves(tmp_path: Path, name: str) -> None:
    """Residual blocks (resnet10t) and depthwise convolutions whose groups shrink too."""
    pytest.importorskip("torch_pruning")
    from frugalml.compress._channels import prune_channels

    ref = ArchitectureRef(name, num_classes=4, in_chans=1)
    torch.manual_seed(0)
    model = ref.build().eval()
    x = torch.randn(2, 1, 32, 32)
    before = sum(p.numel() for p in model.parameters())
    removed = prune_channels(model, x, 0.5)
    assert 0 < removed < before
    assert model(x).shape == (2, 4)
    path = save_compressed(tmp_path / "c.pt", model, ref, {"method": "channels"})
    loaded, _ = load_compressed(path)
    assert torch.equal(loaded(x), model.eval()(x))
    with pytest.raises(ConfigError, match="ratio"):
        prune_channels(model, x, 1.0)


def test_weights_are_resolved_checked_and_loaded(tmp_path: Path) -> None:
    from frugalml.errors import ModelError
    from frugalml.models import create_model

    with pytest.raises(ConfigError, match="does not exist"):
        CompressSpec.from_mapping({**BASE, "weights": "nope.pth"}, source=str(tmp_path / "s.yaml"))
    other = create_model("frugal_cnn", num_classes=10, in_chans=1, width=4)
    torch.save(other.state_dict(), tmp_path / "w.pth")
    spec = CompressSpec.from_mapping(
        {**BASE, "model_args": {"width": 8}, "weights": "w.pth"}, source=str(tmp_path / "s.yaml")
    )
    assert spec.weights == str((tmp_path / "w.pth").resolve())
    from frugalml.compress import run_compress

    with Meter() as meter, pytest.raises(ModelError, match="could not load"):
        run_compress(spec, meter)  # width 4 weights into width 8: the file is really read

"""The partition planner: AccPar's own tables (fixtures from its compiled C++), the costed
planner's ratio and compute term, and ``frugalml parallel plan``."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from frugalml.cli import main
from frugalml.errors import ConfigError, DataError
from frugalml.parallel import (
    DeviceSpec,
    LayerSpec,
    Network,
    accpar_resnet,
    network_from_model,
    plan,
    plan_comm_only,
    read_accpar_network,
)

DATA = Path(__file__).parent / "data" / "accpar"


def _fixture_rows(key: str) -> list[tuple[str, int, str, int]]:
    with (DATA / f"{key}_plan.csv").open() as handle:
        return [
            (r["strategy"], int(r["level"]), r["layer"], int(r["type"]))
            for r in csv.DictReader(handle)
        ]


def _fixture_comm(key: str) -> dict[tuple[str, int, str], float]:
    with (DATA / f"{key}_comm.csv").open() as handle:
        return {
            (r["strategy"], int(r["level"]), r["computed_by"]): float(r["comm_elements"])
            for r in csv.DictReader(handle)
        }


NETWORKS = {
    "alexnet": lambda: read_accpar_network(DATA / "Alexnet.txt"),
    "vgg11": lambda: read_accpar_network(DATA / "Vgg11.txt"),
    "resnet18": lambda: accpar_resnet(18),
    "resnet34": lambda: accpar_resnet(34),
    "resnet50": lambda: accpar_resnet(50),
}


@pytest.mark.parametrize("key", sorted(NETWORKS))
def test_comm_only_tables_equal_accpar(key: str) -> None:
    plans = plan_comm_only(NETWORKS[key](), batch=512, levels=7)
    assert [row for p in plans for row in p.rows()] == _fixture_rows(key)


@pytest.mark.parametrize("key", sorted(NETWORKS))
def test_search_cost_equals_accpar_dynamic_program(key: str) -> None:
    comm = _fixture_comm(key)
    for p in plan_comm_only(NETWORKS[key]()):
        for lv in p.levels:
            if lv.search_comm_elements is not None:
                assert lv.search_comm_elements == comm[(p.strategy, lv.level, "dp")]
            if key in ("alexnet", "vgg11"):  # no shortcut joins: its print routine agrees
                assert lv.comm_elements == comm[(p.strategy, lv.level, "print")]


def test_accpar_resnet_trace_back_undercounts_its_own_plan() -> None:
    # AccPar's search prices a shortcut greedily and compares each cell's first candidate
    # without it; the plan it returns costs more than the minimum it reports.
    level0 = next(p for p in plan_comm_only(accpar_resnet(18)) if p.strategy == "accpar").levels[0]
    assert level0.search_comm_elements == 13_579_456
    assert level0.comm_elements == 14_103_744


def test_alexnet_level0_by_hand() -> None:
    # Data parallel exchanges every weight gradient: sum of c_in * c_out * k * k.
    net = read_accpar_network(DATA / "Alexnet.txt")
    weights = [
        3 * 96 * 121,
        96 * 256 * 25,
        256 * 384 * 9,
        384 * 384 * 9,
        384 * 256 * 9,
        9216 * 4096,
        4096 * 4096,
        4096 * 1000,
    ]
    dp = plan_comm_only(net, levels=1, strategies=("dp",))[0]
    assert dp.comm_elements == sum(weights) == 62_367_776


def test_costed_plan_moves_work_from_the_slow_device() -> None:
    net = read_accpar_network(DATA / "Alexnet.txt")
    fast, slow = DeviceSpec("fast", 30e12), DeviceSpec("slow", 10e12)
    plans = {p.strategy: p for p in plan(net, [fast, slow], batch=64, bandwidth_bytes_per_s=1e12)}
    assert plans["accpar"].levels[0].ratio == pytest.approx(0.75)
    assert plans["dp"].levels[0].ratio == 0.5
    flops = 3 * 64 * sum(layer.forward_flops() for layer in net.layers)
    assert plans["dp"].compute_s == pytest.approx(0.5 * flops / 10e12)  # the slow half
    assert plans["dp-uneven"].compute_s == pytest.approx(flops / 40e12)  # both together
    assert plans["accpar"].step_time_s is not None and plans["dp"].step_time_s is not None
    assert plans["accpar"].step_time_s < plans["dp"].step_time_s
    # the ratio flips when the slow device comes first
    flipped = plan(net, [slow, fast], batch=64, bandwidth_bytes_per_s=1e12)
    assert flipped[-1].levels[0].ratio == pytest.approx(0.25)


def test_costed_comm_time_uses_bandwidth_and_bytes() -> None:
    layer = LayerSpec("fc", "fc", 10, 20, flops_per_sample=400.0)
    net = Network("one", (layer,))
    dev = [DeviceSpec("a", 1e6, 10.0), DeviceSpec("b", 1e6, 30.0)]
    dp = plan(net, dev, batch=4, bandwidth_bytes_per_s=100.0, strategies=("dp",))[0]
    assert dp.comm_s == pytest.approx(10 * 20 * 4.0 / 100.0)  # weight gradient, fp32
    assert dp.compute_s == pytest.approx(0.5 * 3 * 4 * 400.0 / 1e6)
    assert dp.energy_j == pytest.approx(40.0 * (dp.comm_s + dp.compute_s))


def test_network_from_builtin_model_counts_flops() -> None:
    from frugalml.models import create_model

    model = create_model("frugal_mlp", num_classes=10, in_chans=1)
    net = network_from_model(model, (1, 8, 8))
    assert all(layer.kind == "fc" for layer in net.layers)
    first = net.layers[0]
    assert first.in_channels == 64
    assert first.forward_flops() == 2 * 64 * first.out_channels
    cnn = network_from_model(create_model("frugal_cnn", num_classes=10, in_chans=1), (1, 8, 8))
    conv = cnn.layers[0]
    assert conv.kind == "conv"
    expected = 2 * conv.in_channels * conv.out_channels * conv.kernel_size * conv.ofmap_size
    assert conv.forward_flops() == expected


def test_bad_layer_file_names_the_problem(tmp_path: Path) -> None:
    bad = tmp_path / "bad.txt"
    bad.write_text("num_layers 1\nfc1 POOL\n")
    with pytest.raises(DataError, match="type 'POOL'"):
        read_accpar_network(bad)
    with pytest.raises(DataError, match="does not exist"):
        read_accpar_network(tmp_path / "none.txt")
    with pytest.raises(ConfigError, match="levels"):
        plan_comm_only(read_accpar_network(DATA / "Alexnet.txt"), levels=0)


def test_cli_plan_writes_accpar_csv(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "plan.csv"
    code = main(
        [
            "parallel",
            "plan",
            str(DATA / "Alexnet.txt"),
            "--comm-only",
            "--batch",
            "512",
            "--levels",
            "7",
            "--csv",
            str(out),
        ]
    )
    assert code == 0
    assert out.read_text() == (DATA / "alexnet_plan.csv").read_text()
    assert "AccPar (types I, II, III)" in capsys.readouterr().out


def test_cli_plan_needs_devices_without_comm_only(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["parallel", "plan", str(DATA / "Alexnet.txt")]) == 2
    assert "--device" in capsys.readouterr().err

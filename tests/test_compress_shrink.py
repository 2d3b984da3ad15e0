"""Thresholds, masks, physical shrinking (a residual block included), PENNI, save/load."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from torch import nn

from frugalml.compress import (
    ArchitectureRef,
    Masks,
    Threshold,
    load_compressed,
    parse_threshold,
    save_compressed,
    shrink,
    threshold_groups,
    threshold_weights,
    trace_channels,
)
from frugalml.compress._penni import factorise, from_penni, pca_basis, to_penni
from frugalml.errors import ConfigError, ModelError
from frugalml.train import TrainConfig, train


@pytest.fixture(scope="module")
def digits() -> object:
    from frugalml.data import load_dataset

    return load_dataset("digits")


class Residual(nn.Module):
    """stem conv-bn-relu, one residual block (identity shortcut), pool, linear."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, 6, 3, padding=1, bias=False)
        self.bn0 = nn.BatchNorm2d(6)
        self.conv1 = nn.Conv2d(6, 5, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(5)
        self.conv2 = nn.Conv2d(5, 6, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(6)
        self.pool = nn.AdaptiveAvgPool2d(2)
        self.fc = nn.Linear(6 * 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn0(self.stem(x)))
        y = torch.relu(self.bn1(self.conv1(x)))
        x = torch.relu(self.bn2(self.conv2(y)) + x)
        return self.fc(torch.flatten(self.pool(x), 1))


def _randomise_bn(model: nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            with torch.no_grad():
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.5, 0.5)
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 2.0)


def _zero_filter(conv: nn.Conv2d, bn: nn.BatchNorm2d, c: int) -> None:
    with torch.no_grad():
        conv.weight[c] = 0
        bn.weight[c] = 0
        bn.bias[c] = 0


def test_residual_shrink_removes_exactly_the_zero_groups() -> None:
    torch.manual_seed(0)
    model = Residual().eval()
    _randomise_bn(model)
    # the inner space (conv1 -> conv2): channel 1 written zero, channel 3 read by nobody
    _zero_filter(model.conv1, model.bn1, 1)
    with torch.no_grad():
        model.conv2.weight[:, 3] = 0
    # the residual space (stem + conv2, joined by the add): channel 2 zero in both writers
    _zero_filter(model.stem, model.bn0, 2)
    _zero_filter(model.conv2, model.bn2, 2)
    # channel 4 zero in only one writer: must stay
    _zero_filter(model.stem, model.bn0, 4)
    x = torch.randn(4, 1, 8, 8)
    result = shrink(model, x)
    small = result.model
    assert small.conv1.out_channels == 3 and small.bn1.num_features == 3
    assert small.conv2.in_channels == 3
    assert small.stem.out_channels == 5 and small.conv2.out_channels == 5
    assert small.conv1.in_channels == 5 and small.bn2.num_features == 5
    assert small.fc.in_features == 5 * 4  # the flattened 2 x 2 features of channel 2 went
    assert result.removed_channels == 3
    assert torch.allclose(small(x), model(x), atol=1e-5)
    assert model.stem.out_channels == 6  # the original is untouched


def test_shrink_keeps_a_space_touching_input_output_or_unknown_ops() -> None:
    class Gate(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = nn.Linear(4, 3)
            self.b = nn.Linear(3, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.b(torch.sigmoid(self.a(x)))  # sigmoid(0) = 0.5: a zero unit matters

    model = Gate()
    with torch.no_grad():
        model.a.weight[0] = 0
        model.a.bias[0] = 0
    graph = trace_channels(model, torch.randn(2, 4))
    assert all(g.frozen for g in graph.groups)
    assert shrink(model, torch.randn(2, 4)).removed_channels == 0


def test_mlp_units_with_zero_inputs_or_outputs_are_removed() -> None:
    from frugalml.models import create_model

    model = create_model("frugal_mlp", num_classes=3, in_chans=1, hidden=6).eval()
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    with torch.no_grad():
        linears[0].weight[2] = 0
        linears[0].bias[2] = 0  # hidden unit 2 of layer 1 writes zero
        linears[2].weight[:, 4] = 0  # nobody reads unit 4 of layer 2
    x = torch.randn(3, 1, 8, 8)
    small = shrink(model, x).model
    new = [m for m in small.modules() if isinstance(m, nn.Linear)]
    assert [m.out_features for m in new] == [5, 5, 3]
    assert torch.allclose(small(x), model(x), atol=1e-5)


def test_thresholds_absolute_std_and_sparsity() -> None:
    layer = nn.Linear(4, 1, bias=False)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[0.1, -0.2, 0.3, -0.4]]))
    model = nn.Sequential(layer)
    assert threshold_weights(copy.deepcopy(model), Threshold("absolute", 0.25)) == 2
    assert threshold_weights(copy.deepcopy(model), Threshold("sparsity", 0.75)) == 3
    std = float(layer.weight.std())  # 0.3162
    assert threshold_weights(copy.deepcopy(model), Threshold("std", 0.2 / std)) == 2
    assert parse_threshold(0.01, "x") == Threshold("absolute", 0.01)
    assert parse_threshold({"sparsity": 0.9}, "x") == Threshold("sparsity", 0.9)
    for bad in ({"median": 1}, "big", {"sparsity": 1.5}, True):
        with pytest.raises(ConfigError) as info:
            parse_threshold(bad, "methods[0]")
        assert "\n" not in str(info.value)


def test_group_threshold_zeroes_filter_bias_and_following_norm() -> None:
    torch.manual_seed(0)
    model = Residual().eval()
    with torch.no_grad():
        model.conv1.weight[3] *= 1e-4
    graph = trace_channels(model, torch.randn(1, 1, 8, 8))
    before = model.conv1.weight.detach().flatten(1).norm(dim=1)
    cut = float(before.sort().values[1]) * 0.999  # only the tiny filter is below
    zeroed = threshold_groups(model, graph, Threshold("absolute", cut))
    assert zeroed >= 1
    assert bool((model.conv1.weight[3] == 0).all())
    assert float(model.bn1.weight[3]) == 0.0 and float(model.bn1.bias[3]) == 0.0


def test_zeros_stay_zero_through_masked_fine_tuning(digits: object) -> None:
    from frugalml.models import create_model

    torch.manual_seed(0)
    model = create_model("frugal_mlp", num_classes=10, in_chans=1, hidden=16)
    threshold_weights(model, Threshold("sparsity", 0.6))
    masks = Masks.from_zeros(model)
    zero_before = {n: (p == 0).clone() for n, p in model.named_parameters() if p.dim() > 1}
    train(model, digits, TrainConfig(epochs=1, device="cpu"), on_step=masks)  # type: ignore[arg-type]
    for name, p in model.named_parameters():
        if name in zero_before:
            assert bool((p[zero_before[name]] == 0).all()), name
            assert bool((p[~zero_before[name]] != 0).any())


def test_pca_basis_is_exact_when_d_is_k_squared() -> None:
    torch.manual_seed(0)
    w = torch.randn(4, 3, 3, 3)
    coefficients, basis = pca_basis(w, 9)
    assert coefficients.shape == (4, 3, 9) and basis.shape == (9, 3, 3)
    assert torch.allclose(torch.einsum("oid,dhw->oihw", coefficients, basis), w, atol=1e-5)
    c2, b2 = pca_basis(w, 2)
    approx = torch.einsum("oid,dhw->oihw", c2, b2)
    assert float((approx - w).norm()) > 1e-3  # d < k^2 is an approximation
    with pytest.raises(ConfigError):
        pca_basis(w, 0)


def test_penni_layers_round_trip_and_factorised_form_agree() -> None:
    torch.manual_seed(0)
    model = Residual().eval()
    _randomise_bn(model)
    x = torch.randn(2, 1, 8, 8)
    reference = model(x)
    penni = copy.deepcopy(model)
    names = to_penni(penni, 9)
    assert names == ["stem", "conv1", "conv2"]
    assert torch.allclose(penni(x), reference, atol=1e-4)
    from_penni(penni)
    assert isinstance(penni.conv1, nn.Conv2d)
    assert torch.allclose(penni(x), reference, atol=1e-4)
    factorised = factorise(model, 9).eval()
    assert isinstance(factorised.conv1, nn.Sequential)
    assert factorised.conv1[0].groups == 6
    assert torch.allclose(factorised(x), reference, atol=1e-4)


@pytest.mark.parametrize(
    ("name", "args", "in_chans", "size"),
    [("frugal_cnn", {"width": 8, "hidden": 16}, 1, 8), ("resnet10t", {}, 3, 32)],
)
def test_save_load_gives_identical_logits(
    tmp_path: Path, name: str, args: dict[str, object], in_chans: int, size: int
) -> None:
    ref = ArchitectureRef(name, num_classes=4, in_chans=in_chans, args=args)
    torch.manual_seed(0)
    model = ref.build().eval()
    _randomise_bn(model)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    with torch.no_grad():
        convs[1].weight[:2] = 0
        if convs[1].bias is not None:
            convs[1].bias[:2] = 0
    graph = trace_channels(model, torch.randn(1, in_chans, size, size))
    for conv_name, norm_name in graph.follow_norm.items():
        if model.get_submodule(conv_name) is convs[1]:
            with torch.no_grad():
                model.get_submodule(norm_name).weight[:2] = 0
                model.get_submodule(norm_name).bias[:2] = 0
    x = torch.randn(2, in_chans, size, size)
    small = shrink(model, x).model.eval()
    assert sum(p.numel() for p in small.parameters()) < sum(p.numel() for p in model.parameters())
    path = save_compressed(tmp_path / "m.pt", small, ref, {"method": "test", "removed": [1, 2]})
    loaded, record = load_compressed(path)
    assert record == {"method": "test", "removed": [1, 2]}
    assert torch.equal(loaded(x), small(x))


def test_load_errors_are_one_line(tmp_path: Path) -> None:
    with pytest.raises(ModelError) as info:
        load_compressed(tmp_path / "missing.pt")
    assert "\n" not in str(info.value)
    bad = tmp_path / "bad.pt"
    torch.save({"format": "other"}, bad)
    with pytest.raises(ModelError, match=r"not a frugalml\.compressed/1"):
        load_compressed(bad)
    torch.save({"state": torch.zeros(1)}, bad)
    with pytest.raises(ModelError):
        load_compressed(bad)


def test_untraceable_model_is_a_one_line_model_error() -> None:
    class Branchy(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = nn.Linear(2, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.a(x) if float(x.sum()) > 0 else x  # data-dependent: fx cannot trace

    with pytest.raises(ModelError) as info:
        trace_channels(Branchy(), torch.ones(1, 2))
    assert "cannot trace Branchy" in str(info.value) and "\n" not in str(info.value)


def test_channels_without_torch_pruning_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from frugalml.compress._channels import prune_channels

    monkeypatch.setitem(sys.modules, "torch_pruning", None)
    with pytest.raises(ConfigError, match=r"frugalml\[compress\]"):
        prune_channels(nn.Sequential(nn.Linear(2, 2)), torch.ones(1, 2), 0.5)


def test_penni_training_alternates_basis_and_coefficients() -> None:
    from frugalml.compress._penni import Alternate, coefficient_l1, penni_layers

    torch.manual_seed(0)
    model = Residual()
    to_penni(model, 4)
    alternate = Alternate()
    alternate(model)  # after step 1: the basis's turn
    layers = [layer for _, layer in penni_layers(model)]
    assert all(lay.basis.requires_grad and not lay.coefficients.requires_grad for lay in layers)
    alternate(model)
    assert all(lay.coefficients.requires_grad and not lay.basis.requires_grad for lay in layers)
    expected = 0.5 * sum(float(lay.coefficients.abs().sum()) for lay in layers)
    assert float(coefficient_l1(0.5)(model)) == pytest.approx(expected, rel=1e-5)


def test_l0_method_closes_units_and_shrinks_them(digits: object) -> None:
    from frugalml.compress import compress_method
    from frugalml.compress._spec import MethodSpec
    from frugalml.models import create_model

    torch.manual_seed(0)
    dense = create_model("frugal_mlp", num_classes=10, in_chans=1, hidden=32)
    config = TrainConfig(epochs=1, device="cpu", lr=2e-3)  # gates move 100x lr per step
    spec = MethodSpec.from_mapping({"method": "l0", "strength": 30.0, "epochs": 1}, "m")
    outcome = compress_method(dense, spec, digits, config, torch.zeros(1, 1, 8, 8))  # type: ignore[arg-type]
    closed = outcome.pruning["closed_gates"]
    assert sum(closed.values()) > 0
    # every closed gate is a unit removed, but a layer keeps at least one unit
    removed = sum(min(n, 31) for n in closed.values())
    assert outcome.removed_channels == removed
    assert outcome.shrink_max_abs_diff < 1e-4
    hidden = [m.out_features for m in outcome.model.modules() if isinstance(m, nn.Linear)][:2]
    assert sum(hidden) == 64 - removed

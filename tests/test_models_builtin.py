"""Built-in models: knob validation, shapes at digits to ImageNet sizes, loading, learning."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from frugalml.errors import ConfigError, ModelError
from frugalml.models import (
    FrugalCNNConfig,
    count_costs,
    create_model,
    list_builtin_models,
    register_builtin,
)


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    """Tiny models run faster on one thread, and do not fight other processes for cores."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def test_registry_lists_builtins() -> None:
    # The shipped models are registered and the listing is sorted and unique; the listing
    # is not pinned, so a model added to the registry breaks nothing here. Every registered
    # built-in, shipped or added, passes BuiltinModelContract (tests/test_contracts.py).
    names = list_builtin_models()
    assert {"frugal_cnn", "frugal_mlp"} <= set(names)
    assert names == sorted(set(names))


def test_registering_a_name_twice_is_refused() -> None:
    with pytest.raises(ValueError, match="already registered"):
        register_builtin("frugal_cnn", config=FrugalCNNConfig, description="dup")(
            lambda config, num_classes, in_chans: torch.nn.Identity()
        )


@pytest.mark.parametrize(
    ("knobs", "match"),
    [
        ({"conv_layers": 0}, "conv_layers=0"),
        ({"conv_layers": 2.0}, "conv_layers"),
        ({"width": 0}, "width=0"),
        ({"linear_layers": 0}, "linear_layers=0"),
        ({"hidden": -3}, "hidden=-3"),
        ({"relu": 1}, "relu=1 must be true or false"),
        ({"kernel_size": 4}, "must be odd"),
        ({"pool": "sum"}, "pool='sum' is not one of max, avg, none"),
        ({"widen": "triple"}, "widen"),
        ({"dropout": 1.0}, "dropout"),
        ({"conv_layers": 16, "width": 256}, "4096"),
        ({"depth": 3}, "no knob"),
    ],
)
def test_frugal_cnn_rejects_bad_knobs(knobs: dict[str, object], match: str) -> None:
    with pytest.raises(ConfigError, match=match) as info:
        create_model("frugal_cnn", num_classes=10, in_chans=1, **knobs)
    assert info.value.fix  # every error says how to fix it


@pytest.mark.parametrize(
    ("knobs", "match"),
    [({"input_grid": 0}, "input_grid"), ({"linear_layers": 17}, "linear_layers"), ({"x": 1}, "x")],
)
def test_frugal_mlp_rejects_bad_knobs(knobs: dict[str, object], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        create_model("frugal_mlp", num_classes=10, in_chans=1, **knobs)


@pytest.mark.parametrize("bad", [0, -1, True, 2.5])
def test_num_classes_and_in_chans_are_checked(bad: object) -> None:
    with pytest.raises(ConfigError, match="num_classes"):
        create_model("frugal_cnn", num_classes=bad, in_chans=1)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="in_chans"):
        create_model("frugal_cnn", num_classes=3, in_chans=bad)  # type: ignore[arg-type]


_CNN_VARIANTS = [
    {},
    {"conv_layers": 1, "linear_layers": 3, "relu": True},
    {"conv_layers": 1, "linear_layers": 7, "relu": False},
    {"conv_layers": 4, "linear_layers": 3, "relu": False},
    {"conv_layers": 4, "linear_layers": 7, "relu": True, "pool": "avg", "batch_norm": True},
    {"conv_layers": 8, "width": 8, "pool": "max", "kernel_size": 5},
    {"conv_layers": 3, "widen": "constant", "pool": "none", "head_grid": 1, "dropout": 0.2},
]


@pytest.mark.parametrize(
    "knobs", _CNN_VARIANTS, ids=lambda k: ",".join(f"{a}={b}" for a, b in k.items()) or "default"
)
@pytest.mark.parametrize("size", [8, 28, 32])
@pytest.mark.parametrize("channels", [1, 3])
def test_frugal_cnn_shapes(knobs: dict[str, object], size: int, channels: int) -> None:
    torch.manual_seed(0)
    model = create_model("frugal_cnn", num_classes=7, in_chans=channels, **knobs)
    x = torch.randn(4, channels, size, size)
    y = model(x)
    assert y.shape == (4, 7)
    assert torch.isfinite(y).all()


@pytest.mark.parametrize("size", [8, 28, 32, 224])
@pytest.mark.parametrize("channels", [1, 3])
def test_frugal_mlp_shapes(size: int, channels: int) -> None:
    model = create_model("frugal_mlp", num_classes=5, in_chans=channels, linear_layers=2)
    y = model(torch.randn(3, channels, size, size))
    assert y.shape == (3, 5)
    assert torch.isfinite(y).all()


def test_frugal_cnn_at_224_has_the_same_params_as_at_8() -> None:
    model = create_model("frugal_cnn", num_classes=10, in_chans=3, conv_layers=4)
    small = count_costs(model, (3, 8, 8))
    large = count_costs(model, (3, 224, 224))
    assert small.params == large.params
    assert large.flops_per_sample > small.flops_per_sample


def test_frugal_cnn_layout_matches_its_knobs() -> None:
    model = create_model(
        "frugal_cnn", num_classes=10, in_chans=1, conv_layers=4, width=16, linear_layers=3
    )
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    assert [c.out_channels for c in convs] == [16, 16, 32, 32]  # doubled every 2 layers
    assert len(linears) == 3
    assert not any(isinstance(m, torch.nn.Identity) for m in model.modules())

    flat = create_model("frugal_cnn", num_classes=10, in_chans=1, conv_layers=3, widen="constant")
    assert [m.out_channels for m in flat.modules() if isinstance(m, torch.nn.Conv2d)] == [16] * 3

    linear = create_model("frugal_cnn", num_classes=10, in_chans=1, conv_layers=4, relu=False)
    assert not any(isinstance(m, torch.nn.ReLU) for m in linear.modules())
    relu = create_model("frugal_cnn", num_classes=10, in_chans=1, conv_layers=4, linear_layers=3)
    assert sum(isinstance(m, torch.nn.ReLU) for m in relu.modules()) == 4 + 2


def test_frugal_mlp_flops_are_its_matmuls() -> None:
    model = create_model("frugal_mlp", num_classes=10, in_chans=1, hidden=32, linear_layers=3)
    costs = count_costs(model, (1, 8, 8))
    assert costs.flops_per_sample == 2 * (64 * 32 + 32 * 32 + 32 * 10)
    assert costs.params == (64 * 32 + 32) + (32 * 32 + 32) + (32 * 10 + 10)


def test_builtin_pretrained_needs_a_file() -> None:
    with pytest.raises(ModelError, match="no published pretrained weights"):
        create_model("frugal_cnn", num_classes=10, in_chans=1, pretrained=True)


def test_builtin_loads_its_own_state_dict(tmp_path: Path) -> None:
    torch.manual_seed(1)
    source = create_model("frugal_cnn", num_classes=10, in_chans=1, conv_layers=2)
    path = tmp_path / "cnn.pth"
    torch.save(source.state_dict(), path)
    loaded = create_model(
        "frugal_cnn",
        num_classes=10,
        in_chans=1,
        conv_layers=2,
        pretrained=True,
        pretrained_file=path,
    )
    for (name, a), (_, b) in zip(
        source.state_dict().items(), loaded.state_dict().items(), strict=True
    ):
        assert torch.equal(a, b), name
    with pytest.raises(ModelError, match="could not load"):
        create_model(
            "frugal_cnn",
            num_classes=10,
            in_chans=1,
            conv_layers=4,
            pretrained=True,
            pretrained_file=path,
        )
    with pytest.raises(ModelError, match="does not exist"):
        create_model(
            "frugal_cnn",
            num_classes=10,
            in_chans=1,
            pretrained=True,
            pretrained_file=tmp_path / "missing.pth",
        )
    with pytest.raises(ConfigError, match="pretrained=False"):
        create_model("frugal_cnn", num_classes=10, in_chans=1, pretrained_file=path)


def test_frugal_cnn_learns_digits() -> None:
    """A real check that the network trains: 10 epochs of digits beat chance by far."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(digits.target)
    generator = torch.Generator().manual_seed(0)
    order = torch.randperm(len(y), generator=generator)
    train, test = order[:1257], order[1257:]
    torch.manual_seed(0)
    model = create_model("frugal_cnn", num_classes=10, in_chans=1, conv_layers=4, width=16)
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-4)
    for _ in range(10):
        model.train()
        for i in range(0, len(train), 32):
            batch = train[i : i + 32]
            loss = torch.nn.functional.cross_entropy(model(x[batch]), y[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    model.eval()
    with torch.no_grad():
        accuracy = (model(x[test]).argmax(1) == y[test]).float().mean().item()
    assert not math.isnan(loss.item())
    assert accuracy > 0.85, accuracy

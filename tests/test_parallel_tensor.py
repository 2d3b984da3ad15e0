"""Experimental types II and III on gloo with 2 processes and a 3:1 channel split: outputs
and gradients equal the single-device layer (1e-5). One spawn for the module."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from frugalml.parallel import normalise_shares, spawn, split_counts

SHARES = (3.0, 1.0)
# (case name, layer kind, partition type, output)
CASES = [
    ("linear-III", "linear", 2, "whole"),
    ("linear-II", "linear", 1, "whole"),
    ("conv-III", "conv", 2, "whole"),
    ("conv-II", "conv", 1, "whole"),
    ("linear-II-split", "linear", 1, "split"),
    ("conv-III-split", "conv", 2, "split"),
]


def _layer(kind: str) -> Any:
    import torch

    torch.manual_seed(1)
    if kind == "linear":
        return torch.nn.Linear(12, 10)
    return torch.nn.Conv2d(6, 5, 3, padding=1)


def _inputs(kind: str) -> tuple[Any, Any]:
    import torch

    g = torch.Generator().manual_seed(2)
    if kind == "linear":
        return torch.randn(4, 12, generator=g), torch.randn(4, 10, generator=g)
    return torch.randn(3, 6, 5, 5, generator=g), torch.randn(3, 5, 5, 5, generator=g)


def _small(name: str) -> Any:
    import torch

    from frugalml.models import create_model

    torch.manual_seed(3)
    kind = name.split("-")[0]
    return create_model(
        kind, num_classes=10, in_chans=1, **({"width": 8} if kind == "frugal_cnn" else {})
    )


def _plan_inputs(name: str) -> tuple[Any, Any]:
    import torch

    g = torch.Generator().manual_seed(4)
    return torch.randn(8, 1, 8, 8, generator=g), torch.randn(8, 10, generator=g)


def _accpar_types(model: Any) -> list[int]:
    from frugalml.parallel import network_from_model, plan_comm_only

    net = network_from_model(model, (1, 8, 8))
    accpar = plan_comm_only(net, batch=8, levels=1, strategies=("accpar",))[0]
    return [int(t) for t in accpar.levels[0].types]


def _cycled(model: Any) -> list[int]:
    import torch

    count = sum(isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)) for m in model.modules())
    return [i % 3 for i in range(count)]


_PLANS = {
    "frugal_mlp-accpar": _accpar_types,
    "frugal_mlp-mixed": _cycled,
    "frugal_cnn-accpar": _accpar_types,
    "frugal_cnn-mixed": _cycled,
}


def _worker(rank: int, world: int, out: str) -> None:
    import torch

    from frugalml.parallel import apply_plan, split_layer

    results: dict[str, Any] = {}
    for name, kind, ptype, output in CASES:
        full = _layer(kind)
        part = split_layer(full, ptype, SHARES, rank, output=output)
        x, g = _inputs(kind)
        x.requires_grad_(True)
        y = part(x)
        if output == "split":  # each rank's output channels; loss over its own slice
            counts = split_counts(g.shape[1], normalise_shares(SHARES))
            start = sum(counts[:rank])
            g = g[:, start : start + counts[rank]]
        (y * g).sum().backward()
        results[name] = {
            "y": y.detach(),
            "grad_x": x.grad,
            "grad_w": part.weight.grad,
            "grad_b": part.bias.grad,
        }
    for name, plan_types in _PLANS.items():
        model = _small(name)
        x, g = _plan_inputs(name)
        x.requires_grad_(True)
        apply_plan(model, plan_types(model), SHARES, rank)
        y = model(x)
        (y * g).sum().backward()
        results[name] = {"y": y.detach(), "grad_x": x.grad}
    torch.save(results, Path(out) / f"rank{rank}.pt")


@pytest.fixture(scope="module")
def spawned(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("tensor")
    spawn(_worker, 2, str(out))
    return out


def _reference(kind: str) -> dict[str, Any]:
    full = _layer(kind)
    x, g = _inputs(kind)
    x.requires_grad_(True)
    y = full(x)
    (y * g).sum().backward()
    return {"y": y.detach(), "grad_x": x.grad, "grad_w": full.weight.grad, "grad_b": full.bias.grad}


@pytest.mark.slow
@pytest.mark.parametrize(("name", "kind", "ptype", "output"), CASES)
def test_split_layer_equals_single_device(
    spawned: Path, name: str, kind: str, ptype: int, output: str
) -> None:
    import torch

    ref = _reference(kind)
    ranks = [torch.load(spawned / f"rank{r}.pt", weights_only=True)[name] for r in (0, 1)]
    channels = ref["grad_w"].shape[0 if ptype == 2 else 1]
    counts = split_counts(channels, normalise_shares(SHARES))
    assert counts[0] > counts[1] >= 1  # uneven
    dim = 0 if ptype == 2 else 1
    tol = {"rtol": 1e-5, "atol": 1e-5}
    for r, got in enumerate(ranks):
        start = sum(counts[:r])
        torch.testing.assert_close(
            got["grad_w"], ref["grad_w"].narrow(dim, start, counts[r]), **tol
        )
        if output == "whole":
            torch.testing.assert_close(got["y"], ref["y"], **tol)
        if output == "whole" or ptype == 1:
            torch.testing.assert_close(got["grad_x"], ref["grad_x"], **tol)
    if output == "split":
        out_counts = split_counts(ref["y"].shape[1], normalise_shares(SHARES))
        joined = torch.cat([ranks[0]["y"], ranks[1]["y"]], dim=1)
        torch.testing.assert_close(joined, ref["y"], **tol)
        assert ranks[0]["y"].shape[1] == out_counts[0]
    if ptype == 2:  # the bias is split with the output channels
        joined_b = torch.cat([ranks[0]["grad_b"], ranks[1]["grad_b"]])
        torch.testing.assert_close(joined_b, ref["grad_b"], **tol)
    elif output == "whole":  # added once after the partial sums; its gradient on every rank
        torch.testing.assert_close(ranks[0]["grad_b"], ref["grad_b"], **tol)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(_PLANS))
def test_small_network_under_a_plan_equals_single_device(spawned: Path, name: str) -> None:
    import torch

    model = _small(name)
    x, g = _plan_inputs(name)
    x.requires_grad_(True)
    y = model(x)
    (y * g).sum().backward()
    for rank in (0, 1):
        got = torch.load(spawned / f"rank{rank}.pt", weights_only=True)[name]
        torch.testing.assert_close(got["y"], y.detach(), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(got["grad_x"], x.grad, rtol=1e-5, atol=1e-5)
    if name.endswith("mixed"):
        assert set(_cycled(model)) == {0, 1, 2}


def test_bad_split_is_one_clear_error() -> None:
    import torch

    from frugalml.errors import ConfigError
    from frugalml.parallel import split_layer

    with pytest.raises(ConfigError, match="at least one channel"):
        split_layer(torch.nn.Linear(3, 2), 2, (9, 1), 0)
    with pytest.raises(ConfigError, match="only Linear and Conv2d"):
        split_layer(torch.nn.ReLU(), 2, (1, 1), 0)

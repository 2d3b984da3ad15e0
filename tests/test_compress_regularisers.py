"""Sparsity measures on hand-computed tensors, their invariances, schedules and L0 gates."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from frugalml.compress import (
    MEASURES,
    Regulariser,
    attach_gates,
    deterministic_gates,
    fold_gates,
    gate_penalty,
    group_hoyer_square,
    group_lasso,
    hoyer,
    hoyer_square,
    l1,
)
from frugalml.compress._l0 import LOG_ALPHA_SCALE, expected_l0, sample_gates
from frugalml.errors import ConfigError

W = torch.tensor([3.0, -4.0, 0.0, 0.0])
M = torch.tensor([[3.0, 4.0], [0.0, 0.0]])  # filters (rows) 5, 0; channels (cols) 3, 4


def test_hand_computed_values() -> None:
    assert float(l1(W)) == pytest.approx(7.0)
    assert float(hoyer(W)) == pytest.approx(7.0 / 5.0)
    assert float(hoyer_square(W)) == pytest.approx(49.0 / 25.0)
    assert float(group_lasso(M)) == pytest.approx(5.0 + 0.0 + 3.0 + 4.0)
    # Group-HS: ((5 + 0)^2 + (3 + 4)^2) / (9 + 16), one shared denominator
    assert float(group_hoyer_square(M)) == pytest.approx((25.0 + 49.0) / 25.0)


def test_conv_groups_are_filters_and_channels() -> None:
    w = torch.zeros(2, 3, 1, 1)
    w[0, 1, 0, 0] = 2.0
    w[1, 1, 0, 0] = 2.0  # both filters norm 2; only channel 1 is non-zero, norm sqrt(8)
    assert float(group_lasso(w)) == pytest.approx(2 + 2 + math.sqrt(8))
    assert float(group_hoyer_square(w)) == pytest.approx((16 + 8) / 8)


@pytest.mark.parametrize("fn", [hoyer, hoyer_square, group_hoyer_square])
def test_scale_invariance(fn: object) -> None:
    torch.manual_seed(0)
    w = torch.randn(4, 3, 3, 3)
    assert float(fn(w)) == pytest.approx(float(fn(17.5 * w)), rel=1e-5)  # type: ignore[operator]


def test_hoyer_square_bounds() -> None:
    one = torch.zeros(10)
    one[3] = -2.5
    assert float(hoyer_square(one)) == pytest.approx(1.0)
    assert float(hoyer_square(torch.full((10,), 0.3) * torch.tensor([1, -1] * 5))) == (
        pytest.approx(10.0)
    )
    torch.manual_seed(1)
    value = float(hoyer_square(torch.randn(10)))
    assert 1.0 <= value <= 10.0


@pytest.mark.parametrize("name", list(MEASURES))
def test_all_zero_tensor_is_zero_with_finite_gradient(name: str) -> None:
    w = torch.zeros(3, 2, requires_grad=True)
    value = MEASURES[name](w)
    value.backward()
    assert float(value) == 0.0
    assert w.grad is not None and torch.isfinite(w.grad).all()


def test_zero_group_keeps_a_finite_gradient() -> None:
    w = M.clone().requires_grad_(True)
    group_hoyer_square(w).backward()
    assert w.grad is not None and torch.isfinite(w.grad).all()


def test_regulariser_sums_layers_and_warms_up() -> None:
    model = nn.Sequential(nn.Linear(4, 1, bias=False), nn.Linear(1, 1, bias=False))
    with torch.no_grad():
        model[0].weight.copy_(W.view(1, 4))
        model[1].weight.fill_(-2.0)
    reg = Regulariser("l1", 0.5, schedule="warmup", warmup_steps=4)
    assert float(reg.value(model)) == pytest.approx(7.0 + 2.0)
    assert float(reg(model)) == pytest.approx(0.5 * 9.0 * 1 / 4)
    assert float(reg(model)) == pytest.approx(0.5 * 9.0 * 2 / 4)
    for _ in range(5):
        last = reg(model)
    assert float(last) == pytest.approx(0.5 * 9.0)
    only_first = Regulariser("l1", 1.0, names=["0.weight"])
    assert float(only_first(model)) == pytest.approx(7.0)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"measure": "l2", "strength": 1.0},
        {"measure": "l1", "strength": -1.0},
        {"measure": "l1", "strength": 1.0, "schedule": "cosine"},
        {"measure": "l1", "strength": 1.0, "schedule": "warmup"},
    ],
)
def test_regulariser_errors_are_one_line(kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigError) as info:
        Regulariser(**kwargs)  # type: ignore[arg-type]
    assert "\n" not in str(info.value) and info.value.fix


def test_l0_gate_statistics() -> None:
    zero = torch.zeros(200_000)
    # test time: sigmoid(0) * (1.1 + 0.1) - 0.1 = 0.5
    assert torch.allclose(deterministic_gates(zero), torch.full_like(zero, 0.5))
    # P(z > 0) = sigmoid(-beta * log(-gamma / zeta)) = sigmoid((2/3) ln 11)
    p_open = 1 / (1 + math.exp(-(2 / 3) * math.log(11)))
    assert float(expected_l0(zero)) / zero.numel() == pytest.approx(p_open)
    torch.manual_seed(0)
    z = sample_gates(zero)
    assert float((z == 0).float().mean()) == pytest.approx(1 - p_open, abs=0.005)
    assert float((z == 1).float().mean()) == pytest.approx(1 - p_open, abs=0.005)  # symmetric
    assert float(z.min()) == 0.0 and float(z.max()) == 1.0


def test_l0_gates_train_penalty_and_fold_to_dense() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    wrapped = attach_gates(model, ["0"])
    gates = wrapped.gates["0"]
    assert any(p is gates for p in wrapped.parameters())  # the optimizer sees them
    with torch.no_grad():
        gates.copy_(torch.tensor([-10.0, 0.0, 10.0, 10.0]) / LOG_ALPHA_SCALE)
    penalty = gate_penalty(wrapped, 2.0, n_train=100)
    expected = 2.0 * float(expected_l0(torch.tensor([-10.0, 0.0, 10.0, 10.0]))) / 100
    assert float(penalty) == pytest.approx(expected)
    wrapped.eval()
    x = torch.randn(5, 3)
    gated = wrapped(x)
    unwrapped, closed = fold_gates(wrapped)
    assert unwrapped is model and closed == {"0": 1}
    assert torch.allclose(model(x), gated, atol=1e-6)
    assert bool((model[0].weight[0] == 0).all()) and float(model[0].bias[0]) == 0.0


def test_l0_needs_layers() -> None:
    with pytest.raises(ConfigError):
        attach_gates(nn.Linear(2, 2), [])

"""count_costs: parameters, bytes and FLOPs against published reference numbers."""

from __future__ import annotations

import csv
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import timm
import torch
from torch import nn

from frugalml.errors import ConfigError, ModelError
from frugalml.models import FLOPS_SOURCE, count_costs, create_model

# torchvision's published model metadata (params; the column it labels GFLOPS is giga
# multiply-accumulates), as in ../shared/reference/reference_costs.csv. Each timm name
# below builds the same architecture: its parameter count is asserted equal before FLOPs are
# compared (a FLOP is counted per multiply and per add, so FLOPs ~ 2 x MACs).
REFERENCE = {
    # timm name: (torchvision name, params, GMACs at 224)
    "resnet18": ("resnet18", 11_689_512, 1.814),
    "resnet50": ("resnet50", 25_557_032, 4.089),
    "mobilenetv2_100": ("mobilenet_v2", 3_504_872, 0.301),
    "mobilenetv3_large_100": ("mobilenet_v3_large", 5_483_032, 0.217),
    "mobilenetv3_small_100": ("mobilenet_v3_small", 2_542_856, 0.057),
    "efficientnet_b0": ("efficientnet_b0", 5_288_548, 0.386),
    "convnext_tiny": ("convnext_tiny", 28_589_128, 4.456),
    "vit_base_patch16_224": ("vit_b_16", 86_567_656, 17.564),
}
SLOW = {"vit_base_patch16_224"}  # 86M parameters: about 3 s and 1 GB
# shared/ lies beside the repository (on a developer's machine and in CI alike).
SHARED_CSV = Path(__file__).resolve().parents[2] / "shared" / "reference" / "reference_costs.csv"


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def test_reference_table_matches_the_shared_csv() -> None:
    if not SHARED_CSV.is_file():
        if os.environ.get("CI") == "true":
            pytest.fail(f"{SHARED_CSV} is missing: CI must have shared/ beside the repository")
        pytest.skip(f"shared reference CSV not present at {SHARED_CSV}")
    with SHARED_CSV.open(newline="") as f:
        shared = {
            row["model"]: (int(row["params"]), float(row["gmacs_224"])) for row in csv.DictReader(f)
        }
    for tv_name, params, gmacs in REFERENCE.values():
        assert shared[tv_name] == (params, gmacs)


@pytest.mark.parametrize(
    "name",
    [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in REFERENCE],
)
def test_costs_match_torchvision_reference(name: str) -> None:
    _, params, gmacs = REFERENCE[name]
    model = timm.create_model(name, num_classes=1000, in_chans=3)
    costs = count_costs(model, (3, 224, 224))
    assert abs(costs.params - params) / params < 0.001
    assert costs.params == params  # same architecture, so exactly equal
    expected_flops = 2 * gmacs * 1e9
    assert abs(costs.flops_per_sample - expected_flops) / expected_flops < 0.02, (
        costs.flops_per_sample,
        expected_flops,
    )


def test_resnet18_through_create_model() -> None:
    model = create_model("resnet18", num_classes=1000, in_chans=3)
    costs = count_costs(model, (3, 224, 224))
    assert costs.params == costs.trainable_params == 11_689_512
    assert abs(costs.flops_per_sample / 3.628e9 - 1) < 0.02
    assert costs.input_shape == (3, 224, 224)
    assert costs.flops_source == FLOPS_SOURCE
    buffers = sum(b.numel() * b.element_size() for b in model.buffers())
    assert costs.weight_bytes == 4 * costs.params + buffers


def test_weight_bytes_follow_the_dtype_and_frozen_params_are_counted() -> None:
    model = nn.Sequential(nn.Linear(10, 20), nn.BatchNorm1d(20), nn.Linear(20, 3))
    for p in model[0].parameters():
        p.requires_grad_(False)
    flat = nn.Sequential(nn.Flatten(), model)
    costs = count_costs(flat, (1, 1, 10))
    params = (10 * 20 + 20) + (20 + 20) + (20 * 3 + 3)
    assert costs.params == params
    assert costs.trainable_params == params - (10 * 20 + 20)
    # BatchNorm1d buffers: running_mean, running_var (float32) + num_batches_tracked (int64)
    assert costs.weight_bytes == 4 * params + 4 * 40 + 8
    double = count_costs(flat.to(torch.float64), (1, 1, 10))
    assert double.weight_bytes == 8 * params + 8 * 40 + 8
    assert double.flops_per_sample == costs.flops_per_sample == 2 * (10 * 20 + 20 * 3)


def test_counting_restores_modes_and_leaves_weights_alone() -> None:
    torch.manual_seed(0)
    model = create_model("frugal_cnn", num_classes=10, in_chans=1, batch_norm=True)
    model.train()
    first_bn = next(m for m in model.modules() if isinstance(m, nn.BatchNorm2d))
    first_bn.eval()  # a frozen BN, as fine-tuning recipes do
    before = {k: v.clone() for k, v in model.state_dict().items()}
    count_costs(model, (1, 8, 8))
    assert model.training and not first_bn.training
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert all(p.grad is None for p in model.parameters())


def test_conv_flops_are_exact() -> None:
    model = nn.Conv2d(3, 8, kernel_size=3, padding=1, bias=False)
    costs = count_costs(model, (3, 16, 16))
    assert costs.flops_per_sample == 2 * 8 * 3 * 3 * 3 * 16 * 16


class _Attention(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        tokens = x.flatten(2).transpose(1, 2).reshape(b, h * w, 2, c // 2).transpose(1, 2)
        return nn.functional.scaled_dot_product_attention(tokens, tokens, tokens)


def test_attention_flops_are_counted_on_cpu() -> None:
    # q, k, v: (1 batch, 2 heads, 16 tokens, 4 dims): Q K^T and A V, 2 FLOPs per MAC each.
    costs = count_costs(_Attention(), (8, 4, 4))
    assert costs.flops_per_sample == 2 * (2 * 1 * 2 * 16 * 16 * 4)
    assert costs.flops_source.startswith(FLOPS_SOURCE)


class _Tokens(nn.Module):
    """Feeds a (C, H, W) image to a sequence layer as H*W tokens of width C."""

    def __init__(self, layer: nn.Module) -> None:
        super().__init__()
        self.layer = layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = x.flatten(2).transpose(1, 2)
        if isinstance(self.layer, nn.MultiheadAttention):
            return self.layer(tokens, tokens, tokens)[0]
        out: torch.Tensor = self.layer(tokens)
        return out


def _unfused_flops(model: nn.Module, shape: tuple[int, int, int]) -> int:
    """torch's own counter in training mode, where the layers run as separate matmuls."""
    from torch.utils.flop_counter import FlopCounterMode

    model.train()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.randn(1, *shape))
    return int(counter.get_total_flops())


@pytest.mark.parametrize(
    "layer",
    [
        nn.MultiheadAttention(32, 4, batch_first=True),
        nn.TransformerEncoderLayer(32, 4, dim_feedforward=48, batch_first=True),
    ],
    ids=["multihead_attention", "transformer_encoder_layer"],
)
def test_fused_eval_fast_paths_are_counted(layer: nn.Module) -> None:
    # In eval mode without gradients these layers run one fused kernel that torch's counter
    # has no formula for (it counts 0); count_costs must give the unfused count.
    model = _Tokens(layer)
    shape = (32, 3, 4)
    expected = _unfused_flops(model, shape)
    assert expected > 0
    costs = count_costs(model, shape)
    assert costs.flops_per_sample == expected
    assert "frugalml formulas" in costs.flops_source


@pytest.mark.parametrize("shape", [(3, 224), (0, 8, 8), (1, 8, 8.0), "3x8x8"])
def test_bad_input_shape(shape: object) -> None:
    with pytest.raises(ConfigError, match="input_shape"):
        count_costs(nn.Identity(), shape)  # type: ignore[arg-type]


def test_model_that_cannot_run_at_that_shape() -> None:
    model = create_model("frugal_cnn", num_classes=10, in_chans=3)
    with pytest.raises(ModelError, match="in_chans"):
        count_costs(model, (1, 8, 8))
    assert model.training  # restored even after the failure

"""Layer profiles: FLOPs and parameters add up, layer types, honest time shares, attribution."""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Iterator

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from frugalml.data import ImageDataset, Split, load_dataset
from frugalml.errors import ConfigError
from frugalml.models import count_costs, create_model
from frugalml.profile import (
    LAYER_TYPES,
    OUTSIDE_MODEL,
    ProfileConfig,
    classify_module,
    module_flops,
    profile_network,
    time_training_steps,
)

FAST = ProfileConfig(batch_size=16, steps=3, profile_steps=3, warmup_steps=1)


@pytest.fixture(autouse=True)
def _one_torch_thread() -> Iterator[None]:
    """One intra-op thread: on a shared, oversubscribed CPU, OpenMP's waiting makes small
    operators hundreds of times slower and the timings meaningless."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


class _Mixed(nn.Module):
    """One of each layer type, plus an attention block and a functional op in forward."""

    def __init__(self, classes: int = 10) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.relu = nn.ReLU()
        self.pool = nn.MaxPool2d(2)
        self.attn = nn.MultiheadAttention(8, 2, batch_first=True)
        self.drop = nn.Dropout(0.1)
        self.fc = nn.Linear(8 * 16, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.relu(self.bn(self.conv(x))))  # B x 8 x 4 x 4
        tokens = x.flatten(2).transpose(1, 2)  # B x 16 x 8
        attended, _ = self.attn(tokens, tokens, tokens)
        return self.fc(self.drop(torch.flatten(tokens + attended, 1)))


@pytest.fixture(scope="module")
def digits() -> ImageDataset:
    return load_dataset("digits")


def _flop_total(model: nn.Module, x: torch.Tensor) -> int:
    """The whole-model total of a plain FlopCounterMode (training mode, no gradients), with
    the CPU attention formula that frugalml.models.count_costs adds to the counter's."""
    from frugalml.models import extra_flop_formulas

    counter = FlopCounterMode(display=False, custom_mapping=extra_flop_formulas())
    with torch.no_grad(), counter:
        model(x)
    return int(counter.get_total_flops())


@pytest.mark.parametrize(
    ("name", "shape"),
    [("frugal_cnn", (1, 8, 8)), ("test_vit", (3, 32, 32)), ("test_resnet", (3, 32, 32))],
)
def test_own_flops_of_all_modules_sum_to_the_flop_counter_total(
    name: str, shape: tuple[int, int, int]
) -> None:
    torch.manual_seed(0)
    model = create_model(name, num_classes=10, in_chans=shape[0])
    x = torch.randn(4, *shape)
    flops = module_flops(model, x)
    assert flops.total_flops == _flop_total(model, x) > 0
    # and what frugalml.models counts per sample (eval mode, batch 1) times the batch
    assert flops.total_flops == 4 * count_costs(model, shape).flops_per_sample
    assert sum(flops.own_flops.values()) == flops.total_flops
    assert flops.unattributed_flops == 0
    assert all(v >= 0 for v in flops.own_flops.values())


def test_conv_flops_match_a_hand_count() -> None:
    model = _Mixed()
    x = torch.randn(2, 1, 8, 8)
    running_mean = model.bn.running_mean.clone()
    flops = module_flops(model, x)
    assert torch.equal(model.bn.running_mean, running_mean)  # buffers restored
    assert sum(flops.own_flops.values()) == flops.total_flops == _flop_total(model, x)
    # 2 FLOPs per multiply-add: batch x C_out x H x W x C_in x k x k
    assert flops.own_flops["conv"] == 2 * 2 * 8 * 8 * 8 * 1 * 3 * 3
    assert flops.own_flops["fc"] == 2 * 2 * 128 * 10
    # MultiheadAttention runs its projections itself (F.multi_head_attention_forward), so
    # its own FLOPs include out_proj's and out_proj counts nothing of its own.
    assert flops.own_flops["attn"] > 0
    assert flops.own_flops["attn.out_proj"] == 0


def test_layer_types_of_a_mixed_model() -> None:
    model = _Mixed()
    expected = {
        "conv": "convolution",
        "bn": "normalisation",
        "relu": "activation",
        "pool": "pooling",
        "attn": "attention",
        "attn.out_proj": "linear",
        "drop": "other",
        "fc": "linear",
    }
    modules = dict(model.named_modules())
    assert {name: classify_module(modules[name]) for name in expected} == expected
    extra = {
        nn.GELU(): "activation",
        nn.LayerNorm(4): "normalisation",
        nn.GroupNorm(2, 4): "normalisation",
        nn.AdaptiveAvgPool2d(1): "pooling",
        nn.ConvTranspose2d(2, 2, 3): "convolution",
        nn.Identity(): "other",
        nn.Sequential(): "other",
    }
    for module, layer_type in extra.items():
        assert classify_module(module) == layer_type, type(module).__name__
    assert set(expected.values()) <= set(LAYER_TYPES)


def test_layer_types_of_a_timm_vit() -> None:
    model = create_model("test_vit", num_classes=10, in_chans=3)
    types = {name: classify_module(m) for name, m in model.named_modules()}
    assert types["patch_embed.proj"] == "convolution"
    assert types["blocks.0.attn"] == "attention"
    assert types["blocks.0.attn.qkv"] == "linear"
    assert types["blocks.0.norm1"] == "normalisation"
    assert types["blocks.0.mlp.act"] == "activation"


def test_profile_adds_up(digits: ImageDataset) -> None:
    torch.manual_seed(0)
    model = _Mixed()
    before = [p.detach().clone() for p in model.parameters()]
    profile = profile_network(model, digits, FAST, model_name="mixed")
    assert profile.threads == 1 and profile.to_dict()["threads"] == 1  # the one threads rule

    # parameters per layer sum to the model's
    assert sum(layer.params for layer in profile.layers) == profile.params
    assert profile.params == sum(p.numel() for p in model.parameters())
    # forward FLOPs per layer sum to the counter's total on the same batch
    x = torch.zeros(FAST.batch_size, 1, 8, 8)
    assert sum(layer.forward_flops for layer in profile.layers) == profile.forward_flops
    assert profile.forward_flops == _flop_total(model, x)
    # time shares are non-negative and sum to 1; attributed energy sums to the window's
    shares = [layer.time_share for layer in profile.layers]
    assert all(s >= 0 for s in shares)
    assert math.isclose(sum(shares), 1.0, rel_tol=1e-9)
    assert profile.energy_j > 0
    assert math.isclose(
        sum(layer.energy_j for layer in profile.layers), profile.energy_j, rel_tol=1e-9
    )
    assert profile.energy_kind in ("measured", "estimated", "mixed")
    for layer in profile.layers:
        assert math.isclose(layer.energy_j, profile.energy_j * layer.time_share, rel_tol=1e-9)
    # the per-type table is the layers summed
    by_type = {t.layer_type: t for t in profile.by_type()}
    assert set(by_type) == {
        "convolution", "linear", "activation", "normalisation", "pooling", "attention",
        "other", OUTSIDE_MODEL,
    }  # fmt: skip
    assert math.isclose(sum(t.energy_j for t in by_type.values()), profile.energy_j)
    assert by_type["convolution"].params == 8 * 9 + 8
    # every layer with weights really ran forward and backward (the first conv included,
    # although its input needs no gradient), and the attention block's own operators too
    rows = {layer.name: layer for layer in profile.layers}
    for name in ("conv", "bn", "fc", "attn"):
        assert rows[name].forward_s > 0 and rows[name].backward_s > 0, name
    assert rows["(model)"].own_ops and rows["attn"].own_ops
    assert {"loss (cross-entropy)", "optimizer (Adam)"} <= set(rows)
    # the steps trained the model for real
    after = list(model.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(before, after, strict=True))
    # the hooks are gone
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())
    assert profile.to_dict()["energy_kind"] == profile.energy_kind
    assert any("attributed" in note for note in profile.notes)


class _Busy(nn.Module):
    """A layer that does much more work than its neighbours."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(96, 96) / 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Each product starts from the input, so no value decays towards subnormal floats
        # (which would make the CPU slow for reasons that have nothing to do with layers).
        out = torch.zeros_like(x)
        for _ in range(30):
            out = out + torch.tanh(x @ self.weight)
        return out


def test_time_shares_follow_the_work() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(96, 96), _Busy(), nn.Linear(96, 4))
    optimizer = torch.optim.Adam(model.parameters())
    batches = [(torch.randn(64, 96), torch.randint(0, 4, (64,)))]
    times = time_training_steps(
        model, nn.CrossEntropyLoss(), optimizer, batches, 5, torch.device("cpu")
    )
    per_step = times.per_step()
    busy = sum(per_step["1"])
    cheap = sum(per_step["0"]) + sum(per_step["2"])
    assert busy > 3 * cheap
    assert len(times.plain_s) == len(times.wall_s) == 5
    assert all(t > 0 for t in times.plain_s)
    # nothing clocked twice: the clocked parts fit in the hooked steps' wall time
    assert sum(f + b for f, b in per_step.values()) <= times.wall_per_step() * 1.000001


def test_clocks_cover_the_backward_of_the_busy_layer() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(_Busy(), nn.Linear(96, 4))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    x, y = torch.randn(64, 96), torch.randint(0, 4, (64,))
    times = time_training_steps(
        model, nn.CrossEntropyLoss(), optimizer, [(x, y)], 5, torch.device("cpu")
    )
    per_step = times.per_step()
    # the busy layer's backward (30 weight-gradient products and tanh backwards) is clocked,
    # and far longer than the small linear layer's (one 64 x 96 x 4 product)
    busy_backward, linear_backward = per_step["0"][1], per_step["1"][1]
    assert busy_backward > 5 * linear_backward > 0
    # all the clocked backward parts together take about what a plain backward takes
    plain = []
    for _ in range(5):
        loss = nn.CrossEntropyLoss()(model(x), y)
        t0 = time.perf_counter()
        loss.backward()
        plain.append(time.perf_counter() - t0)
    clocked = sum(b for _, b in per_step.values())
    assert 0.2 * statistics.median(plain) < clocked < 5 * statistics.median(plain)


def test_profile_config_rejects_bad_values() -> None:
    with pytest.raises(ConfigError, match="steps"):
        ProfileConfig(steps=0)
    with pytest.raises(ConfigError, match="statistic"):
        ProfileConfig(statistic="max")
    with pytest.raises(ConfigError, match="batch_size"):
        ProfileConfig(batch_size=True)  # type: ignore[arg-type]


def test_profile_refuses_a_frozen_model(digits: ImageDataset) -> None:
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    for p in model.parameters():
        p.requires_grad_(False)
    with pytest.raises(ConfigError, match="no trainable parameters"):
        profile_network(model, digits, FAST)


def test_profile_names_an_input_the_model_cannot_take() -> None:
    rng = np.random.default_rng(0)
    split = Split(rng.integers(0, 255, (20, 1, 8, 8), dtype=np.uint8), np.arange(20) % 2)
    data = ImageDataset("tiny", 2, 1, (8, 8), ("a", "b"), split, split, split)
    model = nn.Sequential(nn.Flatten(), nn.Linear(100, 2))  # expects 10 x 10
    with pytest.raises(ConfigError, match=r"cannot run on input \(1, 8, 8\)"):
        profile_network(model, data, FAST)

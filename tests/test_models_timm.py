"""timm models through frugalml: creation, names, and pretrained weights without a network.

Pretrained loading is tested through timm's real path: a small timm model's weights are
written to tmp_path and loaded with ``pretrained_file`` (timm's ``pretrained_cfg_overlay``
file source), or placed in a Hugging Face cache layout under tmp_path. The hub is never
contacted: ``huggingface_hub.constants.ENDPOINT`` points at a closed local port.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import timm
import torch
from huggingface_hub import constants as hf_constants
from safetensors.torch import save_file

from frugalml.errors import ConfigError, ModelError
from frugalml.models import create_model
from frugalml.models._timm import HUB_PROBE_TIMEOUT_S, _reachable, lookup_timm_name

SMALL = "resnet10t"  # a real timm architecture with ImageNet weights, 4.9M parameters


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture
def no_hub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """An empty Hugging Face cache and a hub endpoint nobody listens on (port 9, discard)."""
    cache = tmp_path / "hf-cache"
    cache.mkdir()
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(hf_constants, "ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)
    return cache


@pytest.fixture(scope="module")
def imagenet_state() -> dict[str, torch.Tensor]:
    """A 1000-class, 3-channel resnet10t state_dict standing in for its ImageNet weights."""
    torch.manual_seed(123)
    return timm.create_model(SMALL, num_classes=1000, in_chans=3).state_dict()


@pytest.mark.parametrize("name", [SMALL, "lcnet_050", "mobilenetv3_small_050"])
def test_timm_model_with_one_channel_and_seven_classes(name: str) -> None:
    model = create_model(name, num_classes=7, in_chans=1)
    model.eval()
    with torch.no_grad():
        y = model(torch.randn(2, 1, 32, 32))
    assert y.shape == (2, 7)
    assert torch.isfinite(y).all()


def test_timm_kwargs_pass_through_and_bad_ones_are_config_errors() -> None:
    model = create_model(SMALL, num_classes=3, in_chans=3, drop_rate=0.25)
    assert model.drop_rate == 0.25  # type: ignore[comparison-overlap]
    with pytest.raises(ConfigError, match="no_such_knob"):
        create_model(SMALL, num_classes=3, in_chans=3, no_such_knob=1)


def test_unknown_name_suggests_close_matches() -> None:
    with pytest.raises(ModelError) as info:
        create_model("resnet10", num_classes=7, in_chans=1)
    message = str(info.value)
    assert "unknown model 'resnet10'" in message
    assert "did you mean" in message and "resnet10t" in message
    assert info.value.fix and "list_models" in info.value.fix


def test_unknown_name_suggests_builtins() -> None:
    with pytest.raises(ModelError, match="frugal_cnn"):
        create_model("frugal_ccn", num_classes=7, in_chans=1)


def test_deprecated_alias_builds_the_new_name(caplog: pytest.LogCaptureFixture) -> None:
    deprecated = timm.models.get_deprecated_models()
    assert deprecated["gluon_resnet34_v1b"] == "resnet34.gluon_in1k"
    with caplog.at_level("INFO", logger="frugalml.models"):
        model = create_model("gluon_resnet34_v1b", num_classes=7, in_chans=1)
    assert model.pretrained_cfg["architecture"] == "resnet34"
    assert model.pretrained_cfg["tag"] == "gluon_in1k"
    assert "resnet34.gluon_in1k" in caplog.text


def test_lookup_knows_tags_and_removed_names() -> None:
    assert lookup_timm_name("resnet18").status == "ok"
    assert lookup_timm_name("resnet18.a1_in1k").status == "ok"
    bad_tag = lookup_timm_name("resnet18.nope")
    assert bad_tag.status == "unknown" and "resnet18.a1_in1k" in bad_tag.reason
    gone = lookup_timm_name("gluon_xception65")
    assert gone.status == "unknown"
    assert "xception65" in gone.close


def _check_adapted(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Body weights equal the file's; the stem conv is the file's summed over RGB."""
    loaded = model.state_dict()
    stem = "conv1.0.weight"
    assert loaded[stem].shape == (24, 1, 3, 3)
    assert torch.equal(loaded[stem], state[stem].sum(dim=1, keepdim=True))
    body = [k for k in state if not k.startswith("fc.") and k != stem]
    assert len(body) > 50
    for key in body:
        assert torch.equal(loaded[key], state[key]), key
    assert loaded["fc.weight"].shape == (7, 512)


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_pretrained_from_local_file(
    tmp_path: Path, imagenet_state: dict[str, torch.Tensor], suffix: str, no_hub: Path
) -> None:
    path = tmp_path / f"{SMALL}{suffix}"
    if suffix == ".safetensors":
        save_file({k: v.contiguous() for k, v in imagenet_state.items()}, str(path))
    else:
        torch.save(imagenet_state, path)
    model = create_model(SMALL, num_classes=7, in_chans=1, pretrained=True, pretrained_file=path)
    _check_adapted(model, imagenet_state)


def test_pretrained_file_of_another_architecture_fails(tmp_path: Path) -> None:
    path = tmp_path / "other.pth"
    torch.save(timm.create_model("resnet18").state_dict(), path)
    with pytest.raises(ModelError, match="could not load pretrained weights for resnet10t"):
        create_model(SMALL, num_classes=7, in_chans=1, pretrained=True, pretrained_file=path)


def test_pretrained_file_with_foreign_key_names_is_not_silently_ignored(
    tmp_path: Path, imagenet_state: dict[str, torch.Tensor]
) -> None:
    # timm loads non-strictly when the class count differs and only logs missing keys;
    # without frugalml's check this would return a randomly initialised model.
    path = tmp_path / "prefixed.pth"
    torch.save({f"encoder.{k}": v for k, v in imagenet_state.items()}, path)
    with pytest.raises(ModelError, match="would silently start from random values"):
        create_model(SMALL, num_classes=7, in_chans=1, pretrained=True, pretrained_file=path)


def test_missing_pretrained_file(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="does not exist"):
        create_model(
            SMALL, num_classes=7, in_chans=1, pretrained=True, pretrained_file=tmp_path / "x.pth"
        )
    with pytest.raises(ConfigError, match="pretrained=False"):
        create_model(SMALL, num_classes=7, in_chans=1, pretrained_file=tmp_path / "x.pth")


def test_pretrained_unreachable_hub_fails_fast(no_hub: Path) -> None:
    start = time.perf_counter()
    with pytest.raises(ModelError) as info:
        create_model(SMALL, num_classes=7, in_chans=1, pretrained=True)
    elapsed = time.perf_counter() - start
    message = str(info.value)
    assert SMALL in message and "unreachable" in message
    assert "pretrained_file" in (info.value.fix or "")
    assert elapsed < HUB_PROBE_TIMEOUT_S + 5, elapsed


def test_pretrained_offline_mode_fails_fast(no_hub: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(ModelError, match="HF_HUB_OFFLINE"):
        create_model(SMALL, num_classes=7, in_chans=1, pretrained=True)


def test_pretrained_from_the_local_hub_cache(
    no_hub: Path, imagenet_state: dict[str, torch.Tensor]
) -> None:
    hub_id = timm.models.get_pretrained_cfg(SMALL).hf_hub_id  # timm/resnet10t.c3_in1k
    repo = no_hub / ("models--" + hub_id.replace("/", "--"))
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("0" * 40)
    snapshot = repo / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    save_file(
        {k: v.contiguous() for k, v in imagenet_state.items()}, str(snapshot / "model.safetensors")
    )
    model = create_model(SMALL, num_classes=7, in_chans=1, pretrained=True)
    _check_adapted(model, imagenet_state)


def test_model_without_pretrained_weights_says_so(no_hub: Path) -> None:
    name = "coatnet_0_224"  # registered in timm, no published weights
    assert name in timm.list_models() and name not in {
        n.split(".")[0] for n in timm.list_pretrained()
    }
    with pytest.raises(ModelError, match="no pretrained weights"):
        create_model(name, num_classes=7, in_chans=1, pretrained=True)


def test_real_hub_unreachable_here_fails_fast(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Without mocks: on a machine that cannot reach the real hub, fail in seconds."""
    if _reachable(hf_constants.ENDPOINT):
        pytest.skip("the Hugging Face hub is reachable here; this test would download weights")
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path))
    start = time.perf_counter()
    with pytest.raises(ModelError, match=r"unreachable|HF_HUB_OFFLINE"):
        create_model(SMALL, num_classes=7, in_chans=1, pretrained=True)
    assert time.perf_counter() - start < HUB_PROBE_TIMEOUT_S + 5


def test_hub_defined_model_without_hub_fails_fast(no_hub: Path) -> None:
    start = time.perf_counter()
    with pytest.raises(ModelError, match="unreachable"):
        create_model("hf-hub:timm/resnet10t.c3_in1k", num_classes=7, in_chans=1)
    assert time.perf_counter() - start < HUB_PROBE_TIMEOUT_S + 5

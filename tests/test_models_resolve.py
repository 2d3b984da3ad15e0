"""Model references, presets and their resolution against the installed timm."""

from __future__ import annotations

import csv
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from frugalml.errors import ConfigError, ModelError
from frugalml.models import (
    ModelRef,
    get_preset,
    list_presets,
    model_input_size,
    pepr_reference,
    resolve_models,
)

SHARED_PEPR_CSV = Path("/work/shared/reference/pepr_model_names.csv")

# The PePR names that timm 1.x no longer lists: seven it maps to a current name and weight
# tag, one (gluon_xception65) it no longer knows at all.
PEPR_RENAMED = {
    "gluon_resnet34_v1b": "resnet34.gluon_in1k",
    "adv_inception_v3": "inception_v3.tf_adv_in1k",
    "gluon_inception_v3": "inception_v3.gluon_in1k",
    "gluon_seresnext50_32x4d": "seresnext50_32x4d.gluon_in1k",
    "gluon_resnext101_32x4d": "resnext101_32x4d.gluon_in1k",
    "gluon_seresnext101_32x4d": "seresnext101_32x4d.gluon_in1k",
    "gluon_resnet152_v1b": "resnet152.gluon_in1k",
}


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


# ModelRef ---------------------------------------------------------------------------------


def test_model_ref_key_is_canonical_and_hashable() -> None:
    a = ModelRef("frugal_cnn", {"width": 16, "conv_layers": 4})
    b = ModelRef("frugal_cnn", {"conv_layers": 4, "width": 16})
    assert a.key == "frugal_cnn(conv_layers=4,width=16)"
    assert a == b and hash(a) == hash(b)
    assert len({a, b, ModelRef("frugal_cnn")}) == 2
    assert ModelRef("resnet18").key == "resnet18" == str(ModelRef("resnet18"))
    assert ModelRef("frugal_cnn", {"relu": False, "dropout": 0.5}).key == (
        "frugal_cnn(dropout=0.5,relu=False)"
    )
    assert ModelRef("frugal_cnn", image_size=8) != ModelRef("frugal_cnn")


def test_model_ref_round_trips_through_a_mapping() -> None:
    ref = ModelRef("frugal_cnn", {"conv_layers": 4}, image_size=8)
    assert ModelRef.from_mapping(ref.to_dict()) == ref


@pytest.mark.parametrize(
    "kwargs",
    [
        {"name": ""},
        {"name": "resnet18", "args": {"x": {"nested": 1}}},
        {"name": "resnet18", "args": {"not an identifier": 1}},
        {"name": "resnet18", "image_size": 0},
        {"name": "resnet18", "image_size": True},
    ],
)
def test_model_ref_rejects_bad_values(kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        ModelRef(**kwargs)  # type: ignore[arg-type]


def test_model_ref_creates_its_model() -> None:
    model = ModelRef("frugal_cnn", {"conv_layers": 1}).create(num_classes=4, in_chans=1)
    assert model(torch.randn(2, 1, 8, 8)).shape == (2, 4)


# presets ----------------------------------------------------------------------------------


def test_list_presets() -> None:
    presets = list_presets()
    assert set(presets) == {"cpu-tiny", "pepr131"}
    assert all(isinstance(d, str) and d for d in presets.values())


def test_unknown_preset() -> None:
    with pytest.raises(ModelError, match="did you mean cpu-tiny"):
        get_preset("cpu-tiyn")
    with pytest.raises(ModelError, match="unknown model preset"):
        resolve_models([{"preset": "nope"}])


def test_cpu_tiny_is_a_small_mix_with_sizes() -> None:
    refs = get_preset("cpu-tiny")
    assert 3 <= len(refs) <= 5
    assert all(ref.image_size in (8, 32) for ref in refs)
    builtins = [r for r in refs if r.name.startswith("frugal_")]
    assert len(builtins) >= 2 and len(refs) - len(builtins) in (1, 2)


@pytest.mark.parametrize("ref", get_preset("cpu-tiny"), ids=lambda r: r.key)
def test_cpu_tiny_models_train_on_a_digits_batch(ref: ModelRef) -> None:
    size = model_input_size(ref, 8)
    assert size == ref.image_size
    torch.manual_seed(0)
    model = ref.create(num_classes=10, in_chans=1)
    model.train()
    x = torch.rand(32, 1, size, size)
    y = torch.arange(32) % 10
    loss = torch.nn.functional.cross_entropy(model(x), y)
    loss.backward()
    assert torch.isfinite(loss)
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert grads and all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads if g is not None)


def test_pepr_reference_matches_the_study_table() -> None:
    rows = pepr_reference()
    assert len(rows) == 131
    assert rows[0] == {
        "model": "dla46x_c",
        "num_param": 1068440,
        "type": "CNN",
        "efficient": False,
        "link": "https://arxiv.org/abs/1707.06484",
    }
    assert sum(r["efficient"] for r in rows) > 20
    assert {r["type"] for r in rows} == {"CNN", "Other"}
    rows[0]["model"] = "changed"  # callers get copies
    assert pepr_reference()[0]["model"] == "dla46x_c"
    if SHARED_PEPR_CSV.is_file():
        with SHARED_PEPR_CSV.open(newline="") as f:
            shared = list(csv.DictReader(f))
        assert [r["model"] for r in shared] == [r["model"] for r in pepr_reference()]
        assert [int(r["num_param"]) for r in shared] == [r["num_param"] for r in pepr_reference()]


def test_packaged_csv_keeps_its_attribution() -> None:
    from importlib import resources

    text = resources.files("frugalml.models").joinpath("pepr_model_names.csv").read_text()
    assert "MIT License" in text and "Copyright (c) 2024 Selvan" in text
    assert "saintslab/PePR" in text


def test_pepr131_reports_what_timm_no_longer_knows() -> None:
    resolved = resolve_models(["pepr131"])
    assert len(resolved.models) == 130
    assert dict(resolved.renamed) == PEPR_RENAMED
    assert [name for name, _ in resolved.unresolved] == ["gluon_xception65"]
    reason = resolved.unresolved[0][1]
    assert "does not know" in reason and "xception65" in reason
    names = resolved.names
    for new in PEPR_RENAMED.values():
        assert new in names
    assert not set(PEPR_RENAMED) & set(names)
    # every listed name is accounted for: resolved, renamed or unresolved
    listed = [r["model"] for r in pepr_reference()]
    accounted = set(names) | set(PEPR_RENAMED) | {n for n, _ in resolved.unresolved}
    assert set(listed) <= accounted


# resolve_models ---------------------------------------------------------------------------


def test_resolve_mixed_entries_dedups_in_order() -> None:
    resolved = resolve_models(
        [
            "frugal_mlp",
            {"name": "frugal_cnn", "args": {"conv_layers": 4, "width": 16}, "image_size": 8},
            "cpu-tiny",
            "frugal_mlp",
            ModelRef("resnet18"),
            {"preset": "cpu-tiny"},
        ]
    )
    keys = [r.key for r in resolved.models]
    assert keys[0] == "frugal_mlp"
    assert keys[1] == "frugal_cnn(conv_layers=4,width=16)"
    assert len(keys) == len(set(zip(keys, [r.image_size for r in resolved.models], strict=True)))
    assert keys.count("frugal_mlp") == 1  # the explicit one; cpu-tiny's has other args
    assert "resnet18" in keys
    assert len(resolved.models) == 2 + len(get_preset("cpu-tiny")) - 1 + 1  # one cpu-tiny dup
    assert resolved.unresolved == [] and resolved.renamed == []


def test_explicit_unknown_name_is_an_error_with_suggestions() -> None:
    with pytest.raises(ModelError) as info:
        resolve_models(["mobilenetv3_smal_050"])
    assert "did you mean mobilenetv3_small_050" in str(info.value)
    with pytest.raises(ModelError, match="cpu-tiny"):
        resolve_models(["cpu-tiyn"])


def test_non_strict_reports_unknown_names() -> None:
    resolved = resolve_models(["resnet18", "not_a_model_at_all"], strict=False)
    assert resolved.names == ["resnet18"]
    assert resolved.unresolved[0][0] == "not_a_model_at_all"


def test_explicit_deprecated_name_is_renamed() -> None:
    resolved = resolve_models(["gluon_resnet34_v1b", "resnet34.gluon_in1k"])
    assert resolved.names == ["resnet34.gluon_in1k"]
    assert resolved.renamed == [("gluon_resnet34_v1b", "resnet34.gluon_in1k")]


def test_builtin_args_are_validated_at_resolve_time() -> None:
    with pytest.raises(ConfigError, match="conv_layers=0"):
        resolve_models([{"name": "frugal_cnn", "args": {"conv_layers": 0}}])
    with pytest.raises(ConfigError, match="no knob"):
        resolve_models([{"name": "frugal_mlp", "args": {"conv_layers": 1}}])


@pytest.mark.parametrize(
    "entries",
    [
        "resnet18",
        [{"preset": "cpu-tiny", "name": "resnet18"}],
        [{"nmae": "resnet18"}],
        [{"name": "resnet18", "extra": 1}],
        [42],
    ],
)
def test_malformed_entries(entries: object) -> None:
    with pytest.raises(ConfigError):
        resolve_models(entries)  # type: ignore[arg-type]


def test_builtins_and_builtin_presets_resolve_without_timm() -> None:
    code = (
        "import sys\n"
        "import frugalml.models as m\n"
        "assert 'torch' not in sys.modules and 'timm' not in sys.modules\n"
        "r = m.resolve_models(['frugal_cnn', {'name': 'frugal_mlp', 'args': {'hidden': 8}}])\n"
        "assert len(r.models) == 2\n"
        "assert len(m.get_preset('pepr131')) == 131 and m.list_presets()\n"
        "assert 'timm' not in sys.modules and 'torch' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# model_input_size -------------------------------------------------------------------------


def test_model_input_size() -> None:
    assert model_input_size(ModelRef("frugal_cnn", image_size=8), 28) == 8
    assert model_input_size("frugal_cnn", 28) == 28
    assert model_input_size("resnet18", 28) == 28
    assert model_input_size("crossvit_9_240", 28) == 240  # fixed input size
    assert model_input_size("swinv2_base_window8_256", 64) == 256
    assert model_input_size(ModelRef("vit_tiny_patch16_224", {"img_size": 32}), 28) == 32
    with pytest.raises(ConfigError):
        model_input_size("resnet18", 0)

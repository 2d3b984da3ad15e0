"""The checks specs, validation and the study worker share (issue 8, section 2).

Validation says OK only to what a worker can run: both call the same checks
(:func:`frugalml.study._spec.check_trial`, :func:`frugalml.data.load_dataset`'s split check),
so these tests run the real worker in-process on a real store and compare its refusal with
validation's line.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from frugalml.cli import main
from frugalml.data import check_dataset, load_dataset
from frugalml.errors import ConfigError, DataError, ModelError
from frugalml.study import StudySpec, StudyStore
from frugalml.study._spec import ModelEntry, check_trial, trial_input_size
from frugalml.study._worker import EXIT_COMPLETE, EXIT_FAILED, run_trial
from frugalml.train import TrainConfig

BASE = {"name": "t", "datasets": ["digits"], "models": ["frugal_mlp"]}


def _folder(root: Path, per_class: dict[str, int], sizes: tuple[int, ...] = (8,)) -> None:
    for c, (name, n) in enumerate(per_class.items()):
        for i in range(n):
            side = sizes[i % len(sizes)]
            path = root / name / f"{i}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.full((side, side), 30 * c + i, dtype=np.uint8)).save(path)


def _run_in_worker(spec: StudySpec, out: Path) -> tuple[int, str | None, str]:
    """Put the spec's first trial in a real store and run the real worker on it."""
    trial = spec.trials()[0]
    extra = {"carbon": {}, "data_root": spec.data_root, "download": spec.download}
    with StudyStore(out) as store:
        store.add_trials([(trial.trial_id, trial.study, trial.label, {**trial.to_dict(), **extra})])
        assert store.claim([trial.trial_id]) == trial.trial_id
    code = run_trial(str(out / "study.db"), trial.trial_id, 1, time.time())
    with StudyStore(out, create=False) as store:
        row = store.trial(trial.trial_id)
    return code, row.error, row.status


def test_the_worker_refuses_what_validation_refuses(tmp_path: Path) -> None:
    spec = StudySpec.from_mapping({**BASE, "training": {"epochs": 1}})
    with pytest.raises(ModelError) as refused:
        StudySpec.from_mapping({**BASE, "pretrained": [True]})
    # A store written before the check existed (or by hand) still holds such a trial.
    sneaked = dataclasses.replace(spec, pretrained=(True,))
    code, error, status = _run_in_worker(sneaked, tmp_path / "out")
    assert (code, status) == (EXIT_FAILED, "failed")
    assert error == str(refused.value)


def test_check_trial_names_a_missing_device_and_weights_file(tmp_path: Path) -> None:
    spec = StudySpec.from_mapping({**BASE, "training": {"device": "cuda:99"}})  # parses
    with pytest.raises(ConfigError, match="cuda:99"):
        spec.check()  # ... but this machine has no 100th GPU
    trial = dataclasses.replace(
        spec.trials()[0],
        training=TrainConfig(),
        pretrained=True,
        pretrained_file=str(tmp_path / "missing.pt"),
    )
    check_trial(trial, here=False)  # a file may exist only where the study runs
    with pytest.raises(ModelError, match=r"missing\.pt"):
        check_trial(trial)


def test_a_folder_of_mixed_sizes_trains_when_the_spec_sets_image_size(tmp_path: Path) -> None:
    _folder(tmp_path / "img", {"a": 6, "b": 6}, sizes=(8, 12, 10))
    spec = StudySpec.from_mapping(
        {
            **BASE,
            "datasets": [f"folder:{tmp_path / 'img'}"],
            "image_size": 8,
            "training": {"epochs": 1, "device": "cpu"},
        }
    )
    spec.check()
    code, error, status = _run_in_worker(spec, tmp_path / "out")
    assert (code, error, status) == (EXIT_COMPLETE, None, "complete")


def test_validation_counts_a_folder_split_from_file_names(tmp_path: Path) -> None:
    _folder(tmp_path / "five", {"a": 5, "b": 5})
    check_dataset(f"folder:{tmp_path / 'five'}")  # 5 per class: 1 each to val and test
    ds = load_dataset(f"folder:{tmp_path / 'five'}")
    assert [len(ds.train), len(ds.val), len(ds.test)] == [6, 2, 2]
    _folder(tmp_path / "one", {"a": 1, "b": 1})
    for check in (check_dataset, load_dataset):  # validate time and load time: one check
        with pytest.raises(DataError, match="test split is empty"):
            check(f"folder:{tmp_path / 'one'}")
    _folder(tmp_path / "single", {"only": 10})
    for check in (check_dataset, load_dataset):
        with pytest.raises(DataError, match="one class"):
            check(f"folder:{tmp_path / 'single'}")


def test_the_cli_refuses_a_degenerate_folder_before_running(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _folder(tmp_path / "img", {"a": 1, "b": 1})
    spec = tmp_path / "s.yaml"
    spec.write_text(f"name: t\ndatasets: ['folder:{tmp_path / 'img'}']\nmodels: [frugal_mlp]\n")
    assert main(["study", "run", str(spec), "--out", str(tmp_path / "out")]) == 2
    assert "test split is empty" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()  # nothing was created, nothing can be lost


def test_training_options_keep_their_types() -> None:
    config = TrainConfig.from_mapping({"lr": "5e-4", "betas": ["0.5", 0.9], "weight_decay": 0})
    assert (config.lr, config.betas, config.weight_decay) == (5e-4, (0.5, 0.9), 0)
    for bad in ({"lr": True}, {"bf16": "false"}, {"channels_last": 0}, {"seed": 2**32}):
        with pytest.raises(ConfigError):
            TrainConfig.from_mapping(bad)
    with pytest.raises(ConfigError, match="finite"):
        TrainConfig(weight_decay=math.nan)
    assert TrainConfig(device="cuda:0").device == "cuda:0"  # the name is fine anywhere


def test_absurd_but_legal_plans_warn(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="frugalml"):
        spec = StudySpec.from_mapping({**BASE, "training": {"epochs": 5000, "lr": 2}})
    assert spec.training.epochs == 5000
    text = caplog.text
    assert "training.epochs is 5,000" in text and "training.lr is 2" in text
    with pytest.raises(ConfigError, match=r"training\.epochs"):
        StudySpec.from_mapping({**BASE, "training": {"epochs": 10**20}})
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="frugalml"):
        StudySpec.from_mapping({**BASE, "trial_timeout_s": 0.5})
    assert "trial_timeout_s is 0.5 s" in caplog.text


def test_one_input_size_rule_for_studies_and_profile() -> None:
    import argparse

    from frugalml.cli._profile import _profile_dataset

    preset = ModelEntry("lcnet_050", image_size=32)
    assert trial_input_size(preset, None) == 32
    assert trial_input_size(preset, 16) == 16  # the spec's image_size wins
    assert trial_input_size(ModelEntry("frugal_cnn"), None) is None  # the dataset's size
    spec = StudySpec.from_mapping({**BASE, "models": ["cpu-tiny"]})
    sizes = {t.model.name: t.image_size for t in spec.trials()}
    assert sizes["lcnet_050"] == 32
    args = argparse.Namespace(model="frugal_cnn", input=None, dataset="digits", data_root=None)
    assert _profile_dataset(args, {}).image_size == (8, 8)
    args.input = "3x32x32"
    ds = _profile_dataset(args, {})
    assert (ds.channels, ds.image_size) == (3, (32, 32))


@pytest.mark.parametrize("value", [-5.0, 0.0, math.nan, math.inf, 1e12])
def test_run_study_refuses_a_bad_time_limit(tmp_path: Path, value: float) -> None:
    from frugalml.study import run_study

    spec = StudySpec.from_mapping(BASE)
    with pytest.raises(ConfigError, match="--trial-timeout-s"):
        run_study(spec, tmp_path / "out", trial_timeout_s=value)
    assert not (tmp_path / "out").exists()


def test_a_missing_medmnist_file_is_refused_alike_at_validate_and_load(tmp_path: Path) -> None:
    with pytest.raises(DataError) as at_validate:
        check_dataset("medmnist:dermamnist_64", root=tmp_path, download=False)
    with pytest.raises(DataError) as at_load:
        load_dataset("medmnist:dermamnist_64", root=tmp_path, download=False)
    assert str(at_validate.value) == str(at_load.value)
    check_dataset("medmnist:dermamnist_64", root=tmp_path)  # a download may still fetch it


def test_pretrained_files_are_keyed_by_the_spec_models(tmp_path: Path) -> None:
    spec = StudySpec.from_mapping(
        {**BASE, "pretrained_files": {"frugal_mlp": "w.pt"}}, source=str(tmp_path / "s.yaml")
    )
    assert spec.pretrained_files == {"frugal_mlp": str((tmp_path / "w.pt").resolve())}
    with pytest.raises(ConfigError, match="frugal_mpl"):
        StudySpec.from_mapping({**BASE, "pretrained_files": {"frugal_mpl": "w.pt"}})


def test_profile_names_a_preset_s_input_size() -> None:
    from frugalml.cli._profile import _preset_size_notes

    (note,) = _preset_size_notes("lcnet_050", 1, (8, 8))
    assert "preset cpu-tiny trains it at 32x32" in note and "--input 1x32x32" in note
    assert _preset_size_notes("lcnet_050", 3, (32, 32)) == []  # already what cpu-tiny uses
    assert _preset_size_notes("resnet18", 1, (8, 8)) == []  # no preset gives it a size

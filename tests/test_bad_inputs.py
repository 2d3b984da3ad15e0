"""Bad input across the commands, through the real entry point ``frugalml.cli.main``.

Every case must end with a non-zero exit and exactly one line on stderr that names the
problem and says how to fix it ("fix"), with no traceback; where a study store existed
before the command, its bytes are unchanged afterwards. Each case is cheap: validate paths,
``--no-calibrate``, and inputs refused before anything trains.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from frugalml.cli import main

BASE = "name: t\ndatasets: [digits]\nmodels: [frugal_mlp]\n"
TUNE = (
    "name: tt\ndataset: digits\nmodel: {name: frugal_cnn, args: {conv_layers: 1, width: 4}}\n"
    "training: {epochs: 1}\nbudget: {max_trials: 2}\n"
)
LR = "search_space: {lr: {type: float, low: 1.0e-4, high: 1.0e-2, log: true}}\n"


def _folder(root: Path, per_class: dict[str, int], sizes: tuple[int, ...] = (8,)) -> None:
    for c, (name, n) in enumerate(per_class.items()):
        for i in range(n):
            side = sizes[i % len(sizes)]
            path = root / name / f"{i}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.full((side, side), 40 * c + i, dtype=np.uint8)).save(path)


def _store(root: Path) -> None:
    from frugalml.study import StudyStore

    with StudyStore(root / "out"):
        pass


@dataclass(frozen=True)
class Case:
    id: str
    argv: list[str]
    expect: str  # a piece of the error line that names the problem
    files: dict[str, str] = field(default_factory=dict)
    setup: Callable[[Path], None] | None = None
    store: bool = False  # a study store at {d}/out must stay byte-for-byte unchanged


def study(id: str, yaml: str, expect: str, *extra: str) -> Case:
    return Case(
        id,
        ["study", "validate", "{d}/s.yaml", "--no-calibrate", *extra],
        expect,
        files={"s.yaml": yaml},
    )


def training(id: str, options: str, expect: str) -> Case:
    return study(id, BASE + f"training: {{{options}}}\n", expect)


def trainings(option: str, values: dict[str, str]) -> list[Case]:
    """One case per bad value of a training option: id ``<option>-<key>``, the error names
    ``training.<option>``."""
    prefix = option.replace("_", "-")
    return [
        training(f"{prefix}-{key}", f"{option}: {value}", f"training.{option}")
        for key, value in values.items()
    ]


def profile(id: str, *flags: str, expect: str) -> Case:
    return Case(id, ["profile", "frugal_cnn", *flags], expect)


def measure(id: str, flag: str, value: str, expect: str) -> Case:
    return Case(id, ["measure", flag, value, "--", "true"], expect)


def tune(id: str, yaml: str, expect: str, validate: bool = True) -> Case:
    argv = ["tune", "{d}/t.yaml", *(["--validate"] if validate else ["--out", "{d}/tune"])]
    return Case(id, argv, expect, files={"t.yaml": yaml})


def run(id: str, yaml: str, expect: str, *extra: str) -> Case:
    return Case(
        id,
        ["study", "run", "{d}/s.yaml", "--out", "{d}/out", "--no-report", *extra],
        expect,
        files={"s.yaml": yaml},
        setup=_store,
        store=True,
    )


DEEP = "[" * 5000 + "]" * 5000
LAUGHS = "description:\n  - &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"  - &{b} [{', '.join([f'*{a}'] * 10)}]\n" for a, b in zip("abcde", "bcdef", strict=True)
)
NOT_CSV = "model,accuracy,energy_j\n"
PEPR = ["--performance", "accuracy", "--resource", "energy_j"]

CASES: list[Case] = [
    # -- study specs: tracebacks before --------------------------------------------------------
    *trainings("betas", {"text": "[x, y]", "nested": "[[0.9], 0.9]", "one": "[0.9]"}),
    *trainings("betas", {"scalar": "0.9", "out-of-range": "[0.9, 1.5]", "bool": "[true, 0.9]"}),
    study("carbon-scalar", BASE + "carbon: 5\n", "carbon must be a mapping"),
    study("carbon-list", BASE + "carbon: [DK]\n", "carbon must be a mapping"),
    study("carbon-country-list", BASE + "carbon: {country: [DK]}\n", "carbon.country"),
    study("carbon-country-unknown", BASE + "carbon: {country: XQ}\n", "XQ"),
    study("carbon-pue-low", BASE + "carbon: {pue: 0.5}\n", "pue"),
    study("carbon-intensity-nan", BASE + "carbon: {intensity_g_per_kwh: .nan}\n", "finite"),
    study("carbon-unknown-key", BASE + "carbon: {grid: 5}\n", "unknown carbon key"),
    study("yaml-deep", f"name: t\ndatasets: {DEEP}\nmodels: [frugal_mlp]\n", "too deeply"),
    study("yaml-syntax", "name: t\ndatasets: [digits\n", "not valid YAML"),
    study("yaml-not-mapping", "- a\n- b\n", "mapping"),
    study(
        "yaml-date-as-name", "name: 2024-01-31\ndatasets: [digits]\nmodels: [frugal_mlp]\n", "date"
    ),
    tune(
        "yaml-set-in-choices",
        TUNE + "search_space: {batch_size: {type: categorical, choices: [!!set {a, b}]}}\n",
        "set",
    ),
    tune(
        "yaml-date-in-choices",
        TUNE + "search_space: {betas: {type: categorical, choices: [2001-12-14]}}\n",
        "date",
    ),
    study("yaml-huge-file", "# " + "x" * (5 * 2**20) + "\n", "MiB"),
    # -- study specs: "OK" before, yet every trial failed or trained wrong ----------------------
    *trainings("weight_decay", {"nan": ".nan", "negative": "-1", "huge": "1.0e+6"}),
    *trainings("device", {"banana": "'cuda:banana'", "tpu": "tpu", "list": "[cpu]"}),
    training("device-missing-gpu", "device: 'cuda:99'", "cuda:99"),
    study("pretrained-builtin", BASE + "pretrained: [true]\n", "no published pretrained"),
    study("pretrained-list-in-list", BASE + "pretrained: [[true]]\n", "pretrained"),
    study("pretrained-text", BASE + "pretrained: ['false']\n", "pretrained"),
    study("seed-1e23", BASE + "seeds: [100000000000000000000000]\n", "seeds"),
    study("seed-float", BASE + "seeds: [1.0e+23]\n", "seeds"),
    study("seed-negative", BASE + "seeds: [-1]\n", "seeds"),
    training("training-seed-huge", "seed: 100000000000000000000000", "training.seed"),
    training("bf16-text", "bf16: 'false'", "training.bf16"),
    training("channels-last-text", "channels_last: 'false'", "training.channels_last"),
    training("bf16-int", "bf16: 1", "training.bf16"),
    *trainings("lr", {"true": "true", "inf": ".inf", "zero": "0", "text": "fast", "list": "[0.1]"}),
    *trainings(
        "epochs", {"1e20": "100000000000000000000", "zero": "0", "text": "'10'", "true": "true"}
    ),
    training("batch-float", "batch_size: 2.5", "training.batch_size"),
    training("data-path-list", "data_path: [auto]", "training.data_path"),
    training("normalization-bogus", "normalization: zscore", "training.normalization"),
    training("unknown-option", "momentum: 0.9", "unknown training option"),
    study("training-scalar", BASE + "training: 5\n", "training must be a mapping"),
    study("timeout-nan", BASE + "trial_timeout_s: .nan\n", "trial_timeout_s"),
    study("timeout-negative", BASE + "trial_timeout_s: -5\n", "trial_timeout_s"),
    study("timeout-bool", BASE + "trial_timeout_s: true\n", "trial_timeout_s"),
    study("fraction-nan", BASE + "fractions: [.nan]\n", "fraction"),
    study("fractions-repeated", BASE + "fractions: [1.0, 1]\n", "twice"),
    study("seeds-repeated", BASE + "seeds: [0, 1, 0]\n", "twice"),
    study(
        "datasets-repeated", "name: t\ndatasets: [digits, digits]\nmodels: [frugal_mlp]\n", "twice"
    ),
    study("fraction-zero", BASE + "fractions: [0]\n", "fraction"),
    study("budget-negative", BASE + "budget: {energy_kwh: -1}\n", "budget.energy_kwh"),
    study("budget-inf", BASE + "budget: {energy_kwh: .inf}\n", "budget.energy_kwh"),
    study("budget-scalar", BASE + "budget: 5\n", "budget must be a mapping"),
    study("image-size-huge", BASE + "image_size: 100000\n", "image_size"),
    study("image-size-bool", BASE + "image_size: true\n", "image_size"),
    study("workers-zero", BASE + "workers: 0\n", "workers"),
    study("data-root-list", BASE + "data_root: [a]\n", "data_root"),
    study("dataset-unknown", "name: t\ndatasets: [imagenet]\nmodels: [frugal_mlp]\n", "imagenet"),
    study(
        "model-args-unknown",
        "name: t\ndatasets: [digits]\nmodels: [{name: frugal_cnn, args: {nosuch: 1}}]\n",
        "nosuch",
    ),
    study("unknown-key", BASE + "epochs: 3\n", "unknown spec key"),
    study("bad-name", "name: 'a b!'\ndatasets: [digits]\nmodels: [frugal_mlp]\n", "name"),
    Case("spec-missing", ["study", "validate", "{d}/nope.yaml"], "does not exist"),
    study("calibration-cap-negative", BASE, "--calibration-cap-s", "--calibration-cap-s", "-1"),
    study(
        "yaml-duplicate-key",
        "name: t\nname: u\ndatasets: [digits]\nmodels: [frugal_mlp]\n",
        "given twice",
    ),
    study("yaml-billion-laughs", LAUGHS + BASE, "expands into more than"),
    study(
        "model-image-size-huge",
        "name: t\ndatasets: [digits]\nmodels: [{name: frugal_cnn, image_size: 100000}]\n",
        "image_size",
    ),
    study(
        "timm-untrained-pretrained",
        "name: t\ndatasets: [digits]\nmodels: [botnet50ts_256]\npretrained: [true]\n",
        "no pretrained weights",
    ),
    study("threads-huge", BASE + "threads: 100000\n", "threads"),
    study(
        "timm-args-unknown",
        "name: t\ndatasets: [digits]\nmodels: [{name: resnet10t, args: {nosuch: 1}}]\n",
        "nosuch",
    ),
    study("pretrained-files-typo", BASE + "pretrained_files: {frugal_mpl: w.pt}\n", "frugal_mpl"),
    study(
        "medmnist-missing-no-download",
        "name: t\ndatasets: ['medmnist:dermamnist']\nmodels: [frugal_mlp]\ndownload: false\n"
        "data_root: nodata\n",
        "not found",
    ),
    # -- degenerate data (checked from the file names at validate time) ------------------------
    Case(
        "folder-one-image-per-class",
        ["study", "validate", "{d}/s.yaml", "--no-calibrate"],
        "test split is empty",
        files={"s.yaml": "name: t\ndatasets: ['folder:{d}/img']\nmodels: [frugal_mlp]\n"},
        setup=lambda d: _folder(d / "img", {"a": 1, "b": 1}),
    ),
    Case(
        "folder-single-class",
        ["study", "validate", "{d}/s.yaml", "--no-calibrate"],
        "one class",
        files={"s.yaml": "name: t\ndatasets: ['folder:{d}/img']\nmodels: [frugal_mlp]\n"},
        setup=lambda d: _folder(d / "img", {"only": 10}),
    ),
    Case(
        "folder-mixed-sizes",
        ["study", "validate", "{d}/s.yaml", "--no-calibrate"],
        "different sizes",
        files={"s.yaml": "name: t\ndatasets: ['folder:{d}/img']\nmodels: [frugal_mlp]\n"},
        setup=lambda d: _folder(d / "img", {"a": 6, "b": 6}, sizes=(8, 12)),
    ),
    Case(
        "folder-missing",
        ["study", "validate", "{d}/s.yaml", "--no-calibrate"],
        "does not exist",
        files={"s.yaml": "name: t\ndatasets: ['folder:{d}/nope']\nmodels: [frugal_mlp]\n"},
    ),
    # -- study run: refused before anything is recorded ----------------------------------------
    run("run-timeout-negative", BASE, "--trial-timeout-s", "--trial-timeout-s", "-5"),
    run("run-timeout-nan", BASE, "--trial-timeout-s", "--trial-timeout-s", "nan"),
    run("run-pretrained-builtin", BASE + "pretrained: [true]\n", "no published pretrained"),
    run("run-bf16-text", BASE + "training: {bf16: 'false'}\n", "training.bf16"),
    run("run-workers-zero", BASE, "--workers", "--workers", "0"),
    run("run-threads-huge", BASE, "--threads", "--threads", "100000"),
    run("run-workers-huge", BASE, "--workers", "--workers", "100000"),
    # -- tune and tune --validate --------------------------------------------------------------
    tune("strategy-list", TUNE + LR + "strategy: [tpe]\n", "strategy"),
    tune("strategy-name-list", TUNE + LR + "strategy: {name: [tpe]}\n", "strategy"),
    tune("pruner-list", TUNE + LR + "pruner: [median]\n", "pruner"),
    tune("pruner-type-mapping", TUNE + LR + "pruner: {type: {a: 1}}\n", "pruner"),
    tune(
        "grid-1e9",
        TUNE + "strategy: grid\nsearch_space: {weight_decay: {type: float, low: 0.0, "
        "high: 1.0, step: 1.0e-9}}\n",
        "limit",
    ),
    tune(
        "grid-product",
        TUNE + "strategy: grid\nsearch_space:\n"
        "  lr: {type: float, low: 1.0e-4, high: 1.0e-2, step: 1.0e-5}\n"
        "  weight_decay: {type: float, low: 0.0, high: 1.0e-3, step: 1.0e-5}\n",
        "limit",
    ),
    tune(
        "knob-out-of-range",
        TUNE + "search_space: {model.conv_layers: {type: int, low: 1, high: 100}}\n",
        "model.conv_layers",
    ),
    tune(
        "knob-unknown",
        TUNE + "search_space: {model.nosuch: {type: int, low: 1, high: 2}}\n",
        "model.nosuch",
    ),
    tune(
        "model-choice-unknown",
        "name: tt\nmodel: null\nsearch_space: {model.name: {type: categorical, "
        "choices: [frugal_mlp, frugal_nosuch]}}\n",
        "frugal_nosuch",
    ),
    tune(
        "tune-model-args-unknown",
        "name: tt\nmodel: {name: frugal_cnn, args: {nosuch: 1}}\n" + LR,
        "nosuch",
    ),
    tune(
        "model-pretrained-builtin",
        "name: tt\nmodel: {name: frugal_cnn, pretrained: true}\n" + LR,
        "pretrained",
    ),
    tune("tune-seed-huge", TUNE + LR + "seed: 100000000000000000000000\n", "seed"),
    tune(
        "tune-max-trials-1e20",
        LR + "name: tt\nbudget: {max_trials: 100000000000000000000}\n",
        "max_trials",
    ),
    tune("tune-carbon-scalar", TUNE + LR + "carbon: 5\n", "carbon must be a mapping"),
    tune(
        "tune-space-nan",
        TUNE + "search_space: {lr: {type: float, low: 1.0e-4, high: .nan}}\n",
        "finite",
    ),
    tune(
        "tune-epochs-1e20",
        TUNE + "search_space: {epochs: {type: int, low: 1, high: 100000000000000000000}}\n",
        "epochs",
    ),
    tune("tune-bf16-text", TUNE.replace("{epochs: 1}", "{bf16: 'false'}") + LR, "training.bf16"),
    tune(
        "tune-run-grid-1e9",
        TUNE + "strategy: grid\nsearch_space: {weight_decay: "
        "{type: float, low: 0.0, high: 1.0, step: 1.0e-9}}\n",
        "limit",
        validate=False,
    ),
    Case(
        "tune-cli-seed-huge",
        ["tune", "{d}/t.yaml", "--validate", "--seed", "1" + "0" * 23],
        "--seed",
        files={"t.yaml": TUNE + LR},
    ),
    Case(
        "tune-cli-threads-zero",
        ["tune", "{d}/t.yaml", "--validate", "--threads", "0"],
        "--threads",
        files={"t.yaml": TUNE + LR},
    ),
    Case(
        "tune-cli-energy-nan",
        ["tune", "{d}/t.yaml", "--validate", "--energy-kwh", "nan"],
        "energy_kwh",
        files={"t.yaml": TUNE + LR},
    ),
    Case(
        "tune-compare-repeats-zero",
        ["tune", "compare", "{d}/t.yaml", "--validate", "--strategies", "tpe", "--repeats", "0"],
        "--repeats",
        files={"t.yaml": TUNE + LR},
    ),
    Case(
        "tune-compare-threshold-above-one",
        ["tune", "compare", "{d}/t.yaml", "--validate", "--strategies", "tpe", "--threshold", "96"],
        "--threshold",
        files={"t.yaml": TUNE + LR},
    ),
    Case(
        "tune-compare-threshold-and-target",
        [
            "tune",
            "compare",
            "{d}/t.yaml",
            "--validate",
            "--strategies",
            "tpe",
            "--threshold",
            "0.96",
            "--target",
            "0.01",
        ],
        "--threshold",
        files={"t.yaml": TUNE + LR},
    ),
    Case(
        "tune-compare-strategy-bogus",
        ["tune", "compare", "{d}/t.yaml", "--validate", "--strategies", "bogus"],
        "bogus",
        files={"t.yaml": TUNE + LR},
    ),
    # -- profile and factorial -----------------------------------------------------------------
    profile("profile-input-huge", "--input", "3x20000x20000", expect="--input"),
    profile("profile-input-short", "--input", "3x8", expect="--input"),
    profile("profile-input-channels", "--input", "2x8x8", expect="channels"),
    profile("profile-device-tpu", "--device", "tpu", expect="--device"),
    profile("profile-device-gpu", "--device", "cuda:99", expect="cuda:99"),
    profile("profile-top-zero", "--top", "0", expect="--top"),
    profile("profile-arg-bad", "--arg", "conv_layers", expect="--arg"),
    profile("profile-dataset", "--dataset", "imagenet", expect="imagenet"),
    Case("factorial-device-tpu", ["factorial", "--device", "tpu", "--out", "{d}/f"], "--device"),
    Case("factorial-repeats-zero", ["factorial", "--repeats", "0", "--out", "{d}/f"], "repeats"),
    Case(
        "factorial-epochs-1e20",
        ["factorial", "--epochs", "1" + "0" * 20, "--out", "{d}/f"],
        "epochs",
    ),
    Case(
        "factorial-fraction-nan", ["factorial", "--fraction", "nan", "--out", "{d}/f"], "fraction"
    ),
    Case("factorial-lr-nan", ["factorial", "--lr", "nan", "--out", "{d}/f"], "lr"),
    Case("profile-model-cannot-run", ["profile", "test_vit"], "could not run"),
    Case("profile-knob-text", ["profile", "resnet10t", "--arg", "drop_rate=abc"], "abc"),
    Case(
        "tune-folder-one-image-per-class",
        ["tune", "{d}/t.yaml", "--validate"],
        "test split is empty",
        files={"t.yaml": TUNE.replace("digits", "'folder:{d}/img'") + LR},
        setup=lambda d: _folder(d / "img", {"a": 1, "b": 1}),
    ),
    tune("tune-device-missing", TUNE.replace("{epochs: 1}", "{device: 'cuda:99'}") + LR, "cuda:99"),
    profile("profile-batch-zero", "--batch", "0", expect="batch_size"),
    Case(
        "profile-knob-out-of-range",
        ["profile", "frugal_cnn", "--arg", "conv_layers=100"],
        "conv_layers",
    ),
    # -- train, compress, models ----------------------------------------------------------------
    Case("train-epochs-zero", ["train", "--model", "frugal_cnn", "--epochs", "0"], "epochs"),
    Case("train-lr-nan", ["train", "--model", "frugal_cnn", "--lr", "nan"], "training.lr"),
    Case(
        "train-yaml-bf16-text",
        ["train", "{d}/r.yaml"],
        "training.bf16",
        files={"r.yaml": "model: frugal_cnn\ndataset: digits\ntraining: {bf16: 'false'}\n"},
    ),
    Case(
        "compress-no-methods",
        ["compress", "{d}/c.yaml", "--out", "{d}/c"],
        "methods",
        files={"c.yaml": "name: c\ndataset: digits\nmodel: frugal_cnn\n"},
    ),
    Case("models-no-match", ["models", "zzz_no_such_*"], "no model name matches"),
    # -- pepr, report, measure, export, status ------------------------------------------------
    Case("pepr-missing", ["pepr", "{d}/nope.csv", *PEPR], "nope.csv"),
    Case(
        "pepr-header-only",
        ["pepr", "{d}/r.csv", *PEPR],
        "r.csv",
        files={"r.csv": NOT_CSV},
    ),
    Case(
        "pepr-negative-energy",
        ["pepr", "{d}/r.csv", *PEPR],
        "energy_j",
        files={"r.csv": NOT_CSV + "a,0.9,-5\nb,0.8,10\n"},
    ),
    Case("report-missing", ["report", "{d}/nope"], "nope"),
    Case(
        "report-empty-store",
        ["report", "{d}/out", "-o", "{d}/r.html"],
        "no rows",
        setup=_store,
        store=True,
    ),
    Case(
        "pepr-negative-params",
        ["pepr", "{d}/r.csv", "--performance", "accuracy", "--resource", "params"],
        "negative",
        files={"r.csv": "model,accuracy,energy_j,params\na,0.9,5,-3\nb,0.8,10,100\n"},
    ),
    Case(
        "report-csv-negative",
        ["report", "--from-csv", "{d}/r.csv", "-o", "{d}/r.html"],
        "negative",
        files={"r.csv": "model,accuracy,energy_j,params\na,0.9,-5,3\nb,0.8,10,100\n"},
    ),
    measure("measure-bad-pue", "--pue", "0.5", "pue"),
    measure("measure-pue-nan", "--pue", "nan", "PUE"),
    measure("measure-intensity-negative", "--intensity", "-5", "intensity"),
    measure("measure-tdp-nan", "--cpu-tdp-w", "nan", "cpu_tdp_w"),
    measure("measure-gpus-banana", "--gpus", "banana", "banana"),
    Case("measure-no-command", ["measure"], "no command"),
    measure("measure-bad-country", "--country", "XQ", "XQ"),
    Case("export-missing", ["study", "export", "{d}/nope", "--csv", "{d}/x.csv"], "nope"),
    Case("status-missing", ["study", "status", "{d}/nope"], "nope"),
    Case(
        "export-to-a-folder",
        ["study", "export", "{d}/out", "--csv", "{d}"],
        "Is a directory",
        setup=_store,
        store=True,
    ),
    Case(
        "status-of-a-spec-file",
        ["study", "status", "{d}/s.yaml"],
        "no study store",
        files={"s.yaml": BASE},
    ),
]


def _hash(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_the_list_is_long_and_unique() -> None:
    assert len(CASES) >= 60
    assert len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_gives_one_line(
    case: Case, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for name, text in case.files.items():
        (tmp_path / name).write_text(text.replace("{d}", str(tmp_path)), encoding="utf-8")
    if case.setup is not None:
        case.setup(tmp_path)
    store = tmp_path / "out" / "study.db"
    before = _hash(store) if case.store else None
    capsys.readouterr()
    code = main([arg.replace("{d}", str(tmp_path)) for arg in case.argv])
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert code != 0, captured
    assert "Traceback" not in captured.err + captured.out
    assert len(lines) == 1, lines
    assert lines[0].startswith("frugalml: error: "), lines
    assert "fix" in lines[0], lines[0]
    assert case.expect in lines[0], lines[0]
    if before is not None:
        assert _hash(store) == before

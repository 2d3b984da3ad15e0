"""The study spec: a short YAML file that expands into trials.

::

    name: quickstart
    datasets: [digits]
    models: [cpu-tiny]            # timm names, built-ins, presets, or {name:, args:}
    pretrained: [false]
    fractions: [1.0, 0.1]
    seeds: [0]
    training: {epochs: 10}        # overrides of the paper's protocol (TrainConfig)
    budget: {energy_kwh: 0.01}    # or co2_g, duration_s
    carbon: {country: DK, pue: 1.2}
    parallel: {nproc: 2, shares: auto, backend: gloo}   # each trial data parallel (optional)

Every key is checked with a message that names it; unknown keys are errors, so a typo
never silently falls back to a default.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from frugalml._yaml import (
    check_name,
    check_spec_keys,
    parse_carbon,
    parse_count,
    parse_image_size,
    parse_number,
    parse_seconds,
    read_yaml_mapping,
)
from frugalml.data import dataset_name_forms
from frugalml.errors import ConfigError, ModelError
from frugalml.meter import Budget
from frugalml.parallel import ParallelConfig
from frugalml.study._executors import ExecutorConfig
from frugalml.train import TrainConfig
from frugalml.train._config import MAX_SEED, check_device

logger = logging.getLogger(__name__)

#: A trial time limit below this draws a warning (a trial's set-up takes a few seconds).
WARN_TIMEOUT_S = 10.0
#: A study of more trials than this draws a warning (it is legal, but probably a typo).
WARN_TRIALS = 10_000

_KEYS = {
    "name": "study name (letters, digits, _ . -)",
    "description": "free text",
    "datasets": f"dataset names: {dataset_name_forms()}",
    "models": "model names, presets (cpu-tiny, pepr131) or {name: ..., args: {...}}",
    "pretrained": "list of true/false",
    "fractions": "training-data fractions in (0, 1]",
    "seeds": "list of integers",
    "image_size": "resize every dataset to this many pixels a side (default: per model)",
    "training": "training options (epochs, batch_size, lr, ...)",
    "budget": "energy_kwh, co2_g and/or duration_s",
    "carbon": "country, intensity_g_per_kwh, pue",
    "data_root": "folder with MedMNIST npz files",
    "download": "true/false: allow MedMNIST downloads",
    "pretrained_files": "{model name: local weights file}",
    "trial_timeout_s": "seconds before a trial is stopped and marked failed",
    "workers": "trials run side by side (default 1; --workers overrides)",
    "threads": "torch threads per trial (default 1; --threads overrides)",
    "executor": "{kind: local|ray, address, num_cpus, num_gpus} (--executor overrides)",
    "parallel": "{nproc: 2, shares: auto|[3, 1], backend: auto|gloo|nccl, slowdown: [1, 3]}",
}


def _as_list(value: Any, key: str) -> list[Any]:
    if value is None:
        raise ConfigError(f"spec key {key!r} is empty", fix=f"give {key}: {_KEYS[key]}")
    items = list(value) if isinstance(value, (list, tuple)) else [value]
    if not items:
        raise ConfigError(f"spec key {key!r} is an empty list", fix=f"give {key}: {_KEYS[key]}")
    return items


def _refuse_repeats(key: str, values: list[Any]) -> None:
    """A value listed twice would count trials twice in validate's total but run once."""
    seen: list[Any] = []
    for value in values:
        if value in seen:
            raise ConfigError(
                f"spec key {key!r} lists {value!r} twice", fix=f"list each of the {key} once"
            )
        seen.append(value)


def parse_budget(values: Mapping[str, Any] | None) -> Budget | None:
    """The spec's ``budget:`` mapping as a :class:`frugalml.meter.Budget` (None: no limit)."""
    values = dict(values or {})
    unknown = sorted(set(values) - {"energy_kwh", "co2_g", "duration_s"})
    if unknown:
        raise ConfigError(
            f"unknown budget key(s): {', '.join(unknown)}",
            fix="use energy_kwh, co2_g and/or duration_s",
        )
    limits = {k: parse_number(v, f"budget.{k}") for k, v in values.items() if v is not None}
    for key, limit in limits.items():
        if limit <= 0:
            raise ConfigError(
                f"budget.{key} must be a positive number, got {values[key]!r}",
                fix="give a positive limit or remove the key",
            )
    return Budget(**limits) if limits else None


def budget_dict(budget: Budget | None) -> dict[str, float | None]:
    if budget is None:
        return {}
    return {"energy_kwh": budget.energy_kwh, "co2_g": budget.co2_g, "duration_s": budget.duration_s}


@dataclass(frozen=True)
class ModelEntry:
    """One model of a study: a name, its constructor arguments and an optional input size."""

    name: str
    args: tuple[tuple[str, Any], ...] = ()
    image_size: int | None = None

    @property
    def key(self) -> str:
        """A readable identity, e.g. ``frugal_cnn(conv_layers=4,width=16)``."""
        if not self.args:
            return self.name
        inner = ",".join(f"{k}={v}" for k, v in self.args)
        return f"{self.name}({inner})"

    def args_dict(self) -> dict[str, Any]:
        return dict(self.args)


@dataclass(frozen=True)
class Trial:
    """One training run: a model on a dataset, pretrained or not, a data fraction, a seed."""

    study: str
    model: ModelEntry
    dataset: str
    pretrained: bool
    fraction: float
    seed: int
    image_size: int | None
    training: TrainConfig
    pretrained_file: str | None = None
    parallel: dict[str, Any] | None = None

    def definition(self) -> dict[str, Any]:
        """Everything that determines the result, as plain JSON data (``parallel`` only
        when the spec has one, so the other trials keep their ids)."""
        definition = {
            "model": self.model.name,
            "model_args": self.model.args_dict(),
            "dataset": self.dataset,
            "pretrained": self.pretrained,
            "fraction": self.fraction,
            "seed": self.seed,
            "image_size": self.image_size,
            "training": self.training.to_dict(),
        }
        if self.parallel is not None:
            definition["parallel"] = dict(self.parallel)
        return definition

    @property
    def trial_id(self) -> str:
        canonical = json.dumps(self.definition(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]

    @property
    def label(self) -> str:
        pre = "pretrained" if self.pretrained else "scratch"
        return f"{self.model.key} | {self.dataset} | {pre} | {self.fraction:g} | seed {self.seed}"

    def to_dict(self) -> dict[str, Any]:
        data = self.definition()
        data["study"] = self.study
        data["model_image_size"] = self.model.image_size
        data["pretrained_file"] = self.pretrained_file
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Trial:
        return cls(
            study=str(data["study"]),
            model=ModelEntry(
                name=str(data["model"]),
                args=tuple(sorted(dict(data.get("model_args") or {}).items())),
                image_size=data.get("model_image_size"),
            ),
            dataset=str(data["dataset"]),
            pretrained=bool(data["pretrained"]),
            fraction=float(data["fraction"]),
            seed=int(data["seed"]),
            image_size=data.get("image_size"),
            training=TrainConfig.from_mapping(data.get("training")),
            pretrained_file=data.get("pretrained_file"),
            parallel=dict(data["parallel"]) if data.get("parallel") else None,
        )


def _parse_datasets(value: Any) -> list[str]:
    from frugalml.data import check_dataset_name

    datasets = []
    for item in _as_list(value, "datasets"):
        if not isinstance(item, str):
            raise ConfigError(
                f"datasets entries must be names, got {item!r}", fix=_KEYS["datasets"]
            )
        check_dataset_name(item)
        datasets.append(item)
    return datasets


def _parse_pretrained(value: Any) -> list[bool]:
    pretrained = []
    for item in _as_list(value, "pretrained"):
        if not isinstance(item, bool):
            raise ConfigError(
                f"pretrained entries must be true or false, got {item!r}",
                fix="write pretrained: [true, false]",
            )
        pretrained.append(item)
    return pretrained


def _parse_fractions(value: Any) -> list[float]:
    fractions = []
    for item in _as_list(value, "fractions"):
        fraction = parse_number(item, "fractions")
        if not 0 < fraction <= 1:
            raise ConfigError(
                f"fraction {item!r} is outside (0, 1]",
                fix="give fractions of the training data such as [1.0, 0.1]",
            )
        fractions.append(fraction)
    return fractions


def _parse_seeds(value: Any) -> list[int]:
    seeds = []
    for item in _as_list(value, "seeds"):
        if isinstance(item, bool) or not isinstance(item, int) or not 0 <= item <= MAX_SEED:
            raise ConfigError(
                f"seeds must be integers in [0, {MAX_SEED}], got {item!r}",
                fix="e.g. seeds: [0, 1]",
            )
        seeds.append(item)
    return seeds


def _option_mapping(value: Any, problem: str, *, fix: str) -> Mapping[str, Any]:
    """An options block (``training:``, ``budget:``): a mapping, empty when left out."""
    options = value or {}
    if not isinstance(options, Mapping):
        raise ConfigError(problem, fix=fix)
    return options


def _parse_pretrained_files(value: Any, base: Path) -> dict[str, str]:
    """``pretrained_files:`` as model name -> absolute path (relative to the spec's folder)."""
    pretrained_files = value or {}
    if not isinstance(pretrained_files, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in pretrained_files.items()
    ):
        raise ConfigError(
            "pretrained_files must map model names to file paths",
            fix="e.g. pretrained_files: {resnet18: weights/resnet18.safetensors}",
        )
    return {k: str((base / v).resolve()) for k, v in pretrained_files.items()}


def _parse_data_root(value: Any, base: Path) -> str | None:
    """``data_root:`` as an absolute folder (``~`` expanded, relative to the spec's folder)."""
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise ConfigError(
            f"data_root must be a folder path, got {value!r}",
            fix="e.g. data_root: ~/.medmnist",
        )
    return str((base / value).expanduser().resolve())


@dataclass(frozen=True)
class StudySpec:
    """A parsed, checked study spec. Build with :meth:`from_yaml` or :meth:`from_mapping`."""

    name: str
    datasets: tuple[str, ...]
    models: tuple[ModelEntry, ...]
    pretrained: tuple[bool, ...] = (False,)
    fractions: tuple[float, ...] = (1.0,)
    seeds: tuple[int, ...] = (0,)
    image_size: int | None = None
    training: TrainConfig = field(default_factory=TrainConfig)
    budget: Budget | None = None
    carbon: dict[str, Any] = field(default_factory=dict)
    data_root: str | None = None
    download: bool | None = None
    pretrained_files: dict[str, str] = field(default_factory=dict)
    trial_timeout_s: float | None = None
    workers: int = 1
    threads: int = 1
    executor: ExecutorConfig = field(default_factory=ExecutorConfig)
    parallel: ParallelConfig | None = None
    description: str = ""
    unresolved_models: tuple[tuple[str, str], ...] = ()
    renamed_models: tuple[tuple[str, str], ...] = ()
    source: str = "<mapping>"

    @classmethod
    def from_yaml(cls, path: str | Path) -> StudySpec:
        data = read_yaml_mapping(
            path, keys_hint="name:, datasets:, models: ...", example="examples/quickstart.yaml"
        )
        return cls.from_mapping(data, source=str(path))

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], *, source: str = "<mapping>") -> StudySpec:
        check_spec_keys(data, _KEYS, required=("name", "datasets", "models"), source=source)
        name = check_name(data["name"])

        datasets = _parse_datasets(data["datasets"])
        models, unresolved, renamed = _resolve_models(_as_list(data["models"], "models"))
        pretrained = _parse_pretrained(data.get("pretrained", [False]))
        fractions = _parse_fractions(data.get("fractions", [1.0]))
        seeds = _parse_seeds(data.get("seeds", [0]))
        for key, values in (
            ("datasets", datasets),
            ("pretrained", pretrained),
            ("fractions", fractions),
            ("seeds", seeds),
        ):
            _refuse_repeats(key, values)

        image_size = parse_image_size(data.get("image_size"))

        training = _option_mapping(
            data.get("training"),
            "training must be a mapping of options",
            fix="e.g. training: {epochs: 5}",
        )
        budget = _option_mapping(
            data.get("budget"), "budget must be a mapping", fix="e.g. budget: {energy_kwh: 0.01}"
        )
        carbon = parse_carbon(data.get("carbon"))

        base = Path(source).parent if source != "<mapping>" else Path.cwd()
        files = _parse_pretrained_files(data.get("pretrained_files"), base)
        files = _match_pretrained_files(files, models, renamed)

        timeout = data.get("trial_timeout_s")
        if timeout is not None:
            timeout = parse_seconds(timeout, "trial_timeout_s", warn_below=WARN_TIMEOUT_S)
        parallel = {key: parse_count(data.get(key, 1), key) for key in ("workers", "threads")}
        download = data.get("download")
        if download is not None and not isinstance(download, bool):
            raise ConfigError("download must be true or false", fix="download: true")
        data_root = _parse_data_root(data.get("data_root"), base)
        spec = cls(
            name=name,
            datasets=tuple(datasets),
            models=tuple(models),
            pretrained=tuple(pretrained),
            fractions=tuple(fractions),
            seeds=tuple(seeds),
            image_size=image_size,
            training=TrainConfig.from_mapping(training),
            budget=parse_budget(budget),
            carbon=carbon,
            data_root=data_root,
            download=download,
            pretrained_files=files,
            trial_timeout_s=timeout,
            workers=parallel["workers"],
            threads=parallel["threads"],
            executor=ExecutorConfig.from_mapping(data.get("executor")),
            parallel=_parse_parallel(data.get("parallel")),
            description=str(data.get("description") or ""),
            unresolved_models=tuple(unresolved),
            renamed_models=tuple(renamed),
            source=source,
        )
        spec.check(here=False)
        for warning in spec.warnings():
            logger.warning("warning: %s: %s", source, warning)
        return spec

    def check(self, *, here: bool = True) -> None:
        """What every trial's worker would refuse, checked once per distinct case.

        ``here=False`` checks only what does not depend on this machine (done when the spec
        is parsed); ``here=True`` (``study validate`` and ``study run``) also looks at this
        machine: the training device, pretrained files, and each ``folder:`` dataset's
        split (from its file names; :func:`frugalml.data.load_dataset` checks the loaded
        images the same way). See :func:`check_trial`.
        """
        seen: set[tuple[Any, ...]] = set()
        for trial in self.trials():
            key = (trial.model, trial.pretrained, trial.pretrained_file)
            if key not in seen:
                seen.add(key)
                check_trial(trial, here=here)
        if here:
            from frugalml.data import check_dataset

            trials = self.trials()
            for dataset in self.datasets:
                sizes = {t.image_size for t in trials if t.dataset == dataset}
                check_dataset(
                    dataset,
                    root=self.data_root,
                    download=self.download,
                    image_size=None if None in sizes else min(s for s in sizes if s),
                )

    def warnings(self) -> list[str]:
        """Legal but probably unintended plans, one sentence each (logged when parsed)."""
        out = self.training.warnings()
        n = len(self.datasets) * len(self.models) * len(self.pretrained)
        n *= len(self.fractions) * len(self.seeds)
        if n > WARN_TRIALS:
            out.append(f"the spec expands into {n:,} trials; check the lists")
        return out

    def trials(self) -> list[Trial]:
        """Every combination, in a stable order: dataset, pretrained, fraction, model, seed."""
        out: list[Trial] = []
        parallel = self.parallel.to_dict() if self.parallel is not None else None
        for dataset in self.datasets:
            for pretrained in self.pretrained:
                for fraction in self.fractions:
                    for model in self.models:
                        for seed in self.seeds:
                            out.append(
                                Trial(
                                    study=self.name,
                                    model=model,
                                    dataset=dataset,
                                    pretrained=pretrained,
                                    fraction=fraction,
                                    seed=seed,
                                    image_size=trial_input_size(model, self.image_size),
                                    training=self.training.replace(seed=seed),
                                    pretrained_file=self.pretrained_files.get(model.name),
                                    parallel=parallel,
                                )
                            )
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "datasets": list(self.datasets),
            "models": [
                {"name": m.name, "args": m.args_dict(), "image_size": m.image_size}
                for m in self.models
            ],
            "pretrained": list(self.pretrained),
            "fractions": list(self.fractions),
            "seeds": list(self.seeds),
            "image_size": self.image_size,
            "training": self.training.to_dict(),
            "budget": budget_dict(self.budget),
            "carbon": dict(self.carbon),
            "data_root": self.data_root,
            "download": self.download,
            "pretrained_files": dict(self.pretrained_files),
            "trial_timeout_s": self.trial_timeout_s,
            "workers": self.workers,
            "threads": self.threads,
            "executor": self.executor.to_dict(),
            "parallel": self.parallel.to_dict() if self.parallel is not None else None,
        }


def _match_pretrained_files(
    files: dict[str, str], models: list[ModelEntry], renamed: list[tuple[str, str]]
) -> dict[str, str]:
    """``pretrained_files`` keyed by the models' current names. A key that names no model of
    the spec (a typo) would leave that model's pretrained trials on hub weights: refused."""
    names = {m.name for m in models}
    new_name = dict(renamed)
    out: dict[str, str] = {}
    for key, path in files.items():
        name = new_name.get(key, key)
        if name not in names:
            raise ConfigError(
                f"pretrained_files names {key!r}, which is not among the spec's models",
                fix=f"key the files by model name: {', '.join(sorted(names))}",
            )
        out[name] = path
    return out


def check_trial(trial: Trial, *, here: bool = True) -> None:
    """Refuse a trial its worker would refuse, before anything is loaded or trained.

    The study worker calls it first, and spec validation calls it for every distinct model,
    pretraining and weights file, so ``study validate`` says OK only to trials a worker can
    start: a built-in model has no pretrained weights without ``pretrained_files``; a
    the training options are valid. With
    ``here=True`` (the worker, ``study validate``/``run`` on this machine) the training
    device must exist and a weights file must exist.

    Raises:
        ConfigError, ModelError: naming the trial's model and the fix.
    """
    from frugalml.models import list_builtin_models

    trial.training.validate()
    if not here:
        _check_parallel(trial, here=False)
    name = trial.model.name
    if trial.pretrained and trial.pretrained_file is None and name in list_builtin_models():
        raise ModelError(
            f"{name} is a frugalml built-in and has no published pretrained weights, but the "
            "spec asks for pretrained: true",
            fix=f"use pretrained: [false] for {name}, or give pretrained_files: "
            f"{{{name}: <a state_dict saved from it>}}",
        )
    if name not in list_builtin_models():
        if trial.pretrained and trial.pretrained_file is None:
            _check_timm_weights_exist(name)
        if trial.model.args:
            check_timm_args(name, trial.model.args_dict())
    if not here:
        return
    if trial.pretrained and trial.pretrained_file and not Path(trial.pretrained_file).is_file():
        raise ModelError(
            f"pretrained file {trial.pretrained_file} for {name} does not exist",
            fix="check the path in pretrained_files (relative paths start at the spec)",
        )
    check_device(trial.training.device)  # the name and whether this machine has it
    _check_parallel(trial, here=True)


def _parse_parallel(value: Any) -> ParallelConfig | None:
    """The spec's ``parallel:`` section (:class:`frugalml.parallel.ParallelConfig`, the
    type ``frugalml train`` reads), or None without one."""
    return None if value is None else ParallelConfig.from_mapping(value)


def _check_parallel(trial: Trial, *, here: bool) -> None:
    """A trial's ``parallel:`` section against its training options (and, with ``here``,
    this machine's devices: NCCL needs CUDA and a GPU per rank)."""
    if trial.parallel is not None:
        from frugalml.parallel._study import check_trial_parallel

        parallel = ParallelConfig.from_mapping(trial.parallel)
        check_trial_parallel(parallel, trial.training, here=here)


def _check_timm_weights_exist(name: str) -> None:
    """timm publishes no weights for some architectures (their config is "untrained"): a
    pretrained trial of one fails at once, so validation refuses it. Offline: only timm's
    own table is read; whether the hub can be reached is the worker's to find out."""
    if name.startswith(("hf-hub:", "hf_hub:", "local-dir:")):
        return
    from timm.models import get_pretrained_cfg

    try:
        cfg = get_pretrained_cfg(name)
    except RuntimeError:  # an unknown weight tag: the model check names it
        return
    sources = ("hf_hub_id", "url", "file", "state_dict")
    if cfg is None or not any(getattr(cfg, key, None) for key in sources):
        raise ModelError(
            f"timm publishes no pretrained weights for {name}, but the spec asks for "
            "pretrained: true",
            fix=f"use pretrained: [false] for {name}, pick a model listed by "
            f"timm.list_pretrained(), or give pretrained_files: {{{name}: <file>}}",
        )


def trial_input_size(model: ModelEntry, image_size: int | None) -> int | None:
    """The input side length a model trains at, or None for the dataset's own size: the
    one rule of studies (:meth:`StudySpec.trials`) and ``frugalml profile``.

    ``image_size`` (the spec's ``image_size``) wins, then the model entry's own (a preset's
    choice, e.g. lcnet_050 at 32 in cpu-tiny); otherwise the dataset's size is kept.
    """
    return image_size or model.image_size


def _resolve_models(
    entries: list[Any],
) -> tuple[list[ModelEntry], list[tuple[str, str]], list[tuple[str, str]]]:
    from frugalml.models import resolve_models

    for entry in entries:
        if not isinstance(entry, (str, Mapping)):
            raise ConfigError(
                f"models entries must be names or mappings, got {entry!r}", fix=_KEYS["models"]
            )
    resolved = resolve_models(entries)
    models = [
        ModelEntry(
            name=ref.name,
            args=tuple(sorted(dict(ref.args).items())),
            image_size=parse_image_size(getattr(ref, "image_size", None)),
        )
        for ref in resolved.models
    ]
    if not models:
        raise ConfigError("the spec's models resolve to no model", fix=_KEYS["models"])
    return models, list(resolved.unresolved), list(resolved.renamed)


def check_timm_args(name: str, args: dict[str, Any]) -> None:
    """Build timm model ``name`` with ``args`` on the meta device (no memory, no weights):
    an argument the constructor does not take is a :class:`ConfigError` at once. Study and
    tuning specs share this. Any other failure may be the meta device's, not the spec's, so
    it is left to the run's own build (and logged)."""
    import timm
    import torch

    try:
        with torch.device("meta"):
            timm.create_model(name, pretrained=False, num_classes=2, **args)
    except TypeError as exc:
        raise ConfigError(
            f"model {name} rejects its arguments {args}: {exc}",
            fix="drop or rename the argument (see the model's constructor in timm)",
        ) from None
    except Exception as exc:  # not this check's to judge: the run builds it for real
        logger.debug("cannot check %s's arguments on the meta device: %s", name, exc)

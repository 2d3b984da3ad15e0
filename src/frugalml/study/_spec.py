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

Every key is checked with a message that names it; unknown keys are errors, so a typo
never silently falls back to a default.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from frugalml._yaml import (
    check_name,
    check_spec_keys,
    parse_image_size,
    parse_number,
    read_yaml_mapping,
)
from frugalml.errors import ConfigError
from frugalml.meter import Budget, CarbonConfig, resolve_carbon
from frugalml.train import TrainConfig

_KEYS = {
    "name": "study name (letters, digits, _ . -)",
    "description": "free text",
    "datasets": "dataset names: digits, medmnist:<flag>[_<size>], folder:<path>",
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
}


def _as_list(value: Any, key: str) -> list[Any]:
    if value is None:
        raise ConfigError(f"spec key {key!r} is empty", fix=f"give {key}: {_KEYS[key]}")
    items = list(value) if isinstance(value, (list, tuple)) else [value]
    if not items:
        raise ConfigError(f"spec key {key!r} is an empty list", fix=f"give {key}: {_KEYS[key]}")
    return items


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

    def definition(self) -> dict[str, Any]:
        """Everything that determines the result, as plain JSON data."""
        return {
            "model": self.model.name,
            "model_args": self.model.args_dict(),
            "dataset": self.dataset,
            "pretrained": self.pretrained,
            "fraction": self.fraction,
            "seed": self.seed,
            "image_size": self.image_size,
            "training": self.training.to_dict(),
        }

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
        )


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
        from frugalml.data import check_dataset_name

        check_spec_keys(data, _KEYS, required=("name", "datasets", "models"), source=source)
        name = check_name(data["name"])

        datasets = []
        for item in _as_list(data["datasets"], "datasets"):
            if not isinstance(item, str):
                raise ConfigError(
                    f"datasets entries must be names, got {item!r}", fix=_KEYS["datasets"]
                )
            check_dataset_name(item)
            datasets.append(item)

        models, unresolved, renamed = _resolve_models(_as_list(data["models"], "models"))

        pretrained = []
        for item in _as_list(data.get("pretrained", [False]), "pretrained"):
            if not isinstance(item, bool):
                raise ConfigError(
                    f"pretrained entries must be true or false, got {item!r}",
                    fix="write pretrained: [true, false]",
                )
            pretrained.append(item)

        fractions = []
        for item in _as_list(data.get("fractions", [1.0]), "fractions"):
            value = parse_number(item, "fractions")
            if not 0 < value <= 1:
                raise ConfigError(
                    f"fraction {item!r} is outside (0, 1]",
                    fix="give fractions of the training data such as [1.0, 0.1]",
                )
            fractions.append(value)

        seeds = []
        for item in _as_list(data.get("seeds", [0]), "seeds"):
            if isinstance(item, bool) or not isinstance(item, int) or item < 0:
                raise ConfigError(
                    f"seeds must be non-negative integers, got {item!r}", fix="e.g. seeds: [0, 1]"
                )
            seeds.append(item)

        image_size = parse_image_size(data.get("image_size"))

        training = data.get("training") or {}
        if not isinstance(training, Mapping):
            raise ConfigError(
                "training must be a mapping of options", fix="e.g. training: {epochs: 5}"
            )
        budget = data.get("budget") or {}
        if not isinstance(budget, Mapping):
            raise ConfigError("budget must be a mapping", fix="e.g. budget: {energy_kwh: 0.01}")
        carbon = dict(data.get("carbon") or {})
        unknown_carbon = sorted(set(carbon) - {"country", "intensity_g_per_kwh", "pue"})
        if unknown_carbon:
            raise ConfigError(
                f"unknown carbon key(s): {', '.join(unknown_carbon)}",
                fix="use country, intensity_g_per_kwh, pue",
            )
        for key in ("intensity_g_per_kwh", "pue"):
            if carbon.get(key) is not None:
                carbon[key] = parse_number(carbon[key], f"carbon.{key}")
        if carbon.get("country") is not None:
            carbon["country"] = str(carbon["country"])
        resolve_carbon(CarbonConfig(**carbon))  # checks ranges and the country code now

        pretrained_files = data.get("pretrained_files") or {}
        if not isinstance(pretrained_files, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in pretrained_files.items()
        ):
            raise ConfigError(
                "pretrained_files must map model names to file paths",
                fix="e.g. pretrained_files: {resnet18: weights/resnet18.safetensors}",
            )
        base = Path(source).parent if source != "<mapping>" else Path.cwd()
        files = {k: str((base / v).resolve()) for k, v in pretrained_files.items()}

        timeout = data.get("trial_timeout_s")
        if timeout is not None:
            timeout = parse_number(timeout, "trial_timeout_s")
            if timeout <= 0:
                raise ConfigError("trial_timeout_s must be positive", fix="e.g. 3600")
        parallel = {}
        for key in ("workers", "threads"):
            value = data.get(key, 1)
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 1024:
                raise ConfigError(
                    f"{key} must be an integer >= 1, got {value!r}", fix=f"e.g. {key}: 2"
                )
            parallel[key] = value
        download = data.get("download")
        if download is not None and not isinstance(download, bool):
            raise ConfigError("download must be true or false", fix="download: true")
        data_root = data.get("data_root")
        if data_root is not None:
            data_root = str((base / str(data_root)).expanduser().resolve())
        return cls(
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
            description=str(data.get("description") or ""),
            unresolved_models=tuple(unresolved),
            renamed_models=tuple(renamed),
            source=source,
        )

    def trials(self) -> list[Trial]:
        """Every combination, in a stable order: dataset, pretrained, fraction, model, seed."""
        out: list[Trial] = []
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
                                    image_size=self.image_size or model.image_size,
                                    training=self.training.replace(seed=seed),
                                    pretrained_file=self.pretrained_files.get(model.name),
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
        }


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
            image_size=getattr(ref, "image_size", None),
        )
        for ref in resolved.models
    ]
    if not models:
        raise ConfigError("the spec's models resolve to no model", fix=_KEYS["models"])
    return models, list(resolved.unresolved), list(resolved.renamed)

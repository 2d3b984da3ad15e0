"""The compress spec: ``frugalml compress SPEC --out DIR`` reads it.

    name: digits-lenet
    dataset: digits
    model: frugal_mlp
    model_args: {hidden: 300, linear_layers: 3}
    training: {epochs: 10}
    methods:
      - {method: l1, strength: 1.0e-4, threshold: {absolute: 1.0e-3}}
      - {method: hoyer_square, strength: 1.0e-4, threshold: {std: 0.1}}
      - {method: magnitude, threshold: {sparsity: 0.9}}

Every method is registered once in :data:`METHODS` with its kind, its settings and their
defaults; the spec checker, the help text and the pipeline all read that registry.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from frugalml._yaml import check_name, check_spec_keys, parse_image_size, read_yaml_mapping
from frugalml.compress._prune import Threshold, parse_threshold
from frugalml.errors import ConfigError
from frugalml.train import TrainConfig

if TYPE_CHECKING:
    from frugalml.compress._tune import CompressTune

__all__ = ["METHODS", "CompressSpec", "MethodInfo", "MethodKind", "MethodSpec"]

MethodKind = Literal["regulariser", "group", "gates", "magnitude", "channels", "penni"]


@dataclass(frozen=True)
class MethodInfo:
    name: str
    kind: MethodKind
    description: str
    settings: tuple[str, ...]
    default_strength: float = 0.0
    default_threshold: Threshold | None = None


_REG = ("strength", "schedule", "warmup_steps", "epochs", "threshold", "fine_tune_epochs")
METHODS: dict[str, MethodInfo] = {
    m.name: m
    for m in (
        MethodInfo("l1", "regulariser", "L1 on every weight", _REG, 1e-4, Threshold("std", 0.1)),
        MethodInfo("hoyer", "regulariser", "Hoyer L1/L2", _REG, 1e-3, Threshold("std", 0.1)),
        MethodInfo(
            "hoyer_square",
            "regulariser",
            "DeepHoyer's (sum|w|)^2/sum w^2",
            _REG,
            1e-4,
            Threshold("std", 0.1),
        ),
        MethodInfo(
            "group_lasso",
            "group",
            "L2 of filters and channels (SSL)",
            _REG,
            1e-4,
            Threshold("std", 0.1),
        ),
        MethodInfo(
            "group_hoyer_square",
            "group",
            "DeepHoyer's Group-HS",
            _REG,
            1e-4,
            Threshold("std", 0.1),
        ),
        MethodInfo(
            "l0",
            "gates",
            "hard-concrete L0 gates on output channels and units",
            ("strength", "epochs", "fine_tune_epochs"),
            1.0,
        ),
        MethodInfo(
            "magnitude",
            "magnitude",
            "unstructured global magnitude pruning (no speed-up on dense kernels)",
            ("threshold", "fine_tune_epochs"),
            0.0,
            Threshold("sparsity", 0.9),
        ),
        MethodInfo(
            "channels",
            "channels",
            "Torch-Pruning magnitude channel pruning (extra frugalml[compress])",
            ("ratio", "fine_tune_epochs"),
        ),
        MethodInfo(
            "penni",
            "penni",
            "PENNI kernel sharing: PCA basis, L1 on coefficients, shrink",
            ("basis", "strength", "epochs", "threshold", "fine_tune_epochs"),
            1e-4,
            Threshold("absolute", 1e-3),
        ),
    )
}


def _int(value: Any, where: str, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ConfigError(f"{where} must be an integer >= {low}, got {value!r}", fix=f"e.g. {low}")
    return value


def _number(value: Any, where: str) -> float:
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            value = float(value)  # YAML reads 1e-4 (no dot) as a string
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ConfigError(f"{where} must be a number >= 0, got {value!r}", fix="e.g. 1.0e-4")
    return float(value)


@dataclass(frozen=True)
class MethodSpec:
    """One ``methods:`` entry, checked against its registry entry."""

    method: str
    label: str
    strength: float = 0.0
    schedule: Literal["constant", "warmup"] = "constant"
    warmup_steps: int = 0
    epochs: int | None = None
    threshold: Threshold | None = None
    ratio: float = 0.5
    basis: int = 4
    fine_tune_epochs: int = 1

    @property
    def info(self) -> MethodInfo:
        return METHODS[self.method]

    @classmethod
    def from_mapping(cls, data: Any, where: str) -> MethodSpec:
        if not isinstance(data, Mapping) or "method" not in data:
            raise ConfigError(
                f"{where} must be a mapping with a 'method'", fix="e.g. - {method: l1}"
            )
        name = data["method"]
        if name not in METHODS:
            raise ConfigError(
                f"{where}: unknown method {name!r}", fix=f"use one of {', '.join(METHODS)}"
            )
        info = METHODS[name]
        allowed = {"method", "name", *info.settings}
        unknown = sorted(set(map(str, data)) - allowed)
        if unknown:
            raise ConfigError(
                f"{where}: method {name} has no setting(s) {', '.join(unknown)}",
                fix=f"{name} takes {', '.join(info.settings)}",
            )
        label = data.get("name", name)
        if not isinstance(label, str) or not label or label == "dense":
            raise ConfigError(f"{where}: name {label!r} is not a row name", fix="e.g. name: l1_a")
        schedule = data.get("schedule", "constant")
        if schedule not in ("constant", "warmup"):
            raise ConfigError(
                f"{where}: schedule {schedule!r} is not constant or warmup",
                fix="schedule: warmup (with warmup_steps: N) or constant",
            )
        warmup = _int(data.get("warmup_steps", 0), f"{where}.warmup_steps", 0)
        if schedule == "warmup" and warmup < 1:
            raise ConfigError(f"{where}: warmup needs warmup_steps >= 1", fix="warmup_steps: 200")
        epochs = data.get("epochs")
        ratio = data.get("ratio", 0.5)
        if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0 < ratio < 1:
            raise ConfigError(f"{where}: ratio must be in (0, 1), got {ratio!r}", fix="ratio: 0.5")
        threshold = (
            parse_threshold(data["threshold"], where)
            if "threshold" in data
            else info.default_threshold
        )
        return cls(
            method=name,
            label=label,
            strength=_number(data.get("strength", info.default_strength), f"{where}.strength"),
            schedule=schedule,
            warmup_steps=warmup,
            epochs=None if epochs is None else _int(epochs, f"{where}.epochs", 1),
            threshold=threshold,
            ratio=float(ratio),
            basis=_int(data.get("basis", 4), f"{where}.basis", 1),
            fine_tune_epochs=_int(data.get("fine_tune_epochs", 1), f"{where}.fine_tune_epochs", 1),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "name": self.label,
            "strength": self.strength,
            "schedule": self.schedule,
            "warmup_steps": self.warmup_steps,
            "epochs": self.epochs,
            "threshold": self.threshold.to_dict() if self.threshold else None,
            "ratio": self.ratio,
            "basis": self.basis,
            "fine_tune_epochs": self.fine_tune_epochs,
        }


_KEYS = {
    "name": "a name for this run",
    "dataset": "a dataset name such as digits",
    "model": "a built-in or timm model name",
    "model_args": "the model's knobs, e.g. {hidden: 300}",
    "image_size": "resize images to N x N (optional)",
    "training": "training options as in study specs, e.g. {epochs: 10}",
    "methods": "a list of {method: ..., settings}",
    "latency": "{repeats: 15, batch_size: 64, min_time_s: 0.02}",
    "energy": "{repeats: 5, min_window_s: 1.0}",
    "description": "free text",
    "weights": "a state_dict file (.pth/.safetensors) the dense phase starts from",
    "tune": "{method: l1, n_trials: 10, strength: [1e-5, 1e-3], budget_j: 5000}",
}


def _tune(value: Any) -> CompressTune | None:
    from frugalml.compress._tune import CompressTune

    return None if value is None else CompressTune.from_mapping(value)


def _weights(value: Any, source: str) -> str | None:
    """``weights:`` resolved against the spec file's folder; it must exist."""
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise ConfigError(f"weights must be a file path, got {value!r}", fix="weights: dense.pth")
    base = Path(source).parent if source != "<mapping>" else Path.cwd()
    path = (base / value).expanduser().resolve()
    if not path.is_file():
        raise ConfigError(
            f"weights file {str(path)!r} does not exist",
            fix="give a state_dict saved with torch.save(model.state_dict(), path)",
        )
    return str(path)


@dataclass(frozen=True)
class CompressSpec:
    name: str
    dataset: str
    model: str
    methods: tuple[MethodSpec, ...]
    model_args: dict[str, Any] = field(default_factory=dict)
    image_size: int | None = None
    training: TrainConfig = field(default_factory=TrainConfig)
    latency_repeats: int = 15
    batch_size: int = 64
    min_time_s: float = 0.02
    energy_repeats: int = 5
    min_window_s: float = 1.0
    description: str = ""
    weights: str | None = None
    source: str = "<mapping>"
    tune: CompressTune | None = None  # the tune: block (frugalml.compress._tune)

    @classmethod
    def from_yaml(cls, path: str | Path) -> CompressSpec:
        data = read_yaml_mapping(
            path,
            keys_hint="name:, dataset:, model:, methods: ...",
            example="examples/compress_digits.yaml",
        )
        return cls.from_mapping(data, source=str(path))

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], *, source: str = "<mapping>") -> CompressSpec:
        from frugalml.data import check_dataset_name

        check_spec_keys(
            data, _KEYS, required=("name", "dataset", "model", "methods"), source=source
        )
        name = check_name(data["name"])
        dataset = data["dataset"]
        if not isinstance(dataset, str):
            raise ConfigError(f"dataset must be a name, got {dataset!r}", fix="dataset: digits")
        check_dataset_name(dataset)
        model = data["model"]
        if not isinstance(model, str) or not model:
            raise ConfigError(f"model must be a name, got {model!r}", fix="model: frugal_mlp")
        model_args = data.get("model_args") or {}
        if not isinstance(model_args, Mapping):
            raise ConfigError("model_args must be a mapping", fix="e.g. model_args: {hidden: 300}")
        training = data.get("training") or {}
        if not isinstance(training, Mapping):
            raise ConfigError("training must be a mapping", fix="e.g. training: {epochs: 5}")
        methods_raw = data["methods"]
        if not isinstance(methods_raw, list) or not methods_raw:
            raise ConfigError("methods must be a non-empty list", fix="e.g. - {method: l1}")
        methods = tuple(
            MethodSpec.from_mapping(m, f"methods[{i}]") for i, m in enumerate(methods_raw)
        )
        labels = [m.label for m in methods]
        twice = sorted({x for x in labels if labels.count(x) > 1})
        if twice:
            raise ConfigError(
                f"methods repeat the row name(s) {', '.join(twice)}",
                fix="give repeated methods distinct names (name: l1_strong)",
            )
        latency = data.get("latency") or {}
        energy = data.get("energy") or {}
        for key, value, allowed in (
            ("latency", latency, {"repeats", "batch_size", "min_time_s"}),
            ("energy", energy, {"repeats", "min_window_s"}),
        ):
            if not isinstance(value, Mapping) or set(value) - allowed:
                raise ConfigError(
                    f"{key} must be a mapping of {', '.join(sorted(allowed))}", fix=_KEYS[key]
                )
        return cls(
            name=name,
            dataset=dataset,
            model=model,
            methods=methods,
            model_args=dict(model_args),
            image_size=parse_image_size(data.get("image_size")),
            training=TrainConfig.from_mapping(training),
            latency_repeats=_int(latency.get("repeats", 15), "latency.repeats", 3),
            batch_size=_int(latency.get("batch_size", 64), "latency.batch_size", 1),
            min_time_s=_number(latency.get("min_time_s", 0.02), "latency.min_time_s"),
            energy_repeats=_int(energy.get("repeats", 5), "energy.repeats", 1),
            min_window_s=_number(energy.get("min_window_s", 1.0), "energy.min_window_s"),
            description=str(data.get("description") or ""),
            weights=_weights(data.get("weights"), source),
            source=source,
            tune=_tune(data.get("tune")),
        )

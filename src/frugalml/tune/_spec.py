"""The tuning spec: one dataset, one base model and training config, a search space, a strategy.

::

    name: tune-digits                 # also the Optuna study name
    dataset: digits
    fraction: 0.5                     # of the training split (stratified, seeded)
    model: {name: frugal_cnn, args: {conv_layers: 2, width: 8}}
    training: {epochs: 3}             # the base TrainConfig; searched options override it
    search_space: {...}               # see frugalml.tune._space
    strategy: tpe                     # one of tune/_registry.py, or {name: tpe, ...}
    objective: accuracy               # accuracy | energy | [accuracy, energy]
    pruner: median                    # one of tune/_registry.py, or {type: median, ...}
    budget: {max_trials: 20, energy_kwh: 0.001}
    seed: 0                           # the sampler's seed
    carbon: {country: DK}

Every key is checked with a message that names it; unknown keys are errors.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from frugalml._yaml import (
    check_name,
    check_spec_keys,
    parse_carbon,
    parse_image_size,
    parse_number,
    read_yaml_mapping,
)
from frugalml.data import dataset_name_forms
from frugalml.errors import ConfigError, FrugalError
from frugalml.study._executors import ExecutorConfig
from frugalml.study._spec import check_timm_args
from frugalml.train import TrainConfig
from frugalml.train._config import MAX_SEED, WARN_EPOCHS
from frugalml.tune._registry import (
    check_pruner_for,
    get_pruner,
    get_strategy,
    list_pruners,
    list_strategies,
)
from frugalml.tune._space import SearchSpace, apply_params

if TYPE_CHECKING:
    from frugalml.meter import Budget

logger = logging.getLogger(__name__)

#: The most trials a budget may plan (beyond is a typo, not a plan).
MAX_TRIALS = 1_000_000

#: The registered strategies and pruners (:mod:`._registry`, the one table), at import.
STRATEGIES: tuple[str, ...] = tuple(list_strategies())
OBJECTIVES: tuple[str, ...] = ("accuracy", "energy")
PRUNERS: tuple[str, ...] = tuple(list_pruners())

_KEYS = {
    "name": "study name (letters, digits, _ . -); also the Optuna study name",
    "description": "free text",
    "dataset": dataset_name_forms(),
    "data_root": "folder with MedMNIST npz files",
    "download": "true/false: allow dataset downloads",
    "fraction": "fraction of the training split in (0, 1]",
    "image_size": "resize the images to this many pixels a side",
    "model": "a model name or {name: ..., args: {...}, pretrained: false}",
    "training": "the base training options (epochs, batch_size, lr, ...)",
    "search_space": "the searched parameters, {name: {type: ..., ...}}",
    "strategy": f"{' | '.join(STRATEGIES)} (or {{name: tpe, n_startup_trials: 5}})",
    "objective": "accuracy, energy, or [accuracy, energy] for a Pareto front",
    "pruner": f"{' | '.join(PRUNERS)} (or {{type: ..., options}})",
    "budget": "max_trials, energy_kwh, co2_g and/or duration_s; target_accuracy to stop "
    "once a trial is good enough",
    "workers": "trials in flight at once, as a study's workers: (default 1: one at a time, "
    "in this process; --parallel overrides)",
    "executor": "{kind: local|ray, address, num_cpus, num_gpus} for trials in flight "
    "(--executor overrides)",
    "seed": "the sampler's seed (a non-negative integer)",
    "carbon": "country, intensity_g_per_kwh, pue",
}


class _RegisteredOptions(Mapping[str, frozenset[str]]):
    """Name -> the options it accepts, read from the registry when asked (so a strategy or
    pruner registered after import is accepted too)."""

    def __init__(self, names: Callable[[], list[str]], options: Callable[[str], Any]) -> None:
        self._names, self._options = names, options

    def __getitem__(self, name: str) -> frozenset[str]:
        if name not in self._names():
            raise KeyError(name)
        return frozenset(self._options(name).options)

    def __iter__(self) -> Iterator[str]:
        return iter(self._names())

    def __len__(self) -> int:
        return len(self._names())


#: Options each strategy accepts (passed to its sampler or its own pruner).
_STRATEGY_OPTIONS: Mapping[str, frozenset[str]] = _RegisteredOptions(list_strategies, get_strategy)
#: Options each pruner accepts.
_PRUNER_OPTIONS: Mapping[str, frozenset[str]] = _RegisteredOptions(list_pruners, get_pruner)


def _check_objectives(strategy: str, pruner: str, objectives: tuple[str, ...]) -> None:
    """The strategy and the pruner work on the objectives (:mod:`._registry`: a pruner on
    one objective or on both, a strategy that can or cannot optimise both); a strategy
    that brings its own pruner takes no other (:func:`._registry.check_pruner_for`)."""
    check_pruner_for(strategy, pruner)
    kind = get_pruner(pruner).objectives
    multi = [n for n in PRUNERS if get_pruner(n).objectives != "single"]
    if len(objectives) > 1 and kind == "single":
        raise ConfigError(
            f"the {pruner} pruner works on one objective, but the objective is "
            f"{' and '.join(objectives)} (Optuna cannot prune multi-objective studies)",
            fix=f"use pruner: {' or '.join(multi)} (dominance stops trials dominated at the "
            "same epoch)",
        )
    if len(objectives) == 1 and kind == "multi":
        raise ConfigError(
            f"the {pruner} pruner compares (accuracy, energy) pairs and needs both objectives",
            fix="use objective: [accuracy, energy], or pruner: median for one objective",
        )
    if len(objectives) > 1 and not get_strategy(strategy).multi_objective:
        both = [n for n in STRATEGIES if get_strategy(n).multi_objective]
        raise ConfigError(
            f"the {strategy} strategy prunes over epochs on one objective, but the objective "
            f"is {' and '.join(objectives)}",
            fix=f"use one objective, or a strategy for both: {', '.join(both)}",
        )


def _positive_int(value: Any, where: str, *, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(
            f"{where} must be an integer >= {minimum}, got {value!r}", fix=f"e.g. {max(minimum, 5)}"
        )
    return value


def _check_seed(seed: Any) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise ConfigError(
            f"seed must be an integer in [0, {MAX_SEED}], got {seed!r}", fix="seed: 0"
        )
    return seed


def _options(
    value: Any, where: str, key: str, allowed: Mapping[str, frozenset[str]], default: str
) -> tuple[str, dict[str, Any]]:
    """``name`` or ``{key: name, option: value, ...}``."""
    if value is None:
        return default, {}
    if isinstance(value, str):
        name, options = value, {}
    elif isinstance(value, Mapping):
        options = {str(k): v for k, v in value.items()}
        name = options.pop(key, None)
    else:
        raise ConfigError(
            f"{where} must be a name or a mapping, got {value!r}", fix=f"e.g. {where}: {default}"
        )
    if not isinstance(name, str) or name not in allowed:
        raise ConfigError(f"unknown {where} {name!r}", fix=f"use one of: {', '.join(allowed)}")
    unknown = sorted(set(options) - allowed[name])
    if unknown:
        known = ", ".join(sorted(allowed[name])) or "none"
        raise ConfigError(
            f"{where} {name!r} has unknown option(s): {', '.join(unknown)}",
            fix=f"options of {name}: {known}",
        )
    for option, option_value in options.items():
        if option == "multivariate":
            if not isinstance(option_value, bool):
                raise ConfigError(f"{where}.multivariate must be true or false", fix="true")
        elif option == "local_share":
            if isinstance(option_value, bool) or not (
                isinstance(option_value, int | float) and 0 <= option_value <= 1
            ):
                raise ConfigError(
                    f"{where}.local_share must be a number in [0, 1], got {option_value!r}",
                    fix="e.g. local_share: 0.5 (half the trials after the start-up perturb the "
                    "best one; 0: none)",
                )
        elif option == "min_resource" and option_value == "auto":
            pass
        else:
            _positive_int(option_value, f"{where}.{option}", minimum=0 if "warmup" in option else 1)
    return str(name), options


#: The keys of a spec's ``budget:``.
BUDGET_KEYS = ("max_trials", "energy_kwh", "co2_g", "duration_s", "target_accuracy")


@dataclass(frozen=True, init=False)
class TuneBudget:
    """What a tuning run may spend: ``max_trials`` and the resource limits, a
    :class:`frugalml.meter.Budget` (``limits``; None: no resource limit), read as
    ``energy_kwh``, ``co2_g``, ``duration_s`` (None: no limit on that resource). Every limit
    counts what is already in the output directory's storage (a rerun continues).
    ``target_accuracy``: stop once a completed trial's validation accuracy reaches it (good
    enough: no further energy spent looking for better; None: search the whole budget)."""

    max_trials: int | None
    limits: Budget | None
    target_accuracy: float | None

    def __init__(
        self,
        max_trials: int | None = None,
        energy_kwh: float | None = None,
        co2_g: float | None = None,
        duration_s: float | None = None,
        target_accuracy: float | None = None,
    ) -> None:
        from frugalml.meter import Budget

        object.__setattr__(self, "max_trials", max_trials)
        object.__setattr__(self, "target_accuracy", target_accuracy)
        resources = (energy_kwh, co2_g, duration_s)
        limits = None if all(v is None for v in resources) else Budget(*resources)
        object.__setattr__(self, "limits", limits)

    @property
    def energy_kwh(self) -> float | None:
        return self.limits.energy_kwh if self.limits is not None else None

    @property
    def co2_g(self) -> float | None:
        return self.limits.co2_g if self.limits is not None else None

    @property
    def duration_s(self) -> float | None:
        return self.limits.duration_s if self.limits is not None else None

    @classmethod
    def from_mapping(cls, values: Any) -> TuneBudget:
        if values is None:
            return cls()
        if not isinstance(values, Mapping):
            raise ConfigError("budget must be a mapping", fix="e.g. budget: {max_trials: 20}")
        unknown = sorted(set(map(str, values)) - set(BUDGET_KEYS))
        if unknown:
            raise ConfigError(
                f"unknown budget key(s): {', '.join(unknown)}",
                fix="use max_trials, energy_kwh, co2_g, duration_s and/or target_accuracy",
            )
        parsed: dict[str, Any] = {}
        for key, value in values.items():
            if value is None:
                continue
            if key == "max_trials":
                parsed[key] = _positive_int(value, "budget.max_trials")
                if parsed[key] > MAX_TRIALS:
                    raise ConfigError(
                        f"budget.max_trials is {value:,}, more than {MAX_TRIALS:,}",
                        fix="give a number of trials you mean to run, e.g. 50",
                    )
                continue
            number = parse_number(value, f"budget.{key}")
            if key == "target_accuracy":
                if not (math.isfinite(number) and 0 < number <= 1):
                    raise ConfigError(
                        f"budget.target_accuracy must be a validation accuracy in (0, 1], "
                        f"got {value!r}",
                        fix="e.g. target_accuracy: 0.95 (a share, not a percentage)",
                    )
                parsed[key] = number
                continue
            if not (math.isfinite(number) and number > 0):
                raise ConfigError(
                    f"budget.{key} must be a positive number, got {value!r}",
                    fix="give a positive limit or remove the key",
                )
            parsed[key] = number
        return cls(**parsed)

    @property
    def has_resource_limit(self) -> bool:
        return self.limits is not None

    @property
    def is_set(self) -> bool:
        return self.max_trials is not None or self.has_resource_limit

    def replace(self, **changes: Any) -> TuneBudget:
        values = self.to_dict()
        values.update(changes)
        return TuneBudget(**values)

    def to_dict(self) -> dict[str, Any]:
        return {
            "max_trials": self.max_trials,
            "energy_kwh": self.energy_kwh,
            "co2_g": self.co2_g,
            "duration_s": self.duration_s,
            "target_accuracy": self.target_accuracy,
        }

    def describe(self) -> str:
        parts = []
        if self.max_trials is not None:
            parts.append(f"{self.max_trials} trials")
        if self.energy_kwh is not None:
            parts.append(f"{self.energy_kwh:g} kWh")
        if self.co2_g is not None:
            parts.append(f"{self.co2_g:g} gCO2e")
        if self.duration_s is not None:
            parts.append(f"{self.duration_s:g} s")
        limit = ", ".join(parts) or "no limit"
        if self.target_accuracy is not None:
            limit += f"; stops at validation accuracy {self.target_accuracy:g}"
        return limit


class _Search(NamedTuple):
    """A spec's search: the strategy, the objectives and the pruner, with their options."""

    strategy: str
    strategy_options: dict[str, Any]
    objectives: tuple[str, ...]
    pruner: str
    pruner_options: dict[str, Any]


@dataclass(frozen=True)
class TuneSpec:
    """A parsed, checked tuning spec. Build with :meth:`from_yaml` or :meth:`from_mapping`."""

    name: str
    search_space: SearchSpace
    model: str = "frugal_cnn"
    model_args: dict[str, Any] = field(default_factory=dict)
    pretrained: bool = False
    pretrained_file: str | None = None
    dataset: str = "digits"
    data_root: str | None = None
    download: bool | None = None
    fraction: float = 1.0
    image_size: int | None = None
    training: TrainConfig = field(default_factory=TrainConfig)
    strategy: str = "tpe"
    strategy_options: dict[str, Any] = field(default_factory=dict)
    objectives: tuple[str, ...] = ("accuracy",)
    pruner: str = "none"
    pruner_options: dict[str, Any] = field(default_factory=dict)
    budget: TuneBudget = field(default_factory=TuneBudget)
    seed: int = 0
    carbon: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    source: str = "<mapping>"
    workers: int = 1
    executor: ExecutorConfig = field(default_factory=ExecutorConfig)

    # -- parsing ----------------------------------------------------------------------------
    @classmethod
    def from_yaml(cls, path: str | Path) -> TuneSpec:
        data = read_yaml_mapping(
            path, keys_hint="name:, search_space:, ...", example="examples/tune_digits.yaml"
        )
        return cls.from_mapping(data, source=str(path))

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], *, source: str = "<mapping>") -> TuneSpec:
        if "parallel" in data:
            raise ConfigError(
                f"tuning spec {source} has parallel:, but tuning runs trials in flight with "
                "workers: N; ranks per trial (a study's parallel: section) are not supported "
                "for tuning",
                fix="write workers: N (or pass parallel=N) instead of parallel:",
            )
        check_spec_keys(
            data, _KEYS, required=("name", "search_space"), source=source, kind="tuning spec"
        )
        name = check_name(data["name"])
        dataset = _parse_dataset(data.get("dataset", "digits"))
        model, model_args, pretrained = cls._parse_model(data.get("model", "frugal_cnn"))
        fraction = parse_number(data.get("fraction", 1.0), "fraction")
        if not 0 < fraction <= 1:
            raise ConfigError(f"fraction {fraction:g} is outside (0, 1]", fix="e.g. fraction: 0.5")
        image_size = parse_image_size(data.get("image_size"))
        training = _parse_training(data.get("training") or {})
        space = SearchSpace.from_mapping(data.get("search_space"))
        if "model.name" not in space.names and model is None:
            raise ConfigError("the spec names no model", fix=_KEYS["model"])
        search = cls._parse_search(data, space)
        budget = TuneBudget.from_mapping(data.get("budget"))
        seed = _check_seed(data.get("seed", 0))
        carbon = parse_carbon(data.get("carbon"))
        download = data.get("download")
        if download is not None and not isinstance(download, bool):
            raise ConfigError("download must be true or false", fix="download: false")
        data_root, pretrained_file = _resolve_paths(data, source)
        spec = cls(
            name=name,
            search_space=space,
            model=model or "",
            model_args=model_args,
            pretrained=pretrained,
            dataset=dataset,
            download=download,
            fraction=fraction,
            image_size=image_size,
            training=training,
            budget=budget,
            seed=seed,
            carbon=carbon,
            description=str(data.get("description") or ""),
            source=source,
            workers=_positive_int(data.get("workers", 1), "workers"),
            executor=ExecutorConfig.from_mapping(data.get("executor")),
            strategy=search.strategy,
            strategy_options=search.strategy_options,
            objectives=search.objectives,
            pruner=search.pruner,
            pruner_options=search.pruner_options,
            data_root=data_root,
            pretrained_file=pretrained_file,
        )
        spec.check_models()
        for warning in spec.warnings():
            logger.warning("warning: %s: %s", source, warning)
        return spec

    @staticmethod
    def _parse_search(data: Mapping[str, Any], space: SearchSpace) -> _Search:
        """The strategy, objectives and pruner, checked against each other and the space."""
        strategy, strategy_options = _options(
            data.get("strategy"), "strategy", "name", _STRATEGY_OPTIONS, "tpe"
        )
        objectives = TuneSpec._parse_objective(data.get("objective", "accuracy"))
        pruner, pruner_options = _options(
            data.get("pruner"), "pruner", "type", _PRUNER_OPTIONS, "none"
        )
        _check_objectives(strategy, pruner, objectives)
        if get_strategy(strategy).finite:
            space.grid()  # a finite grid, or a clear error now rather than at run time
        return _Search(strategy, strategy_options, objectives, pruner, pruner_options)

    def warnings(self) -> list[str]:
        """Legal but probably unintended plans, one sentence each (logged when parsed)."""
        out = self.training.warnings()
        _, most = self.search_space.epochs_range(self.training.epochs)
        if most > WARN_EPOCHS and most != self.training.epochs:
            out.append(f"search_space.epochs reaches {most:,} epochs a trial; check the range")
        if self.budget.max_trials is not None and self.budget.max_trials > 10_000:
            out.append(f"budget.max_trials is {self.budget.max_trials:,}; check the number")
        return out

    # -- checks -----------------------------------------------------------------------------
    def check(self) -> None:
        """What a run would refuse on this machine, before it starts: the training device
        and the dataset (a ``folder:`` tree's split from its file names, a MedMNIST file
        that cannot be downloaded); ``tune`` and ``tune --validate`` call it."""
        from frugalml.data import check_dataset
        from frugalml.train._config import check_device

        check_device(self.training.device)
        check_dataset(
            self.dataset, root=self.data_root, download=self.download, image_size=self.image_size
        )

    def model_candidates(self) -> list[tuple[str | None, Any, str, dict[str, Any]]]:
        """``(parameter, value, model name, args)`` for the base model (parameter None) and
        for every bound and choice of each searched ``model.*`` parameter."""
        out: list[tuple[str | None, Any, str, dict[str, Any]]] = []
        if "model.name" not in self.search_space.names:
            out.append((None, None, self.model, dict(self.model_args)))
        for param in self.search_space:
            if not param.name.startswith("model."):
                continue
            for value in param.bounds_and_choices():
                _, name, args = apply_params(
                    {param.name: value}, self.training, self.model, self.model_args
                )
                out.append((param.name, value, name, args))
        return out

    def check_models(self, build: Callable[[str, dict[str, Any]], Any] | None = None) -> None:
        """Every model a trial can ask for must exist and take its knobs.

        ``build(name, args)`` builds one (the tuner passes one that builds it for the loaded
        dataset); by default the model is checked without data: a built-in's knobs against
        its config, a timm name against timm, a timm model's knobs by building it on the meta
        device (no memory, no weights). ``tune --validate`` and ``tune`` share this, so
        validation refuses what the run would.
        """
        check = build or self._check_model
        for param, value, name, args in self.model_candidates():
            try:
                check(name, args)
            except FrugalError as exc:
                if param is None:
                    raise
                raise ConfigError(
                    f"search_space.{param} allows {value!r}, which the model rejects: "
                    f"{exc.message}",
                    fix=exc.fix or "narrow the range or the choices",
                ) from None
            except (TypeError, ValueError, RuntimeError) as exc:
                where = f"search_space.{param} allows {value!r}, which" if param else "the"
                raise ConfigError(
                    f"{where} model {name} rejects its arguments {args}: {exc}",
                    fix="narrow the range or the choices" if param else "check model.args",
                ) from None

    def _check_model(self, name: str, args: dict[str, Any]) -> None:
        from frugalml.models import list_builtin_models, resolve_models

        if not isinstance(name, str) or not name:
            raise ConfigError(f"model name must be text, got {name!r}", fix=_KEYS["model"])
        resolved = resolve_models([{"name": name, "args": args}])
        if not resolved.models:
            raise ConfigError(f"model {name!r} cannot be resolved", fix=_KEYS["model"])
        if name in list_builtin_models():
            if self.pretrained and self.pretrained_file is None:
                raise ConfigError(
                    f"{name} is a frugalml built-in and has no published pretrained weights",
                    fix="set model.pretrained: false, or give model.pretrained_file",
                )
            return
        if args:
            check_timm_args(resolved.models[0].name, args)

    @staticmethod
    def _parse_model(value: Any) -> tuple[str | None, dict[str, Any], bool]:
        if value is None:
            return None, {}, False
        if isinstance(value, str) and value:
            return value, {}, False
        if isinstance(value, Mapping):
            unknown = sorted(
                set(map(str, value)) - {"name", "args", "pretrained", "pretrained_file"}
            )
            if unknown:
                raise ConfigError(
                    f"unknown model key(s): {', '.join(unknown)}",
                    fix="use name, args, pretrained, pretrained_file",
                )
            name = value.get("name")
            if not isinstance(name, str) or not name:
                raise ConfigError(
                    f"model.name must be a model name, got {name!r}", fix=_KEYS["model"]
                )
            args = value.get("args") or {}
            if not isinstance(args, Mapping):
                raise ConfigError("model.args must be a mapping", fix="e.g. args: {conv_layers: 2}")
            pretrained = value.get("pretrained", False)
            if not isinstance(pretrained, bool):
                raise ConfigError("model.pretrained must be true or false", fix="pretrained: false")
            return name, {str(k): v for k, v in args.items()}, pretrained
        raise ConfigError(f"model must be a name or a mapping, got {value!r}", fix=_KEYS["model"])

    @staticmethod
    def _parse_objective(value: Any) -> tuple[str, ...]:
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, (list, tuple)) or not items:
            raise ConfigError(
                f"objective must be accuracy, energy or [accuracy, energy], got {value!r}",
                fix="e.g. objective: accuracy",
            )
        for item in items:
            if item not in OBJECTIVES:
                raise ConfigError(
                    f"unknown objective {item!r}", fix="use accuracy, energy or [accuracy, energy]"
                )
        if len(set(items)) != len(items):
            raise ConfigError(f"objective {list(items)} repeats itself", fix="list each once")
        return tuple(items)

    # -- derived ----------------------------------------------------------------------------
    @property
    def multi_objective(self) -> bool:
        return len(self.objectives) > 1

    @property
    def directions(self) -> list[str]:
        return ["maximize" if o == "accuracy" else "minimize" for o in self.objectives]

    def replace(self, **changes: Any) -> TuneSpec:
        """A copy with ``changes``; a changed strategy drops options the new one lacks and a
        grid strategy is checked for a finite grid."""
        import dataclasses

        if "seed" in changes:
            _check_seed(changes["seed"])
        if "strategy" in changes and "strategy_options" not in changes:
            allowed = get_strategy(changes["strategy"]).options
            changes["strategy_options"] = {
                k: v for k, v in self.strategy_options.items() if k in allowed
            }
        spec = dataclasses.replace(self, **changes)
        if "strategy" in changes or "objectives" in changes or "pruner" in changes:
            _check_objectives(spec.strategy, spec.pruner, spec.objectives)
        if get_strategy(spec.strategy).finite:
            spec.search_space.grid()
        return spec

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "dataset": self.dataset,
            "data_root": self.data_root,
            "download": self.download,
            "fraction": self.fraction,
            "image_size": self.image_size,
            "model": {
                "name": self.model,
                "args": dict(self.model_args),
                "pretrained": self.pretrained,
                "pretrained_file": self.pretrained_file,
            },
            "training": self.training.to_dict(),
            "search_space": self.search_space.to_dict(),
            "strategy": {"name": self.strategy, **self.strategy_options},
            "objective": list(self.objectives),
            "pruner": {"type": self.pruner, **self.pruner_options},
            "budget": self.budget.to_dict(),
            "seed": self.seed,
            "carbon": dict(self.carbon),
            "workers": self.workers,
            "executor": self.executor.to_dict(),
        }


def _parse_dataset(dataset: Any) -> str:
    from frugalml.data import check_dataset_name

    if not isinstance(dataset, str):
        raise ConfigError(f"dataset must be a name, got {dataset!r}", fix=_KEYS["dataset"])
    check_dataset_name(dataset)
    return dataset


def _parse_training(values: Any) -> TrainConfig:
    if not isinstance(values, Mapping):
        raise ConfigError("training must be a mapping of options", fix="e.g. training: {epochs: 3}")
    return TrainConfig.from_mapping(values)


def _resolve_paths(data: Mapping[str, Any], source: str) -> tuple[str | None, str | None]:
    """``data_root`` and the model's ``pretrained_file``, relative to the spec's folder."""
    base = Path(source).parent if source != "<mapping>" else Path.cwd()
    data_root = data.get("data_root")
    if data_root is not None:
        data_root = str((base / str(data_root)).expanduser().resolve())
    pretrained_file = None
    if isinstance(data.get("model"), Mapping) and data["model"].get("pretrained_file"):
        pretrained_file = str((base / str(data["model"]["pretrained_file"])).resolve())
    return data_root, pretrained_file

"""The search space: typed parameters parsed from YAML, sampled through an Optuna trial.

::

    search_space:
      lr:                {type: float, low: 1.0e-4, high: 1.0e-1, log: true}
      weight_decay:      {type: float, low: 0.0, high: 1.0e-3, step: 5.0e-4}
      betas:             {type: categorical, choices: [[0.9, 0.999], [0.5, 0.999]]}
      betas.0:           {type: float, low: 0.5, high: 0.95}      # or one beta at a time
      batch_size:        {type: categorical, choices: [16, 32, 64]}
      epochs:            {type: int, low: 1, high: 4, step: 1}
      model.conv_layers: {type: int, low: 1, high: 4, grid: [1, 2, 4]}
      model.name:        {type: categorical, choices: [frugal_cnn, resnet10t]}

A parameter name is a :class:`frugalml.train.TrainConfig` field (``lr``, ``betas``,
``batch_size``, ...), ``betas.0``/``betas.1`` (one Adam beta), ``model.<knob>`` (a keyword
argument of the model's constructor, e.g. the built-in CNN's ``conv_layers``) or
``model.name`` (a choice among models; then no ``model.<knob>`` may be searched, since a knob
of one model is not a knob of another).

Grid search needs a finite grid: every float or int parameter then needs ``grid: [...]``
values or a ``step``; categorical parameters contribute their choices. Other strategies
ignore ``grid`` and sample the whole range ``[low, high]`` (which defaults to the grid's
smallest and largest values when only ``grid`` is given).
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from frugalml.errors import ConfigError
from frugalml.train import TrainConfig

if TYPE_CHECKING:
    import optuna

ParamType = Literal["float", "int", "categorical"]
Choice = Any  # a YAML scalar, or a list (e.g. a pair of Adam betas)

_TYPES: tuple[str, ...] = ("float", "int", "categorical")
_NUMERIC_KEYS = {"type", "low", "high", "log", "step", "grid"}
_CATEGORICAL_KEYS = {"type", "choices"}
_BETA_NAMES = ("betas.0", "betas.1")
#: TrainConfig fields that are not hyperparameters of the training itself.
_NOT_TUNABLE = frozenset({"device", "tensor_path_max_bytes"})

#: The most points a grid may have: grid search visits each, and Optuna lists them all.
MAX_GRID_POINTS = 100_000

_EXAMPLE = "e.g. lr: {type: float, low: 1.0e-4, high: 1.0e-1, log: true}"


def _number(value: Any, where: str) -> float:
    """A YAML number; also accepts ``1e-4`` written without a dot (YAML reads it as text)."""
    if isinstance(value, bool):
        raise ConfigError(f"{where} must be a number, got {value!r}", fix="write a number")
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
    raise ConfigError(f"{where} must be a number, got {value!r}", fix="write a number, e.g. 1.0e-4")


def _integer(value: Any, where: str) -> int:
    number = _number(value, where)
    if not number.is_integer():
        raise ConfigError(f"{where} must be a whole number, got {value!r}", fix="e.g. 1, 2, 4")
    return int(number)


def _encode(choice: Choice) -> bool | int | float | str | None:
    """Optuna stores only scalars; a list choice travels as its JSON text."""
    if choice is None or isinstance(choice, (bool, int, float, str)):
        return choice
    return json.dumps(choice)


@dataclass(frozen=True)
class Param:
    """One searched parameter. ``low``/``high``/``log``/``step``/``grid`` for numbers,
    ``choices`` for categorical ones."""

    name: str
    type: ParamType
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    grid: tuple[float, ...] | None = None
    choices: tuple[Choice, ...] = ()

    # -- sampling ---------------------------------------------------------------------------
    def suggest(self, trial: optuna.Trial, *, grid_mode: bool = False) -> Any:
        """Sample this parameter in ``trial`` and return the value to apply."""
        if self.type == "categorical":
            encoded = [_encode(c) for c in self.choices]
            picked = trial.suggest_categorical(self.name, encoded)
            return self.choices[encoded.index(picked)]
        low, high = self._bounds()
        # In grid mode an explicit grid replaces the step (its values need not lie on it).
        step = None if grid_mode and self.grid is not None else self.step
        if self.type == "int":
            return trial.suggest_int(
                self.name,
                int(low),
                int(high),
                step=int(step) if step is not None else 1,
                log=self.log,
            )
        return trial.suggest_float(self.name, low, high, step=step, log=self.log)

    def _bounds(self) -> tuple[float, float]:
        if self.low is None or self.high is None:
            raise ConfigError(f"search_space.{self.name} has no low/high", fix=_EXAMPLE)
        return self.low, self.high

    def grid_values(self) -> list[Any]:
        """The finite values grid search visits (Optuna's encoding for categorical ones)."""
        if self.type == "categorical":
            return [_encode(c) for c in self.choices]
        if self.grid is not None:
            return [int(v) for v in self.grid] if self.type == "int" else list(self.grid)
        if self.step is None:
            kind = "an int" if self.type == "int" else "a continuous float"
            raise ConfigError(
                f"grid search needs a finite grid, but {self.name!r} is {kind} range "
                f"[{self.low:g}, {self.high:g}] without grid values or a step",
                fix=f"give {self.name} `grid: [...]` values or a `step`, or use another strategy",
            )
        low, high = self._bounds()
        count = self.grid_count()
        if count > MAX_GRID_POINTS:
            raise ConfigError(
                f"search_space.{self.name}: a step of {self.step:g} over [{low:g}, {high:g}] "
                f"gives {count:,} grid values, more than the limit of {MAX_GRID_POINTS:,}",
                fix="use a coarser step, a narrower range, or list the values in grid: [...]",
            )
        values = [low + i * self.step for i in range(count)]
        if self.type == "int":
            return [round(v) for v in values]
        return [float(f"{v:.12g}") for v in values]  # 0.1 + 2 * 0.1 -> 0.3, not 0.30000000000000004

    def grid_count(self) -> int:
        """How many values grid search visits, counted without listing them (a stepped
        range of 10^9 values is never built)."""
        if self.type == "categorical":
            return len(self.choices)
        if self.grid is not None:
            return len(self.grid)
        step = self.step
        if step is None:
            return len(self.grid_values())  # raises: a range without a step has no grid
        low, high = self._bounds()
        ratio = (high - low) / step
        nearest = round(ratio)  # 1.0 / 1e-9 is 999999999.9999999: the end point counts
        if abs(ratio - nearest) <= max(1e-9, 1e-12 * ratio):
            return nearest + 1
        return math.floor(ratio) + 1

    def bounds_and_choices(self) -> list[Any]:
        """Representative values used to check the parameter against the trainer/model."""
        if self.type == "categorical":
            return list(self.choices)
        values: list[Any] = [self.low, self.high, *(self.grid or ())]
        if self.type == "int":
            values = [int(v) for v in values if v is not None]
        return values

    def describe(self) -> str:
        if self.type == "categorical":
            return f"{self.name}: one of {list(self.choices)}"
        scale = " (log)" if self.log else ""
        extra = f", step {self.step:g}" if self.step is not None else ""
        shown = [int(v) for v in self.grid] if self.type == "int" and self.grid else self.grid
        grid = f", grid {list(shown)}" if shown is not None else ""
        return f"{self.name}: {self.type} in [{self.low:g}, {self.high:g}]{scale}{extra}{grid}"

    def to_dict(self) -> dict[str, Any]:
        if self.type == "categorical":
            return {"type": self.type, "choices": list(self.choices)}
        data: dict[str, Any] = {"type": self.type, "low": self.low, "high": self.high}
        if self.log:
            data["log"] = True
        if self.step is not None:
            data["step"] = self.step
        if self.grid is not None:
            data["grid"] = list(self.grid)
        return data


def _check_name(name: str) -> None:
    fields = {f.name for f in dataclasses.fields(TrainConfig)} - _NOT_TUNABLE
    if name in fields or name in _BETA_NAMES:
        return
    if name.startswith("model.") and len(name) > len("model.") and "." not in name[6:]:
        return
    raise ConfigError(
        f"unknown search-space parameter {name!r}",
        fix=(
            "use a training option (" + ", ".join(sorted(fields)) + "), betas.0 / betas.1, "
            "model.<knob> (a model constructor argument such as model.conv_layers) or model.name"
        ),
    )


def parse_param(name: Any, spec: Any) -> Param:
    """Parse one ``name: {type: ..., ...}`` entry; every mistake is a :class:`ConfigError`."""
    if not isinstance(name, str) or not name:
        raise ConfigError(f"search-space names must be text, got {name!r}", fix=_EXAMPLE)
    _check_name(name)
    where = f"search_space.{name}"
    if not isinstance(spec, Mapping):
        raise ConfigError(
            f"{where} must be a mapping with a type, got {spec!r}",
            fix="e.g. {type: categorical, choices: [16, 32]} or {type: int, low: 1, high: 4}",
        )
    kind = spec.get("type")
    if kind not in _TYPES:
        raise ConfigError(
            f"{where}.type must be float, int or categorical, got {kind!r}",
            fix="add type: float, type: int or type: categorical",
        )
    allowed = _CATEGORICAL_KEYS if kind == "categorical" else _NUMERIC_KEYS
    unknown = sorted(set(map(str, spec)) - allowed)
    if unknown:
        raise ConfigError(
            f"{where} has unknown key(s) for a {kind} parameter: {', '.join(unknown)}",
            fix=f"use only: {', '.join(sorted(allowed))}",
        )
    if kind == "categorical":
        return _categorical(name, where, spec)
    return _numeric(name, where, kind, spec)


def _categorical(name: str, where: str, spec: Mapping[str, Any]) -> Param:
    choices = spec.get("choices")
    if not isinstance(choices, (list, tuple)) or not choices:
        raise ConfigError(
            f"{where}.choices must be a non-empty list, got {choices!r}",
            fix="e.g. choices: [16, 32, 64]",
        )
    encoded = [_encode(c) for c in choices]
    if len(set(map(json.dumps, encoded))) != len(encoded):
        raise ConfigError(f"{where}.choices has duplicates: {list(choices)}", fix="list each once")
    return Param(name=name, type="categorical", choices=tuple(choices))


def _numeric(name: str, where: str, kind: Any, spec: Mapping[str, Any]) -> Param:
    """An int or float range: bounds, log scale, step and grid values, checked together."""
    log = spec.get("log", False)
    if not isinstance(log, bool):
        raise ConfigError(f"{where}.log must be true or false, got {log!r}", fix="log: true")
    convert = _integer if kind == "int" else _number
    grid = _grid(where, spec, convert)
    for key in ("low", "high"):
        if key not in spec and grid is None:
            raise ConfigError(
                f"{where} lacks {key!r}", fix=f"give low and high (or grid values), {_EXAMPLE}"
            )
    low = float(convert(spec["low"], f"{where}.low")) if "low" in spec else min(grid or (0.0,))
    high = float(convert(spec["high"], f"{where}.high")) if "high" in spec else max(grid or (0.0,))
    if not (math.isfinite(low) and math.isfinite(high)):
        raise ConfigError(f"{where}: low and high must be finite", fix="give finite bounds")
    if low > high:
        raise ConfigError(
            f"{where}: low ({low:g}) is greater than high ({high:g})", fix="swap low and high"
        )
    if log and low <= 0:
        raise ConfigError(
            f"{where}: a log-scaled range needs low > 0, got low = {low:g}",
            fix="use a positive low (e.g. 1.0e-5) or drop log: true",
        )
    step = _step(where, spec, convert, log=log)
    if grid is not None:
        outside = [v for v in grid if not low <= v <= high]
        if outside:
            raise ConfigError(
                f"{where}.grid values {outside} lie outside [low, high] = [{low:g}, {high:g}]",
                fix="widen low/high or drop those grid values",
            )
    return Param(name=name, type=kind, low=low, high=high, log=log, step=step, grid=grid)


def _grid(
    where: str, spec: Mapping[str, Any], convert: Callable[[Any, str], float]
) -> tuple[float, ...] | None:
    """The ``grid:`` values of a numeric parameter, or None when it lists none."""
    if "grid" not in spec:
        return None
    raw = spec["grid"]
    if not isinstance(raw, (list, tuple)) or not raw:
        raise ConfigError(
            f"{where}.grid must be a non-empty list of values, got {raw!r}",
            fix="e.g. grid: [1.0e-3, 1.0e-2]",
        )
    grid = tuple(float(convert(v, f"{where}.grid")) for v in raw)
    if len(set(grid)) != len(grid):
        raise ConfigError(f"{where}.grid has duplicates: {list(raw)}", fix="list each once")
    return grid


def _step(
    where: str, spec: Mapping[str, Any], convert: Callable[[Any, str], float], *, log: bool
) -> float | None:
    """The ``step:`` of a numeric parameter (positive, never with ``log``), or None."""
    if spec.get("step") is None:
        return None
    step = float(convert(spec["step"], f"{where}.step"))
    if not step > 0:
        raise ConfigError(f"{where}.step must be > 0, got {step:g}", fix="e.g. step: 1")
    if log:
        raise ConfigError(
            f"{where}: step and log cannot be combined (Optuna samples either a stepped or "
            "a log-scaled range)",
            fix="drop step, or drop log and list the values in grid: [...]",
        )
    return step


@dataclass(frozen=True)
class SearchSpace:
    """The parameters of a tuning run, in the order they were written."""

    params: tuple[Param, ...]

    @classmethod
    def from_mapping(cls, data: Any) -> SearchSpace:
        if data is None or (isinstance(data, Mapping) and not data):
            raise ConfigError(
                "the search space is empty", fix=f"add at least one parameter, {_EXAMPLE}"
            )
        if not isinstance(data, Mapping):
            raise ConfigError(
                f"search_space must be a mapping of parameter names, got {type(data).__name__}",
                fix=_EXAMPLE,
            )
        params = tuple(parse_param(name, spec) for name, spec in data.items())
        names = {p.name for p in params}
        if "betas" in names and names & set(_BETA_NAMES):
            raise ConfigError(
                "the search space sets betas and also betas.0/betas.1",
                fix="search either betas (pairs) or the single betas.0/betas.1, not both",
            )
        knobs = sorted(n for n in names if n.startswith("model.") and n != "model.name")
        if "model.name" in names and knobs:
            raise ConfigError(
                f"model.name is searched together with model knobs ({', '.join(knobs)}); a knob "
                "of one model is not a knob of another",
                fix="search either a choice of models or the knobs of one model",
            )
        space = cls(params)
        space.check_training_values()
        return space

    def __iter__(self) -> Any:
        return iter(self.params)

    def __len__(self) -> int:
        return len(self.params)

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.params]

    def get(self, name: str) -> Param | None:
        return next((p for p in self.params if p.name == name), None)

    def grid(self) -> dict[str, list[Any]]:
        """The grid for :class:`optuna.samplers.GridSampler` (errors if a range is not finite,
        or if the grid has more than :data:`MAX_GRID_POINTS` points, counted first)."""
        size = self.grid_size()
        if size > MAX_GRID_POINTS:
            counts = " x ".join(f"{p.grid_count():,} ({p.name})" for p in self.params)
            raise ConfigError(
                f"the grid has {size:,} points ({counts}), more than the limit of "
                f"{MAX_GRID_POINTS:,}",
                fix="use coarser steps or fewer grid values, or a sampling strategy (random, tpe)",
            )
        return {p.name: p.grid_values() for p in self.params}

    def grid_size(self) -> int:
        """The number of grid points, counted arithmetically (nothing is listed)."""
        return math.prod(p.grid_count() for p in self.params)

    def suggest(self, trial: optuna.Trial, *, grid_mode: bool = False) -> dict[str, Any]:
        """Sample every parameter; returns ``{name: value}`` with list choices decoded."""
        return {p.name: p.suggest(trial, grid_mode=grid_mode) for p in self.params}

    def epochs_range(self, base: int) -> tuple[int, int]:
        """The fewest and most epochs a trial can plan."""
        param = self.get("epochs")
        if param is None:
            return base, base
        values = [int(v) for v in param.bounds_and_choices()]
        return min(values), max(values)

    def check_training_values(self) -> None:
        """Every bound and choice of a training option must be a valid TrainConfig value."""
        base = TrainConfig()
        for param in self.params:
            if param.name.startswith("model."):
                continue
            for value in param.bounds_and_choices():
                try:
                    apply_params({param.name: value}, base)
                except ConfigError as exc:
                    raise ConfigError(
                        f"search_space.{param.name} allows {value!r}, which training rejects: "
                        f"{exc.message}",
                        fix=exc.fix or "narrow the range or the choices",
                    ) from None
                except (TypeError, ValueError) as exc:
                    raise ConfigError(
                        f"search_space.{param.name} allows {value!r}, which training "
                        f"rejects: {exc}",
                        fix="narrow the range or the choices",
                    ) from None

    def to_dict(self) -> dict[str, Any]:
        return {p.name: p.to_dict() for p in self.params}


def apply_params(
    params: Mapping[str, Any],
    training: TrainConfig,
    model_name: str = "",
    model_args: Mapping[str, Any] | None = None,
) -> tuple[TrainConfig, str, dict[str, Any]]:
    """The training config, model name and model arguments a trial's ``params`` give."""
    changes: dict[str, Any] = {}
    betas = list(training.betas)
    args = dict(model_args or {})
    name = model_name
    for key, value in params.items():
        if key == "model.name":
            name = str(value)
            args = {}
        elif key.startswith("model."):
            args[key[len("model.") :]] = value
        elif key in _BETA_NAMES:
            betas[int(key[-1])] = float(value)
            changes["betas"] = tuple(betas)
        elif key == "betas":
            if not isinstance(value, Sequence) or isinstance(value, str) or len(value) != 2:
                raise ConfigError(
                    f"betas choices must be pairs of numbers, got {value!r}",
                    fix="e.g. choices: [[0.9, 0.999], [0.5, 0.999]]",
                )
            changes["betas"] = tuple(float(b) for b in value)
        else:
            changes[key] = value
    if "lr" in changes and isinstance(changes["lr"], str):
        changes["lr"] = _number(changes["lr"], "lr")
    return training.replace(**changes), name, args

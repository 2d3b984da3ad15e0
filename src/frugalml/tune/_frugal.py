"""The cost-aware ``frugal`` strategy: TPE that knows what a trial costs, and a pruner.

Used by :func:`frugalml.tune._strategies.make_sampler` for the ``frugal`` strategy; the
cost predictions come from :mod:`frugalml.tune._cost`. Its rules, each switchable in
:class:`FrugalSettings` so that they can be measured one against another (what each did on
digits is in ``benchmarks/RESULTS.md``, "Tuning strategies"):

- **start-up** (``startup_candidates``): 1 (the default) draws the random start-up trials
  uniformly; above 1, each (after the first, which has nothing to predict from) is the
  cheapest by predicted energy of that many uniform draws;
- **candidates** (``candidates``): TPE scores this many candidates drawn from its "good"
  density per ask (Optuna's default, 24);
- **the acquisition** (``acquisition``): ``"expected_improvement"`` (the default) ranks
  candidates by TPE's own score and uses the cost only as the constraint below. TPE's
  score ``v = log l(x) - log g(x)`` is a monotone transform of expected improvement,
  ``EI(x) ~ 1 / (gamma + (1 - gamma) exp(-v))`` (Bergstra et al. 2011; ``gamma`` the share
  of trials in ``l``); ``"ei_per_joule"`` ranks by ``log EI(x) - log
  predicted_energy_j(x)`` and ``"log_ratio_per_joule"`` (the first version) by ``v - log
  predicted_energy_j(x)``. Per joule was the default until 20 measured runs a strategy
  showed it spending 88% of its trials at the cheapest batch size, where the best
  configurations are not. Candidates the remaining budget cannot afford score ``-inf``
  (all of them: the cheapest is proposed);
- **local search around the best trial** (``local_share``, ``local_scale``): after the
  start-up trials, that share of the asks (drawn with the sampler's seed) does not ask TPE
  but perturbs the best completed trial: each numeric parameter moves by a normal step of
  ``local_scale`` times its range (in log space where the parameter is log), rounded to
  its step and kept in range; categorical parameters keep the best trial's choice. 0 (the
  default) leaves every ask to TPE: on digits, 30 measured runs with 0.5 put 4.1% of the
  local trials at the target against 5.1% of TPE's own, at more energy a trial
  (``benchmarks/RESULTS.md``);
- **pruning against the best curve** (:class:`BestCurvePruner`, ``prune_ratio``): a trial
  whose validation accuracy after epoch ``k`` is below ``prune_ratio`` times the best
  completed trial's accuracy after epoch ``k`` stops there.
"""

from __future__ import annotations

import dataclasses
import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from frugalml.tune._results import LOCAL_ATTR

if TYPE_CHECKING:
    import optuna

    from frugalml.tune._spec import TuneSpec

Acquisition = Literal["ei_per_joule", "log_ratio_per_joule", "expected_improvement"]


@dataclass(frozen=True)
class FrugalSettings:
    """The rules of the frugal strategy (the module docstring); defaults: the measured best."""

    startup_candidates: int = 1
    #: Candidates TPE draws and scores per ask (``n_ei_candidates``; Optuna's default 24).
    candidates: int = 24
    acquisition: Acquisition = "expected_improvement"
    prune_ratio: float | None = 0.75
    #: Cost cooling (Lee et al. 2020, CArBO): the log cost weighs ``left / budget`` (1 at the
    #: start, 0 when spent), so cheap configurations are preferred early and expected
    #: improvement alone decides late; False: the cost weighs 1 throughout.
    cost_cooling: bool = False
    #: One joint density over all parameters (Optuna's ``multivariate=True``), or one each.
    multivariate: bool = True
    #: Share of the asks after the start-up trials that perturb the best completed trial
    #: instead of asking TPE (0: none).
    local_share: float = 0.0
    #: The perturbation's standard deviation, as a share of each numeric parameter's range.
    local_scale: float = 0.04

    def __post_init__(self) -> None:
        from frugalml.errors import ConfigError

        for name in ("startup_candidates", "candidates"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(
                    f"FrugalSettings.{name} must be an integer >= 1, got {value!r}",
                    fix=f"e.g. {name}={getattr(DEFAULT_SETTINGS, name, 1)}",
                )
        if self.acquisition not in _ACQUISITION_WORDS:
            raise ConfigError(
                f"FrugalSettings.acquisition must be one of {', '.join(_ACQUISITION_WORDS)}, "
                f"got {self.acquisition!r}",
                fix="e.g. acquisition='ei_per_joule'",
            )
        for name, high_open in (("local_share", False), ("local_scale", True)):
            value = getattr(self, name)
            if (
                isinstance(value, bool)
                or not isinstance(value, float | int)
                or not (0 <= value <= 1)
                or (high_open and value == 0)
            ):
                raise ConfigError(
                    f"FrugalSettings.{name} must be in {'(0, 1]' if high_open else '[0, 1]'}, "
                    f"got {value!r}",
                    fix=f"e.g. {name}={0.04 if high_open else 0.5}",
                )
        ratio = self.prune_ratio
        if ratio is not None and not (isinstance(ratio, float | int) and 0 < ratio <= 1):
            raise ConfigError(
                f"FrugalSettings.prune_ratio must be in (0, 1] or None, got {ratio!r}",
                fix="e.g. prune_ratio=0.75 (None: no pruning)",
            )

    def describe(self) -> str:
        parts = [
            (
                f"start-up trials the cheapest of {self.startup_candidates} random draws"
                if self.startup_candidates > 1
                else "start-up trials drawn uniformly"
            ),
            f"{self.candidates} candidates scored per ask",
            _ACQUISITION_WORDS[self.acquisition]
            + (
                ", the cost weighed by the share of the budget left"
                if self.cost_cooling and self.acquisition != "expected_improvement"
                else ""
            ),
        ]
        if not self.multivariate:
            parts.append("one density per parameter")
        if self.local_share > 0:
            parts.append(
                f"after the start-up trials {self.local_share:.0%} of the trials perturb the "
                f"best completed one (steps of {self.local_scale:g} x each numeric range, "
                "categorical choices kept)"
            )
        if self.prune_ratio is not None:
            parts.append(
                f"a trial below {self.prune_ratio:g} x the best completed trial's accuracy at "
                "the same epoch stops there"
            )
        return "; ".join(parts)


_ACQUISITION_WORDS = {
    "ei_per_joule": "expected improvement per predicted joule",
    "log_ratio_per_joule": "TPE's log density ratio minus log predicted joules",
    "expected_improvement": "TPE's expected improvement, the cost only a constraint",
}

#: The rules :func:`_cost_aware_tpe` applies unless told.
DEFAULT_SETTINGS = FrugalSettings()


#: The frugal options a spec's strategy line may name, as :class:`FrugalSettings` fields.
SPEC_OPTIONS = ("multivariate", "local_share")


def frugal_settings(spec: TuneSpec | None = None) -> FrugalSettings:
    """The rules the frugal strategy applies (:data:`DEFAULT_SETTINGS`, with the
    :data:`SPEC_OPTIONS` of ``spec``'s strategy where it names them)."""
    options = spec.strategy_options if spec is not None and spec.strategy == "frugal" else {}
    named = {name: options[name] for name in SPEC_OPTIONS if name in options}
    if "multivariate" in named:
        named["multivariate"] = bool(named["multivariate"])
    if "local_share" in named:
        named["local_share"] = float(named["local_share"])
    return dataclasses.replace(DEFAULT_SETTINGS, **named) if named else DEFAULT_SETTINGS


def log_expected_improvement(log_ratio: Any, gamma: float) -> Any:
    """``log EI`` (up to a constant) from TPE's ``log l(x) - log g(x)``: ``-log(gamma + (1 -
    gamma) exp(-v))``, computed without overflow."""
    import numpy as np

    gamma = min(max(gamma, 1e-12), 1.0 - 1e-12)
    return -np.logaddexp(math.log(gamma), math.log1p(-gamma) - np.asarray(log_ratio))


def cheapest(costs: list[float | None]) -> int | None:
    """The index of the cheapest candidate (None when any cost is unknown)."""
    if not costs or any(c is None or not math.isfinite(c) for c in costs):
        return None
    known = [float(c) for c in costs if c is not None]
    return known.index(min(known))


def _tpe_gamma(n_trials: int) -> float:
    """The share of trials TPE puts in its "good" density (Optuna's default gamma)."""
    if n_trials <= 0:
        return 0.1
    return min(math.ceil(0.1 * n_trials), 25) / n_trials


def _cost_aware_tpe(
    seed: int,
    n_startup_trials: int,
    predict_costs: Callable[[list[dict[str, Any]]], list[float | None]],
    remaining_j: Callable[[], float | None],
    settings: FrugalSettings | None = None,
    *,
    budget_j: float | None = None,
    costs_and_left: (
        Callable[[list[dict[str, Any]]], tuple[list[float | None], float | None]] | None
    ) = None,
    constant_liar: bool = True,
) -> optuna.samplers.TPESampler:
    """TPE with the frugal rules of ``settings`` (the module docstring).

    Multivariate by default, so that a candidate is a whole configuration whose cost can be
    predicted; with ``multivariate=False`` the candidates are single parameters and the cost
    plays no part in the acquisition.
    ``budget_j`` (the energy budget, J) scales the cost term under ``cost_cooling``.
    ``costs_and_left`` (candidates -> their predicted J and the J left, from one read of
    the trials) replaces the two calls to ``predict_costs`` and ``remaining_j`` per ask.
    ``constant_liar=False`` (trials run one at a time) lets TPE sample every parameter
    from the ask's one read of the trials instead of reading them afresh for each.
    """

    def score_inputs(candidates: list[dict[str, Any]]) -> tuple[list[float | None], float | None]:
        if costs_and_left is not None:
            return costs_and_left(candidates)
        return predict_costs(candidates), remaining_j()

    import optuna
    from optuna.trial import TrialState

    rules = settings or DEFAULT_SETTINGS

    local = LocalSearch(rules.local_share, rules.local_scale, n_startup_trials, seed)

    class CostAwareTPESampler(optuna.samplers.TPESampler):
        _space: dict[str, Any]
        _n: int = 0

        def sample_relative(
            self, study: Any, trial: Any, search_space: dict[str, Any]
        ) -> dict[str, Any]:
            best = local.best_for(study, trial)
            if best is None:
                return super().sample_relative(study, trial, search_space)
            return {
                name: local.perturb(best.params[name], dist)
                for name, dist in search_space.items()
                if name in best.params
            }

        def sample_independent(self, study: Any, trial: Any, name: str, dist: Any) -> Any:
            best = local.best_for(study, trial)
            if best is None or name not in best.params:
                return super().sample_independent(study, trial, name, dist)
            return local.perturb(best.params[name], dist)

        def _sample_relative(
            self, study: Any, trial: Any, search_space: dict[str, Any]
        ) -> dict[str, Any]:
            # one read of the trials per ask: the start-up check and EI's gamma (_sample)
            states = (TrialState.COMPLETE, TrialState.PRUNED)
            self._n = len(study._get_trials(deepcopy=False, states=states, use_cache=True))
            if search_space and rules.startup_candidates > 1 and self._n < n_startup_trials:
                return self._cheap_draw(study, trial, search_space)
            return super()._sample_relative(study, trial, search_space)

        def _cheap_draw(
            self, study: Any, trial: Any, search_space: dict[str, Any]
        ) -> dict[str, Any]:
            draws = [
                {
                    name: self._random_sampler.sample_independent(study, trial, name, dist)
                    for name, dist in search_space.items()
                }
                for _ in range(rules.startup_candidates)
            ]
            index = cheapest(predict_costs(draws))
            return draws[0 if index is None else index]

        def _sample(self, study: Any, trial: Any, search_space: dict[str, Any]) -> dict[str, Any]:
            self._space = search_space  # self._n: counted in _sample_relative
            return super()._sample(study, trial, search_space)

        def _compute_acquisition_func(
            self, samples: dict[str, Any], mpe_below: Any, mpe_above: Any
        ) -> Any:
            values = super()._compute_acquisition_func(samples, mpe_below, mpe_above)
            if not rules.multivariate:  # one parameter at a time: no whole configuration
                return values  # to cost (the tuner still skips what the budget cannot afford)
            size = int(values.size)
            candidates = [
                {
                    name: self._space[name].to_external_repr(samples[name][i].item())
                    for name in samples
                }
                for i in range(size)
            ]
            costs, left = score_inputs(candidates)
            return _per_joule(values, costs, left, rules, self._n, budget_j)

    return CostAwareTPESampler(
        seed=seed,
        n_startup_trials=n_startup_trials,
        multivariate=rules.multivariate,
        n_ei_candidates=rules.candidates,
        constant_liar=constant_liar,
    )


def _per_joule(
    values: Any,
    costs: list[float | None],
    left: float | None,
    rules: FrugalSettings,
    n_trials: int,
    budget_j: float | None,
) -> Any:
    """TPE's acquisition ``values`` per predicted joule: minus the log cost (weighed by the
    share of the budget left under ``cost_cooling``), as expected improvement first under
    ``ei_per_joule``; candidates the ``left`` joules cannot afford scored -inf (all of
    them unaffordable: the cheapest first). Unchanged where a cost cannot be predicted."""
    import numpy as np

    if any(c is None or not math.isfinite(c) or c <= 0 for c in costs):
        return values
    cost = np.array(costs, dtype=float)
    if rules.acquisition == "ei_per_joule":
        values = log_expected_improvement(values, _tpe_gamma(n_trials))
    weight = 0.0 if rules.acquisition == "expected_improvement" else 1.0
    if weight and rules.cost_cooling and budget_j and left is not None:
        weight = min(max(left / budget_j, 0.0), 1.0)
    scored = values - weight * np.log(cost)
    if left is not None:
        affordable = cost <= left
        if not affordable.any():
            return -cost
        scored = np.where(affordable, scored, -np.inf)
    return scored


def _best_completed(study: Any) -> optuna.trial.FrozenTrial | None:
    """The best completed trial of a single-objective study (None: none yet, or several
    objectives, where "best" is a front, not a trial)."""
    import optuna
    from optuna.trial import TrialState

    if len(study.directions) != 1:
        return None
    trials = study._get_trials(deepcopy=False, states=(TrialState.COMPLETE,), use_cache=True)
    completed: list[optuna.trial.FrozenTrial] = [
        t for t in trials if t.value is not None and math.isfinite(t.value)
    ]
    if not completed:
        return None
    sign = 1.0 if study.direction == optuna.study.StudyDirection.MAXIMIZE else -1.0
    return max(completed, key=lambda t: sign * float(t.value or 0.0))


class LocalSearch:
    """The local-search rule of the frugal sampler: which asks perturb the best completed
    trial (a ``share`` of those after ``startup`` trials, drawn from a stream seeded with
    ``seed``, apart from TPE's), and the perturbation (:func:`perturb`, ``scale``)."""

    def __init__(self, share: float, scale: float, startup: int, seed: int) -> None:
        self.share, self.scale, self.startup = share, scale, startup
        self._rng = random.Random(seed)
        self._best: dict[int, optuna.trial.FrozenTrial | None] = {}  # trial id -> its centre

    def best_for(self, study: Any, trial: Any) -> optuna.trial.FrozenTrial | None:
        """The trial ``trial`` perturbs (None: TPE proposes it), decided once a trial and
        recorded as its :data:`LOCAL_ATTR` system attribute."""
        if self.share <= 0:
            return None
        if trial._trial_id not in self._best:
            self._best[trial._trial_id] = None
            if "fixed_params" in trial.system_attrs:  # a queued trial: its parameters are set
                return None
            best = _best_completed(study)
            if best is not None and self._started(study) and self._rng.random() < self.share:
                self._best[trial._trial_id] = best
                study._storage.set_trial_system_attr(trial._trial_id, LOCAL_ATTR, best.number)
        return self._best[trial._trial_id]

    def _started(self, study: Any) -> bool:
        from optuna.trial import TrialState

        states = (TrialState.COMPLETE, TrialState.PRUNED)
        return len(study._get_trials(deepcopy=False, states=states, use_cache=True)) >= (
            self.startup
        )

    def perturb(self, value: Any, distribution: Any) -> Any:
        return perturb(value, distribution, self.scale, self._rng)


def perturb(value: Any, distribution: Any, scale: float, rng: random.Random) -> Any:
    """``value`` moved by a normal step of ``scale`` times ``distribution``'s range (in log
    space where it is log), rounded to its step and clipped to it; a categorical value, or
    a distribution with one value, is returned as it is."""
    import optuna

    dists = optuna.distributions
    if not isinstance(distribution, dists.FloatDistribution | dists.IntDistribution):
        return value
    low, high = float(distribution.low), float(distribution.high)
    if high <= low:
        return value
    log = bool(distribution.log)
    lo, hi, x = (math.log(low), math.log(high), math.log(value)) if log else (low, high, value)
    x = min(max(x + rng.gauss(0.0, scale * (hi - lo)), lo), hi)
    moved = math.exp(x) if log else x
    step = distribution.step
    if isinstance(distribution, dists.IntDistribution):
        step = step or 1
        moved = low + round((moved - low) / step) * step
        return int(min(max(moved, low), high))
    if step is not None:  # on the step's grid, without the float residue of the sum
        moved = round(low + round((moved - low) / step) * step, 12)
    return float(min(max(moved, low), high))


def best_curve_pruner(ratio: float, last_step: int) -> optuna.pruners.BasePruner:
    """The best-curve rule as an Optuna pruner; never at ``last_step`` or later (a trial
    that ran all its epochs has nothing left to save)."""
    import optuna
    from optuna.trial import TrialState

    class BestCurvePruner(optuna.pruners.BasePruner):
        """Prune a trial whose value after step ``k`` is below ``ratio`` times the value
        after step ``k`` of the best completed trial (maximising; never at a step the best
        trial did not report, nor before one trial completed; only when maximising one
        objective). The best trial is looked up at a trial's first report and kept for its
        later epochs: one read of the study a trial, not one an epoch (the later reads fell
        inside the trial's meter window). With trials in flight, one that completes
        meanwhile counts from the next trial on."""

        def __init__(self) -> None:
            self._best_for: tuple[tuple[str, int], dict[int, float] | None] | None = None

        def _reference(self, study: optuna.Study, number: int) -> dict[int, float] | None:
            """The best completed trial's curve (None: none completed), as of ``number``'s
            first report."""
            key = (study.study_name, number)
            if self._best_for is not None and self._best_for[0] == key:
                return self._best_for[1]
            completed = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            completed = [t for t in completed if t.value is not None]
            curve = None
            if completed:
                best = max(completed, key=lambda t: float(t.value or 0.0))
                curve = dict(best.intermediate_values)
            self._best_for = (key, curve)
            return curve

        def prune(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> bool:
            step = trial.last_step
            if step is None or step >= last_step:
                return False
            if study.directions != [optuna.study.StudyDirection.MAXIMIZE]:
                return False
            curve = self._reference(study, trial.number)
            if curve is None:
                return False
            reference = curve.get(step)
            value = trial.intermediate_values.get(step)
            if reference is None or value is None or not math.isfinite(value):
                return False
            return bool(value < ratio * reference)

    return BestCurvePruner()


def frugal_pruner(spec: TuneSpec) -> optuna.pruners.BasePruner:
    """The frugal strategy's own pruner: the best-curve rule at
    :data:`DEFAULT_SETTINGS`'s ratio up to the spec's last epoch (Optuna's ``NopPruner``
    when the ratio is None)."""
    import optuna

    ratio = frugal_settings().prune_ratio
    if ratio is None:
        return optuna.pruners.NopPruner()
    _, high = spec.search_space.epochs_range(spec.training.epochs)
    return best_curve_pruner(ratio, last_step=max(high, 1))

"""The ask/tell loop of a tuning run: when to stop, ask, check the budget, run, give back.

:func:`run_loop` repeats until a budget, the grid or the search space says stop: before each
trial it checks ``max_trials``, an exhausted grid and whether the cheapest trial is still
affordable; then Optuna's ``ask`` samples the parameters in a meter window of its own (the
sampler's work is energy spent on tuning too) and the trial's cost is predicted
(:func:`frugalml.tune._planning.predict`; recorded on the trial). A trial the remaining
budget cannot afford is recorded as ``skipped`` and the loop asks for another; every other
one runs (:class:`frugalml.tune._trial.TuneTrial`).

Interrupts: a trial is given back, not failed (:func:`frugalml.tune._trial.give_back`, the
one way: its study.db row pending, the Optuna trial WAITING, re-asked first with the same
parameters). :func:`recover` does it for trials a killed process left RUNNING,
:func:`release_running` after Ctrl-C outside a trial's training, the trial itself during it.
"""

from __future__ import annotations

import itertools
import json
import logging
import math
from typing import TYPE_CHECKING, Any

from frugalml.tune._planning import CostPrediction, budget_stop, target_reached
from frugalml.tune._record import TrialRecord
from frugalml.tune._registry import get_strategy
from frugalml.tune._results import TRIAL_ATTR, TrialSummary
from frugalml.tune._space import apply_params
from frugalml.tune._trial import TuneTrial, give_back, prediction_attrs

if TYPE_CHECKING:
    import optuna

    from frugalml.meter import Meter
    from frugalml.tune._tuner import Tuner

logger = logging.getLogger(__name__)

#: Configurations in a row the remaining budget cannot afford after which the search stops.
MAX_SKIPS_IN_A_ROW = 10
#: The parameters besides ``model.*`` that set what a trial costs.
COST_KNOBS = ("batch_size", "epochs")
#: Corner configurations :func:`cheapest_params` evaluates at most.
MAX_CORNERS = 256


def cost(measurement: Any) -> dict[str, float]:
    """Energy (J), CO2 (g) and time (s) of a finished meter window, for the trial record."""
    if measurement is None:
        return {}
    return {
        "energy_j": measurement.energy_j,
        "co2_g": measurement.co2_g,
        "duration_s": measurement.duration_s,
    }


def max_trials_stop(tuner: Tuner, trials: list[TrialSummary]) -> str | None:
    """The reason ``budget.max_trials`` gives to start no further trial, or None."""
    limit = tuner.spec.budget.max_trials
    counted = sum(t.counted for t in trials)
    if limit is not None and counted >= limit:
        return f"max_trials reached: {counted} of {limit} trials ran"
    return None


def next_stop(tuner: Tuner, trials: list[TrialSummary]) -> str | None:
    """Why no further trial starts, known before asking for one (the target accuracy
    reached, max_trials, the grid, a budget the cheapest trial would exceed: the cheapest
    configuration by the cost model where there is one, else the fewest epochs by the
    per-epoch rule), or None."""
    spec = tuner.spec
    reason = target_reached(spec.budget, trials) or max_trials_stop(tuner, trials)
    if reason is not None:
        return reason
    grid = tuner.grid_sampler
    waiting = any(t.state == "waiting" for t in trials)
    if grid is not None and not waiting and grid.is_exhausted(tuner.study):
        return f"the grid of {spec.search_space.grid_size()} points is exhausted"
    cheap = cheapest_params(tuner, trials)
    if cheap is not None:  # a cost model per configuration (frugal): the cheapest decides
        planned = apply_params(cheap, spec.training)[0].epochs
        reason = tuner.budget_stop(planned, trials, cheap)
        if reason is None:
            return None
        shown = ", ".join(f"{k}={v}" for k, v in cheap.items())
        return f"even the cheapest configuration the space allows ({shown}) does not fit: {reason}"
    low, _ = spec.search_space.epochs_range(spec.training.epochs)
    return tuner.budget_stop(low, trials)


def cheapest_params(
    tuner: Tuner, trials: list[TrialSummary] | None = None
) -> dict[str, Any] | None:
    """With a cost model of the parameters (:attr:`Tuner.cost_of`, the frugal strategy's):
    the configuration predicted cheapest among the corners (bounds, grid values and choices)
    of the parameters that set a trial's cost (``model.*``, ``batch_size``, ``epochs``; the
    others at their first value). None without a cost model, when it cannot predict yet,
    or beyond :data:`MAX_CORNERS` corners (the per-epoch rule decides then). ``trials``: as
    just read, so that the corners do not each read them again."""
    cost_of = tuner.cost_of
    if cost_of is None:
        return None
    params = list(tuner.spec.search_space)
    costly = [p for p in params if p.name.startswith("model.") or p.name in COST_KNOBS]
    corners = [p.bounds_and_choices() for p in costly]
    if math.prod(len(c) for c in corners) > MAX_CORNERS:
        return None
    fixed = {p.name: p.bounds_and_choices()[0] for p in params if p not in costly}
    best: tuple[float, dict[str, Any]] | None = None
    for values in itertools.product(*corners):
        candidate = {**fixed, **{p.name: v for p, v in zip(costly, values, strict=True)}}
        energy_j = cost_of(candidate, trials)
        if energy_j is None or not math.isfinite(energy_j):
            return None
        if best is None or energy_j < best[0]:
            best = (energy_j, candidate)
    return best[1] if best is not None else None


def ask(tuner: Tuner, meter: Meter) -> tuple[optuna.Trial, dict[str, Any], dict[str, float]]:
    """Ask Optuna for a trial and its parameters, in a meter window of its own: the trial,
    its parameters and the sampler's cost (J, g, s). A trial given back earlier is re-asked
    first, with the parameters it holds."""
    spec = tuner.spec
    with meter.window("tune sampler") as window:
        trial = tuner.study.ask()
        params = spec.search_space.suggest(trial, grid_mode=get_strategy(spec.strategy).finite)
    return trial, params, cost(window.measurement)


def skip(
    tuner: Tuner,
    trial: optuna.Trial,
    params: dict[str, Any],
    sampler: dict[str, float],
    why: str,
    prediction: CostPrediction | None = None,
) -> None:
    """Record ``trial`` as not started (``why``, its predicted cost) and finish it (Optuna
    FAIL: samplers learn nothing from it, and a grid counts the point as visited)."""
    from optuna.trial import TrialState

    TrialRecord(
        tune_state="skipped",
        params=json.loads(json.dumps(params)),
        error=f"not started: {why}",
        sampler=sampler,
        **prediction_attrs(prediction),
    ).write(trial)
    tuner.study.tell(trial, state=TrialState.FAIL)
    logger.debug("trial %d not started: %s", trial.number, why)


def affordable(
    tuner: Tuner, trials: list[TrialSummary], params: dict[str, Any]
) -> tuple[CostPrediction | None, str | None]:
    """The predicted cost of a trial with ``params`` and the reason the budget cannot afford
    it (None: it can, or no resource budget is set)."""
    spec = tuner.spec
    planned = apply_params(params, spec.training)[0].epochs
    prediction = tuner.predict(planned, trials, params)
    if not spec.budget.has_resource_limit:
        return prediction, None
    return prediction, budget_stop(spec.budget, tuner.spent_total(trials), prediction)


def run_loop(tuner: Tuner, meter: Meter) -> str:
    """Ask, check and run trials until something says stop; returns why it stopped.

    A configuration the remaining budget cannot afford is skipped (recorded with its
    predicted cost) and the search asks for another, so that cheaper configurations still
    run; it stops when even the cheapest trial the space allows cannot be afforded
    (:func:`next_stop`) or after :data:`MAX_SKIPS_IN_A_ROW` skips in a row. Every trial that
    starts was predicted to fit, so the budget is exceeded by at most one trial's
    prediction error."""
    skipped = 0
    while True:
        trials = tuner.trials()
        reason = next_stop(tuner, trials)
        if reason is not None:
            logger.debug("not starting another trial: %s", reason)  # said once, in the outcome
            if skipped:
                reason += f" ({skipped} unaffordable configuration(s) skipped before)"
            return reason
        trial, params, sampler = ask(tuner, meter)
        prediction, reason = affordable(tuner, trials, params)
        if reason is not None:
            skip(tuner, trial, params, sampler, reason, prediction)
            skipped += 1
            if skipped >= MAX_SKIPS_IN_A_ROW:
                return (
                    f"{skipped} configurations in a row were predicted to cost more than the "
                    f"budget has left, so no cheaper one was tried (the last: {reason})"
                )
            continue
        skipped = 0
        TuneTrial(tuner, trial, params).run(meter, sampler, prediction=prediction)


def recover(tuner: Tuner) -> None:
    """Trials left RUNNING by a killed process: give them back (:func:`give_back`: their
    study.db rows pending, the Optuna trials WAITING), so the rerun runs them again first."""
    from optuna.trial import TrialState

    for trial in tuner.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        logger.info("trial %d was left running by an earlier run; retrying it", trial.number)
        trial_id = (trial.user_attrs.get(TRIAL_ATTR) or {}).get("store_trial_id")
        give_back(tuner, trial, str(trial_id) if trial_id else None, dict(trial.params))


def release_running(tuner: Tuner) -> None:
    """After Ctrl-C outside a trial's training (while asking, say): leave no trial RUNNING,
    giving each back (:func:`give_back`)."""
    recover(tuner)

"""The ask/tell loop of a tuning run: when to stop, ask, check the budget, run, give back.

:func:`run_loop` repeats until a budget, the grid or the search space says stop: before each
trial it checks ``max_trials``, an exhausted grid and whether the cheapest trial is still
affordable; then Optuna's ``ask`` samples the parameters in a meter window of its own (the
sampler's work is energy spent on tuning too); a trial the remaining budget cannot afford is
recorded as ``skipped`` and given back (:func:`frugalml.tune._trial.requeue`); every other
one runs (:class:`frugalml.tune._trial.TuneTrial`).

:func:`recover` and :func:`release_running` leave no Optuna trial RUNNING: the first for
trials a killed process left behind, the second after Ctrl-C outside a trial's training.
Both give the trials back with :func:`frugalml.tune._trial.requeue`, the tuner's one way of
giving a trial back.
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any

from frugalml.tune._record import TrialRecord
from frugalml.tune._results import TRIAL_ATTR, TrialSummary
from frugalml.tune._space import apply_params
from frugalml.tune._trial import TuneTrial, requeue

if TYPE_CHECKING:
    import optuna

    from frugalml.meter import Meter
    from frugalml.tune._tuner import Tuner

logger = logging.getLogger(__name__)

#: The store error of a trial a killed tuning process left running.
KILLED_ERROR = (
    "interrupted (the tuning process ended); the rerun retries these parameters as a new trial"
)


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
    """Why no further trial starts, known before asking for one (max_trials, the grid, a
    budget the cheapest trial would exceed), or None."""
    spec = tuner.spec
    reason = max_trials_stop(tuner, trials)
    if reason is not None:
        return reason
    grid = tuner.grid_sampler
    waiting = any(t.state == "waiting" for t in trials)
    if grid is not None and not waiting and grid.is_exhausted(tuner.study):
        return f"the grid of {spec.search_space.grid_size()} points is exhausted"
    low, _ = spec.search_space.epochs_range(spec.training.epochs)
    return tuner.budget_stop(low, trials)


def ask(tuner: Tuner, meter: Meter) -> tuple[optuna.Trial, dict[str, Any], dict[str, float]]:
    """Ask Optuna for a trial and its parameters, in a meter window of its own: the trial,
    its parameters and the sampler's cost (J, g, s)."""
    spec = tuner.spec
    with meter.window("tune sampler") as window:
        trial = tuner.study.ask()
        try:
            params = spec.search_space.suggest(trial, grid_mode=spec.strategy == "grid")
        except KeyboardInterrupt:
            trial.set_user_attr(TRIAL_ATTR, {"tune_state": "interrupted"})
            raise
    return trial, params, cost(window.measurement)


def skip(
    tuner: Tuner, trial: optuna.Trial, params: dict[str, Any], sampler: dict[str, float], why: str
) -> None:
    """Record ``trial`` as not started (``why``) and give it back, so a rerun tries it first."""
    TrialRecord(
        tune_state="skipped",
        params=json.loads(json.dumps(params)),
        error=f"not started: {why}",
        sampler=sampler,
    ).write(trial)
    requeue(tuner.study, trial)
    logger.debug("trial %d not started: %s", trial.number, why)


def run_loop(tuner: Tuner, meter: Meter) -> str:
    """Ask, check and run trials until something says stop; returns why it stopped."""
    spec = tuner.spec
    while True:
        trials = tuner._trials()
        reason = next_stop(tuner, trials)
        if reason is not None:
            logger.debug("not starting another trial: %s", reason)  # said once, in the outcome
            return reason
        trial, params, sampler = ask(tuner, meter)
        try:
            planned = apply_params(params, spec.training)[0].epochs
            reason = tuner.budget_stop(planned, trials, params)
            if reason is not None:
                skip(tuner, trial, params, sampler, reason)
                return reason
        except KeyboardInterrupt:
            trial.set_user_attr(TRIAL_ATTR, {"tune_state": "interrupted"})
            raise
        TuneTrial(tuner, trial, params).run(meter, sampler)


def recover(tuner: Tuner) -> None:
    """Trials left RUNNING by a killed process: give them back (their store rows are marked
    failed, interrupted), so the rerun resumes them."""
    from optuna.trial import TrialState

    for trial in tuner.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        logger.info("trial %d was left running by an earlier run; retrying it", trial.number)
        trial_id = (trial.user_attrs.get(TRIAL_ATTR) or {}).get("store_trial_id")
        requeue(tuner.study, trial)
        if trial_id:
            tuner.store.finish(str(trial_id), "failed", error=KILLED_ERROR, only_if_running=True)


def release_running(tuner: Tuner) -> None:
    """After Ctrl-C outside a trial's training: leave no trial RUNNING."""
    from optuna.trial import TrialState

    for trial in tuner.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        requeue(tuner.study, trial)

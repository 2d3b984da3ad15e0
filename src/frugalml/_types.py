"""The states a trial can be in, written once and used everywhere (``Literal`` s, so mypy
checks every comparison and every value written).

- :data:`StoreStatus`: what a study store (``study.db``) keeps per trial: waiting to run,
  claimed by a worker, finished with a result, or finished with an error.
- :data:`TrialStatus`: how one run of a trial ended (``frugalml.study.run_metered_trial``):
  a pruned trial is a finished one that stopped early, and an interrupted one goes back to
  ``pending``.
- :data:`TuneState`: what the tuner records of a tuning trial; ``skipped`` is a candidate
  the budget could not afford and that never ran.
- :data:`TrialState`: any of them, for code that reads states from several places (reports,
  status lines).
"""

from __future__ import annotations

from typing import Literal, get_args

__all__ = [
    "STORE_STATUSES",
    "TRIAL_STATES",
    "StoreStatus",
    "TrialState",
    "TrialStatus",
    "TuneState",
]

StoreStatus = Literal["pending", "running", "complete", "failed"]
TrialStatus = Literal["complete", "failed", "pruned", "interrupted"]
TuneState = Literal["running", "complete", "pruned", "failed", "interrupted", "skipped"]
TrialState = Literal["pending", "running", "complete", "failed", "pruned", "interrupted", "skipped"]

#: The store's statuses, in the order ``study status`` counts them.
STORE_STATUSES: tuple[StoreStatus, ...] = get_args(StoreStatus)
#: Every state a trial can be named by.
TRIAL_STATES: tuple[TrialState, ...] = get_args(TrialState)

"""Studies: a YAML spec expanded into trials, each run isolated, every result kept.

- :mod:`._spec`: :class:`StudySpec` (parsing and checking) and :class:`Trial`; budgets
  are :class:`frugalml.meter.Budget`.
- :mod:`._store`: :class:`StudyStore`, SQLite in WAL mode; atomic claims, resumable.
- :mod:`._runner`: :func:`run_study`, one worker process per trial, budget and time-outs.
- :mod:`._executors`: where trials run: ``local`` (warm forked processes) or ``ray``
  (a Ray task per trial, the driver recording its outcome).
- :mod:`._worker`: the process that trains and measures one trial.
- :mod:`._results`: :func:`build_result` (one trial's row, for anything that writes
  trials; :func:`energy_split` into training, evaluation and set-up),
  :func:`load_results` and :func:`export_csv`, one row per trial.
- :mod:`._trial`: :func:`run_metered_trial`, the one place a trial runs (worker, tuner,
  factorial, remote executors): a :class:`TrialPlan` in, a :class:`TrialOutcome` out.
- :mod:`._estimate`: :func:`estimate_study`, predicted energy and time before running.
"""

from __future__ import annotations

from frugalml.study._results import (
    COLUMNS,
    build_result,
    energy_split,
    export_csv,
    load_results,
    process_rss_bytes,
)
from frugalml.study._runner import StudyEvent, StudyOutcome, StudyProgress, StudyRunner, run_study
from frugalml.study._spec import ModelEntry, StudySpec, Trial, parse_budget
from frugalml.study._store import STORE_FILENAME, StudyStore, TrialRow
from frugalml.study._trial import (
    BudgetStop,
    TrialOutcome,
    TrialPlan,
    TrialStatus,
    run_metered_trial,
)

__all__ = [
    "COLUMNS",
    "STORE_FILENAME",
    "BudgetStop",
    "ModelEntry",
    "StudyEvent",
    "StudyOutcome",
    "StudyProgress",
    "StudyRunner",
    "StudySpec",
    "StudyStore",
    "Trial",
    "TrialOutcome",
    "TrialPlan",
    "TrialRow",
    "TrialStatus",
    "build_result",
    "energy_split",
    "export_csv",
    "load_results",
    "parse_budget",
    "process_rss_bytes",
    "run_metered_trial",
    "run_study",
]

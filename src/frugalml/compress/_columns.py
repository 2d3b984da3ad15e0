"""The columns of ``compress.csv`` and ``compress_tune.csv``, written once.

Each column is named with its kind; the CSV headers (:data:`CSV_COLUMNS`,
:data:`TUNE_COLUMNS`), the report's checks of what it reads and the tuner's copy of a trial's
user attributes all derive from these two tables, so a column added here reaches all three.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = [
    "COMPRESS_TABLE",
    "CSV_COLUMNS",
    "TUNE_ATTR_COLUMNS",
    "TUNE_COLUMNS",
    "TUNE_TABLE",
    "Column",
    "ColumnKind",
]

#: ``number``: a float or int (blank where it does not apply); ``text``: a string;
#: ``flag``: ``True``/``False``.
ColumnKind = Literal["number", "text", "flag"]


@dataclass(frozen=True)
class Column:
    """One CSV column: its name, its kind, whether a reader needs a number in every row
    (``required``), and whether a tuning trial records it as a user attribute of the same
    name (``trial_attr``)."""

    name: str
    kind: ColumnKind
    required: bool = False
    trial_attr: bool = False


def _num(name: str, *, required: bool = False, trial_attr: bool = False) -> Column:
    return Column(name, "number", required=required, trial_attr=trial_attr)


def _text(name: str, *, trial_attr: bool = False) -> Column:
    return Column(name, "text", trial_attr=trial_attr)


#: ``compress.csv``: one row per measured model, the dense baseline first.
COMPRESS_TABLE: tuple[Column, ...] = (
    _text("method"),
    _num("accuracy", required=True),
    _num("accuracy_change_points"),
    _num("params", required=True),
    _num("nonzero_params"),
    _num("sparsity", required=True),
    _num("flops_per_sample"),
    _num("latency_ms", required=True),
    _num("latency_ms_low"),
    _num("latency_ms_high"),
    _num("latency_ratio"),
    _num("latency_ratio_low"),
    _num("latency_ratio_high"),
    _num("latency_ms_batch", required=True),
    _num("latency_ms_batch_low"),
    _num("latency_ms_batch_high"),
    _num("latency_ratio_batch"),
    _num("latency_ratio_batch_low"),
    _num("latency_ratio_batch_high"),
    _num("batch_size"),
    _num("energy_per_1k_j"),
    _num("energy_per_1k_j_low"),
    _num("energy_per_1k_j_high"),
    _text("energy_per_1k_provenance"),
    _text("energy_source"),
    _num("compress_energy_j"),
    _text("compress_energy_provenance"),
    _num("break_even_inferences"),
    _num("pepr_energy_per_1k_j"),
    _num("pepr_params"),
    _num("removed_channels"),
    _num("shrink_max_abs_diff"),
    _text("device"),
    _text("notes"),
)

#: ``compress_tune.csv``: one row per tuning trial.
TUNE_TABLE: tuple[Column, ...] = (
    _num("trial", required=True),
    _text("method"),
    _text("params"),  # the suggested settings, as JSON
    _num("strength"),
    _text("threshold_mode"),
    _num("threshold"),
    _num("accuracy", trial_attr=True),
    _num("model_params", trial_attr=True),
    _num("sparsity", trial_attr=True),
    _num("energy_per_1k_j", trial_attr=True),
    _num("energy_per_1k_j_low", trial_attr=True),
    _num("energy_per_1k_j_high", trial_attr=True),
    _text("energy_per_1k_provenance", trial_attr=True),
    _num("compress_energy_j", trial_attr=True),
    _text("compress_energy_provenance", trial_attr=True),
    _num("trial_energy_j"),
    _text("trial_energy_provenance"),
    _text("state"),
    Column("pareto", "flag"),
    _text("notes"),
)

CSV_COLUMNS: tuple[str, ...] = tuple(c.name for c in COMPRESS_TABLE)
TUNE_COLUMNS: tuple[str, ...] = tuple(c.name for c in TUNE_TABLE)
#: the tuning columns copied from the trial's user attribute of the same name
TUNE_ATTR_COLUMNS: tuple[str, ...] = tuple(c.name for c in TUNE_TABLE if c.trial_attr)

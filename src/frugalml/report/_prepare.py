"""From a study's results table (one row per trial) to scored leaderboards per setting.

The rules, applied in this order:

1. Trials are sorted by ``status``: ``complete`` trials are candidates for scoring,
   ``pruned`` ones (stopped early by a tuner: status ``pruned``, or a complete trial with
   ``pruned`` true) are listed with the accuracy and energy of the epoch they stopped at,
   ``failed`` ones are listed with their error, ``pending``/``running`` ones are counted as
   unfinished. A table without a ``status`` column (a published table) is taken as all
   complete. A complete trial lacking accuracy or energy cannot be scored and is listed
   with the reason. A negative energy, time, memory or count anywhere is refused.
2. Seeds are averaged: within a setting (dataset, pretrained, fraction), the complete
   trials of one model (name plus ``model_args``) become one row whose numbers are the
   means over its trials; ``n_trials`` says how many, ``accuracy_std`` how much the
   accuracy varied (sample standard deviation; NaN for one trial). Scoring per model,
   not per trial, keeps a model with more seeds from taking more places on the
   leaderboard and from weighing more in the min-max normalisation.
3. The averaged rows are scored with :func:`frugalml.analysis.pepr` (PePR-E and every
   other variant whose resource column the table has), normalised per setting, ranked by
   PePR-E, and marked on the accuracy-energy Pareto front of their setting.

PePR-E uses the training energy, ``train_energy_j`` (the epochs' training windows; setup
and evaluation are recorded apart), as the PePR paper measured; ``energy_column`` chooses
another (e.g. ``energy_j``, the whole trial). A table without ``train_energy_j`` (a study
run before trials recorded the split) falls back to ``energy_j``, with a note.

Totals (energy, CO2, time) are over every trial that recorded them, failed and pruned ones
included, and count the whole trial (``energy_j``): the energy a trial spent was spent.
"""

from __future__ import annotations

import json
import math
import re
import warnings
from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from frugalml.analysis import (
    SETTING_COLUMNS,
    ColumnFallbackWarning,
    MissingDataWarning,
    pareto_front,
    pepr,
    prepare_variants,
    rank,
)
from frugalml.errors import ConfigError, DataError
from frugalml.report._format import fmt_percent, is_missing, plain_text

__all__ = [
    "LABEL",
    "NUMERIC_COLUMNS",
    "PreparedStudy",
    "Setting",
    "Totals",
    "model_label",
    "prepare",
    "setting_label",
    "trial_name",
]

#: The column of the prepared tables that names a model (name plus arguments).
LABEL = "model_label"
#: The column with a short name for a model on a plot: the label, cut to 40 characters,
#: or ``#N`` for a tuning trial (the leaderboard's label starts with the same ``#N``).
POINT = "point_label"
_POINT_LIMIT = 40
#: The column that numbers a row's setting (0, 1, ...; order of first appearance).
SETTING = "setting_index"
#: The performance PePR is computed from.
PERFORMANCE = "accuracy"
#: The whole trial's energy (training, evaluation and setup): the study's totals.
ENERGY = "energy_j"
#: The default resource of the leaderboard's main score, PePR-E: the training alone.
TRAIN_ENERGY = "train_energy_j"
#: A trial's energy in its three parts (they sum to ``energy_j``).
ENERGY_PARTS: tuple[str, str, str] = ("train_energy_j", "eval_energy_j", "setup_energy_j")
#: Whether a row is on the accuracy-energy Pareto front of its setting.
PARETO = "pareto_accuracy_energy"

_REQUIRED = ("model", PERFORMANCE)

#: Columns that are numbers when present; averaged over seeds, summed in totals.
NUMERIC_COLUMNS: tuple[str, ...] = (
    "accuracy",
    "balanced_accuracy",
    "auc",
    "f1",
    "train_energy_j",
    "eval_energy_j",
    "setup_energy_j",
    "energy_j",
    "measured_energy_j",
    "estimated_energy_j",
    "train_co2_g",
    "co2_g",
    "intensity_g_per_kwh",
    "pue",
    "train_duration_s",
    "eval_duration_s",
    "setup_duration_s",
    "duration_s",
    "cpu_time_s",
    "train_peak_rss_bytes",
    "train_peak_gpu_mem_bytes",
    "baseline_rss_bytes",
    "peak_rss_bytes",
    "peak_gpu_mem_bytes",
    "params",
    "trainable_params",
    "flops_per_sample",
    "weight_bytes",
    "samples_per_s",
    "epochs",
    "test_samples",
)

#: Numeric columns that can never be negative (a cost, a count); a negative one is refused.
_NON_NEGATIVE: tuple[str, ...] = tuple(
    c for c in NUMERIC_COLUMNS if c not in ("accuracy", "balanced_accuracy", "auc", "f1")
)

#: Columns a user may score PePR-E on (``energy_column``), besides any other ``*_energy_j``.
ENERGY_CHOICES: tuple[str, ...] = (*ENERGY_PARTS, ENERGY)

#: PePR variants besides E, scored when their resource column has at least one value.
_VARIANT_COLUMNS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("C", ("train_co2_g", "co2_g")),
    ("T", ("train_duration_s", "duration_s")),
    (
        "M",
        (
            "train_peak_gpu_mem_bytes",
            "train_peak_rss_bytes",
            "peak_gpu_mem_bytes",
            "peak_rss_bytes",
        ),
    ),
    ("params", ("params",)),
    ("flops", ("flops_per_sample",)),
)


@dataclass(frozen=True)
class Setting:
    """One experiment setting: PePR's normalisation group.

    ``key`` maps the setting columns present in the table to their values; ``table`` holds
    its scored models, best PePR-E first, one row per model; ``energy_column`` is the
    energy PePR-E was scored on (``train_energy_j`` unless chosen otherwise).
    """

    index: int
    key: dict[str, object]
    label: str
    slug: str
    table: pd.DataFrame
    n_trials: int
    energy_column: str = TRAIN_ENERGY

    @property
    def score_column(self) -> str:
        return f"pepr_{self.energy_column}"

    @property
    def n_models(self) -> int:
        return len(self.table.index)


@dataclass(frozen=True)
class Totals:
    """What the whole study cost, over every trial that recorded it (failed ones too).

    ``measured_energy_j`` and ``estimated_energy_j`` split ``energy_j`` by provenance;
    ``unattributed_energy_j`` is energy of trials that say neither (no ``energy_kind``).
    ``sources`` lists each distinct ``energy_source`` line with its kind, the number of
    trials and their energy; ``carbon`` each distinct (intensity g/kWh, PUE) pair with
    its number of trials. ``parts_j`` sums ``train_energy_j``, ``eval_energy_j`` and
    ``setup_energy_j`` over the trials that recorded the split (``n_with_parts``).
    ``n_complete`` counts complete trials, ``n_pruned`` those a tuner stopped early.
    """

    n_trials: int
    n_complete: int
    n_scored: int
    n_failed: int
    n_unfinished: int
    n_with_energy: int
    n_failed_with_energy: int
    energy_j: float
    measured_energy_j: float
    estimated_energy_j: float
    unattributed_energy_j: float
    co2_g: float
    duration_s: float
    kinds: dict[str, int]
    sources: list[tuple[str, str, int, float]]
    carbon: list[tuple[float, float, int]]
    n_pruned: int = 0
    parts_j: dict[str, float] = field(default_factory=dict)
    n_with_parts: int = 0


@dataclass(frozen=True)
class PreparedStudy:
    """A results table sorted, averaged, scored and ranked; see the module docstring."""

    setting_columns: list[str]
    settings: list[Setting]
    scored: pd.DataFrame
    failed: pd.DataFrame
    unscored: pd.DataFrame
    unfinished: pd.DataFrame
    totals: Totals
    studies: list[str]
    notes: list[str] = field(default_factory=list)
    energy_column: str = TRAIN_ENERGY
    energy_fallback: bool = False
    pruned: pd.DataFrame = field(default_factory=pd.DataFrame)

    @property
    def score_column(self) -> str:
        """The PePR-E column: ``pepr_<energy_column>``."""
        return f"pepr_{self.energy_column}"

    @property
    def seeds_averaged(self) -> bool:
        """Whether any leaderboard row is the mean of several trials."""
        return bool(len(self.scored.index)) and int(self.scored["n_trials"].max()) > 1

    def setting_label(self, index: int) -> str:
        return self.settings[index].label


def prepare(results: pd.DataFrame, *, energy_column: str | None = None) -> PreparedStudy:
    """Sort, average, score and rank a study's results table (see the module docstring).

    ``energy_column`` is the energy PePR-E, the ranking and the Pareto front use; by
    default ``train_energy_j``, or ``energy_j`` for a table without the split (with a note).

    Raises:
        ConfigError: ``results`` is not a DataFrame, lacks ``model`` or ``accuracy``, or
            has no energy column (or not the one asked for).
        DataError: the table has no rows, a numeric column holds text, or a cost (energy,
            time, memory, a count) is negative in a table given as such (a CSV). A study
            store's table (``load_results``, which names the store's unreadable rows in
            ``attrs["store_warnings"]``) loses such a row instead, named in a note, so one
            impossible row does not make the study unreportable.
    """
    attrs = getattr(results, "attrs", {})
    left_out: list[str] = []
    table = _checked(results, skip_negative="store_warnings" in attrs, left_out=left_out)
    notes: list[str] = [
        f"not in this report, unreadable in the study store: {w}"
        for w in attrs.get("store_warnings") or []
        if isinstance(w, str) and w
    ]
    notes += left_out
    energy, fallback = _energy_column(table, energy_column)
    if fallback:
        notes.append(
            f"the table has no {TRAIN_ENERGY!r} (a published table, or a study run before "
            f"trials recorded their training energy apart): PePR-E uses {ENERGY!r}, the "
            "whole trial's energy, setup and evaluation included where it had them"
        )
    settings_present = [c for c in SETTING_COLUMNS if c in table.columns]
    missing_settings = [c for c in SETTING_COLUMNS if c not in table.columns]
    if missing_settings:
        notes.append(
            "the table has no "
            + ", ".join(repr(c) for c in missing_settings)
            + " column; settings are told apart by "
            + (", ".join(settings_present) if settings_present else "nothing (one setting)")
        )

    status = _status(table, notes)
    complete = table[status == "complete"]
    pruned = table[status == "pruned"]
    failed = table[status == "failed"]
    unfinished = table[~status.isin(["complete", "pruned", "failed"])]
    scorable = complete[PERFORMANCE].notna() & complete[energy].notna()
    unscored = complete[~scorable].copy()
    unscored["reason"] = [
        _unscored_reason(row, energy)
        for row in unscored[[PERFORMANCE, energy]].itertuples(index=False)
    ]

    averaged = _average_seeds(complete[scorable], settings_present, energy)
    settings: list[Setting] = []
    scored = averaged
    if len(averaged.index):
        scored = _score(averaged, settings_present, notes, energy)
        settings = _settings(scored, settings_present, energy)

    return PreparedStudy(
        setting_columns=settings_present,
        settings=settings,
        scored=scored,
        failed=failed,
        unscored=unscored,
        unfinished=unfinished,
        totals=_totals(table, status, n_scored=int(scorable.sum()), scored_on=energy),
        studies=_distinct_text(table, "study"),
        notes=notes,
        energy_column=energy,
        energy_fallback=fallback,
        pruned=pruned,
    )


def _energy_column(table: pd.DataFrame, asked: str | None) -> tuple[str, bool]:
    """The energy PePR-E is scored on, and whether it is a fallback for ``train_energy_j``."""
    if asked is not None:
        if not isinstance(asked, str) or asked not in table.columns:
            present = [c for c in table.columns if str(c).endswith("energy_j")]
            raise ConfigError(
                f"energy column {asked!r} is not in the table; its energy columns: "
                + (", ".join(str(c) for c in present) or "none"),
                fix="choose one of them, e.g. energy_column='energy_j' (the whole trial)",
            )
        if not has_values(table, asked):
            raise DataError(
                f"energy column {asked!r} has no values (a study run before trials recorded it?)",
                fix=f"choose another energy column, e.g. {ENERGY!r}",
            )
        return asked, False
    if has_values(table, TRAIN_ENERGY):
        return TRAIN_ENERGY, False
    if ENERGY in table.columns:
        return ENERGY, True
    raise ConfigError(
        f"the results table has neither {TRAIN_ENERGY!r} nor {ENERGY!r}; it has: "
        + ", ".join(str(c) for c in table.columns[:40]),
        fix="report on a study directory or a CSV written by 'frugalml study export'",
    )


def _checked(
    results: object, *, skip_negative: bool = False, left_out: list[str] | None = None
) -> pd.DataFrame:
    if not isinstance(results, pd.DataFrame):
        raise ConfigError(
            f"a report needs a pandas DataFrame of results, got {type(results).__name__}",
            fix="pass frugalml.study.load_results(out_dir) or pandas.read_csv(path)",
        )
    if len(results.index) == 0:
        raise DataError(
            "the results table has no rows: the study has no trials",
            fix="run the study first (run_study(spec, out_dir=DIR))",
        )
    missing = [c for c in _REQUIRED if c not in results.columns]
    if TRAIN_ENERGY not in results.columns and ENERGY not in results.columns:
        missing.append(ENERGY)
    if missing:
        raise ConfigError(
            "the results table lacks column(s) "
            + ", ".join(repr(c) for c in missing)
            + "; it has: "
            + ", ".join(str(c) for c in results.columns[:40]),
            fix="report on a study directory or a CSV written by 'frugalml study export'",
        )
    table = results.reset_index(drop=True).copy()
    for column in (*NUMERIC_COLUMNS, "fraction"):
        if column in table.columns:
            table[column] = _numbers(table, column)
    for column in _NON_NEGATIVE:
        if column not in table.columns:
            continue
        if not skip_negative:
            _refuse_negative(table, column)
            continue
        negative = (table[column] < 0).to_numpy(dtype=bool)
        for position in np.flatnonzero(negative):
            record = table.iloc[int(position)].to_dict()
            if left_out is not None:
                left_out.append(
                    f"not in this report: {trial_name(record)} records {column} = "
                    f"{float(table[column].iloc[int(position)]):g}, which cannot be negative"
                )
        table = table[~negative].reset_index(drop=True)
        if not len(table.index):
            raise DataError(
                f"every trial of the study records a negative {column}",
                fix="the store is damaged: rerun the study into a new out_dir=DIR",
            )
    if "pretrained" in table.columns and not pd.api.types.is_bool_dtype(table["pretrained"]):
        table["pretrained"] = pd.Series(
            [_flag(v, position) for position, v in enumerate(table["pretrained"])],
            index=table.index,
            dtype=object,
        )
    return table


_TRUE = ("true", "yes", "1", "1.0")
_FALSE = ("false", "no", "0", "0.0")


def _flag(value: object, position: int) -> bool | None:
    """A ``pretrained`` value as True/False (None where missing), from bools, 0/1 or text."""
    if is_missing(value):
        return None
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise DataError(
        f"column 'pretrained' has {value!r} at row {position + 1} of the table, not True/False",
        fix="write True or False (or 1 or 0) in the pretrained column",
    )


def _numbers(table: pd.DataFrame, column: str) -> pd.Series[float]:
    """The column as float64 with NaN for missing values; text raises DataError."""
    raw = table[column]
    if pd.api.types.is_bool_dtype(raw.dtype):
        raise DataError(
            f"column {column!r} holds True/False values, not numbers",
            fix=f"make {column!r} numeric",
        )
    values = pd.to_numeric(raw, errors="coerce")
    bad = (values.isna() & raw.notna()).to_numpy(dtype=bool)
    if bad.any():
        first = int(np.argmax(bad))
        raise DataError(
            f"column {column!r} has a value that is not a number: {raw.iloc[first]!r} "
            f"(row {first + 1} of the table)",
            fix=f"make every value of {column!r} a number, or leave it empty",
        )
    array = values.to_numpy(dtype=np.float64, na_value=np.nan, copy=True)
    array[np.isinf(array)] = np.nan
    return pd.Series(array, index=table.index, name=column)


def _refuse_negative(table: pd.DataFrame, column: str) -> None:
    """A negative cost would rank first and lower the totals: refuse it, naming the rows."""
    negative = (table[column] < 0).to_numpy(dtype=bool)
    if not negative.any():
        return
    positions = np.flatnonzero(negative)
    rows = ", ".join(str(int(p) + 1) for p in positions[:5]) + (
        ", ..." if len(positions) > 5 else ""
    )
    first = table.iloc[int(positions[0])].to_dict()
    raise DataError(
        f"column {column!r} has negative values at row{'s' if len(positions) > 1 else ''} "
        f"{rows} of the table (first: {float(table[column].iloc[int(positions[0])]):g} for "
        f"{trial_name(first)}); energy, time, memory and counts cannot be negative",
        fix="correct or remove those rows (a meter never records a negative value; "
        "'frugalml study export' writes the study's own table)",
    )


def _status(table: pd.DataFrame, notes: list[str]) -> pd.Series[str]:
    """Each trial's state: the store's status, ``pruned`` for a trial a tuner stopped."""
    if "status" not in table.columns:
        notes.append("the table has no 'status' column: every row is taken as a complete trial")
        return pd.Series("complete", index=table.index, dtype=object)
    status = [plain_text(v).lower() or "unknown" for v in table["status"]]
    if "pruned" in table.columns:
        # Tuning stores written before "pruned" was a status of its own say "complete".
        status = [
            "pruned" if s == "complete" and _truthy(flag) else s
            for s, flag in zip(status, table["pruned"], strict=True)
        ]
    return pd.Series(status, index=table.index, dtype=object)


def _unscored_reason(row: tuple[object, ...], energy: str) -> str:
    lacking = [
        name for name, value in zip((PERFORMANCE, energy), row, strict=True) if is_missing(value)
    ]
    return "no " + " and no ".join(lacking)


def model_label(model: object, model_args: object = None) -> str:
    """How a model is named in the report: ``frugal_cnn(conv_layers=1, width=8)``.

    ``model_args`` is the JSON text of the study table (``"{}"`` for none); other text is
    appended as it is.
    """
    name = plain_text(model) or "(unnamed model)"
    if is_missing(model_args):
        return name
    text = str(model_args).strip()
    if text in ("", "{}", "null"):
        return name
    try:
        parsed = json.loads(text)
    except ValueError:
        return f"{name}({plain_text(text)})"
    if isinstance(parsed, dict):
        if not parsed:
            return name
        inner = ", ".join(f"{k}={_arg(v)}" for k, v in parsed.items())
        return f"{name}({plain_text(inner)})"
    return f"{name}({plain_text(text)})"


def _arg(value: object) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _average_seeds(complete: pd.DataFrame, settings: list[str], energy: str) -> pd.DataFrame:
    """One row per (setting, model): the mean of its complete trials."""
    table = complete.copy()
    args = table["model_args"] if "model_args" in table.columns else [None] * len(table.index)
    table[LABEL] = [model_label(m, a) for m, a in zip(table["model"], args, strict=True)]
    table[POINT] = [plain_text(label, limit=_POINT_LIMIT) for label in table[LABEL]]
    if "tune_params" in table.columns:
        # Tuning trials differ by their hyperparameters: each configuration is its own row,
        # numbered by the tuner's trial number where recorded (#N, also its plot label).
        numbers = (
            table["tune_number"]
            if "tune_number" in table.columns
            else pd.Series(None, index=table.index, dtype=object)
        )
        table[LABEL] = [
            (f"#{int(float(str(n)))} " if not is_missing(n) else "")
            + (label if is_missing(params) or str(params) in ("", "{}") else f"{label} {params}")
            for label, params, n in zip(table[LABEL], table["tune_params"], numbers, strict=True)
        ]
        table[POINT] = [
            f"#{int(float(str(n)))}" if not is_missing(n) else plain_text(label, limit=_POINT_LIMIT)
            for label, n in zip(table[LABEL], numbers, strict=True)
        ]
    if not len(table.index):
        return table
    keys = [*settings, LABEL]
    grouped = table.groupby(keys, sort=False, dropna=False)
    numeric = [c for c in NUMERIC_COLUMNS if c in table.columns]
    out = grouped[numeric].mean()
    out["n_trials"] = grouped.size()
    out["accuracy_std"] = grouped[PERFORMANCE].std(ddof=1)
    out["accuracy_min"] = grouped[PERFORMANCE].min()
    out["accuracy_max"] = grouped[PERFORMANCE].max()
    out[f"{energy}_std"] = grouped[energy].std(ddof=1)
    for column in ("model", "model_args", POINT):
        if column in table.columns:
            out[column] = grouped[column].first()
    if "seed" in table.columns:
        out["seeds"] = grouped["seed"].agg(_join_distinct)
    for column in (
        "energy_kind",
        "energy_source",
        "train_energy_kind",
        "train_energy_source",
        "device",
        "study",
    ):
        if column in table.columns:
            out[column] = grouped[column].agg(_combine)
    out = out.reset_index()
    return out


def _join_distinct(values: pd.Series[Any]) -> str:
    return ", ".join(dict.fromkeys(plain_text(v) for v in values if not is_missing(v)))


def _combine(values: pd.Series[Any]) -> str:
    """The single value of a column over seeds, ``mixed`` for energy kinds that differ."""
    distinct = list(dict.fromkeys(plain_text(v) for v in values if not is_missing(v)))
    if not distinct:
        return ""
    if len(distinct) == 1:
        return distinct[0]
    if str(values.name).endswith("energy_kind"):
        return "mixed"
    return " | ".join(distinct)


def _score(
    averaged: pd.DataFrame, settings: list[str], notes: list[str], energy: str
) -> pd.DataFrame:
    variants = [
        name
        for name, columns in _VARIANT_COLUMNS
        if any(c in averaged.columns and averaged[c].notna().any() for c in columns)
    ]
    group: list[str] | None = settings or None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        table, others = prepare_variants(averaged, variants, group)
        # PePR-E first: the leaderboard's score, on the energy column chosen.
        resources = [energy, *(r for r in others if r != energy)]
        scored = pepr(table, performance=PERFORMANCE, resource=resources, group=group)
    for warning in caught:
        if issubclass(warning.category, (MissingDataWarning, ColumnFallbackWarning)):
            notes.append(" ".join(str(warning.message).split()))
    scored[PARETO] = pareto_front(scored, PERFORMANCE, energy, group=group)
    scored[SETTING] = scored.groupby(settings, sort=False, dropna=False).ngroup() if settings else 0
    ranked = rank(scored, by=f"pepr_{energy}", group=[SETTING])
    return ranked.reset_index(drop=True)


def _settings(scored: pd.DataFrame, settings: list[str], energy: str) -> list[Setting]:
    out = []
    for index in range(int(scored[SETTING].max()) + 1):
        rows = scored[scored[SETTING] == index].reset_index(drop=True)
        key = {c: _plain(rows[c].iloc[0]) for c in settings}
        n_trials = int(rows["n_trials"].sum())
        out.append(
            Setting(
                index=index,
                key=key,
                label=setting_label(key),
                slug=_slug(index, key),
                table=rows,
                n_trials=n_trials,
                energy_column=energy,
            )
        )
    return out


def setting_label(key: Mapping[str, object]) -> str:
    """A setting in words: ``digits, from scratch, 10% of the training data``."""
    parts = []
    for column, value in key.items():
        if column == "dataset":
            parts.append(plain_text(value) or "dataset unknown")
        elif column == "pretrained":
            if is_missing(value):
                parts.append("pretraining unknown")
            else:
                parts.append("pretrained" if _truthy(value) else "from scratch")
        elif column == "fraction":
            if is_missing(value):
                parts.append("data fraction unknown")
            else:
                try:
                    parts.append(f"{fmt_percent(float(str(value)))} of the training data")
                except ValueError:
                    parts.append(f"fraction {plain_text(value)}")
        else:
            parts.append(f"{column}={plain_text(value)}")
    return ", ".join(parts) if parts else "all results"


def trial_name(record: Mapping[Hashable, Any]) -> str:
    """One trial in words: ``m (digits, from scratch, 10% of the training data, seed 0)``."""
    key = {c: record[c] for c in SETTING_COLUMNS if c in record}
    seed = record.get("seed")
    seed_text = "" if is_missing(seed) else f", seed {plain_text(seed)}"
    label = model_label(record.get("model"), record.get("model_args"))
    return f"{label} ({setting_label(key)}{seed_text})"


def _truthy(value: object) -> bool:
    return str(value).strip().lower() in _TRUE


def _slug(index: int, key: Mapping[str, object]) -> str:
    """A file-name part for a setting: ``s1-digits-scratch-10pct``."""
    parts = [f"s{index + 1}"]
    for column, value in key.items():
        if is_missing(value):
            continue
        if column == "pretrained":
            parts.append("pretrained" if _truthy(value) else "scratch")
        elif column == "fraction":
            try:
                parts.append(f"{100.0 * float(str(value)):g}pct")
            except ValueError:
                parts.append(str(value))
        else:
            parts.append(str(value))
    slug = re.sub(r"[^A-Za-z0-9.]+", "-", "-".join(parts)).strip("-.")
    return slug[:80] or f"s{index + 1}"


def _plain(value: object) -> object:
    if isinstance(value, np.generic):
        return value.item()
    return value


def _totals(
    table: pd.DataFrame, status: pd.Series[str], *, n_scored: int, scored_on: str
) -> Totals:
    # The whole trial's energy where the table has it; else the energy scored on.
    energy = table[ENERGY if ENERGY in table.columns else scored_on]
    has_energy = energy.notna()
    kind = (
        pd.Series([plain_text(v) for v in table["energy_kind"]], index=table.index)
        if "energy_kind" in table.columns
        else pd.Series("", index=table.index)
    )
    measured = _split(table, "measured_energy_j", energy, kind, "measured")
    estimated = _split(table, "estimated_energy_j", energy, kind, "estimated")
    total = float(energy[has_energy].sum())
    unattributed = max(0.0, total - measured - estimated)
    if unattributed < 1e-9 * max(total, 1.0):
        unattributed = 0.0

    kinds: dict[str, int] = {}
    for value in kind[has_energy]:
        kinds[value or "unknown"] = kinds.get(value or "unknown", 0) + 1

    source = (
        pd.Series([plain_text(v) for v in table["energy_source"]], index=table.index)
        if "energy_source" in table.columns
        else pd.Series("", index=table.index)
    )
    sources: dict[tuple[str, str], list[float]] = {}
    for line, k, joules in zip(
        source[has_energy], kind[has_energy], energy[has_energy], strict=True
    ):
        entry = sources.setdefault((line or "(not recorded)", k or "unknown"), [0, 0.0])
        entry[0] += 1
        entry[1] += float(joules)

    carbon: dict[tuple[float, float], int] = {}
    if "intensity_g_per_kwh" in table.columns:
        pue = table["pue"] if "pue" in table.columns else pd.Series(math.nan, index=table.index)
        for intensity, factor in zip(table["intensity_g_per_kwh"], pue, strict=True):
            if math.isnan(intensity):
                continue
            pair = (float(intensity), float(factor))
            carbon[pair] = carbon.get(pair, 0) + 1

    co2 = table["co2_g"] if "co2_g" in table.columns else pd.Series(math.nan, index=table.index)
    present = [c for c in ENERGY_PARTS if c in table.columns]
    with_parts = (
        table[present].notna().all(axis=1)
        if len(present) == len(ENERGY_PARTS)
        else pd.Series(False, index=table.index)
    )
    parts = {c: float(table.loc[with_parts, c].sum()) for c in present} if with_parts.any() else {}
    time = (
        table["duration_s"]
        if "duration_s" in table.columns
        else pd.Series(math.nan, index=table.index)
    )
    return Totals(
        n_trials=len(table.index),
        n_complete=int((status == "complete").sum()),
        n_scored=n_scored,
        n_failed=int((status == "failed").sum()),
        n_unfinished=int((~status.isin(["complete", "pruned", "failed"])).sum()),
        n_pruned=int((status == "pruned").sum()),
        parts_j=parts,
        n_with_parts=int(with_parts.sum()),
        n_with_energy=int(has_energy.sum()),
        n_failed_with_energy=int((has_energy & (status == "failed")).sum()),
        energy_j=total,
        measured_energy_j=measured,
        estimated_energy_j=estimated,
        unattributed_energy_j=unattributed,
        co2_g=float(co2.sum()) if co2.notna().any() else math.nan,
        duration_s=float(time.sum()) if time.notna().any() else math.nan,
        kinds=kinds,
        sources=[(line, k, int(v[0]), float(v[1])) for (line, k), v in sources.items()],
        carbon=[(i, p, n) for (i, p), n in carbon.items()],
    )


def _split(
    table: pd.DataFrame,
    column: str,
    energy: pd.Series[float],
    kind: pd.Series[str],
    label: str,
) -> float:
    """The energy of one provenance: its own column where recorded, else by energy_kind."""
    whole = energy.where(kind == label, 0.0).fillna(0.0)
    if column in table.columns:
        part = table[column]
        whole = part.where(part.notna(), whole)
    return float(whole[energy.notna()].sum())


def _distinct_text(table: pd.DataFrame, column: str) -> list[str]:
    if column not in table.columns:
        return []
    return [v for v in dict.fromkeys(plain_text(x) for x in table[column]) if v]


def kind_column(setting: Setting) -> str:
    """The column saying whether the energy PePR-E scored was measured or estimated."""
    if setting.energy_column == TRAIN_ENERGY and has_values(setting.table, "train_energy_kind"):
        return "train_energy_kind"
    return "energy_kind"


def memory_kind(setting_table: pd.DataFrame) -> str:
    """``GPU`` or ``host RSS``: which peak memory the setting's PePR-M used."""
    if "peak_mem_source" not in setting_table.columns or not len(setting_table.index):
        return ""
    source = str(setting_table["peak_mem_source"].iloc[0])
    return "GPU" if "gpu" in source else "host RSS"


def has_values(table: pd.DataFrame, column: str) -> bool:
    """Whether ``column`` is in ``table`` with at least one value."""
    return column in table.columns and bool(table[column].notna().any())


def distinct_levels(table: pd.DataFrame, column: str) -> list[object]:
    """The distinct non-missing values of a column, in order of first appearance."""
    if column not in table.columns:
        return []
    return [_plain(v) for v in dict.fromkeys(v for v in table[column] if not is_missing(v))]

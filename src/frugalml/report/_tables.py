"""The leaderboards as tables: CSV (raw numbers), Markdown and plain text (formatted).

The same rows and columns serve the HTML page (:func:`display_table`); the CSV keeps
every number at full precision with its unit in the column name.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import pandas as pd

from frugalml.report._format import (
    fmt_bytes,
    fmt_co2,
    fmt_count,
    fmt_duration,
    fmt_energy,
    fmt_fixed,
    fmt_flops,
    fmt_joules,
    plain_text,
)
from frugalml.report._prepare import (
    ENERGY,
    ENERGY_PARTS,
    LABEL,
    PARETO,
    PERFORMANCE,
    SETTING,
    TRAIN_ENERGY,
    PreparedStudy,
    Setting,
    Totals,
    has_values,
    kind_column,
    memory_kind,
    prepare,
    trial_name,
)

__all__ = [
    "CSV_COLUMNS",
    "display_table",
    "energy_words",
    "leaderboard_frame",
    "leaderboard_markdown",
    "leaderboard_text",
    "provenance_text",
    "scoring_sentence",
    "text_for",
    "totals_sentences",
]

#: Columns of the CSV leaderboard, in order (those the table has). ``pepr_e`` and
#: ``pepr_e_energy`` stand for ``pepr_<energy column>`` and the energy column PePR-E was
#: scored on (``train_energy_j`` unless chosen otherwise); ``pepr_e_column`` names it.
CSV_COLUMNS: tuple[str, ...] = (
    "setting",
    "setting_label",
    "dataset",
    "pretrained",
    "fraction",
    "rank",
    LABEL,
    "point_label",
    "model",
    "model_args",
    "n_trials",
    "seeds",
    PERFORMANCE,
    "accuracy_std",
    "accuracy_min",
    "accuracy_max",
    "test_samples",
    "pepr_e",
    "pepr_e_column",
    "pepr_e_energy",
    "pepr_e_energy_std",
    *ENERGY_PARTS,
    ENERGY,
    "train_energy_kind",
    "energy_kind",
    "energy_source",
    "train_co2_g",
    "co2_g",
    "train_duration_s",
    "eval_duration_s",
    "setup_duration_s",
    "duration_s",
    "peak_mem_bytes",
    "peak_mem_source",
    "params",
    "flops_per_sample",
    PARETO,
    "pepr_e_energy_norm",
    "pepr_train_co2_g",
    "pepr_co2_g",
    "pepr_train_duration_s",
    "pepr_duration_s",
    "pepr_peak_mem_bytes",
    "pepr_params",
    "pepr_flops_per_sample",
    "balanced_accuracy",
    "auc",
    "f1",
    "device",
)


def _csv_columns(energy: str) -> list[str]:
    """:data:`CSV_COLUMNS` with the PePR-E placeholders replaced, each column once."""
    names = {
        "pepr_e": f"pepr_{energy}",
        "pepr_e_energy": energy,
        "pepr_e_energy_std": f"{energy}_std",
        "pepr_e_energy_norm": f"{energy}_norm",
    }
    return list(dict.fromkeys(names.get(c, c) for c in CSV_COLUMNS))


def leaderboard_frame(prepared: PreparedStudy) -> pd.DataFrame:
    """Every scored model of every setting, best PePR-E first within each setting.

    ``setting`` numbers the settings from 1 as the report does; numbers are unrounded;
    ``pepr_e_column`` names the energy column PePR-E was scored on.
    """
    table = prepared.scored.copy()
    columns = _csv_columns(prepared.energy_column)
    if not len(table.index):
        return pd.DataFrame(columns=[c for c in columns if c in ("setting", "rank", LABEL)])
    table["setting"] = table[SETTING] + 1
    table["setting_label"] = [prepared.settings[int(i)].label for i in table[SETTING]]
    table["pepr_e_column"] = prepared.energy_column
    return table[[c for c in columns if c in table.columns]]


def energy_words(column: str) -> str:
    """An energy column in words: ``train_energy_j`` -> ``training energy``."""
    return {
        TRAIN_ENERGY: "training energy",
        "eval_energy_j": "evaluation energy",
        "setup_energy_j": "setup energy",
        ENERGY: "whole-trial energy",
    }.get(column, column)


_ENERGY_HEADERS = {
    TRAIN_ENERGY: "Training energy",
    "eval_energy_j": "Evaluation",
    "setup_energy_j": "Setup",
    ENERGY: "Trial energy",
}


def display_table(setting: Setting) -> tuple[list[str], list[list[str]], list[bool]]:
    """Headers, formatted rows and which columns are numeric (right-aligned).

    The energy columns show the split (training, evaluation, setup, the whole trial) where
    the table has it; the one PePR-E was scored on says so in its header.
    """
    table = setting.table
    several = int(table["n_trials"].max()) > 1 if len(table.index) else False
    memory = memory_kind(table).replace("host ", "")
    scored_on = setting.energy_column
    energy_columns = [c for c in (*ENERGY_PARTS, ENERGY) if c == scored_on or has_values(table, c)]
    if scored_on not in energy_columns:
        energy_columns.insert(0, scored_on)
    energy_cells: list[tuple[str, bool, str]] = [
        (
            _ENERGY_HEADERS.get(c, c) + (" (PePR-E)" if c == scored_on else ""),
            True,
            c,
        )
        for c in energy_columns
    ]
    time_column = "train_duration_s" if has_values(table, "train_duration_s") else "duration_s"
    columns: list[tuple[str, bool, str]] = [
        ("Rank", True, "rank"),
        ("Model", False, LABEL),
        ("n", True, "n_trials"),
        ("Test accuracy" + (" (mean ± sd, min-max)" if several else ""), True, PERFORMANCE),
        ("PePR-E", True, setting.score_column),
        *energy_cells,
        ("Energy is", False, kind_column(setting)),
        ("CO₂ (trial)", True, "co2_g"),
        ("Training time" if time_column == "train_duration_s" else "Time", True, time_column),
        (f"Memory ({memory})" if memory else "Memory", True, "peak_mem_bytes"),
        ("Params", True, "params"),
        ("FLOPs/sample", True, "flops_per_sample"),
        ("Pareto", False, PARETO),
    ]
    shown = [c for c in columns if c[2] in table.columns]
    rows = []
    for record in table.to_dict("records"):
        rows.append([_cell(column, record) for _, _, column in shown])
    return [h for h, _, _ in shown], rows, [n for _, n, _ in shown]


def _cell(column: str, record: Mapping[Hashable, Any]) -> str:
    value = record.get(column)
    number = _float(value)
    if column == "rank":
        return "" if math.isnan(number) else str(int(number))
    if column == LABEL:
        return plain_text(value)
    if column == "n_trials":
        return "" if math.isnan(number) else str(int(number))
    if column == PERFORMANCE:
        return _performance_cell(number, record)
    if column.startswith("pepr_"):
        return fmt_fixed(number)
    if column.endswith("energy_j"):
        return fmt_energy(number)
    if column.endswith("energy_kind"):
        return plain_text(value) or "not stated"
    if column == "co2_g":
        return fmt_co2(number)
    if column.endswith("duration_s"):
        return fmt_duration(number)
    if column == "peak_mem_bytes":
        return fmt_bytes(number)
    if column == "params":
        return fmt_count(number)
    if column == "flops_per_sample":
        return fmt_flops(number)
    if column == PARETO:
        return "yes" if value is True or (not math.isnan(number) and number == 1.0) else ""
    return plain_text(value)


def _performance_cell(number: float, record: Mapping[Hashable, Any]) -> str:
    """The accuracy, with its spread and range over seeds when the table has them."""
    text = fmt_fixed(number)
    spread = _float(record.get("accuracy_std"))
    if not math.isnan(spread):
        low, high = _float(record.get("accuracy_min")), _float(record.get("accuracy_max"))
        text += f" ± {spread:.3f}"
        if not (math.isnan(low) or math.isnan(high)):
            text += f" ({low:.3f}-{high:.3f})"
    return text


def _float(value: object) -> float:
    if value is None or isinstance(value, str):
        return math.nan
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return math.nan
    return number


def totals_sentences(totals: Totals) -> list[str]:
    """The study's own cost and trial counts, in sentences."""
    sentences = [counts_sentence(totals)]
    if totals.n_with_energy == 0:
        sentences.append("No trial recorded its energy.")
        return sentences
    n_failed = totals.n_failed_with_energy
    failed = (
        f" (including {n_failed} failed {'trial' if n_failed == 1 else 'trials'})"
        if n_failed
        else ""
    )
    sentences.append(
        f"The study used {fmt_energy(totals.energy_j)} of energy over the "
        f"{totals.n_with_energy} trials that recorded it{failed}; {provenance_text(totals)}."
    )
    split = split_sentence(totals)
    if split:
        sentences.append(split)
    extra = []
    if not math.isnan(totals.co2_g):
        extra.append(f"{fmt_co2(totals.co2_g)} CO₂-equivalent")
    if not math.isnan(totals.duration_s):
        extra.append(
            f"{fmt_duration(totals.duration_s)} of trial time (setup, training, evaluation)"
        )
    if extra:
        sentences.append("That is " + " and ".join(extra) + ".")
    return sentences


def counts_sentence(totals: Totals) -> str:
    """``12 trials: 8 complete, 3 pruned (...), 1 failed, 0 unfinished.``"""
    unscored = totals.n_complete - totals.n_scored
    text = f"{totals.n_trials} trials: {totals.n_complete} complete" + (
        f" ({unscored} of them without accuracy or energy)" if unscored else ""
    )
    if totals.n_pruned:
        text += (
            f", {totals.n_pruned} pruned (stopped early by the tuner; listed with the "
            "accuracy and energy of the epoch they stopped at, not ranked)"
        )
    return text + f", {totals.n_failed} failed, {totals.n_unfinished} unfinished."


def split_sentence(totals: Totals) -> str:
    """Where the trials' energy went: training, evaluation, setup (``""`` without the split)."""
    if not totals.parts_j or totals.n_with_parts == 0:
        return ""
    parts = ", ".join(
        f"{words} {fmt_joules(totals.parts_j.get(column, math.nan))}"
        for column, words in (
            (TRAIN_ENERGY, "training"),
            ("eval_energy_j", "evaluation"),
            ("setup_energy_j", "setup"),
        )
    )
    of = "" if totals.n_with_parts == totals.n_with_energy else f" of {totals.n_with_parts}"
    return f"Split over the trials{of} that recorded it: {parts}."


def provenance_text(totals: Totals) -> str:
    """``all of it estimated``, ``all of it measured`` or the split in J."""
    measured, estimated = totals.measured_energy_j, totals.estimated_energy_j
    unknown = totals.unattributed_energy_j
    if unknown == 0 and estimated == 0 and measured > 0:
        return "all of it measured"
    if unknown == 0 and measured == 0 and estimated > 0:
        return "all of it estimated"
    parts = []
    if measured > 0:
        parts.append(f"{fmt_joules(measured)} measured")
    if estimated > 0:
        parts.append(f"{fmt_joules(estimated)} estimated")
    if unknown > 0:
        parts.append(f"{fmt_joules(unknown)} of unstated provenance")
    return ", ".join(parts) if parts else "provenance not recorded"


def leaderboard_markdown(prepared: PreparedStudy, *, title: str) -> str:
    """The leaderboards of every setting as a Markdown document."""
    lines = [f"# {_md(title)}", ""]
    lines += [_md(s) for s in totals_sentences(prepared.totals)]
    lines += ["", _md(scoring_sentence(prepared)), ""]
    if not prepared.settings:
        lines += ["No complete trial with accuracy and energy: nothing to rank.", ""]
    for setting in prepared.settings:
        lines += [
            f"## Setting {setting.index + 1}: {_md(setting.label)}",
            "",
            f"{setting.n_models} models from {setting.n_trials} trials.",
            "",
        ]
        headers, rows, numeric = display_table(setting)
        lines.append("| " + " | ".join(_md(h) for h in headers) + " |")
        lines.append("|" + "|".join("---:" if n else "---" for n in numeric) + "|")
        for row in rows:
            lines.append("| " + " | ".join(_md(c) for c in row) + " |")
        lines.append("")
    if len(prepared.failed.index):
        lines += [f"## Failed trials ({len(prepared.failed.index)})", ""]
        for record in prepared.failed.to_dict("records"):
            lines.append(
                f"- {_md(trial_name(record))}: {_md(plain_text(record.get('error'), limit=300))}"
            )
        lines.append("")
    return "\n".join(lines)


def scoring_sentence(prepared: PreparedStudy) -> str:
    text = (
        "Ranked by PePR-E = test accuracy after the last epoch / (1 + E_n), E_n the energy "
        "min-max normalised over the models of one setting (Selvan et al., NLDL 2025): the "
        "cheapest model scores its accuracy, the dearest half of it. "
        + energy_column_sentence(prepared)
    )
    if prepared.seeds_averaged:
        text += (
            " Models with several trials (seeds) are averaged within a setting before "
            "scoring; n is the number of trials."
        )
    else:
        text += " One trial per model and setting (n = 1)."
    return text


def energy_column_sentence(prepared: PreparedStudy) -> str:
    """Which energy PePR-E was scored on, in one sentence."""
    column = prepared.energy_column
    if column == TRAIN_ENERGY:
        return (
            "PePR-E uses training energy, train_energy_j: the epochs' training windows; "
            "setup and evaluation are reported separately."
        )
    if prepared.energy_fallback:
        return (
            f"PePR-E uses {column}, the whole trial's energy (setup and evaluation included "
            f"where it had them): this table has no {TRAIN_ENERGY} (a published table, or a "
            "study run before trials recorded it)."
        )
    return f"PePR-E uses {column} ({energy_words(column)}), as chosen."


def _md(text: str) -> str:
    """Text for a Markdown cell: one line, no pipes or HTML that a renderer would obey."""
    safe = plain_text(text)
    for char, entity in (("&", "&amp;"), ("<", "&lt;"), (">", "&gt;")):
        safe = safe.replace(char, entity)
    for char in "\\|`*_[]":
        safe = safe.replace(char, "\\" + char)
    return safe


def leaderboard_text(
    results: pd.DataFrame, top: int = 5, *, energy_column: str | None = None
) -> str:
    """The top of the leaderboard per setting, by PePR-E, as plain text for a terminal.

    Args:
        results: a study results table (``frugalml.study.load_results``) or an exported
            CSV read with pandas: one row per trial.
        top: how many models to show per setting (all if ``top`` <= 0).
        energy_column: the energy PePR-E is scored on (default ``train_energy_j``, or
            ``energy_j`` for a table without it).

    Text from the table (model names) is stripped of control characters.
    """
    prepared = prepare(results, energy_column=energy_column)
    return text_for(prepared, top=top)


def text_for(prepared: PreparedStudy, *, top: int = 5) -> str:
    lines = []
    totals = prepared.totals
    if not prepared.settings:
        lines.append(
            f"No complete trial to rank: {totals.n_failed} failed, "
            + (f"{totals.n_pruned} pruned, " if totals.n_pruned else "")
            + f"{totals.n_unfinished} unfinished, "
            f"{totals.n_complete - totals.n_scored} complete without accuracy or energy."
        )
    else:
        heading = (
            "Leaderboard by PePR-E = test accuracy / (1 + energy min-max normalised per setting)"
        )
        if prepared.seeds_averaged:
            heading += "; trials of a model averaged (n)"
        lines.append(heading)
        lines.append(energy_column_sentence(prepared))
    for setting in prepared.settings:
        lines.append("")
        shown = setting.n_models if top <= 0 else min(top, setting.n_models)
        more = f", top {shown} shown" if shown < setting.n_models else ""
        lines.append(
            f"setting {setting.index + 1}: {setting.label} "
            f"({setting.n_models} models, {setting.n_trials} trials{more})"
        )
        lines += _text_table(setting, shown)
    lines.append("")
    lines += totals_sentences(totals)
    return "\n".join(lines)


def _text_table(setting: Setting, shown: int) -> list[str]:
    table = setting.table.head(shown)
    several = int(setting.table["n_trials"].max()) > 1
    energy_header = {TRAIN_ENERGY: "training energy", ENERGY: "trial energy"}.get(
        setting.energy_column, setting.energy_column
    )
    time_column = "train_duration_s" if has_values(table, "train_duration_s") else "duration_s"
    header = [
        "rank",
        "model",
        *(["n"] if several else []),
        "accuracy",
        "PePR-E",
        energy_header,
        "training time" if time_column == "train_duration_s" else "time",
    ]
    rows: list[list[str]] = []
    for record in table.to_dict("records"):
        energy = fmt_energy(_float(record.get(setting.energy_column)))
        kind = plain_text(record.get(kind_column(setting)))
        rows.append(
            [
                _cell("rank", record),
                plain_text(record.get(LABEL), limit=44),
                *([_cell("n_trials", record)] if several else []),
                _cell(PERFORMANCE, record),
                _cell(setting.score_column, record),
                f"{energy} {kind}".strip(),
                _cell(time_column, record),
            ]
        )
    return _aligned(header, rows, right={0, 2, 3, 4} if several else {0, 2, 3})


def _aligned(header: Sequence[str], rows: Sequence[Sequence[str]], right: set[int]) -> list[str]:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    out = []
    for row in [header, *rows]:
        cells = [
            cell.rjust(widths[i]) if i in right else cell.ljust(widths[i])
            for i, cell in enumerate(row)
        ]
        out.append("  " + "  ".join(cells).rstrip())
    return out

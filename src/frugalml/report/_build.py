"""Write a study's report: HTML page, PNG plots, Markdown and CSV leaderboards.

Files, all in ``out_dir`` (the HTML wherever ``html_path`` says, ``out_dir/report.html``
by default):

- ``report.html``: the self-contained page (plots embedded, no scripts, no external files);
- ``leaderboard.csv``: every scored model of every setting, unrounded, units in the names;
- ``leaderboard.md``: the same leaderboards, formatted, with the failed trials;
- ``<setting>-pareto-energy.png``, ``<setting>-pepr-e-vs-size.png`` per setting, where
  ``<setting>`` is e.g. ``s1-digits-scratch-100pct``, and ``pepr-profile.png``.

A report owns the names it writes: building a second report into the same folder replaces
the first one's files (PNGs of settings the new study lacks are left as they were).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import partial
from pathlib import Path

import pandas as pd

from frugalml.analysis import pareto_plot, pepr_profile_plot, size_plot
from frugalml.errors import ConfigError, FrugalError
from frugalml.report._findings import Significance, significance
from frugalml.report._format import plain_text
from frugalml.report._html import Figure, render_html
from frugalml.report._input import load_study
from frugalml.report._prepare import (
    PERFORMANCE,
    POINT,
    SETTING,
    PreparedStudy,
    Setting,
    has_values,
    prepare,
)
from frugalml.report._tables import (
    energy_words,
    leaderboard_frame,
    leaderboard_markdown,
    scoring_sentence,
)

__all__ = ["Report", "build_report", "report_study"]

logger = logging.getLogger(__name__)

HTML_NAME = "report.html"
CSV_NAME = "leaderboard.csv"
MARKDOWN_NAME = "leaderboard.md"
PROFILE_NAME = "pepr-profile.png"
_POINT = "profile_label"


@dataclass(frozen=True)
class Report:
    """What :func:`build_report` wrote, and what it found.

    ``n_scored`` counts the trials on the leaderboards (complete, with accuracy and
    energy); ``notes`` are the caveats the report lists (rows it could not score, plots it
    could not draw).
    """

    html_path: Path
    png_paths: tuple[Path, ...]
    markdown_path: Path
    csv_path: Path
    n_trials: int = 0
    n_scored: int = 0
    n_failed: int = 0
    n_unfinished: int = 0
    n_pruned: int = 0
    notes: tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        """True when no trial could be scored: the report lists failures only."""
        return self.n_scored == 0


def build_report(
    results: pd.DataFrame,
    out_dir: Path,
    *,
    title: str | None = None,
    html_path: Path | None = None,
    energy_notes: Mapping[str, Sequence[str]] | None = None,
    size_threshold: float | None = None,
    plots: bool = True,
    energy_column: str | None = None,
) -> Report:
    """Write the report of a study's results table.

    Args:
        results: one row per trial, as :func:`frugalml.study.load_results` returns or
            ``frugalml study export`` writes; needs ``model``, ``accuracy``, ``energy_j``.
        out_dir: folder for the PNGs, ``leaderboard.md`` and ``leaderboard.csv`` (created).
        title: the page title; by default names the study.
        html_path: where the HTML goes (default ``out_dir/report.html``).
        energy_notes: the assumptions behind each energy source, keyed by
            ``component=source`` (see :func:`frugalml.report.load_study`); without them the
            page lists the sources and says where the assumptions are recorded.
        size_threshold: parameter count splitting small from large models in the tests
            (default: the median over the study's models).
        plots: ``False`` leaves out the figures (no PNGs, no matplotlib): quicker, for
            a look at the numbers only.
        energy_column: the energy PePR-E, the ranking and the Pareto front use; default
            ``train_energy_j`` (the epochs' training windows, as the PePR paper measured),
            or ``energy_j`` (with a note) for a table written before trials recorded it.

    Only complete trials with accuracy and energy are scored; several trials of one model
    in one setting (seeds) are averaged first, and ``n`` says how many. A table whose
    trials all failed still gets a report: it lists the failures and says that nothing
    could be ranked (``Report.empty``).

    Raises:
        ConfigError: not a DataFrame, required columns missing, a bad ``size_threshold``.
        DataError: no rows, or text in a numeric column.
    """
    if size_threshold is not None and not (size_threshold > 0):
        raise ConfigError(
            f"size threshold must be a positive parameter count, got {size_threshold!r}",
            fix="pass e.g. 24.6e6 (the PePR paper's split), or leave it out for the median",
        )
    prepared = prepare(results, energy_column=energy_column)
    findings = significance(prepared, size_threshold=size_threshold) if prepared.settings else None
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    page = Path(html_path) if html_path is not None else folder / HTML_NAME
    page.parent.mkdir(parents=True, exist_ok=True)
    page_title = title or _default_title(prepared)

    notes: list[str] = []
    figures = _draw(prepared, findings, folder, notes) if plots else []
    csv_path, markdown_path = _write_leaderboards(prepared, folder, page_title)
    page.write_text(
        render_html(
            prepared,
            findings,
            figures,
            title=page_title,
            scoring=scoring_sentence(prepared),
            energy_notes=energy_notes,
            notes=notes,
            generated_at=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        ),
        encoding="utf-8",
    )
    logger.debug("report written to %s", page)
    return _report_of(prepared, findings, figures, notes, page, markdown_path, csv_path)


def _write_leaderboards(prepared: PreparedStudy, folder: Path, title: str) -> tuple[Path, Path]:
    """The leaderboard as CSV and as Markdown in ``folder``; returns (csv, markdown) paths."""
    csv_path = folder / CSV_NAME
    leaderboard_frame(prepared).to_csv(csv_path, index=False)
    markdown_path = folder / MARKDOWN_NAME
    markdown_path.write_text(leaderboard_markdown(prepared, title=title), encoding="utf-8")
    return csv_path, markdown_path


def _report_of(
    prepared: PreparedStudy,
    findings: Significance | None,
    figures: list[Figure],
    notes: list[str],
    page: Path,
    markdown_path: Path,
    csv_path: Path,
) -> Report:
    """What was written, the trial counts, and the notes of every stage (each once)."""
    totals = prepared.totals
    return Report(
        html_path=page,
        png_paths=tuple(f.path for f in figures),
        markdown_path=markdown_path,
        csv_path=csv_path,
        n_trials=totals.n_trials,
        n_scored=totals.n_scored,
        n_failed=totals.n_failed,
        n_unfinished=totals.n_unfinished,
        n_pruned=totals.n_pruned,
        notes=tuple(
            dict.fromkeys([*prepared.notes, *(findings.notes if findings else []), *notes])
        ),
    )


def report_study(
    study_dir: str | Path,
    out_dir: Path | None = None,
    *,
    title: str | None = None,
    html_path: Path | None = None,
    size_threshold: float | None = None,
    energy_column: str | None = None,
) -> Report:
    """Report on a study directory, with the energy assumptions recorded in its store.

    ``out_dir`` defaults to ``study_dir/report``. Raises :class:`frugalml.errors.StoreError`
    when ``study_dir`` holds no study store.
    """
    study = load_study(study_dir)
    return build_report(
        study.results,
        Path(out_dir) if out_dir is not None else Path(study_dir) / "report",
        title=title,
        html_path=html_path,
        energy_notes=study.energy_notes,
        size_threshold=size_threshold,
        energy_column=energy_column,
    )


def _default_title(prepared: PreparedStudy) -> str:
    if len(prepared.studies) == 1:
        return f"Study report: {prepared.studies[0]}"
    return "Study report"


def _draw(
    prepared: PreparedStudy,
    findings: Significance | None,
    folder: Path,
    notes: list[str],
) -> list[Figure]:
    """Every plot as a PNG in ``folder``; a plot that cannot be drawn becomes a note."""
    figures: list[Figure] = []
    threshold = findings.threshold if findings is not None else None
    for setting in prepared.settings:
        number = setting.index + 1
        figures += _attempt(
            notes,
            f"accuracy vs energy plot of setting {number}",
            partial(_pareto_figure, setting, folder),
        )
        sizes = setting.table["params"].dropna() if "params" in setting.table else pd.Series()
        if sizes.nunique() == 1:
            notes.append(
                f"setting {number}: every model has {int(sizes.iloc[0]):,} parameters; "
                "no PePR-E vs size plot"
            )
        elif has_values(setting.table, "params"):
            figures += _attempt(
                notes,
                f"PePR-E vs size plot of setting {number}",
                partial(_size_figure, setting, folder, threshold),
            )
    if prepared.settings:
        figures += _attempt(notes, "PePR profile plot", partial(_profile_figure, prepared, folder))
    return figures


def _pareto_figure(setting: Setting, folder: Path) -> Figure:
    short = plain_text(setting.label, limit=60)
    kind = _kind_words(setting.table)
    words = energy_words(setting.energy_column)
    path = pareto_plot(
        setting.table,
        PERFORMANCE,
        setting.energy_column,
        folder / f"{setting.slug}-pareto-energy.png",
        label_column=POINT,
        label_all=True,
        title=f"{short}\ntest accuracy vs {words}{kind}",
    )
    return Figure(
        path,
        caption=f"Test accuracy after the last epoch against {words} "
        f"({setting.energy_column}){kind}; red: the Pareto front, the models no other model "
        "beats on both." + _naming(setting),
        alt=f"accuracy against energy, {short}",
        setting=setting.index,
    )


def _size_figure(setting: Setting, folder: Path, threshold: float | None) -> Figure:
    short = plain_text(setting.label, limit=60)
    path = size_plot(
        setting.table,
        setting.score_column,
        "params",
        folder / f"{setting.slug}-pepr-e-vs-size.png",
        threshold=threshold,
        label_column=POINT,
        title=f"{short}\nPePR-E against model size",
    )
    return Figure(
        path,
        caption="PePR-E against the number of parameters; dashed: the small/large split, "
        "red: the median PePR-E of each side." + _naming(setting),
        alt=f"PePR-E against model size, {short}",
        setting=setting.index,
    )


def _profile_figure(prepared: PreparedStudy, folder: Path) -> Figure:
    scored = prepared.scored.copy()
    many = len(prepared.settings) > 1
    scored[_POINT] = [
        f"{label} [s{int(index) + 1}]" if many else str(label)
        for label, index in zip(scored[POINT], scored[SETTING], strict=True)
    ]
    path = pepr_profile_plot(
        scored,
        PERFORMANCE,
        f"{prepared.energy_column}_norm",
        folder / PROFILE_NAME,
        label_column=_POINT,
        title="PePR-E profile: test accuracy vs "
        f"{energy_words(prepared.energy_column)} normalised per setting",
    )
    return Figure(
        path,
        caption="Every scored model on the PePR-E contours; the best by PePR-E are labelled"
        + (" with their setting number [s1], [s2]..." if many else "."),
        alt="PePR profile",
    )


def _naming(setting: Setting) -> str:
    """How the points are named, where the plot's names are not the leaderboard's."""
    points = setting.table[POINT] if POINT in setting.table.columns else pd.Series()
    if any(str(p).startswith("#") for p in points):
        return " Points are named #N as on the leaderboard (the tuner's trial number)."
    if any(str(p).endswith("...") for p in points):
        return " Long model names are cut to 40 characters."
    return ""


def _kind_words(table: pd.DataFrame) -> str:
    if "energy_kind" not in table.columns:
        return ""
    kinds = list(dict.fromkeys(plain_text(k) for k in table["energy_kind"] if plain_text(k)))
    if len(kinds) == 1:
        return f" ({kinds[0]})"
    return " (measured and estimated)" if kinds else ""


def _attempt(notes: list[str], what: str, draw: Callable[[], Figure]) -> list[Figure]:
    """Run ``draw`` now; a FrugalError becomes a note instead of stopping the report."""
    try:
        return [draw()]
    except FrugalError as exc:
        notes.append(f"{what} not drawn: {exc}")
        return []

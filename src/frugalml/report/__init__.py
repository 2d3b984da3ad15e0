"""Study reports: a study's table of numbers turned into a choice of model.

``build_report(results, out_dir)`` writes a self-contained HTML page (plots embedded as
PNG data URIs, no scripts, every value escaped), the same plots as PNG files, and the
leaderboards as Markdown and CSV. ``leaderboard_text(results)`` gives the top of each
leaderboard for a terminal. Per setting (dataset, pretrained, fraction): the leaderboard by
PePR-E, the accuracy-energy Pareto front, PePR-E against model size, small-vs-large tests;
for the study: paired pretrained/scratch and full/reduced-data tests, the PePR profile, the
study's own energy and CO2 with the provenance of every figure, and the failed trials.

Scoring rule: only complete trials with accuracy and energy are scored; trials of one model
in one setting (seeds) are averaged before scoring, and ``n`` shows how many.

Modules (private; use the names re-exported here):

- ``_prepare``: sorting trials by status, averaging seeds, scoring and ranking per setting.
- ``_findings``: the decision sentences and the significance tests in words.
- ``_tables``: the CSV, Markdown and plain-text leaderboards, totals in sentences.
- ``_html``: the HTML page, and the self-contained page pieces other pages reuse
  (:func:`html_page`, :func:`figure_html`, :func:`table_html`, :func:`paragraph_html`).
- ``_compress``: :func:`compress_report`, the page of a ``frugalml compress`` directory
  (``compress.csv``, and ``compress_tune.csv`` when there is one).
- ``_build``: :func:`build_report`, :func:`report_study` and :class:`Report` (writes files).
- ``_input``: :func:`load_study` (results plus energy assumptions from a study store) and
  :func:`read_results_csv`.
- ``_format``: numbers with units, text made safe for terminals.

Importing this package loads pandas and NumPy; SciPy and matplotlib load when a report
is built.
"""

from __future__ import annotations

from frugalml.report._build import Report, build_report, report_study
from frugalml.report._compress import CompressReport, compress_report, read_compress_csv
from frugalml.report._html import figure_html, html_page, paragraph_html, table_html
from frugalml.report._input import StudyInput, energy_notes, load_study, read_results_csv
from frugalml.report._tables import leaderboard_text

__all__ = [
    "CompressReport",
    "Report",
    "StudyInput",
    "build_report",
    "compress_report",
    "energy_notes",
    "figure_html",
    "html_page",
    "leaderboard_text",
    "load_study",
    "paragraph_html",
    "read_compress_csv",
    "read_results_csv",
    "report_study",
    "table_html",
]

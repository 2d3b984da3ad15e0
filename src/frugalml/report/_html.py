"""The report as one self-contained HTML page.

Everything the page shows is in the file: styles inline, plots as base64 ``data:`` URIs,
no scripts at all, and a Content-Security-Policy that forbids loading anything else. Every
value that comes from the results (model names, datasets, error messages, sources) goes
through :func:`html.escape`; the page's own markup is the only unescaped text.
"""

from __future__ import annotations

import base64
import html
import math
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from frugalml import __version__
from frugalml.report._findings import (
    Significance,
    decision,
    describe_paired,
    describe_size,
    threshold_text,
)
from frugalml.report._format import (
    fmt_co2,
    fmt_duration,
    fmt_energy,
    fmt_joules,
    is_missing,
    plain_text,
)
from frugalml.report._input import CARBON_KEY
from frugalml.report._prepare import ENERGY, TRAIN_ENERGY, PreparedStudy, Setting, trial_name
from frugalml.report._tables import display_table, provenance_text

__all__ = ["Figure", "figure_html", "html_page", "paragraph_html", "render_html", "table_html"]

#: Nothing but inline styles and ``data:`` images may load.
_CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"

_STYLE = """
:root { --ink: #1d2330; --muted: #5b6475; --line: #d9dee8; --soft: #f4f6fa;
        --accent: #1f6f5c; --warn: #8a4b08; --bad: #9b1c1c; }
* { box-sizing: border-box; }
body { margin: 0; background: #fff; color: var(--ink);
       font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; }
main { max-width: 1280px; margin: 0 auto; padding: 24px 28px 48px; }
h1 { font-size: 26px; margin: 0 0 4px; }
h2 { font-size: 20px; margin: 36px 0 8px; padding-top: 12px; border-top: 2px solid var(--line); }
h3 { font-size: 16px; margin: 20px 0 6px; }
p { margin: 6px 0; }
.sub { color: var(--muted); font-size: 13px; margin-bottom: 16px; }
.cards { display: flex; flex-wrap: wrap; gap: 12px; margin: 16px 0; }
.card { flex: 1 1 200px; background: var(--soft); border: 1px solid var(--line);
        border-radius: 8px; padding: 10px 14px; }
.card .k { color: var(--muted); font-size: 12px; text-transform: uppercase; letter-spacing: .04em; }
.card .v { font-size: 20px; font-weight: 600; }
.card .d { color: var(--muted); font-size: 13px; }
.decision { background: #eef7f3; border-left: 4px solid var(--accent); padding: 8px 12px;
            margin: 10px 0; }
.warn { background: #fdf5ea; border-left: 4px solid var(--warn); padding: 8px 12px;
        margin: 10px 0; }
.scroll { overflow-x: auto; margin: 8px 0; }
table { border-collapse: collapse; font-size: 13px; font-variant-numeric: tabular-nums; }
th, td { border-bottom: 1px solid var(--line); padding: 5px 7px; text-align: left;
         vertical-align: top; }
th { background: var(--soft); font-weight: 600; vertical-align: bottom; }
span.unit { color: var(--muted); font-size: 12px; }
td.model { min-width: 12em; }
td.num, th.num { text-align: right; }
td.num { white-space: nowrap; }
tr.best td { font-weight: 600; }
tr.front td:first-child { box-shadow: inset 3px 0 0 #c0392b; }
.figs { display: flex; flex-wrap: wrap; gap: 16px; margin: 12px 0; }
figure { margin: 0; flex: 1 1 460px; max-width: 100%; }
figure.wide { flex: 0 1 760px; }
figure img { width: 100%; height: auto; border: 1px solid var(--line); border-radius: 4px; }
figcaption { color: var(--muted); font-size: 13px; margin-top: 4px; }
code, pre { font-family: ui-monospace, "DejaVu Sans Mono", monospace; font-size: 12.5px; }
pre { white-space: pre-wrap; word-break: break-word; background: var(--soft);
      padding: 8px; border-radius: 4px; margin: 4px 0; max-height: 320px; overflow: auto; }
td.err { color: var(--bad); max-width: 640px; }
details summary { cursor: pointer; }
nav ol { margin: 4px 0; padding-left: 22px; }
ul.notes li { margin: 4px 0; }
footer { color: var(--muted); font-size: 12px; margin-top: 40px; border-top: 1px solid var(--line);
         padding-top: 8px; }
"""


@dataclass(frozen=True)
class Figure:
    """A plot written as PNG: where it is, what it shows, and which setting it belongs to."""

    path: Path
    caption: str
    alt: str
    setting: int | None = None


def _e(value: object) -> str:
    """Escape any value for HTML text or an attribute."""
    return html.escape("" if is_missing(value) else str(value), quote=True)


def render_html(
    prepared: PreparedStudy,
    findings: Significance | None,
    figures: Sequence[Figure],
    *,
    title: str,
    scoring: str,
    energy_notes: Mapping[str, Sequence[str]] | None,
    notes: Sequence[str],
    generated_at: str,
) -> str:
    """The whole page as a string."""
    parts = [_subtitle(prepared, generated_at), _summary(prepared, scoring)]
    for setting in prepared.settings:
        parts.append(_setting_section(setting, prepared, findings, figures))
    if findings is not None:
        parts.append(_overall_tests(findings, one_setting=len(prepared.settings) == 1))
    parts.append(_profile_section(figures))
    parts.append(_energy_section(prepared, energy_notes))
    parts.append(_failed_section(prepared))
    parts.append(_notes_section([*prepared.notes, *(findings.notes if findings else []), *notes]))
    return html_page(title, parts)


def html_page(title: str, body: Sequence[str]) -> str:
    """A self-contained page around ``body`` (HTML fragments, already escaped): inline
    styles, a Content-Security-Policy that loads nothing from elsewhere, no scripts."""
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{_e(_CSP)}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_e(title)}</title>",
        f"<style>{_STYLE}</style>",
        "</head><body><main>",
        f"<h1>{_e(title)}</h1>",
        *body,
        f"<footer>Written by frugalml {_e(__version__)}. PePR: Selvan et al., "
        "&ldquo;Equity through Access&rdquo;, NLDL 2025. This page is self-contained: "
        "no scripts, no external resources.</footer>",
        "</main></body></html>",
    ]
    return "\n".join(parts) + "\n"


def figure_html(path: Path, caption: str, alt: str, *, wide: bool = False) -> str:
    """A PNG embedded as a ``data:`` URI with its caption."""
    return _figure(Figure(path=path, caption=caption, alt=alt), wide=wide)


def table_html(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A plain table; every header and cell escaped."""
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f"<td>{_e(cell)}</td>" for cell in row) + "</tr>" for row in rows
    )
    return (
        f'<div class="scroll"><table><thead><tr>{head}</tr></thead>'
        f"<tbody>{body}</tbody></table></div>"
    )


def paragraph_html(text: str, css_class: str | None = None) -> str:
    attr = f' class="{_e(css_class)}"' if css_class else ""
    return f"<p{attr}>{_e(text)}</p>"


def _subtitle(prepared: PreparedStudy, generated_at: str) -> str:
    studies = ", ".join(prepared.studies)
    bits = [f"study {_e(studies)}"] if studies else []
    bits.append(f"generated {_e(generated_at)}")
    return f'<p class="sub">{" &middot; ".join(bits)}</p>'


def _summary(prepared: PreparedStudy, scoring: str) -> str:
    """The study in cards (each figure once; no sentences repeating them), then the rule."""
    totals = prepared.totals
    unscored = totals.n_complete - totals.n_scored
    states = [
        *([f"{totals.n_pruned} pruned"] if totals.n_pruned else []),
        f"{totals.n_failed} failed",
        f"{totals.n_unfinished} unfinished",
    ]
    trials_detail = f"of {totals.n_trials}; " + ", ".join(states)
    if unscored:
        trials_detail += f"; {unscored} complete without accuracy or energy"
    energy_detail = provenance_text(totals) if totals.n_with_energy else ""
    if totals.n_with_energy:
        failed = totals.n_failed_with_energy
        energy_detail += f"; over {totals.n_with_energy} trials" + (
            f", {failed} failed {'trial' if failed == 1 else 'trials'} included" if failed else ""
        )
    cards = [
        ("Trials", f"{totals.n_complete} complete", trials_detail),
        (
            "Study energy",
            fmt_energy(totals.energy_j) if totals.n_with_energy else "not recorded",
            energy_detail,
        ),
    ]
    if totals.parts_j:
        of = (
            ""
            if totals.n_with_parts == totals.n_with_energy
            else f" ({totals.n_with_parts} trials)"
        )
        cards.append(
            (
                "Training energy",
                fmt_energy(totals.parts_j.get(TRAIN_ENERGY, math.nan)),
                f"of it{of}; evaluation "
                f"{fmt_joules(totals.parts_j.get('eval_energy_j', math.nan))}, setup "
                f"{fmt_joules(totals.parts_j.get('setup_energy_j', math.nan))}",
            )
        )
    cards += [
        (
            "CO₂-equivalent",
            fmt_co2(totals.co2_g),
            "from the energy, carbon intensity and PUE below",
        ),
        ("Trial time", fmt_duration(totals.duration_s), "setup, training and evaluation, summed"),
    ]
    html_cards = "".join(
        f'<div class="card"><div class="k">{_e(k)}</div><div class="v">{_e(v)}</div>'
        f'<div class="d">{_e(d)}</div></div>'
        for k, v, d in cards
    )
    out = [f'<div class="cards">{html_cards}</div>']
    if not prepared.settings:
        out.append(
            '<p class="warn"><strong>No complete trial with accuracy and energy: there is '
            "nothing to rank.</strong> The failed trials and their errors are listed below.</p>"
        )
    else:
        out.append(f"<p>{_e(scoring)}</p>")
        links = "".join(
            f'<li><a href="#setting-{s.index + 1}">{_e(s.label)}</a> '
            f"({s.n_models} models, {s.n_trials} trials)</li>"
            for s in prepared.settings
        )
        out.append(f"<nav><strong>Settings</strong><ol>{links}</ol></nav>")
    return "\n".join(out)


def _setting_section(
    setting: Setting,
    prepared: PreparedStudy,
    findings: Significance | None,
    figures: Sequence[Figure],
) -> str:
    number = setting.index + 1
    out = [
        f'<section id="setting-{number}">',
        f"<h2>Setting {number}: {_e(setting.label)}</h2>",
        f"<p>{setting.n_models} models from {setting.n_trials} complete trials.</p>",
    ]
    sentences = decision(setting)
    if sentences:
        out.append('<div class="decision">' + " ".join(_e(s) for s in sentences) + "</div>")
    out.append(_leaderboard(setting))
    out.append(_energy_caption(setting))
    shown = [f for f in figures if f.setting == setting.index]
    if shown:
        out.append('<div class="figs">' + "".join(_figure(f) for f in shown) + "</div>")
    if findings is not None and setting.index in findings.size_by_setting:
        result = findings.size_by_setting[setting.index]
        out.append("<h3>Small vs large models</h3>")
        out.append(f"<p>{_e(describe_size(result, within_setting=True))}</p>")
    out.append("</section>")
    return "\n".join(out)


def _leaderboard(setting: Setting) -> str:
    headers, rows, numeric = display_table(setting)
    head = "".join(
        f'<th class="num">{_e(h)}</th>' if n else f"<th>{_e(h)}</th>"
        for h, n in zip(headers, numeric, strict=True)
    )
    pareto = headers.index("Pareto") if "Pareto" in headers else -1
    model = headers.index("Model") if "Model" in headers else -1
    energy = headers.index("Energy") if "Energy" in headers else -1
    body = []
    for position, row in enumerate(rows):
        classes = []
        if position == 0:
            classes.append("best")
        if pareto >= 0 and row[pareto]:
            classes.append("front")
        attr = f' class="{" ".join(classes)}"' if classes else ""
        cells = "".join(
            f'<td class="num">{_two_lines(c) if i == energy else _e(c)}</td>'
            if n
            else f'<td class="model">{_e(c)}</td>'
            if i == model
            else f"<td>{_e(c)}</td>"
            for i, (c, n) in enumerate(zip(row, numeric, strict=True))
        )
        body.append(f"<tr{attr}>{cells}</tr>")
    return (
        f'<div class="scroll"><table><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table></div>"
    )


def _two_lines(cell: str) -> str:
    """``178 J (0.0494 Wh)`` as two lines, the second smaller, to keep the table narrow."""
    first, sep, rest = cell.partition(" (")
    if not sep:
        return _e(cell)
    return f'{_e(first)}<br><span class="unit">({_e(rest)}</span>'


def _energy_caption(setting: Setting) -> str:
    table = setting.table
    if "energy_kind" not in table.columns:
        return '<p class="sub">Whether these energies were measured or estimated: not recorded.</p>'
    kinds = [plain_text(k) or "not stated" for k in table["energy_kind"]]
    distinct = list(dict.fromkeys(kinds))
    if len(distinct) == 1:
        text = f"Every energy figure of this setting is {distinct[0]}"
    else:
        counts = ", ".join(f"{kinds.count(k)} {k}" for k in distinct)
        text = (
            f"Energy figures of this setting: {counts}. PePR-E compares them as if alike, "
            "so read the ranking with care"
        )
    source = (
        plain_text(table["peak_mem_source"].iloc[0])
        if "peak_mem_source" in table.columns and len(table.index)
        else ""
    )
    memory = (
        "Memory is the training's own peak, above the process's baseline after imports"
        if source.startswith("train_")
        else "Memory is the peak of the trial process, the torch runtime included"
    )
    text += (
        f"; see “Where the energy numbers come from”. {memory} (GPU memory where measured, "
        "else host RSS); 1 MB = 10^6 bytes."
    )
    return f'<p class="sub">{_e(text)}</p>'


def _figure(figure: Figure, *, wide: bool = False) -> str:
    data = base64.b64encode(figure.path.read_bytes()).decode("ascii")
    attr = ' class="wide"' if wide else ""
    return (
        f'<figure{attr}><img src="data:image/png;base64,{data}" alt="{_e(figure.alt)}">'
        f"<figcaption>{_e(figure.caption)}</figcaption></figure>"
    )


def _overall_tests(findings: Significance, *, one_setting: bool = False) -> str:
    out = ['<section id="tests">', "<h2>Tests over the whole study</h2>"]
    text = threshold_text(findings)
    if text:
        out.append(f"<p>{_e(text)}</p>")
    if findings.size_overall is not None and one_setting:
        # The same models and numbers as the setting's own test: said once, above.
        out.append(
            "<p>With one setting, the small-vs-large test over the whole study is the "
            "setting's test above.</p>"
        )
    elif findings.size_overall is not None:
        out.append("<h3>Small vs large models, all settings</h3>")
        out.append(
            "<p>Each model's PePR-E averaged over the settings it appears in, so that no model "
            "counts twice.</p>"
        )
        out.append(f"<p>{_e(describe_size(findings.size_overall, within_setting=True))}</p>")
    for section in findings.paired:
        out.append(f"<h3>{_e(section.title.capitalize())}</h3>")
        out.append(
            "<p>The same model compared at both levels (pairs matched by model and the other "
            "setting columns).</p><ul>"
        )
        for results in section.results.values():
            for result in results:
                out.append(f"<li>{_e(describe_paired(result, section))}</li>")
        out.append("</ul>")
        out.append(
            '<p class="sub">PePR-E is normalised within each setting: a paired difference '
            "in PePR-E compares a model's standing among the models of its setting, not "
            "joules.</p>"
        )
    if findings.size_overall is None and not findings.paired:
        out.append("<p>No test could be run over the whole study.</p>")
    out.append("</section>")
    return "\n".join(out)


def _profile_section(figures: Sequence[Figure]) -> str:
    shown = [f for f in figures if f.setting is None]
    if not shown:
        return ""
    return "\n".join(
        [
            '<section id="profile">',
            "<h2>PePR profile</h2>",
            "<p>Every model of every setting placed on the contours of PePR = P / (1 + R<sub>n"
            "</sub>): accuracy up, normalised energy right. Models in the upper left give the "
            "most accuracy per unit of energy.</p>",
            '<div class="figs">' + "".join(_figure(f, wide=True) for f in shown) + "</div>",
            "</section>",
        ]
    )


def _energy_section(
    prepared: PreparedStudy, energy_notes: Mapping[str, Sequence[str]] | None
) -> str:
    totals = prepared.totals
    out = ['<section id="energy">', "<h2>Where the energy numbers come from</h2>"]
    if not totals.n_with_energy:
        out += ["<p>No trial recorded its energy.</p>", "</section>"]
        return "\n".join(out)
    kinds = ", ".join(f"{n} {k}" for k, n in totals.kinds.items())
    out.append(
        f"<p>Trials by provenance of their energy: {_e(kinds)}. Of the study's "
        f"{_e(fmt_energy(totals.energy_j))}: {_e(provenance_text(totals))}.</p>"
    )
    rows = "".join(
        f"<tr><td><code>{_e(line)}</code></td><td>{_e(kind)}</td>"
        f'<td class="num">{n}</td><td class="num">{_e(fmt_joules(joules))}</td></tr>'
        for line, kind, n, joules in totals.sources
    )
    out.append(
        '<div class="scroll"><table><thead><tr><th>energy source (component=counter or model)'
        '</th><th>kind</th><th class="num">trials</th><th class="num">energy</th></tr></thead>'
        f"<tbody>{rows}</tbody></table></div>"
    )
    if energy_notes:
        component_notes = {k: v for k, v in energy_notes.items() if k != CARBON_KEY}
        if component_notes:
            out.append("<h3>Assumptions and counters, as recorded with the measurements</h3>")
            out.append("<ul class='notes'>")
            for key, lines in component_notes.items():
                items = "".join(f"<li>{_e(line)}</li>" for line in lines)
                out.append(f"<li><code>{_e(key)}</code><ul>{items}</ul></li>")
            out.append("</ul>")
    else:
        out.append(
            '<p class="sub">The assumptions behind each source are recorded with every '
            "measurement in the study store; a report made from the study directory "
            "(<code>frugalml report DIR</code>) lists them here.</p>"
        )
    out.append("<h3>Carbon</h3>")
    if totals.carbon:
        pairs = "; ".join(
            f"{intensity:g} gCO₂e/kWh with PUE {'n/a' if math.isnan(pue) else f'{pue:g}'} "
            f"({n} trials)"
            for intensity, pue, n in totals.carbon
        )
        out.append(f"<p>CO₂ = energy (kWh) × carbon intensity × PUE: {_e(pairs)}.</p>")
    else:
        out.append("<p>No carbon intensity recorded.</p>")
    for source in (energy_notes or {}).get(CARBON_KEY, []):
        out.append(f"<p class='sub'>Carbon intensity source: {_e(source)}</p>")
    out.append("</section>")
    return "\n".join(out)


def _failed_section(prepared: PreparedStudy) -> str:
    failed, unscored, unfinished = prepared.failed, prepared.unscored, prepared.unfinished
    pruned = prepared.pruned
    if not (len(failed.index) or len(unscored.index) or len(unfinished.index) or len(pruned)):
        return ""
    out = ['<section id="failed">', "<h2>Trials not on the leaderboard</h2>"]
    if len(failed.index):
        out.append(f"<h3>Failed ({len(failed.index)})</h3>")
        rows = []
        for record in failed.to_dict("records"):
            energy = record.get(ENERGY)
            spent = "" if is_missing(energy) else fmt_joules(float(str(energy)))
            rows.append(
                f"<tr><td>{_e(trial_name(record))}</td><td class='num'>{_e(spent)}</td>"
                f"<td class='err'>{_error_cell(record.get('error'))}</td></tr>"
            )
        out.append(
            '<div class="scroll"><table><thead><tr><th>trial</th><th class="num">energy spent'
            "</th><th>error</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table></div>"
        )
    if len(pruned.index):
        out.append(_pruned_table(pruned))
    if len(unscored.index):
        out.append(f"<h3>Complete but not scored ({len(unscored.index)})</h3><ul>")
        for record in unscored.to_dict("records"):
            out.append(f"<li>{_e(trial_name(record))}: {_e(record.get('reason'))}</li>")
        out.append("</ul>")
    if len(unfinished.index):
        out.append(f"<h3>Unfinished ({len(unfinished.index)})</h3>")
        out.append(
            "<p>Not run, or still running when this report was written (a budget stop or an "
            "interrupted run leaves trials pending); running the study again resumes them.</p><ul>"
        )
        for record in unfinished.to_dict("records"):
            status = plain_text(record.get("status")) or "unknown status"
            out.append(f"<li>{_e(trial_name(record))}: {_e(status)}</li>")
        out.append("</ul>")
    out.append("</section>")
    return "\n".join(out)


def _pruned_table(pruned: pd.DataFrame) -> str:
    """Trials a tuner stopped early: the accuracy and energy of the epoch they stopped at."""
    rows = []
    for record in pruned.to_dict("records"):
        epochs = record.get("epochs")
        planned = record.get("epochs_planned")
        ran = "" if is_missing(epochs) else f"{int(float(str(epochs)))}"
        if ran and not is_missing(planned):
            ran += f" of {int(float(str(planned)))}"
        accuracy = record.get("accuracy")
        shown = "" if is_missing(accuracy) else f"{float(str(accuracy)):.3f}"
        energy = record.get(ENERGY)
        spent = "" if is_missing(energy) else fmt_joules(float(str(energy)))
        reason = plain_text(record.get("stop_reason"), limit=200) or "pruned by the tuner"
        number = record.get("tune_number")
        name = ("" if is_missing(number) else f"#{int(float(str(number)))} ") + trial_name(record)
        params = plain_text(record.get("tune_params"), limit=200)
        if params and params != "{}":
            name += f" {params}"
        rows.append(
            f"<tr><td>{_e(name)}</td><td class='num'>{_e(ran)}</td>"
            f"<td class='num'>{_e(shown)}</td><td class='num'>{_e(spent)}</td>"
            f"<td>{_e(reason)}</td></tr>"
        )
    return (
        f"<h3>Pruned ({len(pruned.index)})</h3>"
        "<p>Stopped early by the tuner: accuracy and energy are those of the epoch each "
        "stopped at, so they are listed, not ranked against trials that ran every epoch. "
        "Their energy counts in the study's totals.</p>"
        '<div class="scroll"><table><thead><tr><th>trial</th><th class="num">epochs</th>'
        '<th class="num">test accuracy when stopped</th><th class="num">energy spent</th>'
        "<th>why</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table></div>"
    )


def _error_cell(error: object) -> str:
    if is_missing(error) or not str(error).strip():
        return "(no error recorded)"
    text = str(error).strip()
    first = plain_text(text.splitlines()[0], limit=200)
    if first == plain_text(text):
        return _e(first)
    kept = "".join(c for c in text if c in "\n\t" or unicodedata.category(c) not in ("Cc", "Cf"))
    return f"<details><summary>{_e(first)}</summary><pre>{_e(kept)}</pre></details>"


def _notes_section(notes: Iterable[str]) -> str:
    distinct = list(dict.fromkeys(n for n in notes if n))
    if not distinct:
        return ""
    items = "".join(f"<li>{_e(n)}</li>" for n in distinct)
    return f'<section id="notes"><h2>Notes</h2><ul class="notes">{items}</ul></section>'

"""A compression run's report: ``frugalml report DIR`` where ``DIR/compress.csv`` exists.

The page is built from the report's own pieces (:func:`html_page`, :func:`table_html`,
:func:`figure_html`, :func:`paragraph_html`: every value escaped, PNGs as data URIs, no
scripts). It shows the measured comparison against dense (accuracy, parameters, sparsity,
FLOPs, latency at batch 1 and at the spec's batch and energy per 1,000 inferences, each
with its interval; what the compression cost and its break-even), PePR before (dense) and
after (each method), the words ``compress.csv`` already carries (a saving counts only when
its interval excludes no change; fewer FLOPs with more latency; unstructured zeros give
dense kernels no speed), and, when ``DIR/compress_tune.csv`` exists, the tuning trials and
their accuracy-energy Pareto front. Figures: accuracy vs sparsity; latency and energy per
method against the dense baseline, with intervals; PePR before and after; the tuning
trials. Every point and bar is labelled with its method's name.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from frugalml.compress._columns import COMPRESS_TABLE, TUNE_TABLE, Column
from frugalml.errors import DataError
from frugalml.report._format import fmt_energy, fmt_flops, plain_text
from frugalml.report._html import _e as escape
from frugalml.report._html import figure_html, html_page, paragraph_html, table_html

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.axes import Axes

__all__ = ["CSV_NAME", "TUNE_CSV_NAME", "CompressReport", "compress_report", "read_compress_csv"]

logger = logging.getLogger(__name__)

CSV_NAME = "compress.csv"
TUNE_CSV_NAME = "compress_tune.csv"
HTML_NAME = "compress.html"


@dataclass(frozen=True)
class CompressReport:
    """What :func:`compress_report` wrote."""

    html_path: Path
    png_paths: tuple[Path, ...]
    n_methods: int
    n_tune_trials: int = 0


def _number(value: Any) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return math.nan
    return number


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or value == ""


def _rows(table: pd.DataFrame, path: Path, columns: tuple[Column, ...]) -> list[dict[str, Any]]:
    """The table's rows as dicts, each column read as its kind in ``columns`` (the compress
    package's column table): a required number must be one in every row, another number
    blank is NaN, a blank text is "", a flag is ``True`` only when it says so."""
    numeric = [c.name for c in columns if c.kind == "number" and c.required]
    missing = [c for c in ("method", *numeric) if c not in table.columns]
    if missing:
        raise DataError(
            f"{path} lacks the column(s) {', '.join(missing)}",
            fix="report on the compress.csv that 'frugalml compress' wrote",
        )
    rows: list[dict[str, Any]] = []
    for i, raw in enumerate(table.to_dict(orient="records"), start=2):  # line 1: header
        row = {str(k): v for k, v in raw.items()}
        if _blank(row["method"]):
            raise DataError(f"{path} line {i} has no method name", fix="name every row's method")
        row["method"] = str(row["method"])
        for column in numeric:
            value = _number(row[column])
            if not math.isfinite(value):
                raise DataError(
                    f"{path} line {i} ({plain_text(row['method'], limit=40)}): {column} "
                    f"{plain_text(row[column], limit=40)!r} is not a number",
                    fix="re-run 'frugalml compress' rather than editing its CSV",
                )
            row[column] = value
        for c in columns:
            if c.required or c.name == "method":
                continue
            cell = row.get(c.name)
            if c.kind == "number":
                row[c.name] = _number(cell)
            elif c.kind == "text":
                row[c.name] = "" if _blank(cell) else str(cell)
            else:
                row[c.name] = str(cell).lower() == "true"
        rows.append(row)
    return rows


def read_compress_csv(path: str | Path) -> list[dict[str, Any]]:
    """Read a ``compress.csv``: one row per method, the ``dense`` baseline among them.

    Raises:
        DataError: the file is missing, empty or not a CSV; a needed column is missing; a
            row lacks a method or holds a non-number where a number belongs; no ``dense``
            row, or a method named twice.
    """
    from frugalml.analysis._table import read_csv_table

    source = Path(path)
    rows = _rows(read_csv_table(source, row_noun="method"), source, COMPRESS_TABLE)
    names = [r["method"] for r in rows]
    if "dense" not in names:
        raise DataError(
            f"{source} has no 'dense' row: nothing to compare the methods with",
            fix="report on the compress.csv that 'frugalml compress' wrote (dense comes first)",
        )
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise DataError(
            f"{source} names the method(s) {', '.join(plain_text(n) for n in twice)} twice",
            fix="one row per method, as 'frugalml compress' writes",
        )
    return rows


def _read_tune_csv(path: Path) -> list[dict[str, Any]]:
    from frugalml.analysis._table import read_csv_table

    table = read_csv_table(path, row_noun="trial")
    if "method" not in table.columns:
        table["method"] = ""
    table["method"] = table["method"].fillna("").astype(str).replace("", "tuned")
    return _rows(table, path, TUNE_TABLE)


# -- words and cells ---------------------------------------------------------------------


def _interval(row: dict[str, Any], key: str, fmt: str = "{:.3g}") -> str:
    mid = row.get(key, math.nan)
    if not math.isfinite(mid):
        return "n/a"
    low, high = row.get(f"{key}_low", math.nan), row.get(f"{key}_high", math.nan)
    text = fmt.format(mid)
    if math.isfinite(low) and math.isfinite(high):
        text += f" ({fmt.format(low)}-{fmt.format(high)})"
    return text


def _ratio(row: dict[str, Any], key: str) -> str:
    return "1" if row["method"] == "dense" else "x" + _interval(row, key)


def _int(value: float) -> str:
    return f"{int(value):,}"


def _energy(value: float) -> str:
    return fmt_energy(value) if math.isfinite(value) else "n/a"


def _comparison_rows(rows: list[dict[str, Any]]) -> list[list[str]]:
    table = []
    for r in rows:
        acc = f"{r['accuracy']:.3f}"
        change = r.get("accuracy_change_points", math.nan)
        if r["method"] != "dense" and math.isfinite(change):
            acc += f" ({change:+.1f} pt)"
        compress = r.get("compress_energy_j", math.nan)
        break_even = r.get("break_even_inferences", math.nan)
        table.append(
            [
                r["method"],
                acc,
                _int(r["params"]),
                f"{100 * r['sparsity']:.1f}%",
                fmt_flops(r.get("flops_per_sample", math.nan)),
                _interval(r, "latency_ms"),
                _ratio(r, "latency_ratio"),
                _interval(r, "latency_ms_batch"),
                _ratio(r, "latency_ratio_batch"),
                _interval(r, "energy_per_1k_j", "{:.4g}") + " " + r["energy_per_1k_provenance"],
                ""
                if not math.isfinite(compress)
                else f"{_energy(compress)} {r['compress_energy_provenance']}".strip(),
                _int(break_even) if math.isfinite(break_even) else "",
            ]
        )
    return table


_HEADERS = (
    "method",
    "accuracy",
    "params",
    "sparsity",
    "FLOPs / sample",
    "latency b1 (ms)",
    "ratio b1",
    "latency batch (ms)",
    "ratio batch",
    "J per 1k inferences",
    "compression energy",
    "break-even (inferences)",
)


def _pepr_rows(rows: list[dict[str, Any]]) -> list[list[str]]:
    def cell(value: float) -> str:
        return f"{value:.3f}" if math.isfinite(value) else "n/a"

    return [
        [
            r["method"],
            "before" if r["method"] == "dense" else "after",
            f"{r['accuracy']:.3f}",
            cell(r.get("pepr_energy_per_1k_j", math.nan)),
            cell(r.get("pepr_params", math.nan)),
        ]
        for r in rows
    ]


# -- figures --------------------------------------------------------------------------------


def _label(name: str) -> str:
    """A method name as matplotlib text: ``$`` would start mathtext."""
    return plain_text(name, limit=40).replace("$", r"\$")


def _canvas(width: float, height: float, n: int) -> tuple[Any, list[Axes]]:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, n, squeeze=False)[0]
    return fig, list(axes)


def _save(fig: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", dpi=100)
    return path


def _accuracy_plot(rows: list[dict[str, Any]], path: Path) -> Path:
    fig, (ax,) = _canvas(6, 4.2, 1)
    for r in rows:
        x, y = 100 * r["sparsity"], 100 * r["accuracy"]
        dense = r["method"] == "dense"
        ax.scatter(x, y, marker="s" if dense else "o", color="#444444" if dense else "#4c72b0")
        ax.annotate(_label(r["method"]), (x, y), xytext=(4, 3), textcoords="offset points")
    ax.set_xlabel("sparsity vs dense parameters (%)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("accuracy vs sparsity (square: dense)")
    return _save(fig, path)


def _bars(ax: Axes, rows: list[dict[str, Any]], key: str, ylabel: str, title: str) -> None:
    mids = [r.get(key, math.nan) for r in rows]
    low = [
        max(m - r.get(f"{key}_low", m), 0.0) if math.isfinite(r.get(f"{key}_low", math.nan)) else 0
        for m, r in zip(mids, rows, strict=True)
    ]
    high = [
        max(r.get(f"{key}_high", m) - m, 0.0)
        if math.isfinite(r.get(f"{key}_high", math.nan))
        else 0
        for m, r in zip(mids, rows, strict=True)
    ]
    colours = ["#999999" if r["method"] == "dense" else "#4c72b0" for r in rows]
    positions = list(range(len(rows)))
    heights = [m if math.isfinite(m) else 0.0 for m in mids]
    ax.bar(positions, heights, yerr=[low, high], capsize=3, color=colours)
    dense = next(r for r in rows if r["method"] == "dense").get(key, math.nan)
    if math.isfinite(dense):
        ax.axhline(dense, color="#444444", linestyle="--", linewidth=0.8, label="dense (before)")
        ax.legend(fontsize=7)
    ax.set_xticks(positions, [_label(r["method"]) for r in rows], rotation=40, ha="right")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)


def _before_after_plot(rows: list[dict[str, Any]], path: Path) -> Path:
    fig, axes = _canvas(14, 4.2, 3)
    batch = rows[0].get("batch_size", math.nan)
    provenance = sorted({r["energy_per_1k_provenance"] for r in rows} - {""})
    _bars(axes[0], rows, "latency_ms", "ms", "latency at batch 1 (median, interval)")
    _bars(
        axes[1],
        rows,
        "latency_ms_batch",
        "ms",
        f"latency at batch {int(batch) if math.isfinite(batch) else '?'} (median, interval)",
    )
    _bars(
        axes[2],
        rows,
        "energy_per_1k_j",
        "J",
        f"energy per 1,000 inferences ({', '.join(provenance) or 'none'})",
    )
    return _save(fig, path)


def _pepr_plot(rows: list[dict[str, Any]], path: Path) -> Path:
    fig, axes = _canvas(10, 4, 2)
    _bars(axes[0], rows, "pepr_energy_per_1k_j", "PePR", "PePR-E (energy per 1k inferences)")
    _bars(axes[1], rows, "pepr_params", "PePR", "PePR (parameters)")
    return _save(fig, path)


def _tune_plot(trials: list[dict[str, Any]], path: Path) -> Path:
    fig, (ax,) = _canvas(6, 4.2, 1)
    for t in trials:
        x, y = t["energy_per_1k_j"], 100 * t["accuracy"]
        if not (math.isfinite(x) and math.isfinite(y)):
            continue
        ax.scatter(x, y, color="#c44e52" if t["pareto"] else "#4c72b0")
        ax.annotate(
            _label(f"{t['method']} #{int(t['trial'])}"),
            (x, y),
            xytext=(4, 3),
            textcoords="offset points",
        )
    ax.set_xlabel("energy per 1,000 inferences (J)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("tuning trials (red: Pareto front)")
    return _save(fig, path)


# -- the page -------------------------------------------------------------------------------


def _tune_section(trials: list[dict[str, Any]], figure: Path | None) -> list[str]:
    body = ["<h2>Tuning strength and threshold under an energy budget</h2>"]
    front = [t for t in trials if t["pareto"]]
    body.append(
        paragraph_html(
            f"{len(trials)} trial(s), {len(front)} on the Pareto front (highest accuracy, "
            "lowest energy per 1,000 inferences of the compressed model). The trial energy "
            "is what each trial cost; compression energy is its compression phases."
        )
    )
    if figure is not None:
        body.append(
            figure_html(
                figure,
                "Accuracy against inference energy of each trial's compressed model.",
                "scatter of tuning trials",
            )
        )
    headers = ["trial", "method", "params", "accuracy", "J per 1k", "compression", "state", "front"]
    cells = [
        [
            f"{int(t['trial'])}",
            t["method"],
            "" if _blank(t.get("params")) else str(t["params"]),
            f"{t['accuracy']:.3f}" if math.isfinite(t["accuracy"]) else "n/a",
            f"{t['energy_per_1k_j']:.4g} {t.get('energy_per_1k_provenance', '') or ''}".strip()
            if math.isfinite(t["energy_per_1k_j"])
            else "n/a",
            _energy(t["compress_energy_j"]),
            t["state"],
            "yes" if t["pareto"] else "",
        ]
        for t in trials
    ]
    body.append(table_html(headers, cells))
    stops = sorted({str(t["notes"]) for t in trials if t.get("notes")})
    body.extend(paragraph_html(s, "sub") for s in stops)
    return body


def _figures(
    rows: list[dict[str, Any]], trials: list[dict[str, Any]], out: Path
) -> dict[str, Path]:
    figures = {
        "accuracy": _accuracy_plot(rows, out / "compress-accuracy-sparsity.png"),
        "before_after": _before_after_plot(rows, out / "compress-latency-energy.png"),
        "pepr": _pepr_plot(rows, out / "compress-pepr.png"),
    }
    if trials:
        figures["tune"] = _tune_plot(trials, out / "compress-tune.png")
    return figures


def _comparison_section(rows: list[dict[str, Any]], figures: dict[str, Path]) -> list[str]:
    methods = [r for r in rows if r["method"] != "dense"]
    device = sorted({r["device"] for r in rows} - {""})
    body = [
        "<h2>Compression: measured against dense</h2>",
        paragraph_html(
            f"{len(methods)} compressed model(s) against the dense baseline"
            + (f" on {', '.join(device)}" if device else "")
            + ". Latency: median of interleaved repeats with its interval; ratios per repeat "
            "against dense. A saving counts only when its interval excludes no change; a "
            "break-even is given only for an energy saving that counts. Energy per 1,000 "
            "inferences carries its provenance (measured from a counter, or estimated)."
        ),
        table_html(_HEADERS, _comparison_rows(rows)),
    ]
    if "accuracy" in figures:
        body.append(
            figure_html(
                figures["accuracy"],
                "Test accuracy against sparsity (zero or removed parameters over dense).",
                "accuracy vs sparsity per method",
            )
        )
        body.append(
            figure_html(
                figures["before_after"],
                "Latency at batch 1 and at the batch, and energy per 1,000 inferences, per "
                "method (bars: median; whiskers: interval) against dense (dashed line).",
                "latency and energy before and after per method",
                wide=True,
            )
        )
    return body


def _words_section(methods: list[dict[str, Any]]) -> list[str]:
    body = ["<h2>What each method saved, in words</h2>"]
    for r in methods:
        words = [w.strip() for w in r["notes"].split("; ") if w.strip()]
        break_even = r.get("break_even_inferences", math.nan)
        if math.isfinite(break_even):
            words.append(
                f"a real energy saving: the compression repays itself after "
                f"{_int(break_even)} inferences"
            )
        if not words:
            words = ["compress.csv carries no words for this method"]
        items = "".join(f"<li>{escape(w)}</li>" for w in words)
        body.append(f"<h3>{escape(r['method'])}</h3><ul>{items}</ul>")
    return body


def _pepr_section(rows: list[dict[str, Any]], figures: dict[str, Path]) -> list[str]:
    body = [
        "<h2>PePR before and after</h2>",
        paragraph_html(
            "PePR = accuracy / (1 + normalised resource), the resource min-max normalised over "
            "these rows: energy per 1,000 inferences (PePR-E) and parameters. Before: dense; "
            "after: each method."
        ),
        table_html(("method", "", "accuracy", "PePR-E", "PePR (params)"), _pepr_rows(rows)),
    ]
    if "pepr" in figures:
        body.append(
            figure_html(figures["pepr"], "PePR per method against dense.", "PePR per method")
        )
    return body


def compress_report(
    compress_dir: str | Path,
    *,
    html_path: Path | None = None,
    plots: bool = True,
    title: str | None = None,
) -> CompressReport:
    """Write the HTML report of a ``frugalml compress`` output directory.

    The page goes to ``html_path`` (default ``DIR/report/compress.html``) and its PNGs
    beside it. Raises :class:`frugalml.errors.DataError` for a malformed ``compress.csv``.
    """
    folder = Path(compress_dir)
    rows = read_compress_csv(folder / CSV_NAME)
    tune_path = folder / TUNE_CSV_NAME
    trials = _read_tune_csv(tune_path) if tune_path.is_file() else []
    html = html_path if html_path is not None else folder / "report" / HTML_NAME
    figures = _figures(rows, trials, html.parent) if plots else {}
    methods = [r for r in rows if r["method"] != "dense"]
    body = [
        *_comparison_section(rows, figures),
        *_words_section(methods),
        *_pepr_section(rows, figures),
    ]
    if trials:
        body.extend(_tune_section(trials, figures.get("tune")))
    page = html_page(title or f"Compression report: {folder.resolve().name}", body)
    html.parent.mkdir(parents=True, exist_ok=True)
    html.write_text(page, encoding="utf-8")
    logger.debug("wrote %s", html)
    return CompressReport(html, tuple(figures.values()), len(methods), len(trials))

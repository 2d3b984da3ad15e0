"""``frugalml report DIR`` on a ``frugalml compress`` output directory: the HTML section,
its plots, escaping, and one-line errors for a malformed compress.csv."""

from __future__ import annotations

import base64
import csv
import re
from pathlib import Path
from typing import Any

import pytest

from frugalml.cli import main
from frugalml.cli._compress import write_csv
from frugalml.compress import CSV_COLUMNS

HOSTILE = '<script>alert("x")</script> $\\x$ & co'


def _row(method: str, **values: Any) -> dict[str, Any]:
    row: dict[str, Any] = dict.fromkeys(CSV_COLUMNS, "")
    row.update(
        method=method,
        accuracy=0.9,
        accuracy_change_points=0.0,
        params=1000,
        nonzero_params=1000,
        sparsity=0.0,
        flops_per_sample=2_000_000,
        latency_ms=2.0,
        latency_ms_low=1.9,
        latency_ms_high=2.1,
        latency_ms_batch=20.0,
        latency_ms_batch_low=19.0,
        latency_ms_batch_high=21.0,
        batch_size=64,
        energy_per_1k_j=0.5,
        energy_per_1k_j_low=0.45,
        energy_per_1k_j_high=0.55,
        energy_per_1k_provenance="estimated",
        pepr_energy_per_1k_j=0.45,
        pepr_params=0.45,
        device="cpu",
    )
    row.update(values)
    return row


def _rows() -> list[dict[str, Any]]:
    return [
        _row("dense"),
        _row(
            HOSTILE,
            accuracy=0.895,
            accuracy_change_points=-0.5,
            params=250,
            nonzero_params=250,
            sparsity=0.75,
            latency_ms=1.0,
            latency_ratio=0.5,
            latency_ratio_low=0.45,
            latency_ratio_high=0.55,
            energy_per_1k_j=0.25,
            energy_per_1k_j_low=0.24,
            energy_per_1k_j_high=0.26,
            compress_energy_j=12.5,
            compress_energy_provenance="estimated",
            # 12.5 J repaid at (0.5 - 0.25) J per 1,000 inferences: 50,000 inferences
            break_even_inferences=50000,
            pepr_energy_per_1k_j=0.895,
            notes="a real latency saving (x0.5) <b>bold</b>",
        ),
        _row(
            "magnitude",
            sparsity=0.9,
            nonzero_params=100,
            notes="unstructured zeros: dense kernels gain no speed from them; batch 1: fewer "
            "FLOPs (40% of dense) but more latency (x1.200, 1.100-1.300)",
        ),
    ]


def _page(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def test_report_of_a_real_compress_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / "s.yaml"
    spec.write_text(
        "name: tiny\ndataset: digits\nmodel: frugal_cnn\n"
        "model_args: {conv_layers: 2, width: 8, hidden: 16}\n"
        "training: {epochs: 1, device: cpu}\n"
        "latency: {repeats: 3, batch_size: 8, min_time_s: 0.002}\n"
        "energy: {repeats: 1, min_window_s: 0.02}\n"
        "methods:\n  - {method: magnitude, threshold: {sparsity: 0.8}}\n"
    )
    out = tmp_path / "out"
    assert main(["compress", str(spec), "--out", str(out), "--threads", "1"]) == 0
    capsys.readouterr()
    assert main(["report", str(out)]) == 0
    printed = capsys.readouterr().out
    html_path = out / "report" / "compress.html"
    assert f"report: {html_path}" in printed
    page = _page(html_path)
    assert "<h2>Compression: measured against dense</h2>" in page
    assert "<h2>PePR before and after</h2>" in page
    assert "<td>dense</td>" in page and "<td>magnitude</td>" in page
    assert "dense kernels gain no speed" in page  # the CSV's own words
    assert "<script" not in page and page.count("data:image/png;base64,") == 3
    for name in ("compress-accuracy-sparsity", "compress-latency-energy", "compress-pepr"):
        assert (out / "report" / f"{name}.png").read_bytes()[:4] == b"\x89PNG"
    with (out / "compress.csv").open() as handle:
        rows = {r["method"]: r for r in csv.DictReader(handle)}
    assert f"<td>{int(rows['magnitude']['params']):,}</td>" in page


def test_section_values_words_and_escaping(tmp_path: Path) -> None:
    write_csv(tmp_path / "compress.csv", _rows())
    html_path = tmp_path / "elsewhere" / "c.html"
    assert main(["report", str(tmp_path), "-o", str(html_path)]) == 0
    page = _page(html_path)
    # escaped everywhere: table, headings, notes; matplotlib drew the '$' name as text
    assert "<script" not in page and "<b>bold" not in page
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; $\\x$ &amp; co" in page
    assert "&lt;b&gt;bold&lt;/b&gt;" in page
    cells = re.findall(r"<td>(.*?)</td>", page)
    assert "0.895 (-0.5 pt)" in cells and "75.0%" in cells and "250" in cells
    assert "x0.5 (0.45-0.55)" in cells  # the ratio with its interval
    assert "50,000" in cells  # break-even, as the CSV has it
    assert "2 (1.9-2.1)" in cells
    assert "the compression repays itself after 50,000 inferences" in page
    assert "fewer FLOPs (40% of dense) but more latency" in page
    assert "unstructured zeros: dense kernels gain no speed from them" in page
    pngs = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert len(pngs) == 3 and all(base64.b64decode(p)[:4] == b"\x89PNG" for p in pngs)
    assert (tmp_path / "elsewhere" / "compress-pepr.png").is_file()
    # PePR before (dense) and after
    assert re.search(r"<td>dense</td><td>before</td><td>0.900</td><td>0.450</td>", page)
    assert "<td>after</td><td>0.895</td><td>0.895</td>" in page


def test_no_plots_leaves_out_the_figures(tmp_path: Path) -> None:
    write_csv(tmp_path / "compress.csv", _rows())
    assert main(["report", str(tmp_path), "--no-plots"]) == 0
    page = _page(tmp_path / "report" / "compress.html")
    assert "data:image" not in page and "<h2>PePR before and after</h2>" in page
    assert not list((tmp_path / "report").glob("*.png"))


def _write(path: Path, header: list[str], rows: list[list[Any]]) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)


@pytest.mark.parametrize(
    ("mutate", "words"),
    [
        ("drop_accuracy", "lacks the column(s) accuracy"),
        ("bad_number", "line 4 (magnitude): latency_ms 'fast' is not a number"),
        ("no_dense", "has no 'dense' row"),
        ("twice", "names the method(s) magnitude twice"),
        ("empty", "is empty"),
        ("no_name", "line 2 has no method name"),
    ],
)
def test_malformed_compress_csv_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], mutate: str, words: str
) -> None:
    rows = _rows()
    header = list(CSV_COLUMNS)
    table = [[r[c] for c in header] for r in rows]
    path = tmp_path / "compress.csv"
    if mutate == "drop_accuracy":
        i = header.index("accuracy")
        header.pop(i)
        table = [t[:i] + t[i + 1 :] for t in table]
    elif mutate == "bad_number":
        table[2][header.index("latency_ms")] = "fast"
    elif mutate == "no_dense":
        table = table[1:]
    elif mutate == "twice":
        table.append(list(table[2]))
    elif mutate == "no_name":
        table[0][0] = ""
    if mutate == "empty":
        path.write_text("")
    else:
        _write(path, header, table)
    before = path.read_bytes()
    assert main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("frugalml: error: ") and "\n" not in err and "(fix:" in err
    assert words in err
    assert "Traceback" not in err
    assert path.read_bytes() == before and not (tmp_path / "report").exists()

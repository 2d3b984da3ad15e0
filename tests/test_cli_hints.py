"""Fix hints: the library names API keywords, the command line shows its flags.

The library's ``fix=`` hints name ``threads=1``, ``out_dir=DIR``; :mod:`frugalml.cli._hints`
writes them as ``--threads 1``, ``--out DIR`` when the error reaches the command line. These
tests check the rendering, that the tables name real flags and phrases the library writes,
that no library hint names a frugalml flag itself, and one error end to end.
"""

from __future__ import annotations

import argparse
import ast
import re
from pathlib import Path

import pytest

from frugalml.cli import build_parser, main
from frugalml.cli._hints import FLAGS, PHRASES, cli_error, cli_fix
from frugalml.errors import ConfigError, FrugalError

SRC = Path(__file__).resolve().parent.parent / "src" / "frugalml"


@pytest.mark.parametrize(
    ("fix", "expected"),
    [
        ("e.g. threads=1", "e.g. --threads 1"),
        (
            "use another out_dir=DIR, or pass add=True to add",
            "use another --out DIR, or pass --add to add",
        ),
        (
            "add executor='ray', or drop address=ADDRESS",
            "add --executor ray, or drop --address ADDRESS",
        ),
        ("e.g. strategies='grid,random,tpe'", "e.g. --strategies grid,random,tpe"),
        ("pass nproc=4 (nnodes x nproc-per-node)", "pass --nproc 4 (nnodes x nproc-per-node)"),
        ("e.g. target=0.01; or repeats=5", "e.g. --target 0.01; or --repeats 5"),
        # spec keys, other keywords and words that merely contain a name stay as written
        ("e.g. threads: 2", "e.g. threads: 2"),
        ("e.g. country=DK", "e.g. country=DK"),
        ("set training.threads=2 or max_threads=3", "set training.threads=2 or max_threads=3"),
        (
            "run the study first (run_study(spec, out_dir=DIR))",
            "run the study first ('frugalml study run SPEC --out DIR')",
        ),
        (
            "report on a CSV with read_results_csv('r.csv')",
            "report on a CSV with 'frugalml report --csv r.csv'",
        ),
        (
            "see what this machine can measure (describe_environment())",
            "see what this machine can measure ('frugalml env')",
        ),
        ("rerun with debug logging (logging.DEBUG)", "rerun with --debug"),
    ],
)
def test_api_keywords_become_flags(fix: str, expected: str) -> None:
    assert cli_fix(fix) == expected


def test_a_command_adds_its_own_flag_words() -> None:
    flags = {**FLAGS, "image_size": lambda n: f"--input CxHxW (e.g. 3x{n}x{n})"}
    fix = "give a larger input with image_size=32, or another model"
    assert cli_fix(fix) == fix  # no image_size flag in general
    assert cli_fix(fix, flags) == (
        "give a larger input with --input CxHxW (e.g. 3x32x32), or another model"
    )


def test_the_error_line_keeps_the_message_and_renders_the_fix() -> None:
    exc = ConfigError("threads=0 is not a count", fix="e.g. threads=1")
    assert cli_error(exc) == "threads=0 is not a count (fix: e.g. --threads 1)"
    assert str(exc) == "threads=0 is not a count (fix: e.g. threads=1)"  # the API's words
    assert cli_error(FrugalError("no fix here")) == "no fix here"


def _parsers(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    found = [parser]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                found += _parsers(sub)
    return found


def _cli_flags() -> set[str]:
    return {
        option
        for parser in _parsers(build_parser())
        for action in parser._actions
        for option in action.option_strings
        if option.startswith("--")
    }


def _library_fixes() -> list[tuple[str, str]]:
    """(file:line, source text) of every ``fix=`` argument outside the command line."""
    found = []
    for path in sorted(SRC.rglob("*.py")):
        if "cli" in path.relative_to(SRC).parts:
            continue
        text = path.read_text()
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.Call):
                for keyword in node.keywords:
                    if keyword.arg == "fix":
                        segment = ast.get_source_segment(text, keyword.value) or ""
                        found.append((f"{path.relative_to(SRC)}:{keyword.value.lineno}", segment))
    return found


def test_every_flag_and_phrase_in_the_tables_exists() -> None:
    flags = _cli_flags()
    for name, flag in FLAGS.items():
        assert isinstance(flag, str) and flag in flags, name
    library = "\n".join(text for _, text in _library_fixes())
    command_phrases = [
        phrase
        for parser in _parsers(build_parser())
        for phrase in parser.get_default("fix_phrases") or ()
    ]
    assert command_phrases, "the parallel command's phrases are not found"
    for pattern, _ in (*PHRASES, *command_phrases):
        assert re.search(pattern, library), f"no library fix says {pattern!r}"


#: hints that name the flags of other programs, and a module that parses a flag's items
_OTHER_PROGRAMS = ("torchrun", "ray start")
_FLAG_PARSERS = ("analysis/_mapping.py",)  # parse_column_mapping reads --column ROLE=COLUMN


def test_no_library_hint_names_a_frugalml_flag() -> None:
    flags = _cli_flags()
    offenders = []
    for where, text in _library_fixes():
        if where.startswith(_FLAG_PARSERS) or any(p in text for p in _OTHER_PROGRAMS):
            continue
        named = set(re.findall(r"--[a-z][a-z0-9-]*", text)) & flags
        if named:
            offenders.append(f"{where}: {sorted(named)}")
    assert not offenders, "write these as API keywords (threads=1): " + "; ".join(offenders)


def test_a_library_hint_reaches_the_user_as_a_flag(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    csv = tmp_path / "results.csv"
    csv.write_text("model,accuracy\na,0.5\n")
    assert main(["report", str(csv)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        f"frugalml: error: {csv} is a CSV file, not a study directory "
        f"(fix: report on a CSV with 'frugalml report --csv {csv}')"
    )

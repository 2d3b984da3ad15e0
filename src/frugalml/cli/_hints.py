"""Fix hints in the command line's words.

The library's errors speak its API: a fix names a keyword argument as ``name=value``
(``threads=1``, ``out_dir=DIR``, ``add=True``), the way a Python caller passes it. When such
an error reaches the command line, :func:`cli_fix` renders each keyword the command line
has a flag for as that flag (``--threads 1``, ``--out DIR``, ``--add``), and a few API calls
named in hints as the command that does the same. A command whose flag differs from the
common one (or that takes the value in another form) adds its own entries with
``parser.set_defaults(fix_flags={...}, fix_phrases=(...))``; :func:`frugalml.cli.main` merges
them over :data:`FLAGS` and :data:`PHRASES`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping

from frugalml.errors import FrugalError

__all__ = ["FLAGS", "PHRASES", "Flag", "cli_error", "cli_fix"]

#: A flag, or a function of the value that writes the command-line words for it.
Flag = str | Callable[[str], str]

#: API keyword argument -> the flag that sets it on every command that has it.
FLAGS: dict[str, Flag] = {
    "add": "--add",
    "address": "--address",
    "bandwidth_bytes_per_s": "--bandwidth",
    "batch": "--batch",
    "cpu_tdp_w": "--cpu-tdp-w",
    "energy_column": "--energy-column",
    "executor": "--executor",
    "levels": "--levels",
    "max_trials": "--max-trials",
    "nproc": "--nproc",
    "out_dir": "--out",
    "parallel": "--parallel",
    "repeats": "--repeats",
    "strategies": "--strategies",
    "target": "--target",
    "threshold": "--threshold",
    "threads": "--threads",
    "trial_timeout_s": "--trial-timeout-s",
    "workers": "--workers",
}

#: API calls and phrases named in hints (regular expressions) -> the command line's words.
PHRASES: tuple[tuple[str, str], ...] = (
    (r"run_study\(spec, out_dir=DIR\)", "'frugalml study run SPEC --out DIR'"),
    (r"read_results_csv\('([^']*)'\)", r"'frugalml report --csv \1'"),
    (r"rerun with debug logging \(logging\.DEBUG\)", "rerun with --debug"),
    (r"written by append_log\b", "written by append_log or 'frugalml measure --log'"),
    (r"\(describe_environment\(\)\)", "('frugalml env')"),
)

# ``name=value``: a keyword not inside a longer word, the value up to a space or the
# punctuation that ends a clause.
_KEYWORD = re.compile(r"(?<![\w.\-])([a-z][a-z0-9_]*)=('[^']*'|[^\s,;()]+)")


def _flag_words(flag: Flag, value: str) -> str:
    if callable(flag):
        return flag(value)
    if value == "True":
        return flag
    return f"{flag} {value}"


def cli_fix(
    fix: str,
    flags: Mapping[str, Flag] = FLAGS,
    phrases: Iterable[tuple[str, str]] = PHRASES,
) -> str:
    """``fix`` with the API's calls and keyword arguments written as commands and flags;
    keywords without a flag (spec keys, other calls' arguments) stay as they are."""
    for pattern, words in phrases:
        fix = re.sub(pattern, words, fix)

    def render(match: re.Match[str]) -> str:
        name, value = match.group(1), match.group(2)
        if name not in flags:
            return match.group(0)
        return _flag_words(flags[name], value.strip("'"))

    return _KEYWORD.sub(render, fix)


def cli_error(
    exc: FrugalError,
    flags: Mapping[str, Flag] = FLAGS,
    phrases: Iterable[tuple[str, str]] = PHRASES,
) -> str:
    """The one line the command line prints for ``exc``: its message and its fix in the
    command line's words."""
    if not exc.fix or type(exc).__str__ is not FrugalError.__str__:
        return str(exc)
    return f"{exc.message} (fix: {cli_fix(exc.fix, flags, phrases)})"

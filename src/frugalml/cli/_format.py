"""How the commands write energy and time on the terminal (one way for every command).

``fmt_energy`` and ``fmt_time`` are the compact terminal forms written once in
:mod:`frugalml._format` (beside the report's forms); the help formatters, the console and
the progress bar are the CLI's own.
"""

from __future__ import annotations

import argparse
import math
from typing import TYPE_CHECKING, Any

from frugalml._format import fmt_energy_compact as fmt_energy
from frugalml._format import fmt_time

__all__ = [
    "HelpFormatter",
    "RawHelpFormatter",
    "fmt_energy",
    "fmt_time",
    "progress_bar",
    "progress_line",
    "stderr_console",
    "time_left",
]

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress, TaskID


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """States every option's default in its help, unless the help already says it (or the
    default is None, a False flag or suppressed)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "default" in text or "%(default)" in text:
            return text
        default = action.default
        if default is None or default is False or default == argparse.SUPPRESS:
            return text
        if not action.option_strings:
            return text
        return text + " (default: %(default)s)"


class RawHelpFormatter(argparse.RawDescriptionHelpFormatter, HelpFormatter):
    """:class:`HelpFormatter` that keeps the description's own line breaks."""


def stderr_console() -> Console:
    """Rich's console on stderr. Without a terminal (a log file, CI), lines are never wrapped
    or coloured, so each progress record stays on one line."""
    from rich.console import Console

    console = Console(stderr=True, highlight=False)
    if not console.is_terminal:
        console = Console(stderr=True, highlight=False, soft_wrap=True, no_color=True)
    return console


def progress_bar(console: Console, fields: str, **defaults: str) -> tuple[Progress, TaskID]:
    """A progress bar with elapsed time and time left; ``fields`` is a rich format string
    over ``task.fields``. Disabled without a terminal (then print one line per event,
    see :func:`progress_line`)."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn(fields),
        TimeElapsedColumn(),
        TextColumn("~{task.fields[time_left]} left"),
        console=console,
        transient=False,
        disable=not console.is_terminal,
    )
    fields_now: dict[str, Any] = {"time_left": "?", **defaults}
    task = progress.add_task("", total=None, **fields_now)
    return progress, task


def time_left(done: int, total: int, elapsed_s: float) -> str:
    """``~4.5 min`` from the mean time per finished item so far; ``?`` before the first."""
    if done <= 0 or total <= done or not math.isfinite(elapsed_s):
        return "?" if total > done else "0 s"
    return fmt_time(elapsed_s / done * (total - done))


def progress_line(done: int, total: int | None, text: str, left: str | None = None) -> str:
    """One plain line per event for logs: ``[3/8] text (~1.2 min left)``."""
    count = f"[{done}/{total}] " if total else ""
    return f"{count}{text}" + (f" (~{left} left)" if left and left not in ("?", "0 s") else "")

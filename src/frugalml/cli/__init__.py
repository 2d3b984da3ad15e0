"""The ``frugalml`` command: a thin layer over the library.

Each sub-command lives in its own module with a ``register(subparsers)`` function that adds
its parser and sets ``handler`` (a callable taking the parsed namespace and returning an exit
code). Handlers import heavy libraries lazily so ``frugalml --help`` stays fast.

Only this package prints and exits. A :class:`frugalml.errors.FrugalError` becomes one line
on stderr and exit code 2, its fix in the command line's words (the API keywords it names
written as flags: :mod:`frugalml.cli._hints`); ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import logging
import os
import sys
from collections.abc import Sequence

from frugalml import __version__
from frugalml.errors import FrugalError

#: Modules that contribute sub-commands, in the order they appear in ``--help``.
COMMAND_MODULES: tuple[str, ...] = (
    "frugalml.cli._meter",
    "frugalml.cli._study",
    "frugalml.cli._pepr",
    "frugalml.cli._report",
    "frugalml.cli._tune",
    "frugalml.cli._profile",
    "frugalml.cli._compress",
    "frugalml.cli._models",
    "frugalml.cli._parallel",
    "frugalml.cli._train",
)


#: The fix named for an operating-system error (by errno) that reaches the command line.
_OS_FIXES: dict[int, str] = {
    errno.ENOENT: "check the path (a missing file or folder)",
    errno.EISDIR: "give a file path, not a folder",
    errno.ENOTDIR: "a part of the path is a file, not a folder: check the path",
    errno.EACCES: "check the permissions, or choose a path you can write to",
    errno.EPERM: "check the permissions, or choose a path you can write to",
    errno.ENOSPC: "free some disk space, or write somewhere else",
    errno.EROFS: "the filesystem is read-only: write the output somewhere else",
    errno.EEXIST: "remove it or choose another path",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="frugalml",
        description="Measure, rank, tune and shrink image classifiers by what they really cost.",
        formatter_class=_help_formatter(),
    )
    parser.add_argument("--version", action="version", version=f"frugalml {__version__}")
    parser.add_argument(
        "--debug", action="store_true", help="show full tracebacks and debug logging"
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).register(subparsers)
    _state_defaults(parser)
    return parser


def _help_formatter() -> type[argparse.HelpFormatter]:
    from frugalml.cli._format import HelpFormatter

    return HelpFormatter


def _state_defaults(parser: argparse.ArgumentParser) -> None:
    """Every command's help states its options' defaults (:class:`HelpFormatter`), for the
    sub-commands of every module, nested ones included."""
    from frugalml.cli._format import HelpFormatter, RawHelpFormatter

    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                if sub.formatter_class is argparse.HelpFormatter:
                    sub.formatter_class = HelpFormatter
                elif sub.formatter_class is argparse.RawDescriptionHelpFormatter:
                    sub.formatter_class = RawHelpFormatter
                _state_defaults(sub)


def _configure_logging(debug: bool, quiet: bool) -> None:
    level = logging.DEBUG if debug else logging.WARNING if quiet else logging.INFO
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("frugalml: %(message)s"))
    root = logging.getLogger("frugalml")
    root.handlers[:] = [h for h in root.handlers if isinstance(h, logging.NullHandler)]
    root.addHandler(handler)
    root.setLevel(level)
    root.propagate = False


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``frugalml`` console script. Returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "handler", None) is None:
        parser.print_help(sys.stderr)
        return 2
    _configure_logging(args.debug, args.quiet)
    try:
        code = args.handler(args)
    except FrugalError as exc:
        if args.debug:
            raise
        print(f"frugalml: error: {_error_line(exc, args)}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        if args.debug:
            raise
        print("frugalml: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # the reader went away (``frugalml models | head``): not an error of ours
        sys.stderr = open(os.devnull, "w")  # noqa: SIM115 (silences the flush at exit)
        return 0
    except OSError as exc:
        # Permission denied, disk full, missing file: name it, no traceback.
        if args.debug:
            raise
        where = f": {exc.filename}" if getattr(exc, "filename", None) else ""
        fix = _OS_FIXES.get(exc.errno or 0, "check the path, its permissions and the free space")
        print(f"frugalml: error: {exc.strerror or exc}{where} (fix: {fix})", file=sys.stderr)
        return 2
    return int(code or 0)


def _error_line(exc: FrugalError, args: argparse.Namespace) -> str:
    """``exc`` in the command line's words: its fix's API keywords as this command's flags
    (:mod:`frugalml.cli._hints`, with the command's own ``fix_flags``/``fix_phrases``)."""
    from frugalml.cli._hints import FLAGS, PHRASES, cli_error

    flags = {**FLAGS, **getattr(args, "fix_flags", {})}
    phrases = (*getattr(args, "fix_phrases", ()), *PHRASES)
    return cli_error(exc, flags, phrases)


def run() -> None:
    sys.exit(main())


if __name__ == "__main__":
    run()

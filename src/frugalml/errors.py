"""The exceptions frugalml raises for problems a user can fix.

Every error carries a message that names the problem and, where one exists, the fix.
The command line turns a :class:`FrugalError` into one line on stderr and a non-zero exit
(a traceback only with ``--debug``); library callers can catch the sub-classes.

A fix speaks the API, not the command line: it names a keyword argument as ``name=value``
(``threads=1``, ``out_dir=DIR``, ``add=True``) and a spec key as ``key: value``. The command
line writes the keywords it has flags for as those flags (``--threads 1``, ``--out DIR``,
``--add``; :mod:`frugalml.cli._hints`), so each reader sees what they can type.
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "DataError",
    "FrugalError",
    "MeterError",
    "ModelError",
    "StoreError",
]


class FrugalError(Exception):
    """Base class: a problem with a clear message and, ideally, a fix."""

    exit_code: int = 2

    def __init__(self, message: str, *, fix: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.fix = fix

    def __str__(self) -> str:
        if self.fix:
            return f"{self.message} (fix: {self.fix})"
        return self.message


class ConfigError(FrugalError, ValueError):
    """A malformed spec, option or value out of range."""


class DataError(FrugalError):
    """A dataset that cannot be found, read or validated."""


class ModelError(FrugalError):
    """An unknown model or preset, or weights that cannot be loaded."""


class MeterError(FrugalError):
    """A measurement that cannot be taken as the user asked."""


class StoreError(FrugalError):
    """A study store that is missing, corrupt or of an incompatible version."""

"""Lazy imports of the optional libraries the integrations adapt to."""

from __future__ import annotations

import importlib
from types import ModuleType

from frugalml.errors import ConfigError

__all__ = ["require"]


def require(module: str, extra: str) -> ModuleType:
    """Import ``module`` or raise a one-line :class:`ConfigError` naming the extra."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ConfigError(
            f"{module} is not installed ({exc})",
            fix=f"pip install 'frugalml[{extra}]'",
        ) from exc

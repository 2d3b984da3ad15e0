"""The tiny study spec the study, executor, Ray and CLI tests write (one copy for all)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

TINY = {"name": "frugal_cnn", "args": {"conv_layers": 1, "width": 4}}

BASE: dict[str, Any] = {
    "name": "t",
    "datasets": ["digits"],
    "models": [TINY],
    "pretrained": [False],
    "fractions": [1.0, 0.2],
    "seeds": [0],
    "training": {"epochs": 1, "batch_size": 64},
}


def write_spec(tmp_path: Path, **changes: Any) -> Path:
    """``tmp_path/spec.yaml`` holding :data:`BASE` with ``changes`` applied (top-level keys)."""
    data = {**BASE, **changes}
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(data))
    return path

"""Every registered dataset scheme and built-in model passes its ``frugalml.testing``
contract (a scheme or model added to a registry is tested without editing this file)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from frugalml.data import DatasetScheme
from frugalml.testing import BuiltinModelContract, DatasetSchemeContract


class TestDatasetSchemes(DatasetSchemeContract):
    def loadable_name(self, scheme: DatasetScheme, request: pytest.FixtureRequest) -> str | None:
        if scheme.scheme == "digits":
            return "digits"
        if scheme.scheme == "folder":
            from PIL import Image

            root: Path = request.getfixturevalue("tmp_path") / "tree"
            rng = np.random.default_rng(0)
            for label in ("cat", "dog"):
                (root / label).mkdir(parents=True)
                for i in range(10):
                    pixels = rng.integers(0, 256, (12, 12), dtype=np.uint8)
                    Image.fromarray(pixels).save(root / label / f"{i}.png")
            return f"folder:{root}"
        return None  # medmnist: no files offline


class TestBuiltinModels(BuiltinModelContract):
    pass

"""The HTML report as a browser renders it: headless Chromium loads the page offline.

Needs Debian's ``chromium`` package (``/usr/bin/chromium`` or ``chromium`` on PATH); the
test skips, saying so, where it is absent.
"""

from __future__ import annotations

import base64
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from frugalml.report import build_report
from test_report import PNG_MAGIC, hand_results


def _chromium() -> str | None:
    if os.access("/usr/bin/chromium", os.X_OK):
        return "/usr/bin/chromium"
    return shutil.which("chromium")


CHROMIUM = _chromium()

_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


def _run(args: list[str], profile: Path) -> subprocess.CompletedProcess[str]:
    assert CHROMIUM is not None
    return subprocess.run(
        [CHROMIUM, *_FLAGS, f"--user-data-dir={profile}", *args],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )


@pytest.mark.browser
@pytest.mark.skipif(
    CHROMIUM is None, reason="headless Chromium not installed (apt install chromium)"
)
def test_chromium_renders_the_report_with_its_images(tmp_path: Path) -> None:
    report = build_report(hand_results(), tmp_path / "report")
    url = report.html_path.resolve().as_uri()

    dom = _run(["--dump-dom", url], tmp_path / "profile-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    html = dom.stdout
    assert "Setting 1: digits, from scratch, 100% of the training data" in html
    assert "<table" in html and "Best PePR-E: a" in html
    images = re.findall(r'<img src="data:image/png;base64,([^"]+)"', html)
    assert len(images) == len(report.png_paths) == 3
    for data in images:
        assert base64.b64decode(data).startswith(PNG_MAGIC)
    assert "<script" not in html

    shot = tmp_path / "shot.png"
    result = _run(["--window-size=1200,2400", f"--screenshot={shot}", url], tmp_path / "profile")
    assert result.returncode == 0, result.stderr[-2000:]
    _assert_not_blank(shot)


def _assert_not_blank(path: Path) -> None:
    """The screenshot has text and plots: many distinct colours, not one flat page."""
    from matplotlib.image import imread

    pixels = imread(str(path))
    assert pixels.shape[0] >= 2000 and pixels.shape[1] >= 1000
    rgb = (pixels[..., :3] * 255).astype("uint8").reshape(-1, 3)
    assert len({tuple(p) for p in rgb[::97]}) > 50
    dark = (rgb.sum(axis=1) < 200).mean()  # text and axes
    assert 0.001 < dark < 0.5

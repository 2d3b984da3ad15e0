"""Energy and time formatting is written once (frugalml._format): the report's form and the
terminal's compact form, with hand-worked values."""

from __future__ import annotations

import math

import pytest

from frugalml import _format
from frugalml.cli import _format as cli_format
from frugalml.report import _format as report_format


def test_both_callers_use_the_one_module() -> None:
    assert cli_format.fmt_energy is _format.fmt_energy_compact
    assert cli_format.fmt_time is _format.fmt_time
    assert report_format.fmt_energy is _format.fmt_energy
    assert report_format.fmt_duration is _format.fmt_duration


@pytest.mark.parametrize(
    ("joules", "text"),
    [
        (178.0, "178 J (0.0494 Wh)"),  # 178 / 3600 = 0.04944
        (12_345.0, "12,345 J (3.43 Wh)"),  # whole joules are never rounded away
        (7.2e6, "7,200,000 J (2.00 kWh)"),  # 2,000 Wh
        (math.nan, "n/a"),
    ],
)
def test_report_energy(joules: float, text: str) -> None:
    assert _format.fmt_energy(joules) == text


@pytest.mark.parametrize(
    ("joules", "text"),
    [
        (0.00042, "0.42 mJ"),
        (12.34, "12.3 J"),
        (2480.0, "2,480 J"),
        (5076.0, "1.41 Wh"),  # 5,076 / 3,600
        (442_800.0, "0.123 kWh"),  # 0.1 kWh and up
        (None, "?"),
        (math.inf, "?"),
    ],
)
def test_terminal_energy(joules: float | None, text: str) -> None:
    assert _format.fmt_energy_compact(joules) == text


@pytest.mark.parametrize(
    ("seconds", "report", "terminal"),
    [(16.44, "16.4 s", "16.4 s"), (90.0, "90.0 s", "1.5 min"), (750.0, "12.5 min", "12.5 min")],
)
def test_times(seconds: float, report: str, terminal: str) -> None:
    assert _format.fmt_duration(seconds) == report
    assert _format.fmt_time(seconds) == terminal

"""Where a report's input comes from: a study directory or a results CSV.

- :func:`load_study`: the results table of a study directory plus the provenance notes of
  its energy and carbon figures (the estimate's assumptions, the carbon intensity's
  source), which the results table itself does not carry.
- :func:`read_results_csv`: a table written by ``frugalml study export`` (or any CSV with
  at least ``model``, ``accuracy`` and ``energy_j``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from frugalml.analysis._table import read_csv_table
from frugalml.errors import DataError, StoreError
from frugalml.report._format import plain_text

__all__ = ["StudyInput", "energy_notes", "load_study", "read_results_csv"]

#: The key under which :func:`energy_notes` keeps the carbon intensity's sources.
CARBON_KEY = "carbon intensity"


@dataclass(frozen=True)
class StudyInput:
    """A study's results table and the notes on where its energy figures came from."""

    results: pd.DataFrame
    energy_notes: dict[str, list[str]]


def load_study(study_dir: str | Path) -> StudyInput:
    """Read a study directory (the ``--out`` of ``frugalml study run``).

    Raises:
        StoreError: no study store in ``study_dir`` (with a hint when it is a CSV file),
            or a store that cannot be read.
    """
    from frugalml.study import StudyStore, load_results

    path = Path(study_dir)
    if path.is_file() and path.suffix.lower() == ".csv":
        raise StoreError(
            f"{path} is a CSV file, not a study directory",
            fix=f"report on a CSV with read_results_csv('{path}')",
        )
    results = load_results(path)
    with StudyStore(path, create=False, read_only=True) as store:
        measurements = [(t.result or {}).get("measurement") for t in store.trials()]
    return StudyInput(results=results, energy_notes=energy_notes(measurements))


def energy_notes(measurements: list[Any]) -> dict[str, list[str]]:
    """The distinct notes of a list of measurement dicts (``Measurement.to_dict()``).

    Keys are ``component=source`` as in the ``energy_source`` column (e.g.
    ``cpu=estimate:tdp*utilisation``) and :data:`CARBON_KEY`; values the distinct notes, in
    order of first appearance (the device first). Entries that are not measurement dicts
    are skipped.
    """
    notes: dict[str, dict[str, None]] = {}
    for measurement in measurements:
        if not isinstance(measurement, dict):
            continue
        for component in measurement.get("components") or []:
            if not isinstance(component, dict):
                continue
            key = f"{plain_text(component.get('component'))}={plain_text(component.get('source'))}"
            entry = notes.setdefault(key, {})
            device = plain_text(component.get("device"))
            if device:
                entry.setdefault(f"device: {device}", None)
            for note in component.get("notes") or []:
                entry.setdefault(plain_text(note), None)
        source = plain_text(measurement.get("intensity_source"))
        if source:
            notes.setdefault(CARBON_KEY, {}).setdefault(source, None)
    return {key: list(values) for key, values in notes.items()}


def read_results_csv(path: str | Path) -> pd.DataFrame:
    """Read a results CSV (one row per trial) for :func:`frugalml.report.build_report`.

    Raises:
        DataError: the file is missing, empty, not a CSV or not UTF-8.
    """
    source = Path(path)
    if source.is_dir():
        raise DataError(
            f"{source} is a directory, not a CSV file",
            fix=f"report on a study directory with 'frugalml report {source}'",
        )
    return read_csv_table(source, row_noun="trial")

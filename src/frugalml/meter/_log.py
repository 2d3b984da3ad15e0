"""An append-only CSV log of measurements, one row per run, close to CodeCarbon's
``emissions.csv``.

Columns (:data:`LOG_COLUMNS`), units in the names:

- CodeCarbon's habits: ``timestamp`` (ISO-8601 UTC, when the row was written),
  ``project``, ``run_id``, ``duration_s``, ``energy_kwh`` (CodeCarbon's
  ``energy_consumed``), ``co2_g`` (CodeCarbon's ``emissions`` is in kg; here grams),
  ``cpu_energy_kwh``, ``gpu_energy_kwh``, ``ram_energy_kwh``, ``country_iso_code``,
  ``pue``, ``os``, ``python_version``, ``hostname``.
- frugalml's provenance: ``name`` (the window or command), ``started_at``, ``energy_j``,
  ``measured_energy_j``, ``estimated_energy_j``, ``provenance`` (``measured`` /
  ``estimated`` / ``mixed``), ``energy_source`` (each component's counter or model),
  ``intensity_g_per_kwh``, ``intensity_source``, ``cpu_time_s``, ``peak_rss_bytes``,
  ``peak_gpu_mem_bytes``, ``error``, ``frugalml_version``.

Writers on one machine may append at the same time: each row is written with one
``write`` under an exclusive ``fcntl.flock`` on the file, the header only by the writer that
finds the file empty, so no row is lost or torn. A file whose header is not this layout is
refused (nothing is written to it). A last line left without its newline (a writer killed
mid-row on a filesystem without locks) is ended before the next row.
"""

from __future__ import annotations

import csv
import io
import os
import platform
import socket
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from frugalml.errors import ConfigError
from frugalml.meter._types import J_PER_KWH, Measurement

__all__ = ["LOG_COLUMNS", "append_log", "check_log", "log_row", "read_log"]

LOG_COLUMNS: tuple[str, ...] = (
    "timestamp",
    "project",
    "run_id",
    "name",
    "started_at",
    "duration_s",
    "energy_kwh",
    "energy_j",
    "co2_g",
    "cpu_energy_kwh",
    "gpu_energy_kwh",
    "ram_energy_kwh",
    "measured_energy_j",
    "estimated_energy_j",
    "provenance",
    "energy_source",
    "country_iso_code",
    "intensity_g_per_kwh",
    "intensity_source",
    "pue",
    "cpu_time_s",
    "peak_rss_bytes",
    "peak_gpu_mem_bytes",
    "error",
    "hostname",
    "os",
    "python_version",
    "frugalml_version",
)

_J_PER_KWH = J_PER_KWH


def _kwh(m: Measurement, *prefixes: str) -> float:
    return sum(c.energy_j for c in m.components if c.component.startswith(prefixes)) / _J_PER_KWH


def log_row(
    measurement: Measurement,
    *,
    project: str = "frugalml",
    country: str | None = None,
    run_id: str | None = None,
) -> dict[str, str]:
    """The log row for ``measurement`` (every value as the text written to the file)."""
    from frugalml import __version__

    m = measurement
    values: dict[str, Any] = {
        "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "project": project,
        "run_id": run_id or str(uuid.uuid4()),
        "name": m.name,
        "started_at": m.started_at,
        "duration_s": m.duration_s,
        "energy_kwh": m.energy_kwh,
        "energy_j": m.energy_j,
        "co2_g": m.co2_g,
        "cpu_energy_kwh": _kwh(m, "cpu", "package", "psys"),
        "gpu_energy_kwh": _kwh(m, "gpu"),
        "ram_energy_kwh": _kwh(m, "dram", "ram"),
        "measured_energy_j": m.measured_energy_j,
        "estimated_energy_j": m.estimated_energy_j,
        "provenance": m.provenance,
        "energy_source": m.energy_source,
        "country_iso_code": country or "",
        "intensity_g_per_kwh": m.intensity_g_per_kwh,
        "intensity_source": m.intensity_source,
        "pue": m.pue,
        "cpu_time_s": m.cpu_time_s,
        "peak_rss_bytes": "" if m.peak_rss_bytes is None else m.peak_rss_bytes,
        "peak_gpu_mem_bytes": "" if m.peak_gpu_mem_bytes is None else m.peak_gpu_mem_bytes,
        "error": m.error or "",
        "hostname": socket.gethostname(),
        "os": platform.platform(),
        "python_version": platform.python_version(),
        "frugalml_version": __version__,
    }
    return {k: (repr(v) if isinstance(v, float) else str(v)) for k, v in values.items()}


def _line(fields: Mapping[str, str] | tuple[str, ...]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(list(fields.values()) if isinstance(fields, Mapping) else list(fields))
    return buffer.getvalue()


@contextmanager
def _locked(path: Path) -> Iterator[int]:
    import fcntl

    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield fd
    finally:
        os.close(fd)  # closing releases the lock


def _check_header(fd: int, path: Path) -> bool:
    """True when the file is empty; a :class:`ConfigError` unless its first line is the
    header of :data:`LOG_COLUMNS`."""
    size = os.fstat(fd).st_size
    if size == 0:
        return True
    head = os.pread(fd, min(size, 8192), 0).decode("utf-8", errors="replace")
    first = head.split("\n", 1)[0].rstrip("\r")
    if first != _line(LOG_COLUMNS).rstrip("\n"):
        raise ConfigError(
            f"{path} is not a frugalml measurement log (its first line is not the header "
            f"{','.join(LOG_COLUMNS[:4])},...)",
            fix="log to a new file, or move this one away; nothing was written to it",
        )
    return False


def append_log(
    path: str | os.PathLike[str],
    measurement: Measurement,
    *,
    project: str = "frugalml",
    country: str | None = None,
    run_id: str | None = None,
) -> dict[str, str]:
    """Append ``measurement`` as one row to the CSV log at ``path`` (see the module doc);
    return the row. Parent folders are created."""
    if not isinstance(measurement, Measurement):
        raise ConfigError(
            f"append_log needs a Measurement, not {type(measurement).__name__}",
            fix="pass a window's measurement, e.g. meter.measurements[-1]",
        )
    target = Path(path)
    row = log_row(measurement, project=project, country=country, run_id=run_id)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with _locked(target) as fd:
            empty = _check_header(fd, target)
            text = _line(LOG_COLUMNS) if empty else ""
            size = os.fstat(fd).st_size
            if size and os.pread(fd, 1, size - 1) != b"\n":
                text += "\n"
            text += _line(row)
            data = text.encode("utf-8")
            written = os.write(fd, data)
            if written != len(data):
                raise OSError(f"short write ({written} of {len(data)} bytes)")
    except IsADirectoryError as exc:
        raise ConfigError(f"{target} is a directory", fix="give a CSV file path") from exc
    except OSError as exc:
        raise ConfigError(
            f"cannot append to the measurement log {target}: {exc.strerror or exc}",
            fix="check the path and its permissions",
        ) from exc
    return row


def check_log(path: str | os.PathLike[str]) -> None:
    """Raise :class:`ConfigError` unless ``path`` is absent, empty or a log of this layout
    (to refuse a wrong file before the work it would record)."""
    target = Path(path)
    if target.is_dir():
        raise ConfigError(f"{target} is a directory", fix="give a CSV file path")
    if not target.exists():
        return
    try:
        fd = os.open(target, os.O_RDONLY)
    except OSError as exc:
        raise ConfigError(
            f"cannot read the measurement log {target}: {exc.strerror or exc}",
            fix="check the path and its permissions",
        ) from exc
    try:
        _check_header(fd, target)
    finally:
        os.close(fd)


def read_log(path: str | os.PathLike[str]) -> list[dict[str, str]]:
    """The rows of a measurement log (header checked), as text."""
    target = Path(path)
    try:
        text = target.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            f"cannot read the measurement log {target}: {exc.strerror or exc}",
            fix="check the path",
        ) from exc
    reader = csv.DictReader(io.StringIO(text))
    if tuple(reader.fieldnames or ()) != LOG_COLUMNS:
        raise ConfigError(
            f"{target} is not a frugalml measurement log (unexpected header)",
            fix="pass a file written by append_log",
        )
    return list(reader)

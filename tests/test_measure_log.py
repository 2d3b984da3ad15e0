"""The CSV measurement log: layout, concurrent writers, refusals, ``measure --log``, and the
total of a ``with Meter()`` block that opened no windows."""

from __future__ import annotations

import csv
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from frugalml.cli import main
from frugalml.errors import ConfigError
from frugalml.meter import (
    LOG_COLUMNS,
    ComponentEnergy,
    Measurement,
    Meter,
    MeterConfig,
    append_log,
    read_log,
)

PY = sys.executable


def _m(name: str = "run") -> Measurement:
    parts = (
        ComponentEnergy("gpu:0", 7200.0, "nvml:total_energy_counter", "measured"),
        ComponentEnergy("cpu:0", 3600.0, "rapl:package", "measured"),
        ComponentEnergy("dram", 1800.0, "estimate:rss*w_per_gb", "estimated"),
    )
    return Measurement(
        name=name,
        started_at="2026-01-01T00:00:00+00:00",
        duration_s=12.5,
        cpu_time_s=3.0,
        energy_j=12600.0,
        components=parts,
        co2_g=12600.0 / 3.6e6 * 200.0,
        intensity_g_per_kwh=200.0,
        intensity_source="test table",
        pue=1.0,
        peak_rss_bytes=1024,
    )


def test_one_row_per_call_in_the_documented_layout(tmp_path: Path) -> None:
    log = tmp_path / "sub" / "emissions.csv"
    append_log(log, _m("first"), project="demo", country="DK")
    append_log(log, _m("second"), project="demo")
    lines = log.read_text().splitlines()
    assert lines[0] == ",".join(LOG_COLUMNS) and len(lines) == 3
    first, second = read_log(log)
    assert first["name"] == "first" and second["name"] == "second"
    assert first["project"] == "demo" and first["country_iso_code"] == "DK"
    assert float(first["energy_kwh"]) == pytest.approx(0.0035)  # 12600 J
    assert float(first["co2_g"]) == pytest.approx(0.7)  # 0.0035 kWh x 200 g/kWh
    assert float(first["gpu_energy_kwh"]) == pytest.approx(0.002)
    assert float(first["cpu_energy_kwh"]) == pytest.approx(0.001)
    assert float(first["ram_energy_kwh"]) == pytest.approx(0.0005)
    assert float(first["measured_energy_j"]) == 10800.0
    assert first["provenance"] == "mixed"
    assert first["energy_source"].startswith("gpu:0=nvml:total_energy_counter")
    assert first["peak_gpu_mem_bytes"] == "" and first["peak_rss_bytes"] == "1024"
    assert first["run_id"] != second["run_id"]


_WRITER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from frugalml.meter import ComponentEnergy, Measurement, append_log
    log, who, go = sys.argv[1], sys.argv[2], Path(sys.argv[3])
    part = ComponentEnergy("cpu", 1.0, "estimate:tdp*utilisation", "estimated",
                           notes=("x" * 3000,))
    while not go.exists():
        time.sleep(0.005)
    for i in range(150):
        m = Measurement(name=f"{who}-{i}", started_at="t", duration_s=1.0, cpu_time_s=1.0,
                        energy_j=1.0, components=(part,), co2_g=0.0,
                        intensity_g_per_kwh=0.0, intensity_source="s" * 5000, pue=1.0)
        append_log(log, m, project=who)
    """
)


def test_two_concurrent_writers_lose_and_tear_no_rows(tmp_path: Path) -> None:
    log, go = tmp_path / "log.csv", tmp_path / "go"
    writers = [subprocess.Popen([PY, "-c", _WRITER, str(log), who, str(go)]) for who in ("a", "b")]
    go.touch()
    assert [w.wait(timeout=120) for w in writers] == [0, 0]
    with log.open(newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == list(LOG_COLUMNS)
    body = rows[1:]
    assert len(body) == 300  # one header, every row of both writers
    assert all(len(row) == len(LOG_COLUMNS) for row in body)
    names = [row[LOG_COLUMNS.index("name")] for row in body]
    for who in ("a", "b"):
        assert [n for n in names if n.startswith(who)] == [f"{who}-{i}" for i in range(150)]
    assert all(row[LOG_COLUMNS.index("intensity_source")] == "s" * 5000 for row in body)


_WAITER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from frugalml.meter import ComponentEnergy, Measurement, append_log
    part = ComponentEnergy("cpu", 1.0, "estimate:tdp*utilisation", "estimated")
    m = Measurement(name="late", started_at="t", duration_s=1.0, cpu_time_s=1.0, energy_j=1.0,
                    components=(part,), co2_g=0.0, intensity_g_per_kwh=0.0,
                    intensity_source="s", pue=1.0)
    Path(sys.argv[2]).touch()
    append_log(sys.argv[1], m)
    """
)


def test_a_writer_waits_for_the_lock_another_holds(tmp_path: Path) -> None:
    import fcntl
    import time

    log, ready = tmp_path / "log.csv", tmp_path / "ready"
    with log.open("a") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)
        writer = subprocess.Popen([PY, "-c", _WAITER, str(log), str(ready)])
        while not ready.exists() and writer.poll() is None:
            time.sleep(0.01)
        time.sleep(0.5)  # ample time to write, were the lock not respected
        assert log.read_text() == "" and writer.poll() is None
    assert writer.wait(timeout=60) == 0  # the lock is gone with the file: it writes
    (row,) = read_log(log)
    assert row["name"] == "late"


def test_a_file_of_another_layout_is_refused_untouched(tmp_path: Path) -> None:
    other = tmp_path / "emissions.csv"
    other.write_text("timestamp,project_name,run_id\n1,2,3\n")
    with pytest.raises(ConfigError, match="not a frugalml measurement log"):
        append_log(other, _m())
    assert other.read_text() == "timestamp,project_name,run_id\n1,2,3\n"
    with pytest.raises(ConfigError, match="is a directory"):
        append_log(tmp_path, _m())


def test_a_torn_last_line_is_ended_before_the_next_row(tmp_path: Path) -> None:
    log = tmp_path / "log.csv"
    append_log(log, _m("kept"))
    with log.open("a") as handle:
        handle.write("2026-01-01,torn")  # a writer killed mid-row, no newline
    append_log(log, _m("next"))
    lines = log.read_text().splitlines()
    assert lines[2] == "2026-01-01,torn" and ",next," in lines[3]


def test_measure_log_appends_a_row_per_run(tmp_path: Path, meter_no_powercap: Path) -> None:
    log = tmp_path / "runs.csv"
    args = ["measure", "--gpus", "none", "--country", "DK", "--log", str(log)]
    assert main([*args, "--project", "p1", "--", PY, "-c", "pass"]) == 0
    assert main([*args, "--", PY, "-c", "import sys; sys.exit(3)"]) == 3
    first, second = read_log(log)
    assert first["project"] == "p1" and second["project"] == "frugalml"
    assert first["country_iso_code"] == "DK"
    assert first["provenance"] == "estimated" and float(first["energy_j"]) > 0
    assert first["error"] == "" and second["error"] == "exit code 3"


def test_measure_log_refuses_a_wrong_file_before_running(
    tmp_path: Path, meter_no_powercap: Path
) -> None:
    other = tmp_path / "other.csv"
    other.write_text("a,b\n")
    marker = tmp_path / "ran"
    code = main(["measure", "--log", str(other), "--", PY, "-c", f"open({str(marker)!r}, 'w')"])
    assert code == 2 and not marker.exists() and other.read_text() == "a,b\n"


def test_a_meter_block_without_windows_records_its_total(meter_no_powercap: Path) -> None:
    with Meter(MeterConfig(gpus="none")) as meter:
        sum(i * i for i in range(300_000))
    (total,) = meter.measurements
    assert total.name == "total" and total.parent is None
    assert total.energy_j > 0 and total.provenance == "estimated"
    assert total.duration_s > 0 and (total.peak_rss_bytes or 0) > 0
    with Meter(MeterConfig(gpus="none")) as windows, windows.window("only"):
        pass
    assert [m.name for m in windows.measurements] == ["only"]  # no total beside windows

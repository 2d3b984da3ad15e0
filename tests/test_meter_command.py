"""``frugalml measure`` / ``measure_command`` and ``frugalml env`` on this machine, for real:
real child processes, real exit codes and signals, the estimate as it runs here."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from frugalml.cli import main
from frugalml.meter import Measurement, MeterConfig, measure_command

PY = sys.executable
BUSY_1S = "import time\nend = time.process_time() + 1.0\nwhile time.process_time() < end: pass"


def test_measure_busy_loop_through_the_cli(
    tmp_path: Path,
    meter_no_powercap: Path,
    meter_cli_logging: None,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "missing" / "dir" / "m.json"
    started = time.monotonic()
    code = main(["measure", "--json", str(out), "--country", "DE", "--", PY, "-c", BUSY_1S])
    outer_s = time.monotonic() - started
    assert code == 0
    m = Measurement.from_json(out.read_text())
    # Wall time agrees with an independent clock around the call.
    assert 1.0 <= m.duration_s <= outer_s
    assert outer_s - m.duration_s < 1.0
    assert 0.95 <= m.cpu_time_s <= m.duration_s + 0.2
    cpu = next(c for c in m.components if c.component == "cpu")
    assert cpu.kind == "estimated" and cpu.energy_j > 0
    assert m.provenance == "estimated" and m.energy_j >= cpu.energy_j
    assert m.intensity_source.startswith("Germany")
    assert m.co2_g == pytest.approx(m.energy_kwh * m.intensity_g_per_kwh * m.pue)
    assert m.peak_rss_bytes is not None and m.peak_rss_bytes > 1_000_000
    err = capsys.readouterr().err
    assert "estimated" in err and "CPU time" in err and "CO2" in err
    # The machine's state travels with the record and is printed.
    assert m.logical_cpus == os.cpu_count()
    assert m.peak_load_avg_1m is not None and m.peak_load_avg_1m >= 0
    assert f"peak 1-min load average on {os.cpu_count()} logical CPUs" in err
    assert m.oversubscribed == any("inflated by contention" in n for n in m.notes)


def test_exit_code_is_propagated(meter_no_powercap: Path) -> None:
    result = measure_command([PY, "-c", "import sys; sys.exit(3)"], MeterConfig(gpus="none"))
    assert result.returncode == 3
    assert result.measurement is not None and result.measurement.error == "exit code 3"


def test_missing_command_is_127(
    meter_no_powercap: Path, meter_cli_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["measure", "--", "frugalml-no-such-command-xyz"]) == 127
    assert "cannot run 'frugalml-no-such-command-xyz'" in capsys.readouterr().err
    result = measure_command(["frugalml-no-such-command-xyz"])
    assert result.returncode == 127 and result.measurement is None


def test_killed_by_signal_is_128_plus_n(meter_no_powercap: Path) -> None:
    code = "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"
    result = measure_command([PY, "-c", code], MeterConfig(gpus="none"))
    assert result.returncode == 128 + 9
    assert result.measurement is not None and result.measurement.error == "killed by SIGKILL"


def test_sigterm_is_forwarded_to_the_command(tmp_path: Path) -> None:
    child = (
        "import signal, sys, time\n"
        "signal.signal(signal.SIGTERM, lambda *a: sys.exit(5))\n"
        "print('ready', flush=True)\n"
        "time.sleep(60)\n"
    )
    env = {**os.environ, "FRUGALML_POWERCAP_ROOT": str(tmp_path / "none")}
    proc = subprocess.Popen(
        [PY, "-m", "frugalml", "measure", "--", PY, "-c", child],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,  # no terminal: SIGINT/SIGTERM only arrive through frugalml
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 5, err
    assert "exit code 5" in err and "duration" in err


def test_unwritable_json_path_still_prints_and_fails(
    tmp_path: Path,
    meter_no_powercap: Path,
    meter_cli_logging: None,
    capsys: pytest.CaptureFixture[str],
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    code = main(["measure", "--json", str(blocker / "m.json"), "--", PY, "-c", "pass"])
    assert code != 0
    err = capsys.readouterr().err
    assert "duration" in err  # the summary
    assert f"cannot write the measurement to {blocker / 'm.json'}" in err
    saved = err[err.index("{") :]
    assert Measurement.from_json(saved).name.endswith("-c pass")  # nothing lost


def test_measure_needs_a_command(
    meter_no_powercap: Path, meter_cli_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["measure", "--"]) == 2
    assert "no command" in capsys.readouterr().err


def test_bad_options_are_config_errors(
    meter_no_powercap: Path, meter_cli_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["measure", "--pue", "0.5", "--", PY, "-c", "pass"]) == 2
    assert "PUE" in capsys.readouterr().err
    assert main(["measure", "--country", "XX", "--", PY, "-c", "pass"]) == 2
    assert "unknown country code 'XX'" in capsys.readouterr().err


def test_env_json(
    meter_no_powercap: Path,
    meter_cli_logging: None,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("FRUGALML_PUE", "1.3")
    assert main(["env", "--json", "--country", "FR"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["pue"] == 1.3 and "FRUGALML_PUE" in report["pue_source"]
    assert report["country"] == "FR"
    sources = {c["source"]: c for c in report["counters"]}
    assert set(sources) == {"nvml", "rapl"}
    assert not sources["rapl"]["readable"] and "no powercap" in sources["rapl"]["reason"]
    assert report["estimated"] == ["cpu", "dram"]
    assert any("TDP" in e for e in report["estimates"])
    assert report["logical_cpus"] >= 1 and report["cpu_model"]


def test_env_text_names_estimates_and_fixes(
    tmp_path: Path,
    meter_cli_logging: None,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from frugalml.meter import _rapl

    root = tmp_path / "powercap" / "intel-rapl:0"
    root.mkdir(parents=True)
    (root / "name").write_text("package-0\n")
    (root / "energy_uj").write_text("1\n")
    monkeypatch.setenv("FRUGALML_POWERCAP_ROOT", str(root.parent))
    real = _rapl.read_sysfs

    def denied(path: Path) -> str:
        if path.name == "energy_uj":
            raise PermissionError(13, "Permission denied", str(path))
        return real(path)

    monkeypatch.setattr(_rapl, "read_sysfs", denied)
    assert main(["env", "--cpu-tdp-w", "65"]) == 0
    out = capsys.readouterr().out
    assert "NOT readable" in out and "chmod o+r" in out
    assert "estimated     cpu, dram" in out
    assert "65 W TDP" in out and "user setting" in out
    assert "gCO2e/kWh" in out and "PUE" in out

"""``frugalml env`` and ``frugalml measure``: what can be measured here, and measuring a
command."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from frugalml.meter import EnvironmentReport, Measurement, MeterConfig


def register(subparsers: Any) -> None:
    env = subparsers.add_parser(
        "env",
        help="which energy counters are readable here, and what would be estimated",
        description=(
            "Show which energy counters (NVML for GPUs, RAPL for CPU and DRAM) are readable "
            "here and why not, the CPU and GPU models, the carbon intensity and PUE in force, "
            "and the assumptions of every estimate the meter would fall back on."
        ),
    )
    env.add_argument("--json", action="store_true", help="print the report as JSON")
    _add_carbon_options(env)
    env.set_defaults(handler=run_env)

    measure = subparsers.add_parser(
        "measure",
        help="run a command and measure its energy, CO2, time and memory",
        description=(
            "Run CMD (no shell), pass its output through, then print a summary to stderr: "
            "duration, CPU time, energy per component (measured or estimated, and from "
            "what), CO2 and peak memory. Exits with CMD's exit code (128+N if a signal N "
            "killed it, 127 if it cannot be started)."
        ),
        usage="frugalml measure [options] -- CMD [ARGS...]",
    )
    measure.add_argument(
        "--json",
        metavar="PATH",
        type=Path,
        help="also write the measurement as JSON to PATH (parent folders are created)",
    )
    measure.add_argument(
        "--log",
        metavar="FILE.csv",
        type=Path,
        help="also append one row to the CSV log FILE.csv (CodeCarbon-like layout: "
        "timestamp, project, duration_s, energy_kwh, co2_g, country_iso_code, provenance, ...)",
    )
    measure.add_argument(
        "--project", default="frugalml", help="the project column of --log (default frugalml)"
    )
    _add_carbon_options(measure)
    measure.add_argument("cmd", nargs=argparse.REMAINDER, help="the command and its arguments")
    measure.set_defaults(handler=run_measure)


def _add_carbon_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--intensity",
        metavar="G_PER_KWH",
        type=float,
        help="carbon intensity of the electricity in gCO2e/kWh (overrides --country)",
    )
    parser.add_argument(
        "--country",
        metavar="CODE",
        help="ISO 3166-1 country code (alpha-2 or alpha-3) for the offline intensity table",
    )
    parser.add_argument(
        "--pue", metavar="X", type=float, help="power usage effectiveness (>= 1, default 1.0)"
    )
    parser.add_argument(
        "--cpu-tdp-w",
        metavar="W",
        type=float,
        help="CPU TDP in watts for the CPU estimate (default: table or stated fallback)",
    )
    parser.add_argument(
        "--gpus",
        default="auto",
        metavar="WHICH",
        help="auto (default: the visible GPUs), all, none, or CUDA indices such as 0,1",
    )


def _config(args: argparse.Namespace) -> MeterConfig:
    from frugalml.meter import CarbonConfig, MeterConfig, parse_gpu_selection

    return MeterConfig(
        gpus=parse_gpu_selection(args.gpus),
        cpu_tdp_w=args.cpu_tdp_w,
        carbon=CarbonConfig(intensity_g_per_kwh=args.intensity, country=args.country, pue=args.pue),
    )


def _err(text: str = "") -> None:
    print(text, file=sys.stderr)


def run_env(args: argparse.Namespace) -> int:
    from frugalml.meter import describe_environment

    report = describe_environment(_config(args))
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        print(format_environment(report))
    return 0


def format_environment(report: EnvironmentReport) -> str:
    lines = [
        f"platform      {report.platform}, Python {report.python}",
        f"CPU           {report.cpu_model} ({report.logical_cpus} logical CPUs)",
    ]
    if report.gpus:
        lines.append(f"GPUs          driver {report.nvidia_driver or 'unknown'}")
        lines.extend(f"              {g}" for g in report.gpus)
    else:
        lines.append("GPUs          none found")
    lines.append("")
    lines.append("counters")
    for counter in report.counters:
        state = "readable" if counter.readable else "NOT readable"
        lines.append(f"  {counter.source:<6} ({counter.component}): {state}: {counter.reason}")
        if counter.fix:
            lines.append(f"           fix: {counter.fix}")
        lines.extend(f"           {d}" for d in counter.details)
    lines.append("")
    lines.append(f"measured      {', '.join(report.measured) or 'nothing'}")
    lines.append(f"estimated     {', '.join(report.estimated) or 'nothing'}")
    lines.extend(f"  {e}" for e in report.estimates)
    lines.append("")
    lines.append(
        f"carbon        {report.intensity_g_per_kwh:g} gCO2e/kWh: {report.intensity_source}"
    )
    lines.append(f"PUE           {report.pue:g}: {report.pue_source}")
    lines.extend(f"note          {n}" for n in report.notes)
    return "\n".join(lines)


def format_measurement(m: Measurement) -> str:
    lines = [
        f"frugalml measure: {m.name}",
        f"  duration      {m.duration_s:.3f} s",
        f"  CPU time      {m.cpu_time_s:.3f} s",
        f"  energy        {m.energy_j:.3f} J ({m.energy_kwh:.3g} kWh), {m.provenance}",
    ]
    for c in m.components:
        lines.append(f"    {c.component:<8} {c.energy_j:12.3f} J  {c.kind:<9} {c.source}")
        if c.kind == "estimated" and c.notes:
            lines.append(f"             {c.notes[0]}")
    lines.append(
        f"  CO2           {m.co2_g:.4g} g ({m.intensity_g_per_kwh:g} gCO2e/kWh x PUE "
        f"{m.pue:g}; {m.intensity_source})"
    )
    if m.peak_rss_bytes is not None:
        lines.append(f"  peak RSS      {m.peak_rss_bytes / 2**20:.1f} MiB (process tree)")
    if m.peak_gpu_mem_bytes is not None:
        lines.append(f"  peak GPU mem  {m.peak_gpu_mem_bytes / 2**20:.1f} MiB")
    if m.peak_load_avg_1m is not None:
        threads = "" if m.torch_threads is None else f", torch threads {m.torch_threads}"
        lines.append(
            f"  load          {m.peak_load_avg_1m:.2f} peak 1-min load average on "
            f"{m.logical_cpus} logical CPUs{threads}"
        )
    if m.error:
        lines.append(f"  ended with    {m.error}")
    lines.extend(f"  note          {n}" for n in m.notes)
    return "\n".join(lines)


def _append_log(args: argparse.Namespace, m: Measurement) -> int:
    from frugalml.cli._hints import cli_error
    from frugalml.errors import FrugalError
    from frugalml.meter import append_log, resolve_carbon

    try:
        country = resolve_carbon(_config(args).carbon).country
        append_log(args.log, m, project=args.project, country=country)
    except FrugalError as exc:
        _err(f"frugalml: error: {cli_error(exc)}; nothing was logged (use --json PATH to keep it)")
        return 2
    return 0


def run_measure(args: argparse.Namespace) -> int:
    from frugalml.errors import ConfigError
    from frugalml.meter import measure_command

    cmd = list(args.cmd)
    if cmd and cmd[0] == "--":
        cmd = cmd[1:]
    if not cmd:
        raise ConfigError(
            "no command to measure", fix="frugalml measure [options] -- CMD [ARGS...]"
        )
    if args.log is not None:
        from frugalml.meter import check_log

        check_log(args.log)  # refuse a wrong file before the command runs
    result = measure_command(cmd, _config(args))
    if result.measurement is None:
        _err(f"frugalml: error: {result.error}")
        return result.returncode
    if not getattr(args, "quiet", False):  # -q: only warnings and errors
        _err(format_measurement(result.measurement))
    log_code = 0 if args.log is None else _append_log(args, result.measurement)
    if args.json is not None:
        text = result.measurement.to_json()
        try:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(text + "\n", encoding="utf-8")
        except OSError as exc:
            _err(
                f"frugalml: error: cannot write the measurement to {args.json}: "
                f"{exc.strerror or exc}; here it is instead:"
            )
            _err(text)
            return result.returncode or 2
    return result.returncode or log_code

"""``frugalml parallel plan``: partition a network's layers over several devices (AccPar).

    frugalml parallel plan networks/Alexnet.txt --comm-only --batch 512 --levels 7 --csv plan.csv
    frugalml parallel plan accpar:resnet50 --comm-only
    frugalml parallel plan resnet18 --image-size 224 --batch 64 \\
        --device new=60e12 --device old=15e12 --bandwidth 16e9

NETWORK is an AccPar layer file, ``accpar:resnet18|34|50`` (the ResNets AccPar generates),
or a model name (a frugalml built-in or any timm model), traced at ``--image-size``.
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from frugalml.errors import ConfigError

if TYPE_CHECKING:
    from frugalml.parallel import DeviceSpec, Network, Plan

_LABELS = {
    "dp": "data parallel (1:1)",
    "dp-uneven": "data parallel (balanced split)",
    "owt": "one weird trick",
    "hypar": "HyPar (types I, II)",
    "accpar": "AccPar (types I, II, III)",
}


#: the planner's fix names DeviceSpec objects; here they are --device flags
_FIX_PHRASES = (
    (
        r"DeviceSpec\('fast', 100e12\), DeviceSpec\('slow', 25e12\)",
        "--device fast=100e12 --device slow=25e12",
    ),
)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``parallel`` command group."""
    parser = subparsers.add_parser(
        "parallel", help="plan training across several, unequal devices (AccPar)"
    )
    sub = parser.add_subparsers(dest="parallel_command", metavar="SUBCOMMAND")
    p = sub.add_parser(
        "plan",
        help="choose a partition type per layer and level (AccPar) and predict step times",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("network", metavar="NETWORK", help="AccPar layer file, accpar:resnetN, or model")
    p.add_argument(
        "--comm-only",
        action="store_true",
        help="AccPar's own model: communication volume only, 1:1 splits (its tables)",
    )
    p.add_argument("--batch", type=int, default=512, help="global batch size (default 512)")
    p.add_argument(
        "--levels", type=int, default=7, help="levels of halving in --comm-only (default 7)"
    )
    p.add_argument("--csv", type=Path, metavar="OUT.csv", help="write strategy,level,layer,type")
    p.add_argument(
        "--device",
        action="append",
        default=[],
        metavar="NAME=FLOPS[:WATTS]",
        help="a device's sustained FLOP/s (and power); repeat, 2, 4, 8... devices",
    )
    p.add_argument(
        "--bandwidth", type=float, default=16e9, help="link bandwidth in bytes/s (default 16e9)"
    )
    p.add_argument(
        "--bytes-per-element", type=float, default=4.0, help="4 for fp32 (default), 2 for bf16"
    )
    p.add_argument("--image-size", type=int, default=224, help="input size for model names")
    p.add_argument("--in-chans", type=int, default=3, help="input channels for model names")

    def _no_sub(args: argparse.Namespace) -> int:
        parser.print_help(sys.stderr)
        return 2

    parser.set_defaults(handler=_no_sub)
    p.set_defaults(handler=_plan, fix_phrases=_FIX_PHRASES)


def load_network(spec: str, *, image_size: int = 224, in_chans: int = 3) -> Network:
    """A layer file, ``accpar:resnetN``, or a built-in/timm model traced at ``image_size``."""
    from frugalml.parallel import accpar_resnet, network_from_model, read_accpar_network

    if spec.startswith("accpar:"):
        depth = {"resnet18": 18, "resnet34": 34, "resnet50": 50}.get(spec[len("accpar:") :])
        if depth is None:
            raise ConfigError(
                f"unknown AccPar network {spec!r}",
                fix="use accpar:resnet18, accpar:resnet34 or accpar:resnet50",
            )
        return accpar_resnet(depth)  # type: ignore[arg-type]
    path = Path(spec)
    if path.suffix == ".txt" or path.exists():
        return read_accpar_network(path)
    from frugalml.models import create_model

    model = create_model(spec, num_classes=1000, in_chans=in_chans)
    return network_from_model(model, (in_chans, image_size, image_size), name=spec)


def parse_device(text: str) -> DeviceSpec:
    """``NAME=FLOPS`` or ``NAME=FLOPS:WATTS`` (e.g. ``v3=123e12:200``)."""
    from frugalml.parallel import DeviceSpec

    name, sep, rest = text.partition("=")
    flops_text, _, watts_text = rest.partition(":")
    try:
        flops = float(flops_text)
        watts = float(watts_text) if watts_text else None
    except ValueError:
        flops = math.nan
        watts = None
    if not sep or not name or not math.isfinite(flops):
        raise ConfigError(
            f"--device {text!r} is not NAME=FLOPS[:WATTS]", fix="e.g. --device new=60e12:300"
        )
    return DeviceSpec(name, flops, watts)


def write_plan_csv(plans: list[Plan], path: Path) -> None:
    try:
        with path.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["strategy", "level", "layer", "type"])
            for p in plans:
                writer.writerows(p.rows())
    except OSError as exc:
        raise ConfigError(f"cannot write {path}: {exc}", fix="choose a writable path") from exc


def _table(p: Plan) -> list[str]:
    width = max(8, *(len(n) + 2 for n in p.layers))
    lines = [f"{'level':>6}" + "".join(f"{n:>{width}}" for n in p.layers)]
    for lv in p.levels:
        lines.append(f"{lv.level:>6}" + "".join(f"{t:>{width}}" for t in lv.types))
    return lines


def _plan(args: argparse.Namespace) -> int:
    from frugalml.parallel import plan, plan_comm_only

    network = load_network(args.network, image_size=args.image_size, in_chans=args.in_chans)
    if args.comm_only:
        if args.device:
            raise ConfigError("--device has no effect with --comm-only", fix="drop one of them")
        plans = plan_comm_only(network, batch=args.batch, levels=args.levels)
    else:
        if len(args.device) < 2:
            raise ConfigError(
                "the costed planner needs the devices (at least two --device NAME=FLOPS)",
                fix="e.g. --device new=60e12 --device old=15e12, or use --comm-only",
            )
        devices = [parse_device(d) for d in args.device]
        plans = plan(
            network,
            devices,
            batch=args.batch,
            bandwidth_bytes_per_s=args.bandwidth,
            bytes_per_element=args.bytes_per_element,
        )
    out = sys.stdout
    print(f"{network.name}: {len(network.layers)} layers, batch {args.batch}", file=out)
    print("types: 0 = I (batch), 1 = II (input channels), 2 = III (output channels)", file=out)
    baseline = next((p.step_time_s for p in plans if p.strategy == "dp"), None)
    for p in plans:
        print(f"\n## {_LABELS[p.strategy]}", file=out)
        for line in _table(p):
            print(line, file=out)
        ratios = ", ".join(f"{lv.ratio:.3f}" for lv in p.levels)
        print(f"communication: {p.comm_elements:,.0f} elements over all levels", file=out)
        if p.step_time_s is not None:
            speedup = baseline / p.step_time_s if baseline else math.nan
            energy = f", energy {p.energy_j:.3g} J (estimated)" if p.energy_j is not None else ""
            print(
                f"split ratio per level: {ratios}; predicted step {p.step_time_s * 1e3:.3f} ms "
                f"(compute {(p.compute_s or 0) * 1e3:.3f} ms + comm {(p.comm_s or 0) * 1e3:.3f} "
                f"ms){energy}; {speedup:.2f}x data parallel",
                file=out,
            )
    if args.csv is not None:
        write_plan_csv(plans, args.csv)
        print(f"\nwrote {args.csv}", file=out)
    return 0

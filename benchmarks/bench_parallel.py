"""Uneven vs even data parallel under an emulated 3:1 slowdown, with the planner's prediction.

Two local processes (gloo, one torch thread each) train the same model on digits; rank 1
is emulated 3x slower (it sleeps 2 x 3 x its forward time per step). Three splits of each
global batch: even (1:1, what DDP does), the ideal 3:1, and calibrated (each rank times a
few steps, shares from the measured throughput). Runs are interleaved (even, uneven,
calibrated, even, ...) so drift of the shared machine hits all alike; the figure is the
median step time of rank 0 (both ranks meet at every all-reduce).

The prediction comes from the costed planner (:func:`frugalml.parallel.plan`): the model's
layers traced with FLOPs from frugalml's cost counting, a fast device whose throughput is
measured here (one thread, forward + backward of the same batch), a slow one at a third of
it, and a stated loopback bandwidth.

    python benchmarks/bench_parallel.py [--model frugal_cnn] [--epochs 2] [--rounds 2]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from datetime import datetime, timezone

import torch

from frugalml.data import load_dataset
from frugalml.models import create_model
from frugalml.parallel import (
    DeviceSpec,
    ParallelConfig,
    network_from_model,
    plan,
    run_data_parallel,
)
from frugalml.train import TrainConfig


def _fast_flops_per_s(
    model_name: str, model_args: dict[str, int], batch: int, flops_per_sample: float
) -> float:
    """Training FLOP/s of one thread: forward + backward of ``batch`` digits samples."""
    torch.set_num_threads(1)
    data = load_dataset("digits")
    torch.manual_seed(0)
    model = create_model(model_name, num_classes=10, in_chans=1, **model_args)
    x = torch.from_numpy(data.train.images[:batch]).float() / 255.0
    y = torch.from_numpy(data.train.labels[:batch])
    loss_fn = torch.nn.CrossEntropyLoss()
    times = []
    for _ in range(12):
        t0 = time.perf_counter()
        loss_fn(model(x), y).backward()
        times.append(time.perf_counter() - t0)
    return 3.0 * flops_per_sample * batch / statistics.median(times[2:])


#: Stated peak throughputs (FLOP/s, bf16/fp16 dense) and links for the simulated pairs:
#: assumptions for the simulation, not measurements.
PAIRS = {
    "TPU-v3 + TPU-v2 (123 + 45 TFLOP/s, 100 GB/s link)": (123e12, 45e12, 100e9),
    "A100 + V100 (312 + 125 TFLOP/s, PCIe 4.0 32 GB/s)": (312e12, 125e12, 32e9),
}


def simulate(batch: int = 512) -> None:
    """Predicted speed-ups over 1:1 data parallel of OWT, HyPar, balanced data parallel and
    AccPar with the costed planner, on two unequal accelerators (one level)."""
    from pathlib import Path

    from frugalml.parallel import accpar_resnet, read_accpar_network

    data = Path(__file__).resolve().parent.parent / "tests" / "data" / "accpar"
    networks = [
        read_accpar_network(data / "Alexnet.txt"),
        read_accpar_network(data / "Vgg11.txt"),
        accpar_resnet(18),
        accpar_resnet(50),
    ]
    order = ("owt", "hypar", "dp-uneven", "accpar")
    print(f"# simulated, batch {batch}, bf16 (2 bytes per element), speed-up over 1:1 DP")
    print("| pair | network | " + " | ".join(order) + " | AccPar ratio |")
    print("|---|---|" + "---|" * (len(order) + 1))
    for pair, (fast, slow, link) in PAIRS.items():
        devices = [DeviceSpec("fast", fast), DeviceSpec("slow", slow)]
        for net in networks:
            plans = {
                p.strategy: p
                for p in plan(
                    net, devices, batch=batch, bandwidth_bytes_per_s=link, bytes_per_element=2.0
                )
            }
            dp = plans["dp"].step_time_s or float("nan")
            cells = " | ".join(f"{dp / (plans[k].step_time_s or float('nan')):.2f}x" for k in order)
            ratio = plans["accpar"].levels[0].ratio
            print(f"| {pair} | {net.name} | {cells} | {ratio:.2f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="frugal_cnn")
    parser.add_argument("--width", type=int, default=64, help="frugal_cnn width")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--slowdown", type=float, default=3.0)
    parser.add_argument("--bandwidth", type=float, default=1e9, help="stated loopback B/s")
    parser.add_argument(
        "--simulate", action="store_true", help="only the simulated accelerator comparison"
    )
    args = parser.parse_args()
    if args.simulate:
        simulate()
        return

    training = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, seed=0)
    slowdown = (1.0, args.slowdown)
    model_args = {"width": args.width} if args.model == "frugal_cnn" else {}
    splits = {
        "even 1:1": (1.0, 1.0),
        f"uneven {args.slowdown:g}:1": (args.slowdown, 1.0),
        "calibrated": None,
    }
    step_s: dict[str, list[float]] = {name: [] for name in splits}
    energy_j: dict[str, list[float]] = {name: [] for name in splits}
    shares_seen: dict[str, str] = {}
    for _ in range(args.rounds):
        for name, shares in splits.items():
            config = ParallelConfig(nproc=2, shares=shares, slowdown=slowdown, threads=(1, 1))
            result = run_data_parallel(
                args.model, "digits", training, config, model_args=model_args
            )
            step_s[name].append(result.step_time_s)
            energy_j[name].append(result.energy["energy_j"])
            shares_seen[name] = ":".join(f"{s:.2f}" for s in result.shares)
            provenance = result.energy["provenance"]

    torch.manual_seed(0)
    model = create_model(args.model, num_classes=10, in_chans=1, **model_args)
    network = network_from_model(model, (1, 8, 8), name=args.model)
    flops = sum(layer.forward_flops() for layer in network.layers)
    fast = _fast_flops_per_s(args.model, model_args, args.batch_size // 2, flops)
    devices = [DeviceSpec("fast", fast), DeviceSpec("slow", fast / args.slowdown)]
    plans = {
        p.strategy: p
        for p in plan(
            network,
            devices,
            batch=args.batch_size,
            bandwidth_bytes_per_s=args.bandwidth,
            strategies=("dp", "dp-uneven", "accpar"),
        )
    }
    even = statistics.median(step_s["even 1:1"])
    print(
        f"# {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"load average {os.getloadavg()[0]:.2f}"
    )
    print(
        f"# {args.model} on digits, batch {args.batch_size}, {args.epochs} epochs, "
        f"{args.rounds} rounds, slowdown {slowdown}, energy {provenance}"
    )
    print("| split | shares | median step (ms) | speed-up vs even | energy (J, combined) |")
    print("|---|---|---|---|---|")
    for name in splits:
        s = statistics.median(step_s[name])
        e = statistics.median(energy_j[name])
        print(f"| {name} | {shares_seen[name]} | {s * 1e3:.1f} | {even / s:.2f}x | {e:.1f} |")
    dp = plans["dp"].step_time_s or float("nan")
    for key in ("dp", "dp-uneven", "accpar"):
        p = plans[key]
        t = p.step_time_s or float("nan")
        print(f"| predicted {key} | {p.levels[0].ratio:.2f} | {t * 1e3:.2f} | {dp / t:.2f}x | |")
    print(
        f"# planner: fast device measured at {fast / 1e9:.2f} GFLOP/s (1 thread, training), "
        f"slow = fast / {args.slowdown:g}, bandwidth {args.bandwidth:.0e} B/s (stated)"
    )


if __name__ == "__main__":
    main()

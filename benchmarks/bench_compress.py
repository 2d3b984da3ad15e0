"""Compression on digits: what each method reaches at matched accuracy, and what it saves.

Parts (each one ``frugalml.compress.run_compress`` over a spec, so the dense baseline is
trained once and every model is measured in the same interleaved repeats):

- ``mlp``: ``frugal_mlp`` with two hidden layers of 300 (the LeNet-300-100 shape, both 300
  here), dense vs l1 / hoyer / hoyer_square / l0, each at a few strengths; the table keeps,
  per method, the sparsest variant within 1 accuracy point of dense.
- ``cnn``: ``frugal_cnn`` (4 conv layers, 32-64 channels) with group_lasso,
  group_hoyer_square, channels (Torch-Pruning) and penni.
- ``resnet``: timm ``resnet10t`` (pretrained=False) on digits resized to 32 x 32, same
  methods.

    python benchmarks/bench_compress.py --part mlp --out /tmp/bench_compress [--epochs 10]

Writes ``OUT/<part>.csv`` (the compress.csv columns) and prints a Markdown table. A row
``dense_control`` (an identical copy of dense, measured as if it were a method) shows how
large a "saving" the measurement alone produces on this machine.
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import time
from pathlib import Path
from typing import Any

import torch

from frugalml.cli._compress import write_csv
from frugalml.compress import CompressSpec, run_compress
from frugalml.meter import Meter


def _mlp_methods() -> list[dict[str, Any]]:
    methods: list[dict[str, Any]] = []
    for name, strengths in (
        ("l1", (3e-5, 1e-4, 3e-4)),
        ("hoyer", (1e-3, 3e-3, 1e-2)),
        ("hoyer_square", (1e-5, 3e-5, 1e-4)),
        ("l0", (3.0, 10.0, 30.0)),
    ):
        for s in strengths:
            entry: dict[str, Any] = {"method": name, "name": f"{name}@{s:g}", "strength": s}
            if name != "l0":
                entry["threshold"] = {"std": 0.25}
            entry["fine_tune_epochs"] = 3
            methods.append(entry)
    methods.append({"method": "magnitude", "threshold": {"sparsity": 0.9}, "fine_tune_epochs": 3})
    return methods


def _cnn_methods() -> list[dict[str, Any]]:
    ft = {"fine_tune_epochs": 3}
    return [
        {
            "method": "group_lasso",
            "name": "group_lasso@3e-4",
            "strength": 3e-4,
            "threshold": {"std": 0.5},
            **ft,
        },
        {
            "method": "group_lasso",
            "name": "group_lasso@1e-3",
            "strength": 1e-3,
            "threshold": {"std": 0.5},
            **ft,
        },
        {
            "method": "group_hoyer_square",
            "name": "group_hs@1e-4",
            "strength": 1e-4,
            "threshold": {"std": 0.25},
            **ft,
        },
        {
            "method": "group_hoyer_square",
            "name": "group_hs@3e-4",
            "strength": 3e-4,
            "threshold": {"std": 0.5},
            **ft,
        },
        {"method": "channels", "name": "channels@0.3", "ratio": 0.3, **ft},
        {"method": "channels", "name": "channels@0.5", "ratio": 0.5, **ft},
        {"method": "penni", "basis": 4, "strength": 1e-4, "threshold": {"sparsity": 0.7}, **ft},
    ]


def spec_for(part: str, epochs: int) -> CompressSpec:
    training = {"epochs": epochs, "device": "auto"}
    common = {"latency": {"repeats": 15, "batch_size": 64}, "energy": {"repeats": 5}}
    if part == "mlp":
        data = {
            "name": "mlp",
            "dataset": "digits",
            "model": "frugal_mlp",
            "model_args": {"hidden": 300, "linear_layers": 3},
            "training": training,
            "methods": _mlp_methods(),
        }
    elif part == "cnn":
        data = {
            "name": "cnn",
            "dataset": "digits",
            "model": "frugal_cnn",
            "model_args": {"conv_layers": 4, "width": 32, "hidden": 64},
            "training": {**training, "lr": 2e-3},
            "methods": _cnn_methods(),
        }
    else:
        data = {
            "name": "resnet",
            "dataset": "digits",
            "model": "resnet10t",
            "image_size": 32,
            "training": {**training, "lr": 2e-3},
            "methods": _cnn_methods(),
        }
    return CompressSpec.from_mapping({**data, **common})


def _f(row: dict[str, Any], key: str, fmt: str = ".3g") -> str:
    value = row.get(key, "")
    return "" if value == "" else format(float(value), fmt)


def markdown(rows: list[dict[str, Any]]) -> str:
    head = (
        "| method | acc | params | sparsity | FLOPs | ms b1 (CI) | ms b64 (CI) | "
        "J/1k (CI) | compress J | break-even |\n|" + "---|" * 10
    )
    lines = [head]
    for r in rows:
        lines.append(
            f"| {r['method']} | {float(r['accuracy']):.3f} | {int(r['params']):,} | "
            f"{float(r['sparsity']):.1%} | {int(r['flops_per_sample']):,} | "
            f"{_f(r, 'latency_ms')} ({_f(r, 'latency_ms_low')}-{_f(r, 'latency_ms_high')}) | "
            f"{_f(r, 'latency_ms_batch')} ({_f(r, 'latency_ms_batch_low')}-"
            f"{_f(r, 'latency_ms_batch_high')}) | {_f(r, 'energy_per_1k_j')} "
            f"({_f(r, 'energy_per_1k_j_low')}-{_f(r, 'energy_per_1k_j_high')}) "
            f"{r['energy_per_1k_provenance']} | {_f(r, 'compress_energy_j', '.0f')} | "
            f"{r['break_even_inferences']} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=("mlp", "cnn", "resnet"), required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    spec = spec_for(args.part, args.epochs)
    started = time.time()
    with Meter() as meter:
        result = run_compress(spec, meter, control=True)
    args.out.mkdir(parents=True, exist_ok=True)
    write_csv(args.out / f"{args.part}.csv", result.rows)
    with (args.out / f"{args.part}.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    print(
        f"{args.part}: {platform.processor() or platform.machine()}, torch "
        f"{torch.__version__}, {args.threads} thread(s), load {os.getloadavg()}, "
        f"{time.time() - started:.0f} s"
    )
    print(markdown(rows))
    for r in rows:
        if r["notes"]:
            print(f"- {r['method']}: {r['notes']}")


if __name__ == "__main__":
    main()

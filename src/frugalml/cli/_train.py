"""``frugalml train``: train one model, on one process or several unequal ones.

    frugalml train --model frugal_mlp --dataset digits --epochs 2
    frugalml train --model frugal_cnn --nproc 2 --shares 3,1 --slowdown 1,3
    frugalml train run.yaml --json result.json

A YAML file holds the same as a study spec's entries, for one model::

    model: frugal_cnn               # or {name: frugal_cnn, args: {width: 16}}
    dataset: digits
    training: {epochs: 2, batch_size: 64}
    parallel: {nproc: 2, shares: [3, 1], slowdown: [1, 3]}   # shares omitted: calibrated

Flags override the file. Without ``parallel`` (or with ``nproc: 1``) this is the usual
metered training loop; with ``nproc >= 2``, data parallel with an uneven split over local
processes (gloo on CPU, NCCL on CUDA). For several machines, see the README.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from frugalml.errors import ConfigError

_KEYS = "model, dataset, training, parallel"
_EXAMPLE = "model: frugal_mlp\ndataset: digits\nparallel: {nproc: 2, shares: [3, 1]}"


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``train`` command."""
    p = subparsers.add_parser(
        "train",
        help="train one model (optionally data parallel over unequal processes)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("config", nargs="?", type=Path, metavar="RUN.yaml", help="optional YAML")
    p.add_argument("--model", help="a frugalml built-in or timm model name")
    from frugalml.data import dataset_name_forms

    p.add_argument("--dataset", help=f"dataset name: {dataset_name_forms()} (default digits)")
    p.add_argument("--epochs", type=int, help="training epochs")
    p.add_argument("--batch-size", type=int, help="global batch size")
    p.add_argument("--lr", type=float, help="Adam learning rate")
    p.add_argument("--seed", type=int, help="random seed")
    p.add_argument("--nproc", type=int, help="processes on this machine (data parallel)")
    p.add_argument("--shares", help="share of each batch per process, e.g. 3,1 (default: measured)")
    p.add_argument("--slowdown", help="emulated slowdown per process, e.g. 1,3")
    p.add_argument("--threads", help="torch threads per process, e.g. 1,1")
    p.add_argument("--json", type=Path, metavar="OUT.json", help="write the result as JSON")
    p.set_defaults(handler=_run)


def _numbers(text: str | None, flag: str) -> list[float] | None:
    if text is None:
        return None
    try:
        return [float(part) for part in text.split(",") if part.strip()]
    except ValueError as exc:
        raise ConfigError(
            f"{flag} must be numbers separated by commas, not {text!r}", fix=f"e.g. {flag} 3,1"
        ) from exc


def _settings(args: argparse.Namespace) -> dict[str, Any]:
    from frugalml._yaml import read_yaml_mapping

    spec: dict[str, Any] = {}
    if args.config is not None:
        spec = dict(read_yaml_mapping(args.config, keys_hint=_KEYS, example=_EXAMPLE))
    unknown = sorted(set(spec) - {"model", "dataset", "training", "parallel"})
    if unknown:
        raise ConfigError(
            f"unknown key(s) in {args.config}: {', '.join(unknown)}", fix=f"use {_KEYS}"
        )
    model = spec.get("model")
    model_args: dict[str, Any] = {}
    if isinstance(model, dict):
        model_args = dict(model.get("args") or {})
        model = model.get("name")
    model = args.model or model
    if not isinstance(model, str) or not model:
        raise ConfigError("no model given", fix="--model frugal_mlp, or model: in the YAML")
    training = dict(spec.get("training") or {})
    for key, value in (
        ("epochs", args.epochs),
        ("batch_size", args.batch_size),
        ("lr", args.lr),
        ("seed", args.seed),
    ):
        if value is not None:
            training[key] = value
    parallel = dict(spec.get("parallel") or {})
    if args.nproc is not None:
        parallel["nproc"] = args.nproc
    from frugalml.parallel import launch_env

    launched = launch_env()  # under torchrun: its world size unless nproc is given
    if launched is not None and "nproc" not in parallel:
        parallel["nproc"] = launched.world_size
    for key, flag in (("shares", "--shares"), ("slowdown", "--slowdown"), ("threads", "--threads")):
        values = _numbers(getattr(args, key), flag)
        if values is not None:
            parallel[key] = values
    return {
        "model": model,
        "model_args": model_args,
        "dataset": args.dataset or spec.get("dataset") or "digits",
        "training": training,
        "parallel": parallel,
    }


def _run(args: argparse.Namespace) -> int:
    from frugalml.parallel import ParallelConfig
    from frugalml.train import TrainConfig

    settings = _settings(args)
    training = TrainConfig.from_mapping(settings["training"])
    parallel = ParallelConfig.from_mapping(settings["parallel"]) if settings["parallel"] else None
    if parallel is not None and parallel.shares is not None:
        from frugalml.parallel._data_parallel import check_full_batches

        check_full_batches(training.batch_size, parallel.shares)
    if parallel is None or parallel.nproc == 1:
        result = _single(settings, training)
    else:
        result = _parallel(settings, training, parallel)
    if args.json is not None:
        try:
            args.json.write_text(json.dumps(result, indent=2), encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot write {args.json}: {exc}") from exc
    return 0


def _single(settings: dict[str, Any], training: Any) -> dict[str, Any]:
    from frugalml.cli._format import fmt_energy
    from frugalml.data import load_dataset
    from frugalml.meter import Meter
    from frugalml.models import create_model
    from frugalml.train import train

    dataset = load_dataset(settings["dataset"])
    import torch

    torch.manual_seed(training.seed)
    model = create_model(
        settings["model"],
        num_classes=dataset.num_classes,
        in_chans=dataset.channels,
        **settings["model_args"],
    )
    with Meter() as meter, meter.window("train") as window:
        result = train(model, dataset, training, meter=meter)
    energy = window.measurement
    print(
        f"{settings['model']} on {dataset.name}: test accuracy {result.accuracy:.4f}, "
        f"{result.duration_s:.1f} s, {fmt_energy(energy.energy_j if energy else None)} "
        f"({energy.provenance if energy else 'not measured'})"
    )
    return {
        "model": settings["model"],
        "dataset": dataset.name,
        "nproc": 1,
        "test": result.final_test,
        "duration_s": result.duration_s,
        "energy": energy.to_dict() if energy else None,
    }


def _parallel(settings: dict[str, Any], training: Any, parallel: Any) -> dict[str, Any]:
    from frugalml.cli._format import fmt_energy
    from frugalml.parallel import run_data_parallel

    result = run_data_parallel(
        settings["model"],
        settings["dataset"],
        training,
        parallel,
        model_args=settings["model_args"],
    )
    shares = ":".join(f"{s:.3f}" for s in result.shares)
    print(
        f"{result.model} on {result.dataset}, {result.nproc} processes ({result.backend}), "
        f"shares {shares} ({result.shares_source}), steps per rank {list(result.steps)}"
    )
    print(
        f"median step {result.step_time_s * 1e3:.1f} ms, test accuracy {result.accuracy:.4f}, "
        f"{result.duration_s:.1f} s, {fmt_energy(result.energy['energy_j'])} "
        f"({result.energy['provenance']}; host counters read by local rank 0 only)"
    )
    for rank in result.energy["ranks"]:
        parts = ", ".join(f"{c['component']} {c['source']}" for c in rank["components"]) or "none"
        print(f"  rank {rank['rank']} read: {parts}", file=sys.stdout)
    return result.to_dict()

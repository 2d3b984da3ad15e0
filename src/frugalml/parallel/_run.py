"""One model trained by ``nproc`` local processes with an uneven split (``frugalml train``).

:func:`run_data_parallel` spawns the ranks (:func:`frugalml.parallel.spawn`); each loads
the dataset and builds the model itself (same seed, so the same initial weights; DDP also
broadcasts rank 0's), calibrates or takes the shares, trains under its own meter
(:func:`frugalml.parallel.rank_meter`: host counters on local rank 0 only), and the
energies are combined by one all-reduce. Rank 0 evaluates on the test split and writes
the result, which the launcher reads back.
"""

from __future__ import annotations

import json
import logging
import math
import os
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from frugalml.errors import ConfigError, FrugalError

if TYPE_CHECKING:
    import torch

    from frugalml.data import ImageDataset, Split
    from frugalml.parallel._data_parallel import ParallelConfig
    from frugalml.train import TrainConfig

__all__ = ["ParallelResult", "run_data_parallel"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ParallelResult:
    """The outcome of :func:`run_data_parallel`.

    ``step_time_s`` is the median wall time of rank 0's training steps after the first
    epoch's first (warm-up); ``shares_source`` says whether the shares were given or
    calibrated; ``energy`` the combined record (see :class:`CombinedEnergy`)."""

    model: str
    dataset: str
    nproc: int
    backend: str
    shares: tuple[float, ...]
    shares_source: str
    slowdown: tuple[float, ...]
    step_time_s: float
    steps: tuple[int, ...]
    epoch_losses: tuple[float, ...]
    test: dict[str, float]
    duration_s: float
    energy: dict[str, Any]
    notes: tuple[str, ...] = field(default=())

    @property
    def accuracy(self) -> float:
        return self.test.get("accuracy", math.nan)

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "dataset": self.dataset,
            "nproc": self.nproc,
            "backend": self.backend,
            "shares": list(self.shares),
            "shares_source": self.shares_source,
            "slowdown": list(self.slowdown),
            "step_time_s": self.step_time_s,
            "steps": list(self.steps),
            "epoch_losses": list(self.epoch_losses),
            "test": dict(self.test),
            "duration_s": self.duration_s,
            "energy": self.energy,
            "notes": list(self.notes),
        }


def _normalised(split: Split, dataset: ImageDataset, device: torch.device) -> torch.Tensor:
    """Images scaled by the training split's channel mean and standard deviation."""
    import numpy as np
    import torch

    images = dataset.train.images
    mean = images.mean(axis=(0, 2, 3), dtype=np.float64) / 255.0
    std = np.maximum(images.std(axis=(0, 2, 3), dtype=np.float64) / 255.0, 1e-6)
    x = torch.from_numpy(np.ascontiguousarray(split.images)).to(device, torch.float32)
    shape = (1, len(mean), 1, 1)
    m = torch.tensor(mean, dtype=torch.float32, device=device).view(shape)
    s = torch.tensor(std, dtype=torch.float32, device=device).view(shape)
    return (x / 255.0 - m) / s


def rank_device(backend: str, local_rank: int) -> torch.device:
    """The device a rank trains on: GPU ``local_rank`` under NCCL (one per rank on each
    host), the CPU under gloo."""
    import torch

    if backend == "nccl":
        index = local_rank % torch.cuda.device_count()
        torch.cuda.set_device(index)
        return torch.device("cuda", index)
    return torch.device("cpu")


def local_rank_of(rank: int) -> int:
    """This process's index on its host: ``LOCAL_RANK`` as torchrun (or :func:`spawn`)
    sets it; ``rank`` when nothing set it."""
    return int(os.environ.get("LOCAL_RANK", rank))


def rank_shares(
    parallel: ParallelConfig,
    model: torch.nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    batch_size: int,
    slowdown: float,
) -> tuple[tuple[float, ...], str]:
    """The shares of each batch and where they came from (given, or calibrated here)."""
    from frugalml.parallel._data_parallel import calibrate_shares

    if parallel.shares is not None:
        return parallel.shares, "given"
    shares = calibrate_shares(
        model, x, y, batch_size, steps=parallel.calibration_steps, slowdown=slowdown
    )
    return shares, f"calibrated ({parallel.calibration_steps} steps per rank)"


def _train_rank(rank: int, world: int, job: dict[str, Any]) -> None:
    import numpy as np
    import torch
    import torch.distributed as dist

    from frugalml.data import load_dataset
    from frugalml.models import create_model
    from frugalml.parallel._data_parallel import ParallelConfig, train_uneven
    from frugalml.parallel._energy import combine_energy, rank_meter
    from frugalml.train import TrainConfig, classification_metrics

    parallel = ParallelConfig.from_mapping(job["parallel"])
    config = TrainConfig.from_mapping(job["training"])
    threads = parallel.threads[rank] if parallel.threads else job["default_threads"]
    torch.set_num_threads(threads)
    slowdown = parallel.slowdown[rank] if parallel.slowdown else 1.0
    backend = dist.get_backend()
    local_rank = local_rank_of(rank)
    device = rank_device(backend, local_rank)
    dataset = load_dataset(job["dataset"])
    x = _normalised(dataset.train, dataset, device)
    y = torch.from_numpy(dataset.train.labels.astype(np.int64)).to(device)
    torch.manual_seed(config.seed)
    model = create_model(
        job["model"],
        num_classes=dataset.num_classes,
        in_chans=dataset.channels,
        **job["model_args"],
    ).to(device)
    model.train()
    shares, source = rank_shares(parallel, model, x, y, config.batch_size, slowdown)
    meter = rank_meter(local_rank, str(device), launcher_pid=job["launcher_pid"])
    started = time.perf_counter()
    with meter:
        window = meter.begin("train")
        run = train_uneven(model, x, y, config, shares, slowdown=slowdown)
        measurement = meter.end(window)
    duration_s = time.perf_counter() - started
    energy = combine_energy(measurement, rank, local_rank)
    steps: list[Any] = [None] * world
    dist.all_gather_object(steps, run.steps)
    if rank != 0:
        return
    model.eval()
    with torch.no_grad():
        logits = model(_normalised(dataset.test, dataset, device))
        probabilities = torch.softmax(logits.float(), dim=1).cpu().numpy()
    test = classification_metrics(dataset.test.labels, probabilities, dataset.num_classes)
    warm = run.step_times_s[1:] or run.step_times_s
    result = ParallelResult(
        model=job["model"],
        dataset=dataset.name,
        nproc=world,
        backend=backend,
        shares=tuple(shares),
        shares_source=source,
        slowdown=tuple(parallel.slowdown or (1.0,) * world),
        step_time_s=statistics.median(warm),
        steps=tuple(int(s or 0) for s in steps),
        epoch_losses=tuple(run.epoch_losses),
        test=test,
        duration_s=duration_s,
        energy=energy.to_dict(),
        notes=(
            f"energy {energy.provenance}: {energy.rule}",
            "emulated slowdown: a rank with slowdown s sleeps (s - 1) x 3 x its forward time",
        ),
    )
    Path(job["out"]).write_text(json.dumps(result.to_dict()), encoding="utf-8")


def _under_launcher(parallel: ParallelConfig, job: dict[str, Any]) -> dict[str, Any]:
    """Run this process's rank of a run that torchrun started (on this host or several):
    join its process group from the environment, train, and hand rank 0's result to
    every rank."""
    import torch.distributed as dist

    from frugalml.parallel._data_parallel import join_from_env

    env = join_from_env(parallel.backend)
    try:
        if env.world_size != parallel.nproc:
            raise ConfigError(
                f"torchrun started {env.world_size} processes, but parallel.nproc is "
                f"{parallel.nproc}",
                fix=f"pass nproc={env.world_size} (nnodes x nproc-per-node)",
            )
        _train_rank(env.rank, env.world_size, job)
        out = Path(job["out"])
        data = [json.loads(out.read_text(encoding="utf-8")) if env.rank == 0 else None]
        dist.broadcast_object_list(data, src=0)
        dist.barrier()
    finally:
        dist.destroy_process_group()
    return dict(data[0] or {})


def run_data_parallel(
    model: str,
    dataset: str,
    training: TrainConfig,
    parallel: ParallelConfig,
    *,
    model_args: dict[str, Any] | None = None,
) -> ParallelResult:
    """Train ``model`` on ``dataset`` with ``parallel.nproc`` local processes, or, when
    torchrun started this process (``RANK`` and ``WORLD_SIZE`` set), as this process's rank
    of torchrun's group: each host's counters are then read by its ``LOCAL_RANK`` 0, over
    the process tree of torchrun's agent (the parent of that host's ranks)."""
    from frugalml.parallel._data_parallel import launch_env, spawn

    launched = launch_env()
    per_host = launched.local_world_size if launched else parallel.nproc
    with tempfile.TemporaryDirectory(prefix="frugalml-train-") as folder:
        out = Path(folder) / "result.json"
        job = {
            "model": model,
            "model_args": dict(model_args or {}),
            "dataset": dataset,
            "training": training.to_dict(),
            "parallel": parallel.to_dict(),
            "default_threads": max(1, (os.cpu_count() or 1) // per_host),
            "launcher_pid": os.getppid() if launched else os.getpid(),
            "out": str(out),
        }
        if launched is not None:
            data = _under_launcher(parallel, job)
        else:
            spawn(_train_rank, parallel.nproc, job, backend=parallel.backend)
            if not out.exists():
                raise FrugalError(
                    "the ranks finished without a result",
                    fix="rerun with debug logging (logging.DEBUG)",
                )
            data = json.loads(out.read_text(encoding="utf-8"))
    return ParallelResult(
        model=data["model"],
        dataset=data["dataset"],
        nproc=data["nproc"],
        backend=data["backend"],
        shares=tuple(data["shares"]),
        shares_source=data["shares_source"],
        slowdown=tuple(data["slowdown"]),
        step_time_s=data["step_time_s"],
        steps=tuple(data["steps"]),
        epoch_losses=tuple(data["epoch_losses"]),
        test=data["test"],
        duration_s=data["duration_s"],
        energy=data["energy"],
        notes=tuple(data["notes"]),
    )

"""Data parallel training with an uneven split of each batch.

PyTorch's DDP splits the batch evenly and averages gradients equally, so a fast device
waits for a slow one. Here each rank takes a share of every global batch (given, or from
a short calibration of each rank's throughput) and weights its loss by its share of the
samples, so the averaged gradient is the gradient of the whole batch's mean loss: the same
training as one process on the concatenated batch. The batch order is the one
:func:`frugalml.train.train` draws (a seeded permutation per epoch, a final batch of one
dropped), computed identically on every rank, so no data is exchanged. A small final batch
may give a rank no samples; that rank then has one step fewer and ``Join`` shadows its
collectives; afterwards the parameters and the optimizer state are broadcast from a rank
that took every step, so all ranks agree again.

Heterogeneity can be emulated: a rank with ``slowdown`` s sleeps ``(s - 1) x 3 x`` its
forward time before each backward pass (backward taken as twice the forward), and per-rank
``threads`` set ``torch.set_num_threads``.

Ranks run in processes spawned by :func:`spawn` (a FileStore in a temporary folder, gloo on
CPU, NCCL on CUDA). :func:`train_uneven` itself works in any initialised default process
group, e.g. one that ``torchrun`` describes across machines: :func:`launch_env` reads its
variables and :func:`join_from_env` joins (``init_method="env://"``); the tests emulate two
hosts on localhost (tests/test_parallel_torchrun.py), not two real machines.
"""

from __future__ import annotations

import json
import logging
import math
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from frugalml.errors import ConfigError, FrugalError
from frugalml.parallel._shares import normalise_shares, split_counts

if TYPE_CHECKING:
    import torch

    from frugalml.train import TrainConfig

__all__ = [
    "Backend",
    "EpochSchedule",
    "LaunchEnv",
    "ParallelConfig",
    "RankRun",
    "calibrate_shares",
    "check_backend",
    "epoch_schedule",
    "join_from_env",
    "launch_env",
    "resolve_backend",
    "spawn",
    "train_uneven",
]

logger = logging.getLogger(__name__)

Backend = Literal["auto", "gloo", "nccl"]
_BACKENDS = ("auto", "gloo", "nccl")
_KEYS = ("nproc", "shares", "slowdown", "threads", "backend", "calibration_steps")


def _floats(name: str, value: Any, nproc: int, low: float) -> tuple[float, ...] | None:
    if value is None:
        return None
    if isinstance(value, (int, float)) or not isinstance(value, Sequence):
        raise ConfigError(
            f"parallel.{name} must be a list with one number per process, not {value!r}",
            fix=f"e.g. {name}: [1, 3]",
        )
    out = tuple(float(v) for v in value)
    if len(out) != nproc or not all(math.isfinite(v) and v >= low for v in out):
        raise ConfigError(
            f"parallel.{name} needs {nproc} numbers >= {low:g}, not {list(value)!r}",
            fix=f"give one value per process, e.g. {name}: {[1] * nproc}",
        )
    return out


@dataclass(frozen=True)
class ParallelConfig:
    """The ``parallel:`` section: ``nproc`` processes on this machine; ``shares`` of each
    batch (None: calibrated from each rank's throughput); emulated heterogeneity as a
    per-rank ``slowdown`` (>= 1) or ``threads``; the process-group ``backend``."""

    nproc: int = 2
    shares: tuple[float, ...] | None = None
    slowdown: tuple[float, ...] | None = None
    threads: tuple[int, ...] | None = None
    backend: Backend = "auto"
    calibration_steps: int = 6

    def __post_init__(self) -> None:
        if isinstance(self.nproc, bool) or not isinstance(self.nproc, int) or self.nproc < 1:
            raise ConfigError(
                f"parallel.nproc must be an integer >= 1, not {self.nproc!r}", fix="e.g. nproc: 2"
            )
        if self.shares is not None:
            object.__setattr__(self, "shares", normalise_shares(self.shares, self.nproc))
        object.__setattr__(self, "slowdown", _floats("slowdown", self.slowdown, self.nproc, 1.0))
        threads = _floats("threads", self.threads, self.nproc, 1.0)
        object.__setattr__(
            self, "threads", None if threads is None else tuple(int(t) for t in threads)
        )
        if self.backend not in _BACKENDS:
            raise ConfigError(
                f"parallel.backend must be one of {', '.join(_BACKENDS)}, not {self.backend!r}"
            )
        if not isinstance(self.calibration_steps, int) or self.calibration_steps < 2:
            raise ConfigError(
                "parallel.calibration_steps must be an integer >= 2, "
                f"not {self.calibration_steps!r}"
            )

    @classmethod
    def from_mapping(cls, values: Any) -> ParallelConfig:
        if not isinstance(values, dict):
            raise ConfigError(
                f"parallel must be a mapping, not {values!r}", fix="e.g. parallel: {nproc: 2}"
            )
        unknown = sorted(set(values) - set(_KEYS))
        if unknown:
            raise ConfigError(
                f"unknown parallel option(s): {', '.join(unknown)}",
                fix=f"use only: {', '.join(_KEYS)}",
            )
        args = dict(values)
        if args.get("shares") == "auto":  # written out: calibrated, as when omitted
            args["shares"] = None
        for key in ("shares", "slowdown", "threads"):
            if key in args and args[key] is not None and isinstance(args[key], Sequence):
                args[key] = tuple(args[key])
        return cls(**args)

    def to_dict(self) -> dict[str, Any]:
        return {
            "nproc": self.nproc,
            "shares": list(self.shares) if self.shares else None,
            "slowdown": list(self.slowdown) if self.slowdown else None,
            "threads": list(self.threads) if self.threads else None,
            "backend": self.backend,
            "calibration_steps": self.calibration_steps,
        }


@dataclass(frozen=True)
class EpochSchedule:
    """One rank's slices of one epoch: (indices, global batch size) per step, and the
    rank that takes every step (the source of the state broadcast after ``Join``)."""

    steps: list[tuple[torch.Tensor, int]]
    full_rank: int


def epoch_schedule(
    n: int, batch_size: int, seed: int, epoch: int, shares: Sequence[float], rank: int
) -> EpochSchedule:
    """The batch order of :func:`frugalml.train.train` (same generator and seed rule),
    each global batch cut by ``shares``; this rank's part."""
    import torch

    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    batches = list(torch.split(torch.randperm(n, generator=generator), batch_size))
    if len(batches) > 1 and len(batches[-1]) == 1:
        batches.pop()
    steps: list[tuple[torch.Tensor, int]] = []
    last_counts: list[int] = []
    for batch in batches:
        counts = split_counts(len(batch), shares)
        start = sum(counts[:rank])
        if counts[rank] > 0:
            steps.append((batch[start : start + counts[rank]], len(batch)))
        last_counts = counts
    full_rank = max(range(len(shares)), key=lambda r: (last_counts[r], -r))
    return EpochSchedule(steps, full_rank)


def check_full_batches(batch_size: int, shares: Sequence[float]) -> None:
    """Every rank must get at least one sample of a full batch (only the small final batch
    may leave a rank out, which ``Join`` covers)."""
    counts = split_counts(batch_size, shares)
    if min(counts) < 1:
        raise ConfigError(
            f"batch size {batch_size} split by shares {[round(s, 3) for s in shares]} gives "
            f"{counts}: a rank would get no samples",
            fix="raise the batch size or give every process a larger share",
        )


def _emulate(slowdown: float, since: float) -> None:
    if slowdown > 1.0:
        time.sleep((slowdown - 1.0) * 3.0 * (time.perf_counter() - since))


def _broadcast_state(model: torch.nn.Module, optimizer: torch.optim.Optimizer, src: int) -> None:
    import torch
    import torch.distributed as dist

    with torch.no_grad():
        for tensor in (*model.parameters(), *model.buffers()):
            dist.broadcast(tensor.data, src)
        for group in optimizer.param_groups:
            for param in group["params"]:
                for value in optimizer.state.get(param, {}).values():
                    if not isinstance(value, torch.Tensor):
                        continue
                    if value.device != param.device:  # Adam's step count lives on the CPU
                        moved = value.to(param.device)
                        dist.broadcast(moved, src)
                        value.copy_(moved)
                    else:
                        dist.broadcast(value, src)


@dataclass
class RankRun:
    """What one rank did: its share, steps and step times (s), loss per epoch (global
    mean, all-reduced), the emulated slowdown."""

    rank: int
    share: float
    steps: int
    step_times_s: list[float]
    epoch_losses: list[float]
    slowdown: float
    notes: list[str] = field(default_factory=list)


def train_uneven(
    model: torch.nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    config: TrainConfig,
    shares: Sequence[float],
    *,
    slowdown: float = 1.0,
    on_step: Callable[[int], None] | None = None,
    on_epoch: Callable[[int, RankRun], None] | None = None,
    on_ready: Callable[[], None] | None = None,
) -> RankRun:
    """Train ``model`` in the default process group with this rank's share of each batch.

    ``images`` (float, normalised) and ``labels`` are the whole training split on this
    rank's device. Adam and cross-entropy as in :func:`frugalml.train.train`; each rank's
    mean loss is weighted by ``local samples / global batch x world size`` so DDP's equal
    average gives the whole batch's gradient. ``on_epoch(epoch, run)`` is called on every
    rank after each epoch, once the ranks agree again (it may use collectives);
    ``on_ready()`` once DDP and the optimizer are set up (seconds on a fresh process),
    just before the first epoch."""
    import torch
    import torch.distributed as dist
    from torch.distributed.algorithms.join import Join
    from torch.nn.parallel import DistributedDataParallel

    rank, world = dist.get_rank(), dist.get_world_size()
    if len(shares) != world:
        raise ConfigError(f"{len(shares)} shares for {world} ranks", fix="one share per rank")
    check_full_batches(config.batch_size, shares)
    device = images.device
    ddp = DistributedDataParallel(
        model, device_ids=[device.index] if device.type == "cuda" else None
    )
    optimizer = torch.optim.Adam(
        ddp.parameters(), lr=config.lr, betas=config.betas, weight_decay=config.weight_decay
    )
    loss_fn = torch.nn.CrossEntropyLoss()
    run = RankRun(rank, float(shares[rank]), 0, [], [], slowdown)
    n = int(labels.shape[0])
    if on_ready is not None:
        on_ready()
    for epoch in range(1, config.epochs + 1):
        schedule = epoch_schedule(n, config.batch_size, config.seed, epoch, shares, rank)
        loss_sum = torch.zeros((), dtype=torch.float64, device=device)
        with Join([ddp]):
            for idx, global_size in schedule.steps:
                t0 = time.perf_counter()
                idx = idx.to(device)
                x, y = images[idx], labels[idx]
                local = loss_fn(ddp(x), y)
                _emulate(slowdown, t0)
                optimizer.zero_grad(set_to_none=True)
                (local * (len(idx) / global_size * world)).backward()
                optimizer.step()
                loss_sum += local.detach().double() * len(idx)
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                run.step_times_s.append(time.perf_counter() - t0)
                run.steps += 1
                if on_step is not None:
                    on_step(run.steps)
        _broadcast_state(model, optimizer, schedule.full_rank)
        dist.all_reduce(loss_sum)
        run.epoch_losses.append(float(loss_sum.item()) / n)
        if on_epoch is not None:
            on_epoch(epoch, run)
    return run


def calibrate_shares(
    model: torch.nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    batch_size: int,
    *,
    steps: int = 6,
    slowdown: float = 1.0,
) -> tuple[float, ...]:
    """Each rank times ``steps`` forward/backward passes of an even share of a batch (no
    weight changes); shares proportional to the measured samples/s, gathered to all ranks
    (the first step is a warm-up and not counted)."""
    import torch
    import torch.distributed as dist

    world = dist.get_world_size()
    local = max(1, batch_size // world)
    loss_fn = torch.nn.CrossEntropyLoss()
    x, y = images[:local], labels[:local]
    times: list[float] = []
    for _ in range(steps):
        t0 = time.perf_counter()
        loss = loss_fn(model(x), y)
        _emulate(slowdown, t0)
        loss.backward()
        times.append(time.perf_counter() - t0)
    model.zero_grad(set_to_none=True)
    rate = torch.tensor([local / statistics.median(times[1:])], dtype=torch.float64)
    if dist.get_backend() == "nccl":
        rate = rate.to(images.device)
    rates = [torch.zeros_like(rate) for _ in range(world)]
    dist.all_gather(rates, rate)
    return normalise_shares([float(r.item()) for r in rates])


def resolve_backend(backend: Backend, device: str = "auto") -> str:
    """The process-group backend a run uses, checked against this machine: ``auto`` is
    NCCL when the training device is CUDA (or ``auto`` and CUDA is present), else gloo;
    NCCL needs CUDA and a device per rank."""
    import torch

    if backend == "auto":
        cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
        return "nccl" if cuda else "gloo"
    if backend == "nccl" and not torch.cuda.is_available():
        raise ConfigError(
            "parallel.backend nccl needs CUDA GPUs, and torch sees none on this machine",
            fix="use backend: gloo (CPU processes), or run where CUDA is available",
        )
    if backend == "nccl" and device == "cpu":
        raise ConfigError(
            "parallel.backend nccl trains on GPUs, but training.device is cpu",
            fix="use backend: gloo for CPU processes, or training.device: cuda",
        )
    return backend


def check_backend(parallel: ParallelConfig, device: str = "auto") -> None:
    """Refuse, before anything is spawned, a ``parallel:`` section this machine cannot run
    (see :func:`resolve_backend`; NCCL allows one rank per GPU)."""
    import torch

    if parallel.nproc < 2 or resolve_backend(parallel.backend, device) != "nccl":
        return
    gpus = torch.cuda.device_count()
    if parallel.nproc > gpus:
        raise ConfigError(
            f"parallel.nproc {parallel.nproc} with NCCL needs {parallel.nproc} GPUs; "
            f"this machine has {gpus}",
            fix=f"use nproc: {gpus} or fewer, or backend: gloo",
        )


@dataclass(frozen=True)
class LaunchEnv:
    """Where this process sits in a run started by ``torchrun`` (or any launcher that sets
    its variables): ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` (the process's index on its
    host: local rank 0 reads the host's counters) and ``LOCAL_WORLD_SIZE``."""

    rank: int
    world_size: int
    local_rank: int
    local_world_size: int


_LAUNCH_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE")


def launch_env(environ: Mapping[str, str] | None = None) -> LaunchEnv | None:
    """The torchrun variables of ``environ`` (default: this process's), or None when
    ``RANK`` and ``WORLD_SIZE`` are not both set. ``LOCAL_RANK`` defaults to ``RANK`` and
    ``LOCAL_WORLD_SIZE`` to ``WORLD_SIZE`` (one host)."""
    env = os.environ if environ is None else environ
    if "RANK" not in env or "WORLD_SIZE" not in env:
        return None
    values: dict[str, int] = {}
    for name in _LAUNCH_VARS:
        text = env.get(name, env["RANK"] if name == "LOCAL_RANK" else env["WORLD_SIZE"])
        try:
            values[name] = int(text)
        except ValueError:
            raise ConfigError(
                f"the launcher's {name}={text!r} is not an integer",
                fix="start the ranks with torchrun, which sets RANK, WORLD_SIZE and LOCAL_RANK",
            ) from None
    out = LaunchEnv(*(values[n] for n in _LAUNCH_VARS))
    if not (0 <= out.rank < out.world_size and 0 <= out.local_rank < out.local_world_size):
        raise ConfigError(
            f"the launcher's ranks are inconsistent: {out}",
            fix="start the ranks with torchrun (--nnodes, --nproc-per-node, --node-rank)",
        )
    return out


def join_from_env(backend: Backend, device: str = "auto") -> LaunchEnv:
    """Join the process group a launcher (torchrun) describes in the environment
    (``init_method="env://"``: ``MASTER_ADDR``, ``MASTER_PORT``, ``RANK``, ``WORLD_SIZE``)."""
    import torch.distributed as dist

    env = launch_env()
    if env is None:
        raise ConfigError(
            "RANK and WORLD_SIZE are not set", fix="start the processes with torchrun"
        )
    missing = [name for name in ("MASTER_ADDR", "MASTER_PORT") if name not in os.environ]
    if missing:
        raise ConfigError(
            f"{' and '.join(missing)} not set for rank {env.rank}",
            fix="use torchrun --master-addr HOST --master-port PORT (or export them)",
        )
    dist.init_process_group(
        resolve_backend(backend, device),
        init_method="env://",
        rank=env.rank,
        world_size=env.world_size,
    )
    return env


def _die_with_launcher() -> None:
    """Ask Linux to kill this rank when its launcher dies (a study worker stopped at its
    time limit, or killed), so no orphan rank trains on."""
    import sys

    if sys.platform.startswith("linux"):
        import contextlib
        import ctypes
        import signal

        with contextlib.suppress(Exception):
            pr_set_pdeathsig = 1
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)


def _rank_main(
    rank: int,
    fn: Callable[..., None],
    world: int,
    store_path: str,
    backend: str,
    args: tuple[Any, ...],
) -> None:
    import torch.distributed as dist
    from torch.distributed import FileStore  # type: ignore[attr-defined]

    _die_with_launcher()
    os.environ.setdefault("LOCAL_RANK", str(rank))
    store = FileStore(store_path, world)
    dist.init_process_group(backend, store=store, rank=rank, world_size=world)
    try:
        fn(rank, world, *args)
        # Every rank reaches this point before any tears the group down: a rank that exits
        # while its peer is still using the gloo connections aborts that peer (std::terminate).
        dist.barrier()
    except FrugalError as exc:  # hand the one-line message back to the launcher
        error = {"type": type(exc).__name__, "message": exc.message, "fix": exc.fix}
        Path(f"{store_path}.error{rank}").write_text(json.dumps(error), encoding="utf-8")
        raise
    finally:
        dist.destroy_process_group()


def spawn(fn: Callable[..., None], nproc: int, *args: Any, backend: Backend = "gloo") -> None:
    """Run ``fn(rank, world, *args)`` in ``nproc`` spawned processes joined in one process
    group (a FileStore in a fresh temporary folder; gloo, or NCCL for CUDA ranks). ``fn``
    must be importable (module level). A rank's exception fails the whole call."""
    from torch.multiprocessing.spawn import start_processes

    if nproc < 1:
        raise ConfigError(f"nproc must be >= 1, not {nproc}")
    with tempfile.TemporaryDirectory(prefix="frugalml-pg-") as folder:
        store_path = os.path.join(folder, "store")
        try:
            start_processes(  # type: ignore[no-untyped-call]
                _rank_main,
                args=(fn, nproc, store_path, resolve_backend(backend), args),
                nprocs=nproc,
                join=True,
                start_method="spawn",
            )
        except Exception:
            for rank in range(nproc):
                path = Path(f"{store_path}.error{rank}")
                if path.exists():
                    error = json.loads(path.read_text(encoding="utf-8"))
                    raise FrugalError(
                        f"rank {rank}: {error['message']}", fix=error["fix"]
                    ) from None
            raise

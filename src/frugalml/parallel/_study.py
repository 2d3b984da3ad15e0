"""A study trial trained by local ranks: a spec's ``parallel:`` section.

:func:`train_trial_ranks` is what :func:`frugalml.study.run_metered_trial` calls instead of
:func:`frugalml.train.train` when a trial's definition has ``parallel`` with ``nproc >= 2``.
It spawns the ranks (:func:`frugalml.parallel.spawn`, gloo on CPU, NCCL on CUDA); each
prepares the trial's dataset and model from the definition as the trial runner does (same
seed, so the same initial weights), takes or calibrates its share of each batch, and trains
with :func:`frugalml.parallel.train_uneven` under its own meter
(:func:`frugalml.parallel.rank_meter`: each GPU read by its own rank, the host's counters
by local rank 0 only). After every epoch each window (the epoch, its training, its
evaluation) is merged over the ranks into one measurement (:func:`gather_measurement`:
every counter read by one rank, so nothing counts twice), rank 0 evaluates on the
validation and test splits, and the epoch's record is the one ``train`` writes. The
launcher builds a :class:`frugalml.train.TrainResult` from rank 0's records.

What the uneven loop does not implement is refused when the spec is checked
(:func:`check_trial_parallel`): ``bf16``, ``channels_last`` and ``data_path: loader``.
"""

from __future__ import annotations

import json
import math
import os
import statistics
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from frugalml.errors import ConfigError, FrugalError

if TYPE_CHECKING:
    import torch

    from frugalml.meter import Measurement, Meter
    from frugalml.parallel._data_parallel import Backend, ParallelConfig, RankRun
    from frugalml.train import TrainConfig, TrainResult

__all__ = ["RankedTraining", "check_trial_parallel", "train_trial_ranks"]


def check_trial_parallel(
    parallel: ParallelConfig, training: TrainConfig, *, here: bool = False
) -> None:
    """Refuse a ``parallel:`` section its trial could not run: a share too small for the
    batch, training options the uneven loop does not implement; with ``here``, a backend
    this machine lacks (:func:`frugalml.parallel.check_backend`)."""
    from frugalml.parallel._data_parallel import check_backend, check_full_batches

    if parallel.nproc < 2:
        return
    if parallel.shares is not None:
        check_full_batches(training.batch_size, parallel.shares)
    for name, value, default in (
        ("bf16", training.bf16, False),
        ("channels_last", training.channels_last, False),
        ("data_path", "tensors" if training.data_path == "auto" else training.data_path, "tensors"),
    ):
        if value != default:
            raise ConfigError(
                f"training.{name}: {value} is not implemented by parallel training "
                f"(nproc {parallel.nproc})",
                fix=f"remove training.{name}, or use parallel: {{nproc: 1}}",
            )
    if here:
        check_backend(parallel, training.device)


@dataclass(frozen=True)
class RankedTraining:
    """What :func:`train_trial_ranks` returns: the training as ``train`` would return it,
    and the results-row fields of the parallel run (``nproc``, ``shares`` ...)."""

    train_result: TrainResult
    row: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class _RankData:
    """The trial's splits on this rank's device: normalised images, labels."""

    x: torch.Tensor
    y: torch.Tensor
    splits: dict[str, tuple[torch.Tensor, Any]]
    num_classes: int

    @classmethod
    def load(
        cls, dataset: Any, config: TrainConfig, pretrained: bool, device: torch.device
    ) -> _RankData:
        import numpy as np
        import torch

        from frugalml.train._step import Normaliser, channel_stats

        mean, std = channel_stats(dataset, config.normalization, pretrained)
        normalise = Normaliser(mean, std, device)

        def images(split: Any) -> torch.Tensor:
            return normalise(torch.from_numpy(np.ascontiguousarray(split.images)).to(device))

        y = torch.from_numpy(dataset.train.labels.astype(np.int64)).to(device)
        splits = {
            name: (images(s), s.labels)
            for name, s in (("val", dataset.val), ("test", dataset.test))
        }
        return cls(images(dataset.train), y, splits, dataset.num_classes)

    def metrics(self, model: torch.nn.Module, name: str, batch_size: int) -> dict[str, float]:
        import numpy as np
        import torch

        from frugalml.train import classification_metrics

        x, labels = self.splits[name]
        if len(labels) == 0:
            return classification_metrics(np.zeros(0, np.int64), np.zeros((0, 1)), 0)
        model.eval()
        with torch.no_grad():
            parts = [
                torch.softmax(model(b).float(), dim=1).cpu() for b in torch.split(x, batch_size)
            ]
        model.train()
        return classification_metrics(labels, torch.cat(parts).numpy(), self.num_classes)


class _Epochs:
    """The per-epoch windows and records of one rank (records kept on rank 0)."""

    def __init__(
        self, meter: Meter, model: Any, data: _RankData, config: TrainConfig, rank: int
    ) -> None:
        self.meter, self.model, self.data, self.config, self.rank = meter, model, data, config, rank
        self.records: list[dict[str, Any]] = []
        self.whole: Any = None

    def start(self) -> None:
        """Open the whole training's window and the first epoch's (DDP is set up)."""
        self.whole = self.meter.begin("train")
        self._open(1)

    def _open(self, epoch: int) -> None:
        self.epoch_window = self.meter.begin(f"epoch {epoch}")
        self.train_window = self.meter.begin(f"epoch {epoch} train")

    def done(self, epoch: int, run: RankRun) -> None:
        from frugalml.parallel._energy import gather_measurement
        from frugalml.train import EpochRecord, TrainingDiverged

        trained = gather_measurement(self.meter.end(self.train_window))
        loss = run.epoch_losses[-1]
        if not math.isfinite(loss):  # the all-reduced loss: every rank stops here
            raise TrainingDiverged(
                f"the training loss became {loss} in epoch {epoch}", fix="lower the learning rate"
            )
        eval_window = self.meter.begin(f"epoch {epoch} eval")
        val: dict[str, float] = {}
        test: dict[str, float] = {}
        if self.rank == 0:
            val = self.data.metrics(self.model, "val", self.config.eval_batch_size)
            test = self.data.metrics(self.model, "test", self.config.eval_batch_size)
        evaluated = gather_measurement(self.meter.end(eval_window))
        whole = gather_measurement(self.meter.end(self.epoch_window))
        n, batch = int(self.data.y.shape[0]), self.config.batch_size
        samples = n - 1 if n > batch and n % batch == 1 else n  # a final batch of one dropped
        if self.rank == 0:
            record = EpochRecord(
                epoch=epoch,
                train_loss=loss,
                train_samples=samples,
                train_duration_s=trained.duration_s,
                samples_per_s=samples / trained.duration_s if trained.duration_s > 0 else math.nan,
                val=val,
                test=test,
                measurement=whole,
                train_measurement=trained,
                eval_measurement=evaluated,
            )
            self.records.append(record.to_dict())
        if epoch < self.config.epochs:
            self._open(epoch + 1)


def _trial_rank(rank: int, world: int, job: dict[str, Any]) -> None:
    import torch
    import torch.distributed as dist

    from frugalml.meter import CarbonConfig
    from frugalml.parallel._data_parallel import ParallelConfig, train_uneven
    from frugalml.parallel._energy import combine_energy, rank_meter
    from frugalml.parallel._run import local_rank_of, rank_device, rank_shares
    from frugalml.train import TrainConfig

    definition = job["definition"]
    prepare_dataset, build_trial_model = job["prepare"], job["build_model"]
    parallel = ParallelConfig.from_mapping(definition["parallel"])
    config = TrainConfig.from_mapping(definition["training"])
    torch.set_num_threads(parallel.threads[rank] if parallel.threads else job["threads"])
    slowdown = parallel.slowdown[rank] if parallel.slowdown else 1.0
    local_rank = local_rank_of(rank)
    device = rank_device(dist.get_backend(), local_rank)
    dataset = prepare_dataset(definition)
    data = _RankData.load(dataset, config, bool(definition.get("pretrained")), device)
    model = build_trial_model(definition, dataset).to(device)
    model.train()
    shares, source = rank_shares(parallel, model, data.x, data.y, config.batch_size, slowdown)
    carbon = CarbonConfig(**(definition.get("carbon") or {}))
    meter = rank_meter(local_rank, str(device), launcher_pid=job["launcher_pid"], carbon=carbon)
    epochs = _Epochs(meter, model, data, config, rank)
    with meter:  # DDP's set-up (seconds: a fresh process) is left to the trial's set-up
        run = train_uneven(
            model,
            data.x,
            data.y,
            config,
            shares,
            slowdown=slowdown,
            on_epoch=epochs.done,
            on_ready=epochs.start,
        )
        energy = combine_energy(meter.end(epochs.whole), rank, local_rank)
    steps: list[Any] = [None] * world
    dist.all_gather_object(steps, run.steps)
    if rank != 0:
        return
    warm = run.step_times_s[1:] or run.step_times_s
    result = {
        "epochs": epochs.records,
        "device": str(device),
        "threads": torch.get_num_threads(),
        "row": {
            "nproc": world,
            "shares": json.dumps([round(s, 6) for s in shares]),
            "shares_source": source,
            "parallel_backend": dist.get_backend(),
            "parallel_steps": json.dumps([int(s or 0) for s in steps]),
            "parallel_slowdown": json.dumps(list(parallel.slowdown or (1.0,) * world)),
            "parallel_step_time_s": statistics.median(warm) if warm else None,
            "parallel_energy": json.dumps(energy.to_dict()),
        },
    }
    Path(job["out"]).write_text(json.dumps(result), encoding="utf-8")


def _train_result(data: Mapping[str, Any], duration_s: float) -> TrainResult:
    from frugalml.meter import Measurement
    from frugalml.train import EpochRecord, TrainResult

    def measured(value: Any) -> Measurement | None:
        return Measurement.from_dict(value) if value else None

    records = [
        EpochRecord(
            epoch=int(r["epoch"]),
            train_loss=float(r["train_loss"]),
            train_samples=int(r["train_samples"]),
            train_duration_s=float(r["train_duration_s"]),
            samples_per_s=float(r["samples_per_s"]),
            val=dict(r["val"]),
            test=dict(r["test"]),
            measurement=measured(r["measurement"]),
            train_measurement=measured(r["train_measurement"]),
            eval_measurement=measured(r["eval_measurement"]),
        )
        for r in data["epochs"]
    ]
    best = max(records, key=lambda r: (r.val.get("accuracy", -1.0), -r.epoch))
    return TrainResult(
        epochs=records,
        final_test=records[-1].test,
        final_val=records[-1].val,
        best_val_epoch=best.epoch,
        best_val=best.val,
        best_val_test=best.test,
        device=str(data["device"]),
        data_path="tensors",
        duration_s=duration_s,
        notes=["data parallel over local ranks with an uneven split (frugalml.parallel)"],
        threads=int(data["threads"]),
    )


def train_trial_ranks(
    definition: Mapping[str, Any],
    *,
    prepare: Callable[[Mapping[str, Any]], Any],
    build_model: Callable[[Mapping[str, Any], Any], Any],
    threads: int | None = None,
) -> RankedTraining:
    """Train the trial ``definition`` (its ``parallel`` section: ``nproc >= 2``) with
    spawned local ranks; ``threads``: torch threads per rank unless ``parallel.threads``
    says otherwise (default 1). Each rank loads the dataset with ``prepare(definition)`` and
    builds the model with ``build_model(definition, dataset)``: the study's own functions,
    passed in (module-level, so they reach spawned ranks by name) so that this package never
    imports the study. Raises what a rank raised (one line, with its fix)."""
    import time

    from frugalml.parallel._data_parallel import ParallelConfig, resolve_backend, spawn
    from frugalml.train import TrainConfig

    parallel = ParallelConfig.from_mapping(definition["parallel"])
    training = TrainConfig.from_mapping(definition["training"])
    check_trial_parallel(parallel, training, here=True)
    backend = resolve_backend(parallel.backend, training.device)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="frugalml-trial-") as folder:
        out = Path(folder) / "ranks.json"
        job = {
            "definition": dict(definition),
            "threads": threads or 1,
            "launcher_pid": os.getpid(),
            "out": str(out),
            "prepare": prepare,
            "build_model": build_model,
        }
        spawn(_trial_rank, parallel.nproc, job, backend=cast("Backend", backend))
        if not out.exists():
            raise FrugalError(
                "the ranks finished without a result",
                fix="rerun with debug logging (logging.DEBUG)",
            )
        data = json.loads(out.read_text(encoding="utf-8"))
    return RankedTraining(_train_result(data, time.perf_counter() - started), dict(data["row"]))

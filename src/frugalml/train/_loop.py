"""One metered training loop.

Each epoch is a meter window ``epoch N`` with two nested windows, ``epoch N train`` and
``epoch N eval``, so per-epoch energy (and the meter's prediction of the total) exists while
training runs. Batches come either from tensors kept on the training device (the fast path)
or from a DataLoader with a per-batch copy (the usual way); both draw the same batches in the
same order from a seeded permutation.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from frugalml.errors import ConfigError, FrugalError
from frugalml.train._config import TrainConfig
from frugalml.train._metrics import classification_metrics
from frugalml.train._step import (
    BatchOrder,
    Normaliser,
    TrainStep,
    autocast_for,
    channel_stats,
    make_optimizer,
)

if TYPE_CHECKING:
    import torch

    from frugalml.data import ImageDataset, Split
    from frugalml.meter import BudgetGuard, Measurement, Meter

logger = logging.getLogger(__name__)

#: torch intra-op threads for every training frugalml runs (study, tune, factorial, profile,
#: the examples) unless the user says otherwise. Small-batch training of small models gains
#: little from more threads on a CPU, and with other processes on the cores the same work
#: swung up to 11x in time and estimated energy under torch's default (benchmarks/RESULTS.md).
DEFAULT_THREADS = 1


class TrainingDiverged(FrugalError):
    """The training loss became NaN or infinite."""

    exit_code = 1


@dataclass
class EpochRecord:
    """What one epoch did and cost. ``epoch`` counts from 1."""

    epoch: int
    train_loss: float
    train_samples: int
    train_duration_s: float
    samples_per_s: float
    val: dict[str, float]
    test: dict[str, float]
    measurement: Measurement | None = None
    train_measurement: Measurement | None = None
    eval_measurement: Measurement | None = None
    #: The process's RSS when training began (imports done, data loaded, model built): what
    #: the training's own memory (``train_peak_rss_bytes``) is counted above.
    baseline_rss_bytes: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "train_loss": self.train_loss,
            "train_samples": self.train_samples,
            "train_duration_s": self.train_duration_s,
            "samples_per_s": self.samples_per_s,
            "val": dict(self.val),
            "test": dict(self.test),
            "measurement": self.measurement.to_dict() if self.measurement else None,
            "train_measurement": (
                self.train_measurement.to_dict() if self.train_measurement else None
            ),
            "eval_measurement": self.eval_measurement.to_dict() if self.eval_measurement else None,
            "baseline_rss_bytes": self.baseline_rss_bytes,
        }


@dataclass
class TrainResult:
    """The outcome of :func:`train`. The PePR performance P is ``final_test["accuracy"]``."""

    epochs: list[EpochRecord]
    final_test: dict[str, float]
    final_val: dict[str, float]
    best_val_epoch: int
    best_val: dict[str, float]
    best_val_test: dict[str, float]
    device: str
    data_path: str
    duration_s: float
    stopped_early: bool = False
    stop_reason: str | None = None
    notes: list[str] = field(default_factory=list)
    #: torch's intra-op threads while this training ran.
    threads: int | None = None

    @property
    def accuracy(self) -> float:
        return self.final_test.get("accuracy", math.nan)


def check_threads(threads: object, *, option: str = "threads") -> int:
    """``threads`` as a positive int (``None``: :data:`DEFAULT_THREADS`); else a ConfigError."""
    if threads is None:
        return DEFAULT_THREADS
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ConfigError(
            f"{option} must be a whole number of at least 1, got {threads!r}",
            fix="give 1 or more (default 1: one torch thread per training)",
        )
    return threads


def apply_threads(threads: int | None = None, *, option: str = "threads") -> int:
    """Set torch's intra-op threads for this process to ``threads`` (``None``: the one
    default, :data:`DEFAULT_THREADS`) and return the count now in force. The one place
    where frugalml chooses torch's threads."""
    import torch

    count = check_threads(threads, option=option)
    if torch.get_num_threads() != count:
        torch.set_num_threads(count)
    return int(torch.get_num_threads())


@contextlib.contextmanager
def using_threads(threads: int | None = None, *, option: str = "threads") -> Iterator[int]:
    """:func:`apply_threads` for the body of a ``with``; torch's previous count afterwards."""
    import torch

    before = int(torch.get_num_threads())
    try:
        yield apply_threads(threads, option=option)
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)


def resolve_device(name: str) -> str:
    """``auto`` means CUDA when available, else CPU; an unavailable device is an error."""
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(
            f"training.device is {name!r} but CUDA is not available here",
            fix="set training.device to auto or cpu",
        )
    if name == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(
            "training.device is 'mps' but MPS is not available here", fix="use auto or cpu"
        )
    return name


class _Feeder:
    """Turns index batches into normalised float batches on the training device."""

    def __init__(
        self,
        split: Split,
        device: torch.device,
        mean: list[float],
        std: list[float],
        on_device: bool,
        channels_last: bool,
    ) -> None:
        import torch

        self.device = device
        self.on_device = on_device
        self.channels_last = channels_last
        images = torch.from_numpy(np.ascontiguousarray(split.images))
        labels = torch.from_numpy(np.ascontiguousarray(split.labels.astype(np.int64)))
        if on_device:
            images, labels = images.to(device), labels.to(device)
        self.images, self.labels = images, labels
        self._prepare = Normaliser(mean, std, device, channels_last)

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def batches(self, order: list[torch.Tensor]) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        if self.on_device:
            for idx in order:
                idx = idx.to(self.device, non_blocking=True)
                yield self._prepare(self.images[idx]), self.labels[idx]
            return
        from torch.utils.data import DataLoader, TensorDataset

        loader = DataLoader(
            TensorDataset(self.images, self.labels),
            batch_sampler=[idx.tolist() for idx in order],
            num_workers=0,
            pin_memory=self.device.type == "cuda",
        )
        for images, labels in loader:
            images = images.to(self.device, non_blocking=True)
            yield self._prepare(images), labels.to(self.device, non_blocking=True)

    def sequential(self, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for start in range(0, len(self), batch_size):
            images = self.images[start : start + batch_size].to(self.device)
            yield self._prepare(images), self.labels[start : start + batch_size].to(self.device)


def _window(meter: Meter | None, name: str) -> contextlib.AbstractContextManager[Any]:
    return meter.window(name) if meter is not None else contextlib.nullcontext()


def _measurement(window: Any) -> Measurement | None:
    return getattr(window, "measurement", None)


def _process_rss_bytes() -> int | None:
    try:
        import psutil

        return int(psutil.Process().memory_info().rss)
    except Exception:  # memory is reported, never a reason to fail a training
        return None


def _sync(device: torch.device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def evaluate(
    model: torch.nn.Module,
    feeder: _Feeder,
    num_classes: int,
    batch_size: int,
    bf16: bool = False,
) -> dict[str, float]:
    """Metrics of ``model`` on every sample of ``feeder``'s split, in order."""
    import torch

    if len(feeder) == 0:
        return classification_metrics(np.zeros(0, np.int64), np.zeros((0, num_classes)), 0)
    was_training = model.training
    model.eval()
    probabilities: list[torch.Tensor] = []
    labels: list[torch.Tensor] = []
    autocast = (
        torch.autocast(feeder.device.type, dtype=torch.bfloat16)
        if bf16
        else contextlib.nullcontext()
    )
    with torch.no_grad(), autocast:
        for x, y in feeder.sequential(batch_size):
            probabilities.append(torch.softmax(model(x).float(), dim=1).cpu())
            labels.append(y.cpu())
    model.train(was_training)
    return classification_metrics(
        torch.cat(labels).numpy(), torch.cat(probabilities).numpy(), num_classes
    )


def _stop_reason(
    record: EpochRecord,
    epoch_measurements: list[Measurement],
    guard: BudgetGuard | None,
    should_stop: Callable[[EpochRecord], str | None] | None,
) -> str | None:
    """Why training stops after ``record``'s epoch (the caller's reason first), or None."""
    if should_stop is not None:
        reason = should_stop(record)
        if reason is not None:
            return reason
    if guard is not None and epoch_measurements:
        decision = guard.check(epoch_measurements)
        if decision.stop:
            logger.warning("stopping after epoch %d: %s", record.epoch, decision.reason)
            return decision.reason
    return None


@dataclass
class _Run:
    """What one training run works with: the device, the model on it, its step, the
    feeders of the three splits and the seeded batch order."""

    device: torch.device
    model: torch.nn.Module
    step: TrainStep
    feeders: dict[str, _Feeder]
    batches: BatchOrder
    data_path: str


def _prepare(
    model: torch.nn.Module,
    dataset: ImageDataset,
    config: TrainConfig,
    pretrained: bool,
    regulariser: Callable[[torch.nn.Module], torch.Tensor] | None,
    on_step: Callable[[torch.nn.Module], None] | None,
) -> _Run:
    """Seed, choose the data path, move the model and the data to the device."""
    import torch

    device = torch.device(resolve_device(config.device))
    torch.manual_seed(config.seed)
    mean, std = channel_stats(dataset, config.normalization, pretrained)
    train_bytes = dataset.train.images.nbytes
    on_device = config.data_path == "tensors" or (
        config.data_path == "auto" and train_bytes <= config.tensor_path_max_bytes
    )
    feeders = {
        name: _Feeder(split, device, mean, std, on_device, config.channels_last)
        for name, split in (("train", dataset.train), ("val", dataset.val), ("test", dataset.test))
    }
    if len(feeders["train"]) < 2:
        raise ConfigError(
            f"the training split of {dataset.name} has {len(feeders['train'])} sample(s)",
            fix="use a larger fraction or dataset",
        )
    model = model.to(device)
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)
    model.train()
    step = TrainStep(
        model,
        make_optimizer(model.parameters(), config),
        autocast=autocast_for(device, config.bf16),
        regulariser=regulariser,
        on_step=on_step,
    )
    batches = BatchOrder(len(feeders["train"]), config.batch_size, config.seed)
    return _Run(device, model, step, feeders, batches, "tensors" if on_device else "loader")


def _train_epoch(run: _Run, epoch: int) -> tuple[float, int, float]:
    """One pass over the training split: (mean loss, samples, seconds)."""
    import torch

    order = run.batches.order(epoch)
    _sync(run.device)
    t0 = time.perf_counter()
    loss_sum = torch.zeros((), device=run.device)
    samples = 0
    for x, y in run.feeders["train"].batches(order):
        loss = run.step(x, y)
        loss_sum += loss.float() * y.shape[0]
        samples += int(y.shape[0])
    mean_loss = float(loss_sum) / max(samples, 1)
    _sync(run.device)
    return mean_loss, samples, time.perf_counter() - t0


def _epoch(
    run: _Run,
    epoch: int,
    dataset: ImageDataset,
    config: TrainConfig,
    meter: Meter | None,
    baseline_rss_bytes: int | None,
) -> EpochRecord:
    """Train and evaluate one epoch inside its meter windows."""
    with _window(meter, f"epoch {epoch}") as epoch_window:
        with _window(meter, f"epoch {epoch} train") as train_window:
            mean_loss, samples, train_duration_s = _train_epoch(run, epoch)
        if not math.isfinite(mean_loss):
            raise TrainingDiverged(
                f"the training loss became {mean_loss} in epoch {epoch}",
                fix="lower the learning rate, or train in fp32 (bf16: false)",
            )
        with _window(meter, f"epoch {epoch} eval") as eval_window:
            val = evaluate(
                run.model,
                run.feeders["val"],
                dataset.num_classes,
                config.eval_batch_size,
                config.bf16,
            )
            test = evaluate(
                run.model,
                run.feeders["test"],
                dataset.num_classes,
                config.eval_batch_size,
                config.bf16,
            )
    record = EpochRecord(
        epoch=epoch,
        train_loss=mean_loss,
        train_samples=samples,
        train_duration_s=train_duration_s,
        samples_per_s=samples / train_duration_s if train_duration_s > 0 else math.nan,
        val=val,
        test=test,
        measurement=_measurement(epoch_window),
        train_measurement=_measurement(train_window),
        eval_measurement=_measurement(eval_window),
        baseline_rss_bytes=baseline_rss_bytes,
    )
    logger.debug(
        "epoch %d: loss %.4f, val acc %.4f, test acc %.4f, %.0f samples/s",
        epoch,
        mean_loss,
        val.get("accuracy", math.nan),
        test.get("accuracy", math.nan),
        record.samples_per_s,
    )
    return record


def train(
    model: torch.nn.Module,
    dataset: ImageDataset,
    config: TrainConfig | None = None,
    *,
    meter: Meter | None = None,
    pretrained: bool = False,
    on_epoch: Callable[[EpochRecord], None] | None = None,
    guard: BudgetGuard | None = None,
    regulariser: Callable[[torch.nn.Module], torch.Tensor] | None = None,
    on_step: Callable[[torch.nn.Module], None] | None = None,
    should_stop: Callable[[EpochRecord], str | None] | None = None,
) -> TrainResult:
    """Train ``model`` on ``dataset`` and evaluate it on validation and test after every epoch.

    ``meter`` (optional) gets a window per epoch with nested ``train`` and ``eval`` windows.
    ``on_epoch`` is called with each finished :class:`EpochRecord` (a study writes it to its
    store; a tuner may raise to prune). ``guard`` (a :class:`frugalml.meter.BudgetGuard`)
    stops training early when the predicted total would exceed its budget; the result then
    says so in ``stop_reason``. ``regulariser(model)`` (optional) is added to each batch's
    loss (a sparsity term, :mod:`frugalml.compress`); ``on_step(model)`` runs after each
    optimizer step (e.g. to keep pruned weights at zero). ``should_stop(record)`` (optional)
    is asked after every epoch but the last whether to stop, and returns a reason (a pruner's
    verdict, a budget) or None; training then ends with the epochs so far, ``stopped_early``
    and the reason in ``stop_reason``.
    """
    import torch

    config = config or TrainConfig()
    run = _prepare(model, dataset, config, pretrained, regulariser, on_step)
    records: list[EpochRecord] = []
    epoch_measurements: list[Measurement] = []
    stop_reason: str | None = None
    baseline_rss_bytes = _process_rss_bytes()
    started = time.perf_counter()
    for epoch in range(1, config.epochs + 1):
        record = _epoch(run, epoch, dataset, config, meter, baseline_rss_bytes)
        records.append(record)
        if on_epoch is not None:
            on_epoch(record)
        if record.measurement is not None:
            epoch_measurements.append(record.measurement)
        if epoch < config.epochs:
            stop_reason = _stop_reason(record, epoch_measurements, guard, should_stop)
            if stop_reason is not None:
                logger.debug("stopping after epoch %d: %s", epoch, stop_reason)
                break

    best = max(records, key=lambda r: (r.val.get("accuracy", -1.0), -r.epoch))
    return TrainResult(
        epochs=records,
        final_test=dict(records[-1].test),
        final_val=dict(records[-1].val),
        best_val_epoch=best.epoch,
        best_val=dict(best.val),
        best_val_test=dict(best.test),
        device=str(run.device),
        data_path=run.data_path,
        duration_s=time.perf_counter() - started,
        stopped_early=stop_reason is not None,
        stop_reason=stop_reason,
        threads=int(torch.get_num_threads()),
    )

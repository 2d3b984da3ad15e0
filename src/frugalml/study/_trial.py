"""One metered trial, written once: :func:`run_metered_trial`.

Every trial frugalml trains (a study worker's, a tuner's, a factorial cell's, a remote
executor's) runs here: prepare the dataset, seed, build the model, count its costs, open the
meter windows (``trial`` around ``trial setup`` and the epochs), call
:func:`frugalml.train.train`, classify the failure and build the results row with
:func:`frugalml.study.build_result`. Nothing here writes a store: the caller records the
:class:`TrialOutcome` (and, as they happen, the per-epoch records given to ``on_epoch``), so
the same function runs in a worker process, in the tuner's process or on another machine.
A definition with ``parallel: {nproc: N >= 2}`` trains in N spawned local ranks instead
(:func:`frugalml.parallel.train_trial_ranks`: uneven data parallel, each counter read by one
rank), inside the same trial window; the row adds ``nproc``, ``shares`` and the
``parallel_*`` fields (``parallel_energy``: which rank read what).

Policies (one of each):

- failure: any exception becomes a ``failed`` outcome with its error, traceback and the
  energy spent until then (the trial window is closed and booked); the caller goes on.
- interrupt: ``KeyboardInterrupt`` (a worker turns SIGTERM into one) gives an
  ``interrupted`` outcome, which the caller gives back as pending; so does a
  :class:`frugalml.errors.StoreError` raised by a caller's callback (the store failed, not
  the trial).
- stopping: ``should_stop`` may stop training after an epoch with a reason; ``train``
  returns the partial result and the outcome is ``pruned``, or ``complete`` with the
  reason in ``stop_reason`` when the stop is :class:`BudgetStop` (a budget, not a verdict).
"""

from __future__ import annotations

import json
import logging
import time
import traceback as tb
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from frugalml._types import TrialStatus as _TrialStatus
from frugalml.errors import ConfigError

if TYPE_CHECKING:
    from frugalml.data import ImageDataset
    from frugalml.meter import Meter

logger = logging.getLogger(__name__)

#: How one run ended; the vocabulary of states is written once, in frugalml._types.
TrialStatus = _TrialStatus


class BudgetStop(str):
    """A stop reason that is a budget (the trial ends ``complete``), not a pruning verdict."""

    __slots__ = ()


@dataclass(frozen=True)
class TrialPlan:
    """What to run: plain data (JSON- and pickle-able), so it travels to a remote worker.

    ``definition`` is the store's trial definition (model, model_args, dataset, pretrained,
    pretrained_file, fraction, seed, image_size, training, carbon, data_root, download).
    ``threads``: torch's intra-op threads (:func:`frugalml.train.apply_threads`; None: the
    default, one). ``workers``: trials running side by side (recorded as
    ``concurrent_workers``). ``spawned_at``: when the trial's process started (seconds since
    the epoch), for ``process_overhead_s``. ``attribution_path``: the file where the local
    runner's host sampler publishes this trial's attributed share of the machine's shared
    counters; the trial's own meter then reads that share (kind ``attributed``) instead of
    opening RAPL or NVML itself (:mod:`frugalml.meter._published`). None (a Ray trial, one
    trial at a time): the meter reads the counters itself.
    """

    trial_id: str
    definition: dict[str, Any]
    threads: int | None = 1
    workers: int = 1
    spawned_at: float | None = None
    attribution_path: str | None = None


@dataclass
class TrialOutcome:
    """What a trial did; its caller records it (:func:`run_metered_trial` writes nothing).

    ``result`` is the results-table row (:func:`frugalml.study.build_result`), also for a
    failed, pruned or interrupted trial (it books the energy spent until then; a caller
    giving an interrupted trial back may drop it).
    ``epochs``: the per-epoch records in order, the set-up window first as epoch 0
    (:func:`frugalml.study._results.setup_record`) when it was measured, then
    :meth:`frugalml.train.EpochRecord.to_dict` of each epoch. ``cause`` is the exception
    that ended an interrupted trial (not data: for the caller in the same process).
    """

    trial_id: str
    status: TrialStatus
    result: dict[str, Any] | None
    epochs: list[dict[str, Any]]
    error: str | None = None
    traceback: str | None = None
    stop_reason: str | None = None
    cause: BaseException | None = field(default=None, repr=False, compare=False)

    @property
    def trained_epochs(self) -> list[dict[str, Any]]:
        """The training epochs' records (the set-up record left out)."""
        return [e for e in self.epochs if e.get("epoch", 0) != 0]


def prepare_dataset(
    definition: Mapping[str, Any], loaded: ImageDataset | None = None
) -> ImageDataset:
    """The dataset a trial trains on: ``loaded`` (already in memory) or loaded from the
    definition (resized while loading, so a folder of mixed sizes loads), cut to the
    definition's ``fraction`` with its ``seed``."""
    from frugalml.data import load_dataset

    dataset = loaded
    if dataset is None:
        dataset = load_dataset(
            str(definition["dataset"]),
            root=definition.get("data_root"),
            download=definition.get("download"),
            image_size=definition.get("image_size"),
        )
    fraction = float(definition.get("fraction", 1.0))
    if fraction < 1.0:
        dataset = dataset.with_fraction(fraction, seed=int(definition["seed"]))
    return dataset


def build_trial_model(definition: Mapping[str, Any], dataset: ImageDataset) -> Any:
    """The definition's model for ``dataset``, built after seeding torch with its seed."""
    import torch

    from frugalml.models import create_model

    torch.manual_seed(int(definition["seed"]))
    return create_model(
        str(definition["model"]),
        num_classes=dataset.num_classes,
        in_chans=dataset.channels,
        pretrained=bool(definition.get("pretrained", False)),
        pretrained_file=definition.get("pretrained_file"),
        **dict(definition.get("model_args") or {}),
    )


def classify_failure(exc: BaseException) -> tuple[TrialStatus, str, str | None]:
    """The one failure policy: (status, error, traceback) for what ended a trial."""
    import torch

    from frugalml.errors import FrugalError, StoreError

    if isinstance(exc, KeyboardInterrupt):
        return "interrupted", "interrupted", None
    if isinstance(exc, StoreError):  # the store failed, not the trial: give it back
        return "interrupted", str(exc), None
    trace = "".join(tb.format_exception(type(exc), exc, exc.__traceback__))
    if isinstance(exc, FrugalError):
        return "failed", str(exc), trace
    if isinstance(exc, torch.OutOfMemoryError):
        return "failed", f"out of memory: {str(exc).splitlines()[0]}", trace
    return "failed", f"{type(exc).__name__}: {exc}", trace


@dataclass
class _Run:
    """What a trial has produced so far (kept when it raises)."""

    epochs: list[dict[str, Any]] = field(default_factory=list)
    records: list[Any] = field(default_factory=list)
    costs: Any = None
    train_result: Any = None
    image_size: tuple[int, int] | None = None
    test_samples: int | None = None
    stop: list[str] = field(default_factory=list)
    threads: int | None = None
    parallel: dict[str, Any] = field(default_factory=dict)


@dataclass
class _Ending:
    """How the trial window ended: ``complete`` unless something was raised."""

    status: TrialStatus = "complete"
    error: str | None = None
    trace: str | None = None
    cause: BaseException | None = None


def _ending(trial_id: str, exc: BaseException) -> _Ending:
    """The one failure policy applied to what ended trial ``trial_id`` (and logged)."""
    status, error, trace = classify_failure(exc)
    if status == "failed":
        logger.warning("trial %s failed: %s", trial_id, error)
        logger.debug("trial %s traceback:\n%s", trial_id, trace)
    return _Ending(status, error, trace, exc if status == "interrupted" else None)


def run_metered_trial(
    plan: TrialPlan,
    *,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
    should_stop: Callable[[dict[str, Any]], str | None] | None = None,
    dataset: ImageDataset | None = None,
    meter: Meter | None = None,
    window: str = "trial",
    check: bool | None = None,
) -> TrialOutcome:
    """Run one trial under a meter and say what happened (see the module docstring).

    ``on_epoch`` gets each record as it exists (the set-up record, epoch 0, first).
    ``should_stop`` gets each finished epoch's record (not the last one's) and returns a
    reason to stop or None. ``dataset``: the trial's data, already in memory and prepared
    (:func:`prepare_dataset`: the tuner and the factorial load it once); default: loaded
    from the definition inside the set-up window. ``meter``: a started meter to window
    (default: a new one over the definition's carbon settings, opened and closed here).
    ``window`` names the trial window. ``check`` runs :func:`frugalml.study._spec.check_trial`
    first (default: when the dataset is loaded here, as a study worker does).
    """
    from frugalml.study._results import process_rss_bytes

    run = _Run()
    owns_meter = meter is None
    if meter is None:
        from frugalml.meter import CarbonConfig, MeterConfig

        carbon = CarbonConfig(**(plan.definition.get("carbon") or {}))
        meter = _trial_meter(MeterConfig(carbon=carbon), plan.attribution_path)
    ending = _Ending()
    trial_window: Any = None
    baseline_rss_bytes = process_rss_bytes()
    try:
        from frugalml.train import apply_threads

        run.threads = apply_threads(plan.threads, option="threads")
        if owns_meter:
            meter.start()
        with meter.window(window) as trial_window:
            _setup_and_train(
                plan, run, meter, dataset, on_epoch, should_stop, check=check, window=window
            )
    except BaseException as exc:
        if not isinstance(exc, Exception | KeyboardInterrupt):
            raise  # SystemExit, GeneratorExit: not the trial's doing
        ending = _ending(plan.trial_id, exc)
    finally:
        if owns_meter:
            meter.close()
    measurement = getattr(trial_window, "measurement", None)
    return _outcome(plan, run, ending, measurement, baseline_rss_bytes)


def _trial_meter(config: Any, attribution_path: str | None) -> Meter:
    """A trial's own meter: over the registered backends, or, where a host sampler
    attributes the shared counters, over its published share (no counter opened here)."""
    from frugalml.meter import Meter

    if attribution_path is None:
        return Meter(config)
    from frugalml.meter import ProcessTreeSampler
    from frugalml.meter._published import published_meter_backends

    process = ProcessTreeSampler(config.pid)
    backends = published_meter_backends(attribution_path, config, process)
    return Meter(config, backends=backends, process=process)


def _outcome(
    plan: TrialPlan,
    run: _Run,
    ending: _Ending,
    measurement: Any,
    baseline_rss_bytes: int | None,
) -> TrialOutcome:
    """The :class:`TrialOutcome` of a finished trial window: the stopping policy applied,
    the results row built (:func:`frugalml.study.build_result`)."""
    from frugalml.study._results import build_result

    status = ending.status
    stop_reason = run.stop[-1] if run.stop else None
    if status == "complete" and stop_reason is not None and not isinstance(stop_reason, BudgetStop):
        status = "pruned"
    overhead_s = None
    if measurement is not None and plan.spawned_at is not None:
        overhead_s = max(0.0, time.time() - plan.spawned_at - measurement.duration_s)
    result = build_result(
        plan.trial_id,
        plan.definition,
        costs=run.costs,
        train_result=run.train_result,
        measurement=measurement,
        image_size=run.image_size,
        overhead_s=overhead_s,
        test_samples=run.test_samples,
        epochs=run.records,
        baseline_rss_bytes=baseline_rss_bytes,
        threads=run.threads,
    )
    # Machine-wide counters (RAPL, NVML) see every trial running at the same time; the
    # record says how many ran side by side so sums can be read correctly.
    result["concurrent_workers"] = plan.workers
    parallel = plan.definition.get("parallel")
    if parallel:  # what was asked, then what the ranks did (the shares they used, who read what)
        result.update(nproc=int(parallel["nproc"]), shares=json.dumps(parallel.get("shares")))
        result.update(run.parallel)
    return TrialOutcome(
        trial_id=plan.trial_id,
        status=status,
        result=result,
        epochs=run.epochs,
        error=ending.error,
        traceback=ending.trace,
        stop_reason=stop_reason,
        cause=ending.cause,
    )


def _setup_and_train(
    plan: TrialPlan,
    run: _Run,
    meter: Meter,
    loaded: ImageDataset | None,
    on_epoch: Callable[[dict[str, Any]], None] | None,
    should_stop: Callable[[dict[str, Any]], str | None] | None,
    *,
    check: bool | None,
    window: str,
) -> None:
    """The body of the trial window: set-up (its own window, epoch 0), then training."""
    from frugalml.models import count_costs
    from frugalml.study._results import setup_record
    from frugalml.train import EpochRecord, TrainConfig, train

    definition = plan.definition
    with meter.window(f"{window} setup") as setup_window:
        if check if check is not None else loaded is None:
            from frugalml.study._spec import Trial, check_trial

            check_trial(Trial.from_dict({"study": "", **definition}))
        dataset = loaded if loaded is not None else prepare_dataset(definition)
        run.image_size = dataset.image_size
        run.test_samples = len(dataset.test)
        model = build_trial_model(definition, dataset)
        run.costs = count_costs(model, (dataset.channels, *dataset.image_size))
    # Epoch 0 is the set-up window: with the epochs it lets a caller book the energy of a
    # trial it had to kill (study._results.killed_result).
    setup = setup_record(getattr(setup_window, "measurement", None))
    run.epochs.append(setup)
    if on_epoch is not None:
        on_epoch(setup)

    def epoch_done(record: EpochRecord) -> None:
        run.records.append(record)
        data = record.to_dict()
        run.epochs.append(data)
        if on_epoch is not None:
            on_epoch(data)

    if int((definition.get("parallel") or {}).get("nproc", 1)) > 1:
        if should_stop is not None:
            raise ConfigError(
                "a trial with parallel: cannot be stopped between epochs (pruning, budgets)",
                fix="tune without a parallel: section, or use parallel: {nproc: 1}",
            )
        _train_in_ranks(run, definition, epoch_done)
        return

    def stop(record: EpochRecord) -> str | None:
        reason = should_stop(run.epochs[-1]) if should_stop is not None else None
        if reason is not None:
            run.stop.append(reason)
        return reason

    run.train_result = train(
        model,
        dataset,
        TrainConfig.from_mapping(definition["training"]),
        meter=meter,
        pretrained=bool(definition.get("pretrained", False)),
        on_epoch=epoch_done,
        should_stop=stop if should_stop is not None else None,
    )


def _train_in_ranks(
    run: _Run, definition: Mapping[str, Any], epoch_done: Callable[[Any], None]
) -> None:
    """The training of a trial with ``parallel: {nproc: N >= 2}``: N local ranks with an
    uneven split (:func:`frugalml.parallel.train_trial_ranks`), each counter read by one
    rank; the epochs' records reach ``on_epoch`` when the ranks have finished."""
    from frugalml.parallel._study import train_trial_ranks

    trained = train_trial_ranks(
        definition, prepare=prepare_dataset, build_model=build_trial_model, threads=run.threads
    )
    run.parallel = trained.row
    for record in trained.train_result.epochs:
        epoch_done(record)
    run.train_result = trained.train_result

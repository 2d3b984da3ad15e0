"""Predict what a study will cost before it runs.

Method, stated in every estimate:

1. Each distinct model (at the input size and channels of its dataset) gets a short
   calibration: a few training steps at the spec's batch size on this machine, timed, under a
   meter, with the trials' own step (Adam, cross-entropy: :mod:`frugalml.train._step`) on
   the device, in the dtype (bf16) and memory layout (channels_last) of the spec's
   ``training``. The first step (allocation, warm-up) is discarded.
2. An epoch is ``ceil(n_train / batch)`` training steps plus evaluation of validation and
   test, taken as one third of a training step per sample (a forward pass without backward).
3. Models that the calibration time cap leaves out are scaled from the calibrated ones by
   forward FLOPs (torch.utils.flop_counter), at the median FLOP rate of those calibrated.
4. Energy is predicted time times the mean power the meter saw during calibration, with that
   meter's provenance (measured from a counter, or estimated).
5. Set-up (what a trial's window holds besides its epochs: loading the data, building the
   model, counting its costs) is the time those took here, once per dataset and model, plus
   what a fresh process pays once on top (the lazy imports of the data loader, the FLOP
   counter and timm), timed by doing the first trial's set-up in a new interpreter.

The prediction is split as the results are: ``train_energy_j`` (the training steps, PePR's
resource), ``eval_energy_j``, ``setup_energy_j`` and ``energy_j``, their sum, which is what a
study's budget counts. Training runs with the spec's torch threads (default one), as trials.

Small models are dominated by per-step overhead rather than FLOPs, which is why the step is
timed rather than derived from FLOPs wherever the cap allows.
"""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from frugalml.meter import J_PER_KWH
from frugalml.study._spec import StudySpec

if TYPE_CHECKING:
    from frugalml.train import TrainConfig


@dataclass
class TrialEstimate:
    label: str
    model: str
    params: int
    flops_per_sample: int
    n_train: int
    n_eval: int
    step_s: float
    step_source: str  # "timed" or "scaled by FLOPs"
    duration_s: float
    energy_j: float
    train_duration_s: float = 0.0
    train_energy_j: float = 0.0
    eval_duration_s: float = 0.0
    eval_energy_j: float = 0.0
    setup_duration_s: float = 0.0
    setup_energy_j: float = 0.0


@dataclass
class StudyEstimate:
    trials: list[TrialEstimate]
    total_duration_s: float
    total_energy_j: float
    power_w: float
    power_provenance: str
    power_source: str
    calibration_s: float
    method: str
    notes: list[str] = field(default_factory=list)
    threads: int = 1

    @property
    def total_energy_kwh(self) -> float:
        return self.total_energy_j / J_PER_KWH

    @property
    def total_train_energy_j(self) -> float:
        """The training steps of every trial (PePR's resource)."""
        return sum(t.train_energy_j for t in self.trials)

    @property
    def total_train_duration_s(self) -> float:
        return sum(t.train_duration_s for t in self.trials)

    @property
    def total_setup_energy_j(self) -> float:
        return sum(t.setup_energy_j for t in self.trials)

    @property
    def total_eval_energy_j(self) -> float:
        return sum(t.eval_energy_j for t in self.trials)


def _time_steps(
    model: Any,
    shape: tuple[int, int, int],
    classes: int,
    batch: int,
    steps: int,
    training: TrainConfig,
) -> float:
    """The median time of a training step (the first, warm-up, left out) as the study's
    trials take it: the same step (:class:`frugalml.train._step.TrainStep`), optimizer,
    device, dtype (bf16 autocast) and memory layout (channels_last) as ``training``."""
    import torch

    from frugalml.train import resolve_device
    from frugalml.train._step import TrainStep, autocast_for, make_optimizer

    device = torch.device(resolve_device(training.device))
    model = model.to(device)
    x = torch.randn(batch, *shape, device=device)  # normalised inputs: mean 0, std 1
    if training.channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, classes, (batch,), device=device)
    step = TrainStep(
        model,
        make_optimizer(model.parameters(), training),
        autocast=autocast_for(device, training.bf16),
    )
    model.train()
    times = []
    for _ in range(steps + 1):
        t0 = time.perf_counter()
        step(x, y)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times[1:])


_FRESH_SETUP = """
import json, sys, time
import torch
import frugalml.study  # what a worker has imported when its trial window opens
t0 = time.perf_counter()
from frugalml.data import load_dataset
from frugalml.models import count_costs, create_model
a = json.loads(sys.argv[1])
ds = load_dataset(a["dataset"], root=a["root"], download=a["download"], image_size=a["size"])
model = create_model(a["model"], num_classes=ds.num_classes, in_chans=ds.channels, **a["args"])
count_costs(model, (ds.channels, *ds.image_size))
print(time.perf_counter() - t0)
"""


def _fresh_setup_s(spec: StudySpec, trial: Any) -> float | None:
    """Seconds the set-up of ``trial`` takes in a new interpreter (None if it fails)."""
    import json
    import subprocess
    import sys

    args = {
        "dataset": trial.dataset,
        "root": spec.data_root,
        "download": spec.download,
        "size": trial.image_size,
        "model": trial.model.name,
        "args": trial.model.args_dict(),
    }
    try:
        done = subprocess.run(
            [sys.executable, "-c", _FRESH_SETUP, json.dumps(args)],
            capture_output=True,
            text=True,
            timeout=300,
            check=True,
        )
        return float(done.stdout.strip().splitlines()[-1])
    except (OSError, ValueError, IndexError, subprocess.SubprocessError):
        return None


def estimate_study(
    spec: StudySpec, *, calibration_cap_s: float = 30.0, steps: int = 3, fresh_setup: bool = True
) -> StudyEstimate:
    """Predict the energy and time of every trial of ``spec`` on this machine.

    ``fresh_setup=False`` skips timing a trial's set-up in a new interpreter (a few seconds);
    the set-up is then what this process took, without the imports every trial pays again.
    """
    from frugalml._yaml import parse_seconds
    from frugalml.train import using_threads

    parse_seconds(calibration_cap_s, "calibration_cap_s", example="30")  # as --calibration-cap-s

    with using_threads(spec.threads) as threads:  # time the steps as the trials run them
        estimate = _estimate(spec, calibration_cap_s, steps, fresh_setup)
    estimate.threads = threads
    return estimate


def _estimate(
    spec: StudySpec, calibration_cap_s: float, steps: int, fresh_setup: bool
) -> StudyEstimate:
    import torch

    from frugalml.data import load_dataset
    from frugalml.meter import Meter, MeterConfig
    from frugalml.models import count_costs, create_model

    datasets: dict[tuple[str, int | None], Any] = {}
    load_s: dict[tuple[str, int | None], float] = {}
    build_s: dict[tuple[Any, ...], float] = {}
    calibrated: dict[tuple[Any, ...], tuple[float, int, int, str]] = {}
    pending: dict[tuple[Any, ...], tuple[int, int]] = {}
    notes: list[str] = []
    trials = spec.trials()
    batch = spec.training.batch_size
    started = time.monotonic()
    meter = Meter(MeterConfig())
    with meter, meter.window("calibration") as window:
        for trial in trials:
            data_key = (trial.dataset, trial.image_size)
            if data_key not in datasets:
                t0 = time.perf_counter()
                ds = load_dataset(
                    trial.dataset,
                    root=spec.data_root,
                    download=spec.download,
                    image_size=trial.image_size,
                )
                datasets[data_key] = ds
                load_s[data_key] = time.perf_counter() - t0
            ds = datasets[data_key]
            key = (trial.model, data_key)
            if key in calibrated or key in pending:
                continue
            shape = (ds.channels, *ds.image_size)
            t0 = time.perf_counter()
            torch.manual_seed(0)
            model = create_model(
                trial.model.name,
                num_classes=ds.num_classes,
                in_chans=ds.channels,
                pretrained=False,
                **trial.model.args_dict(),
            )
            costs = count_costs(model, shape)
            build_s[key] = time.perf_counter() - t0
            if time.monotonic() - started < calibration_cap_s:
                step_s = _time_steps(model, shape, ds.num_classes, batch, steps, spec.training)
                calibrated[key] = (step_s, costs.params, costs.flops_per_sample, "timed")
            else:
                pending[key] = (costs.params, costs.flops_per_sample)
    measurement = window.measurement
    if measurement is None:  # pragma: no cover - the meter always records a closed window
        raise RuntimeError("the calibration window recorded no measurement")
    calibration_s = measurement.duration_s
    power_w = measurement.energy_j / calibration_s if calibration_s > 0 else 0.0
    extra_setup_s = 0.0
    setup_rule = "the time loading the data and building each model took here"
    if fresh_setup and trials:
        first = trials[0]
        first_key = (first.dataset, first.image_size)
        fresh = _fresh_setup_s(spec, first)
        if fresh is not None:
            extra_setup_s = max(0.0, fresh - load_s[first_key] - build_s[(first.model, first_key)])
            setup_rule += (
                f", plus {extra_setup_s:.2f} s per trial that a new process pays on top (the "
                f"first trial's set-up took {fresh:.2f} s in a fresh interpreter)"
            )
        else:
            notes.append("timing a set-up in a fresh interpreter failed: set-up is a low bound")
    if pending:
        rates = [f * batch / s for s, _, f, _ in calibrated.values() if s > 0 and f > 0]
        rate = statistics.median(rates) if rates else math.nan
        for key, (params, flops) in pending.items():
            calibrated[key] = (flops * batch / rate, params, flops, "scaled by FLOPs")
        notes.append(
            f"{len(pending)} model(s) not timed within the {calibration_cap_s:g} s calibration "
            f"cap were scaled by FLOPs at the median rate of the timed ones ({rate / 1e9:.2f} "
            "GFLOP/s of forward FLOPs per training step)"
        )
    estimates = []
    for trial in trials:
        data_key = (trial.dataset, trial.image_size)
        ds = datasets[data_key]
        step_s, params, flops, source = calibrated[(trial.model, data_key)]
        n_train = len(ds.train.labels)
        if trial.fraction < 1:
            n_train = max(ds.num_classes, round(n_train * trial.fraction))
        n_eval = len(ds.val.labels) + len(ds.test.labels)
        epochs = trial.training.epochs
        train_s = math.ceil(n_train / batch) * step_s * epochs
        eval_s = (n_eval / batch) * step_s / 3 * epochs
        setup_s = load_s[data_key] + build_s[(trial.model, data_key)] + extra_setup_s
        duration = train_s + eval_s + setup_s
        estimates.append(
            TrialEstimate(
                label=trial.label,
                model=trial.model.key,
                params=params,
                flops_per_sample=flops,
                n_train=n_train,
                n_eval=n_eval,
                step_s=step_s,
                step_source=source,
                duration_s=duration,
                energy_j=duration * power_w,
                train_duration_s=train_s,
                train_energy_j=train_s * power_w,
                eval_duration_s=eval_s,
                eval_energy_j=eval_s * power_w,
                setup_duration_s=setup_s,
                setup_energy_j=setup_s * power_w,
            )
        )
    if any(t.pretrained for t in trials):
        notes.append("pretrained weights are not loaded for calibration; step times are the same")
    method = (
        f"each model timed for {steps} training steps at batch {batch} on this machine "
        f"(first step discarded); epoch = training steps + evaluation at 1/3 of a step per "
        f"sample; set-up = {setup_rule}; "
        f"energy = time x {power_w:.1f} W, the mean power over the calibration "
        f"({measurement.provenance}: {measurement.energy_source}); training energy is the "
        "steps alone (PePR's resource), the total adds evaluation and set-up (what budgets "
        "count); per-trial process start (about 2-4 s, outside a trial's window) not included"
    )
    return StudyEstimate(
        trials=estimates,
        total_duration_s=sum(t.duration_s for t in estimates),
        total_energy_j=sum(t.energy_j for t in estimates),
        power_w=power_w,
        power_provenance=measurement.provenance,
        power_source=measurement.energy_source,
        calibration_s=calibration_s,
        method=method,
        notes=notes,
    )

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
    from frugalml.meter import Measurement
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


@dataclass
class _Calibration:
    """What the calibration found, keyed by (dataset, image size) and (model, that key)."""

    datasets: dict[tuple[str, int | None], Any] = field(default_factory=dict)
    load_s: dict[tuple[str, int | None], float] = field(default_factory=dict)
    build_s: dict[tuple[Any, ...], float] = field(default_factory=dict)
    #: (step seconds, params, forward FLOPs per sample, how the step time was found)
    steps: dict[tuple[Any, ...], tuple[float, int, int, str]] = field(default_factory=dict)
    #: models the time cap left untimed: (params, FLOPs per sample)
    pending: dict[tuple[Any, ...], tuple[int, int]] = field(default_factory=dict)


def _calibrate_trial(
    spec: StudySpec, trial: Any, cal: _Calibration, steps: int, deadline: float
) -> None:
    """Load the trial's dataset (once), build its model (once) and time its steps, while
    the clock (:func:`time.monotonic`) is before ``deadline``."""
    import torch

    from frugalml.data import load_dataset
    from frugalml.models import count_costs, create_model

    data_key = (trial.dataset, trial.image_size)
    if data_key not in cal.datasets:
        t0 = time.perf_counter()
        cal.datasets[data_key] = load_dataset(
            trial.dataset, root=spec.data_root, download=spec.download, image_size=trial.image_size
        )
        cal.load_s[data_key] = time.perf_counter() - t0
    ds = cal.datasets[data_key]
    key = (trial.model, data_key)
    if key in cal.steps or key in cal.pending:
        return
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
    cal.build_s[key] = time.perf_counter() - t0
    if time.monotonic() < deadline:
        batch = spec.training.batch_size
        step_s = _time_steps(model, shape, ds.num_classes, batch, steps, spec.training)
        cal.steps[key] = (step_s, costs.params, costs.flops_per_sample, "timed")
    else:
        cal.pending[key] = (costs.params, costs.flops_per_sample)


def _calibrate(
    spec: StudySpec, trials: list[Any], calibration_cap_s: float, steps: int
) -> tuple[_Calibration, Measurement]:
    """Every trial's data and model, timed under one meter window ``calibration``."""
    from frugalml.meter import Meter, MeterConfig

    cal = _Calibration()
    deadline = time.monotonic() + calibration_cap_s
    meter = Meter(MeterConfig())
    with meter, meter.window("calibration") as window:
        for trial in trials:
            _calibrate_trial(spec, trial, cal, steps, deadline)
    measurement = window.measurement
    if measurement is None:  # pragma: no cover - the meter always records a closed window
        raise RuntimeError("the calibration window recorded no measurement")
    return cal, measurement


def _fresh_extra_s(
    spec: StudySpec, trials: list[Any], cal: _Calibration, notes: list[str]
) -> tuple[float, str]:
    """What a new process pays per trial on top of the set-up timed here, and its rule."""
    rule = "the time loading the data and building each model took here"
    first = trials[0]
    first_key = (first.dataset, first.image_size)
    fresh = _fresh_setup_s(spec, first)
    if fresh is None:
        notes.append("timing a set-up in a fresh interpreter failed: set-up is a low bound")
        return 0.0, rule
    extra_s = max(0.0, fresh - cal.load_s[first_key] - cal.build_s[(first.model, first_key)])
    rule += (
        f", plus {extra_s:.2f} s per trial that a new process pays on top (the "
        f"first trial's set-up took {fresh:.2f} s in a fresh interpreter)"
    )
    return extra_s, rule


def _scale_pending(
    cal: _Calibration, batch: int, calibration_cap_s: float, notes: list[str]
) -> None:
    """Give the untimed models a step time from their FLOPs, at the timed ones' median rate."""
    if not cal.pending:
        return
    rates = [f * batch / s for s, _, f, _ in cal.steps.values() if s > 0 and f > 0]
    rate = statistics.median(rates) if rates else math.nan
    for key, (params, flops) in cal.pending.items():
        cal.steps[key] = (flops * batch / rate, params, flops, "scaled by FLOPs")
    notes.append(
        f"{len(cal.pending)} model(s) not timed within the {calibration_cap_s:g} s calibration "
        f"cap were scaled by FLOPs at the median rate of the timed ones ({rate / 1e9:.2f} "
        "GFLOP/s of forward FLOPs per training step)"
    )


def _trial_estimate(
    trial: Any, cal: _Calibration, batch: int, extra_setup_s: float, power_w: float
) -> TrialEstimate:
    data_key = (trial.dataset, trial.image_size)
    ds = cal.datasets[data_key]
    step_s, params, flops, source = cal.steps[(trial.model, data_key)]
    n_train = len(ds.train.labels)
    if trial.fraction < 1:
        n_train = max(ds.num_classes, round(n_train * trial.fraction))
    n_eval = len(ds.val.labels) + len(ds.test.labels)
    epochs = trial.training.epochs
    train_s = math.ceil(n_train / batch) * step_s * epochs
    eval_s = (n_eval / batch) * step_s / 3 * epochs
    setup_s = cal.load_s[data_key] + cal.build_s[(trial.model, data_key)] + extra_setup_s
    duration = train_s + eval_s + setup_s
    return TrialEstimate(
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


def _estimate(
    spec: StudySpec, calibration_cap_s: float, steps: int, fresh_setup: bool
) -> StudyEstimate:
    notes: list[str] = []
    trials = spec.trials()
    batch = spec.training.batch_size
    cal, measurement = _calibrate(spec, trials, calibration_cap_s, steps)
    calibration_s = measurement.duration_s
    power_w = measurement.energy_j / calibration_s if calibration_s > 0 else 0.0
    extra_setup_s = 0.0
    setup_rule = "the time loading the data and building each model took here"
    if fresh_setup and trials:
        extra_setup_s, setup_rule = _fresh_extra_s(spec, trials, cal, notes)
    _scale_pending(cal, batch, calibration_cap_s, notes)
    estimates = [_trial_estimate(t, cal, batch, extra_setup_s, power_w) for t in trials]
    if any(t.pretrained for t in trials):
        notes.append("pretrained weights are not loaded for calibration; step times are the same")
    ranked = [t for t in trials if t.parallel and int(t.parallel.get("nproc", 1)) >= 2]
    if ranked:
        notes.append(
            f"{len(ranked)} trial(s) with a parallel: section are predicted as one process: "
            "starting their ranks (tens of seconds of set-up each on a small machine) and the "
            "split's speed-up are not in these figures"
        )
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

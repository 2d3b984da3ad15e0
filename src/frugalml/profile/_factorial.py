"""The factorial layer experiment of Yarally et al. (CAIN 2023) as a runnable study.

The built-in ``frugal_cnn`` with {1, 4} conv layers x {3, 7} linear layers x ReLU on/off
(8 cells), each trained and metered ``repeats`` times (one seed per repeat) with
:func:`frugalml.train.train`. Every trial is a row of a study store in the output
directory, written the way the study worker writes its trials (registered, claimed, one
record per epoch, finished with :func:`frugalml.study.build_result`), so
``frugalml study status|export`` and the report work on it and a rerun resumes.

The analysis compares, for each factor, the trials at one level with those at the other
(the other factors pooled): median training energy and median test accuracy, their change,
and a Kruskal-Wallis test with epsilon-squared (see :mod:`._stats`). The paper found that
going from 4 conv layers to 1 cut energy by 49% (FashionMNIST) and 40% (CIFAR-10), while
linear layers and ReLU changed it by a few percent.

Energy is the sum of the per-epoch ``train`` windows (``train_energy_j``, training steps only,
as in the paper; evaluation and model building are ``eval_energy_j`` and ``setup_energy_j``,
in the trial's ``energy_j`` but not in the analysis: :func:`frugalml.study.energy_split`).
Unlike the study worker, the trials run in this process and the dataset is loaded once for
all of them, so no trial's ``energy_j`` includes loading data or starting Python.
"""

from __future__ import annotations

import contextlib
import csv
import itertools
import json
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from frugalml.errors import ConfigError, FrugalError
from frugalml.meter import combine_provenance
from frugalml.profile._stats import Factor, FactorEffect, factor_effects

if TYPE_CHECKING:
    from frugalml.data import ImageDataset
    from frugalml.meter import Meter, MeterConfig
    from frugalml.study import StudySpec, StudyStore, Trial
    from frugalml.study._store import TrialRow

__all__ = [
    "FACTORS",
    "PAPER_CONV_CUT_PCT",
    "FactorialConfig",
    "FactorialProgress",
    "FactorialResult",
    "conv_sentence",
    "dominance_sentence",
    "run_factorial",
]

logger = logging.getLogger(__name__)

MODEL = "frugal_cnn"
#: The paper's energy cut from 4 conv layers to 1: (CIFAR-10, FashionMNIST), in percent.
PAPER_CONV_CUT_PCT = (40.0, 49.0)
#: The three factors, each from the paper's larger level to its smaller one.
FACTORS: tuple[Factor, ...] = (
    Factor("conv_layers", 4, 1, "conv layers"),
    Factor("linear_layers", 7, 3, "linear layers"),
    Factor("relu", True, False, "ReLU"),
)
ENERGY_KEY = "train_energy_j"
TRIALS_CSV = "factorial_trials.csv"
EFFECTS_CSV = "factorial_effects.csv"
SUMMARY_JSON = "factorial.json"
PLOT_PNG = "factorial.png"

_TRIAL_COLUMNS = (
    "trial_id", "seed", "conv_layers", "linear_layers", "relu", "params", "flops_per_sample",
    "epochs", "accuracy", "train_energy_j", "eval_energy_j", "setup_energy_j", "energy_j",
    "train_energy_kind", "energy_kind", "energy_source", "train_duration_s", "duration_s",
    "cpu_time_s", "train_peak_rss_bytes", "threads", "status",
)  # fmt: skip


@dataclass(frozen=True)
class FactorialConfig:
    """The design and training of a factorial run.

    ``repeats`` seeds (``first_seed``, ``first_seed + 1``, ...) of each of the 8 cells;
    ``fraction`` of the training split (stratified, per seed, as studies do); ``width``
    and ``hidden`` are ``frugal_cnn``'s first conv channels and hidden units. Training is
    the study protocol (Adam) with ``epochs``, ``batch_size`` and ``lr``. ``warmup`` trains
    one unrecorded epoch first, so one-time costs (lazy imports, thread pools, allocator
    growth) do not land on whichever cell happens to run first. ``threads``: torch's
    intra-op threads (default :data:`frugalml.train.DEFAULT_THREADS`, one, as for every
    training frugalml runs; restored afterwards).
    """

    dataset: str = "digits"
    epochs: int = 5
    repeats: int = 3
    fraction: float = 1.0
    width: int = 16
    hidden: int = 64
    batch_size: int = 32
    lr: float = 5e-4
    device: str = "auto"
    first_seed: int = 0
    study_name: str = "factorial"
    data_root: str | None = None
    download: bool | None = None
    warmup: bool = True
    threads: int | None = None

    def __post_init__(self) -> None:
        from frugalml.train import check_threads

        check_threads(self.threads, option="factorial threads")
        for name, low in (("epochs", 1), ("repeats", 1), ("first_seed", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ConfigError(
                    f"factorial {name} must be an integer >= {low}, got {value!r}",
                    fix=f"set {name} to {low} or more",
                )
        if not isinstance(self.fraction, (int, float)) or not 0 < float(self.fraction) <= 1:
            raise ConfigError(
                f"factorial fraction must be in (0, 1], got {self.fraction!r}",
                fix="e.g. 1.0 for all training data or 0.2 for a fifth",
            )

    @property
    def seeds(self) -> list[int]:
        return list(range(self.first_seed, self.first_seed + self.repeats))

    @property
    def trials_total(self) -> int:
        return 8 * self.repeats

    def model_args(self, conv_layers: int, linear_layers: int, relu: bool) -> dict[str, Any]:
        return {
            "conv_layers": conv_layers,
            "linear_layers": linear_layers,
            "relu": relu,
            "width": self.width,
            "hidden": self.hidden,
        }

    def spec_mapping(self) -> dict[str, Any]:
        """The study spec of the design (8 models x ``repeats`` seeds)."""
        models = [
            {"name": MODEL, "args": self.model_args(c, lin, r)}
            for c, lin, r in itertools.product(*((f.level_from, f.level_to) for f in FACTORS))
        ]
        spec: dict[str, Any] = {
            "name": self.study_name,
            "description": "factorial layer experiment (Yarally et al., CAIN 2023)",
            "datasets": [self.dataset],
            "models": models,
            "fractions": [float(self.fraction)],
            "seeds": self.seeds,
            "training": {
                "epochs": self.epochs,
                "batch_size": self.batch_size,
                "lr": self.lr,
                "device": self.device,
            },
        }
        if self.data_root is not None:
            spec["data_root"] = self.data_root
        if self.download is not None:
            spec["download"] = self.download
        return spec

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class FactorialProgress:
    """Where a factorial run stands; passed to ``on_progress`` after every epoch and trial.

    ``energy_j`` is the energy of the trials run by this call so far (``energy_kind`` says
    whether it is measured or estimated); ``trials_done`` counts trials already complete
    in the store too.
    """

    trials_total: int
    trials_done: int
    trials_failed: int
    epochs_total: int
    epochs_done: int
    energy_j: float
    energy_kind: str
    current: str
    event: str
    message: str = ""


@dataclass(frozen=True)
class FactorialResult:
    """What :func:`run_factorial` found and wrote.

    ``rows`` has one dict per complete trial of this design (the columns of
    ``factorial_trials.csv``); ``effects`` one :class:`FactorEffect` per factor, on
    ``train_energy_j``. ``files`` maps ``trials_csv``, ``effects_csv``, ``summary_json``,
    ``plot_png`` and ``store`` to their paths.
    """

    config: FactorialConfig
    out_dir: Path
    rows: list[dict[str, Any]]
    effects: list[FactorEffect]
    failed: list[tuple[str, str]]
    energy_kind: str
    energy_source: str
    files: dict[str, Path]
    notes: tuple[str, ...] = field(default=())

    @property
    def conv_effect(self) -> FactorEffect:
        return next(e for e in self.effects if e.factor.key == "conv_layers")

    @property
    def conv_sentence(self) -> str:
        return conv_sentence(self.conv_effect)

    @property
    def dominance_sentence(self) -> str:
        return dominance_sentence(self.effects)

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": "frugalml.factorial/1",
            "config": self.config.to_dict(),
            "trials": len(self.rows),
            "failed": [{"trial_id": t, "error": e} for t, e in self.failed],
            "energy_kind": self.energy_kind,
            "energy_source": self.energy_source,
            "energy_analysed": f"{ENERGY_KEY} (training steps only)",
            "effect_size": "epsilon-squared = H / ((n^2 - 1) / (n + 1))",
            "effects": [e.to_dict() for e in self.effects],
            "conv_sentence": self.conv_sentence,
            "dominance_sentence": self.dominance_sentence,
            "notes": list(self.notes),
        }


def conv_sentence(effect: FactorEffect) -> str:
    """``going from 4 conv layers to 1 cut training energy by X% (paper: 40-49%)``."""
    low, high = PAPER_CONV_CUT_PCT
    change = effect.energy_change_pct
    f = effect.factor
    if not math.isfinite(change):
        what = "could not be compared (no energy at one level)"
    elif change <= 0:
        what = f"cut training energy by {-change:.1f}%"
    else:
        what = f"raised training energy by {change:.1f}%"
    return (
        f"going from {f.level_from} {f.label} to {f.level_to} {what} "
        f"(paper: {low:.0f}-{high:.0f}% less)"
    )


def dominance_sentence(effects: Sequence[FactorEffect]) -> str:
    """Whether the conv factor changes energy most, as it did in the paper."""
    sized = [(abs(e.energy_change_pct), e) for e in effects if math.isfinite(e.energy_change_pct)]
    if not sized:
        return "no factor could be compared"
    _, top = max(sized, key=lambda pair: pair[0])
    others = ", ".join(
        f"{e.factor.label} {e.energy_change_pct:+.1f}%" for e in effects if e is not top
    )
    if top.factor.key == "conv_layers":
        return (
            f"conv layers dominate here, as in the paper: {top.energy_change_pct:+.1f}% "
            f"against {others}"
        )
    return (
        f"conv layers do not dominate here: {top.factor.label} changes training energy most "
        f"({top.energy_change_pct:+.1f}%; {others})"
    )


def _ordered_trials(trials: Sequence[Trial], config: FactorialConfig) -> list[Trial]:
    """Repeat by repeat, each repeat's 8 cells in a seeded random order, so drift of the
    machine (heat, other load) spreads over all cells instead of biasing one."""
    by_seed: dict[int, list[Trial]] = {}
    for trial in trials:
        by_seed.setdefault(trial.seed, []).append(trial)
    out: list[Trial] = []
    for seed in config.seeds:
        cells = by_seed.get(seed, [])
        order = np.random.default_rng(seed).permutation(len(cells))
        out.extend(cells[i] for i in order)
    return out


def _flat_row(
    trial_id: str, definition: Mapping[str, Any], status: str, result: Any
) -> dict[str, Any]:
    args = definition.get("model_args") or {}
    result = dict(result or {})
    return {
        "trial_id": trial_id,
        "seed": definition.get("seed"),
        "conv_layers": args.get("conv_layers"),
        "linear_layers": args.get("linear_layers"),
        "relu": args.get("relu"),
        "params": result.get("params"),
        "flops_per_sample": result.get("flops_per_sample"),
        "epochs": result.get("epochs"),
        "accuracy": result.get("accuracy"),
        "train_energy_j": result.get(ENERGY_KEY),
        "eval_energy_j": result.get("eval_energy_j"),
        "setup_energy_j": result.get("setup_energy_j"),
        "energy_j": result.get("energy_j"),
        "train_energy_kind": result.get("train_energy_kind"),
        "energy_kind": result.get("energy_kind"),
        "energy_source": result.get("energy_source"),
        "train_duration_s": result.get("train_duration_s"),
        "duration_s": result.get("duration_s"),
        "cpu_time_s": result.get("cpu_time_s"),
        "train_peak_rss_bytes": result.get("train_peak_rss_bytes"),
        "threads": result.get("threads"),
        "status": status,
    }


class _TrialRunner:
    """Runs the trials of one design in this process, writing each to the store."""

    def __init__(
        self,
        config: FactorialConfig,
        store: StudyStore,
        dataset: ImageDataset,
        meter: Meter,
        on_progress: Callable[[FactorialProgress], None] | None,
        trials_done: int,
    ) -> None:
        self.config = config
        self.store = store
        self.dataset = dataset
        self.meter = meter
        self.on_progress = on_progress
        self.trials_done = trials_done
        self.trials_failed = 0
        self.epochs_done = trials_done * config.epochs
        self.energy_j = 0.0
        self.current_j = 0.0
        self.energy_kind = "none"

    def emit(self, event: str, current: str, message: str = "") -> None:
        if self.on_progress is None:
            return
        self.on_progress(
            FactorialProgress(
                trials_total=self.config.trials_total,
                trials_done=self.trials_done,
                trials_failed=self.trials_failed,
                epochs_total=self.config.trials_total * self.config.epochs,
                epochs_done=self.epochs_done,
                energy_j=self.energy_j + self.current_j,
                energy_kind=self.energy_kind,
                current=current,
                event=event,
                message=message,
            )
        )

    def run(self, trial: Trial) -> None:
        import torch

        from frugalml.study._trial import TrialPlan, prepare_dataset, run_metered_trial

        trial_id = trial.trial_id
        plan = TrialPlan(
            trial_id=trial_id,
            definition=self.store.trial(trial_id).definition,
            threads=int(torch.get_num_threads()),  # run_factorial's, in force
        )
        dataset = prepare_dataset(plan.definition, self.dataset)
        args = trial.model.args_dict()
        label = (
            f"conv {args['conv_layers']}, linear {args['linear_layers']}, "
            f"ReLU {'on' if args['relu'] else 'off'}, seed {trial.seed}"
        )

        def on_epoch(record: dict[str, Any]) -> None:
            if record["epoch"] == 0:
                return  # the set-up window: in-process, no killed trial is booked from it
            self.store.record_epoch(trial_id, int(record["epoch"]), record)
            train_m = record.get("train_measurement") or {}
            if train_m.get("provenance") is not None:
                self.energy_kind = _merge_kind(self.energy_kind, str(train_m["provenance"]))
            self.epochs_done += 1
            self.current_j += float((record.get("measurement") or {}).get("energy_j", 0.0))
            self.emit("epoch", label)

        self.emit("trial_started", label)
        outcome = run_metered_trial(
            plan, on_epoch=on_epoch, dataset=dataset, meter=self.meter,
            window=f"trial {trial.label}",
        )  # fmt: skip
        if outcome.status == "interrupted":
            self.store.finish(trial_id, "pending", only_if_running=True)
            raise outcome.cause or KeyboardInterrupt
        self.current_j = 0.0
        result = outcome.result or {}
        if result.get("energy_j") is not None:
            self.energy_j += float(result["energy_j"])
            self.energy_kind = _merge_kind(self.energy_kind, str(result["energy_kind"]))
        train_energy_j = float(result.get(ENERGY_KEY) or 0.0)
        if outcome.status == "complete":
            self.store.finish(trial_id, "complete", result=result, only_if_running=True)
            self.trials_done += 1
            accuracy = result.get("accuracy")
            self.emit(
                "trial_finished",
                label,
                f"accuracy {accuracy:.3f}, training {train_energy_j:.1f} J"
                if isinstance(accuracy, float)
                else "",
            )
        else:
            error = outcome.error or "failed"
            logger.warning("factorial trial %s failed: %s", trial.label, error)
            self.store.finish(trial_id, "failed", result=result, error=error, only_if_running=True)
            self.trials_failed += 1
            self.epochs_done = (self.trials_done + self.trials_failed) * self.config.epochs
            self.emit("trial_failed", label, error)


def _warm_up(config: FactorialConfig, dataset: ImageDataset) -> None:
    """One unmetered, unrecorded epoch of the largest cell on a small part of the data."""
    import torch

    from frugalml.models import count_costs, create_model
    from frugalml.train import TrainConfig, train

    first = {f.key: f.level_from for f in FACTORS}
    model = create_model(
        MODEL,
        num_classes=dataset.num_classes,
        in_chans=dataset.channels,
        **config.model_args(first["conv_layers"], first["linear_layers"], first["relu"]),
    )
    count_costs(model, dataset.input_shape)
    state = torch.random.get_rng_state()
    try:
        train(
            model,
            dataset.with_fraction(min(config.fraction, 0.2), seed=0),
            TrainConfig(epochs=1, batch_size=config.batch_size, lr=config.lr, device=config.device),
        )
    finally:
        torch.random.set_rng_state(state)


def _merge_kind(current: str, new: str) -> str:
    return combine_provenance((current, new))


def run_factorial(
    config: FactorialConfig | None = None,
    out_dir: str | Path = "runs/factorial",
    *,
    meter_config: MeterConfig | None = None,
    on_progress: Callable[[FactorialProgress], None] | None = None,
    retry_failed: bool = False,
) -> FactorialResult:
    """Run (or resume) the factorial design in ``out_dir`` and analyse it.

    Trials already complete in ``out_dir``'s store are not run again; failed ones only with
    ``retry_failed``. A failing trial is recorded as failed and the others go on. Writes
    ``study.db``, ``factorial_trials.csv``, ``factorial_effects.csv``, ``factorial.json``
    and ``factorial.png`` into ``out_dir``.

    Raises:
        ConfigError / DataError: a bad design or dataset, before any trial runs.
        FrugalError: no trial of the design completed, so there is nothing to analyse.
    """
    from frugalml.train import using_threads

    config = config or FactorialConfig()
    with using_threads(config.threads, option="factorial threads"):
        return _run_factorial(config, Path(out_dir), meter_config, on_progress, retry_failed)


def _run_trials(
    config: FactorialConfig,
    spec: StudySpec,
    trials: list[Trial],
    dataset: ImageDataset,
    out: Path,
    meter_config: MeterConfig | None,
    on_progress: Callable[[FactorialProgress], None] | None,
    retry_failed: bool,
) -> tuple[Path, dict[str, TrialRow]]:
    """Record the trials in the store at ``out`` and run those not done: (the store's
    path, its rows by trial id)."""
    from frugalml.meter import Meter, MeterConfig
    from frugalml.study import StudyStore

    with StudyStore(out) as store:
        saved = spec.to_dict()
        saved["factorial"] = config.to_dict()
        store.save_spec(saved)
        extra: dict[str, Any] = {
            "carbon": {},
            "data_root": config.data_root,
            "download": config.download,
        }
        store.add_trials([(t.trial_id, t.study, t.label, {**t.to_dict(), **extra}) for t in trials])
        ids = [t.trial_id for t in trials]
        status = {row.trial_id: row.status for row in store.trials() if row.trial_id in set(ids)}
        done = sum(1 for s in status.values() if s == "complete")
        with Meter(meter_config or MeterConfig()) as meter:
            runner = _TrialRunner(config, store, dataset, meter, on_progress, done)
            runner.emit("started", "", f"{len(trials)} trials, {done} already complete")
            if config.warmup and done < len(trials):
                runner.emit("warmup", "warm-up (not recorded)")
                _warm_up(config, dataset)
            for trial in trials:
                if store.claim([trial.trial_id], retry_failed=retry_failed) is None:
                    continue
                runner.run(trial)
        return store.path, {row.trial_id: row for row in store.trials()}


def _write_outputs(result: FactorialResult) -> None:
    """The trials and effects CSVs, the summary JSON and the plot, at ``result.files``."""
    from frugalml.profile._plot import plot_factorial

    files, effects = result.files, result.effects
    _write_csv(files["trials_csv"], _TRIAL_COLUMNS, result.rows)
    _write_csv(
        files["effects_csv"],
        tuple(effects[0].to_dict()),
        [e.to_dict() for e in effects],
    )
    files["summary_json"].write_text(
        json.dumps(_json_safe(result.to_dict()), indent=2) + "\n", encoding="utf-8"
    )
    plot_factorial(result, files["plot_png"])


def _run_factorial(
    config: FactorialConfig,
    out_dir: Path,
    meter_config: MeterConfig | None,
    on_progress: Callable[[FactorialProgress], None] | None,
    retry_failed: bool,
) -> FactorialResult:
    from frugalml.data import load_dataset
    from frugalml.study import StudySpec

    out = Path(out_dir)
    spec = StudySpec.from_mapping(config.spec_mapping(), source="<factorial>")
    trials = _ordered_trials(spec.trials(), config)
    dataset = load_dataset(config.dataset, root=config.data_root, download=config.download)
    store_path, rows_by_id = _run_trials(
        config, spec, trials, dataset, out, meter_config, on_progress, retry_failed
    )
    rows: list[dict[str, Any]] = []
    failed: list[tuple[str, str]] = []
    for trial in trials:
        row = rows_by_id[trial.trial_id]
        if row.status == "complete":
            rows.append(_flat_row(row.trial_id, row.definition, row.status, row.result))
        elif row.status == "failed":
            failed.append((row.trial_id, row.error or "?"))
    if not rows:
        raise FrugalError(
            f"no factorial trial completed in {out} ({len(failed)} failed)",
            fix=f"see 'frugalml study status {out}' for the errors",
        )
    effects = factor_effects(rows, FACTORS, energy_key=ENERGY_KEY, accuracy_key="accuracy")
    kinds = {str(r["energy_kind"]) for r in rows}
    energy_kind = combine_provenance(kinds)
    sources = sorted({str(r["energy_source"]) for r in rows})
    notes = _factorial_notes(config, rows, energy_kind, sources)
    files = {
        "store": store_path,
        "trials_csv": out / TRIALS_CSV,
        "effects_csv": out / EFFECTS_CSV,
        "summary_json": out / SUMMARY_JSON,
        "plot_png": out / PLOT_PNG,
    }
    result = FactorialResult(
        config=config,
        out_dir=out,
        rows=rows,
        effects=effects,
        failed=failed,
        energy_kind=energy_kind,
        energy_source="; ".join(sources),
        files=files,
        notes=tuple(notes),
    )
    _write_outputs(result)
    return result


def _factorial_notes(
    config: FactorialConfig, rows: Sequence[Mapping[str, Any]], energy_kind: str, sources: list[str]
) -> list[str]:
    notes = [
        f"energy analysed: {ENERGY_KEY}, the training steps of each trial ({energy_kind}: "
        f"{'; '.join(sources)}); evaluation and model building are left out, as in the paper",
        "each factor pools the other two; medians over "
        f"{len(rows)} trials ({config.repeats} repeat(s) of 8 cells, {config.epochs} epoch(s))",
        "effect size: epsilon-squared = H / ((n^2 - 1) / (n + 1)) (Tomczak & Tomczak 2014)",
    ]
    if energy_kind in ("estimated", "mixed"):
        notes.append(
            "the energy is estimated (CPU TDP x utilisation), proportional to CPU time: the "
            "energy changes are CPU-time changes by construction"
        )
    if config.repeats < 3:
        notes.append(
            f"only {config.repeats} repeat(s): the tests have little power; use --repeats 3 "
            "or more for conclusions"
        )
    return notes


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def _write_csv(path: Path, columns: Sequence[str], rows: Sequence[Mapping[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    with tmp.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(columns), extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow(row)
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    tmp.rename(path)

"""Runs one trial in its own process: ``python -m frugalml.study._worker STORE TRIAL_ID``.

The worker loads the dataset and model, trains under a meter, writes every epoch and the final
result to the store as they exist, and exits 0 (complete), 1 (failed, recorded) or 130
(interrupted: the trial is given back as pending). A crash that kills the interpreter is
recorded by the parent from the exit status.
"""

from __future__ import annotations

import time

_PROCESS_START = time.time()  # before the heavy imports: the process start cost is measured

import argparse  # noqa: E402
import contextlib  # noqa: E402
import logging  # noqa: E402
import os  # noqa: E402
import signal  # noqa: E402
import sys  # noqa: E402
import traceback  # noqa: E402
from typing import Any  # noqa: E402

logger = logging.getLogger("frugalml.study.worker")

EXIT_COMPLETE = 0
EXIT_FAILED = 1
EXIT_INTERRUPTED = 130


def _die_with_parent(parent_pid: int) -> None:
    """Ask Linux to kill this worker if the study process dies (kill -9 included), so an
    orphan never finishes a trial that a resumed study has already handed out again."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(Exception):
            import ctypes

            libc = ctypes.CDLL("libc.so.6", use_errno=True)
            pr_set_pdeathsig = 1
            libc.prctl(pr_set_pdeathsig, signal.SIGKILL)
    if parent_pid and os.getppid() != parent_pid:
        os._exit(EXIT_INTERRUPTED)  # the parent died before we armed the signal


def _on_sigterm(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def run_trial(
    store_path: str, trial_id: str, threads: int | None, spawned_at: float, workers: int = 1
) -> int:
    import torch

    from frugalml.data import load_dataset
    from frugalml.errors import FrugalError, StoreError
    from frugalml.meter import CarbonConfig, Meter, MeterConfig
    from frugalml.models import count_costs, create_model
    from frugalml.study._results import build_result, process_rss_bytes, setup_record
    from frugalml.study._spec import Trial, check_trial
    from frugalml.study._store import StudyStore
    from frugalml.train import EpochRecord, TrainConfig, apply_threads, train

    threads = apply_threads(threads, option="--threads")
    store = StudyStore(store_path, create=False)
    row = store.trial(trial_id)
    definition = row.definition
    trial = Trial.from_dict({**definition, "study": row.definition.get("study", "")})
    carbon = definition.get("carbon") or {}
    config = MeterConfig(carbon=CarbonConfig(**carbon))
    costs = train_result = None
    image_size: tuple[int, int] | None = None
    test_samples: int | None = None
    window: Any = None
    records: list[EpochRecord] = []
    exit_code = EXIT_COMPLETE
    error: str | None = None
    meter = Meter(config)

    def on_epoch(record: EpochRecord) -> None:
        records.append(record)
        store.record_epoch(trial_id, record.epoch, record.to_dict())

    baseline_rss_bytes = process_rss_bytes()
    try:
        with meter, meter.window("trial") as window:
            with meter.window("trial setup") as setup_window:
                check_trial(trial)  # the checks `study validate` makes, before any loading
                dataset = load_dataset(  # resized while loading: a folder of mixed sizes loads
                    trial.dataset,
                    root=definition.get("data_root"),
                    download=definition.get("download"),
                    image_size=trial.image_size,
                )
                if trial.fraction < 1.0:
                    dataset = dataset.with_fraction(trial.fraction, seed=trial.seed)
                image_size = dataset.image_size
                test_samples = len(dataset.test)
                torch.manual_seed(trial.seed)
                model = create_model(
                    trial.model.name,
                    num_classes=dataset.num_classes,
                    in_chans=dataset.channels,
                    pretrained=trial.pretrained,
                    pretrained_file=trial.pretrained_file,
                    **trial.model.args_dict(),
                )
                costs = count_costs(model, (dataset.channels, *dataset.image_size))
            # Epoch 0 is the set-up window: with the epochs it lets the runner book the
            # energy of a trial it had to kill (study._results.killed_result).
            store.record_epoch(trial_id, 0, setup_record(setup_window.measurement))
            train_result = train(
                model,
                dataset,
                TrainConfig.from_mapping(definition["training"]),
                meter=meter,
                pretrained=trial.pretrained,
                on_epoch=on_epoch,
            )
    except KeyboardInterrupt:
        exit_code, error = EXIT_INTERRUPTED, "interrupted"
    except StoreError as exc:
        # the store, not the trial, failed (a full disk): give the trial back, so a resume
        # runs it again; where even that write fails, its dead owner makes it claimable
        exit_code, error = EXIT_INTERRUPTED, str(exc)
        print(f"frugalml: trial {trial_id} given back: {exc}", file=sys.stderr)
    except FrugalError as exc:
        exit_code, error = EXIT_FAILED, str(exc)
    except torch.OutOfMemoryError as exc:
        exit_code, error = EXIT_FAILED, f"out of memory: {str(exc).splitlines()[0]}"
    except Exception as exc:
        traceback.print_exc()
        exit_code, error = EXIT_FAILED, f"{type(exc).__name__}: {exc}"
    measurement = getattr(window, "measurement", None)
    overhead_s = None
    if measurement is not None:
        overhead_s = max(0.0, time.time() - spawned_at - measurement.duration_s)
    result = build_result(
        trial_id,
        definition,
        costs=costs,
        train_result=train_result,
        measurement=measurement,
        image_size=image_size,
        overhead_s=overhead_s,
        test_samples=test_samples,
        epochs=records,
        baseline_rss_bytes=baseline_rss_bytes,
        threads=threads,
    )
    # Machine-wide counters (RAPL, NVML) see every trial running at the same time; the
    # record says how many ran side by side so sums can be read correctly.
    result["concurrent_workers"] = workers
    if exit_code == EXIT_COMPLETE:
        store.finish(trial_id, "complete", result=result, only_if_running=True)
    elif exit_code == EXIT_INTERRUPTED:
        store.finish(trial_id, "pending", result=None, error=None, only_if_running=True)
    else:
        store.finish(trial_id, "failed", result=result, error=error, only_if_running=True)
        print(f"frugalml: trial {trial_id} failed: {error}", file=sys.stderr)
    store.close()
    return exit_code


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m frugalml.study._worker")
    parser.add_argument("store")
    parser.add_argument("trial_id")
    parser.add_argument("--parent-pid", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--spawned-at", type=float, default=_PROCESS_START)
    args = parser.parse_args(argv)
    _die_with_parent(args.parent_pid)
    signal.signal(signal.SIGTERM, _on_sigterm)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    return run_trial(args.store, args.trial_id, args.threads, args.spawned_at, args.workers)


if __name__ == "__main__":
    sys.exit(main())

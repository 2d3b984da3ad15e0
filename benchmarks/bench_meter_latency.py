"""Latency of opening and closing a measurement: frugalml's window vs CodeCarbon.

Side by side in one process, interleaved iteration by iteration:

- frugalml: ``meter.begin(name)`` + ``meter.end(window)`` on a running Meter (target: median
  below 5 ms);
- CodeCarbon (if installed; a benchmark-only dependency): a fresh
  ``OfflineEmissionsTracker(country_iso_code=..., save_to_file=False)`` per measurement,
  timing ``start()`` + ``stop()`` (construction not timed; the one-off hardware detection of
  the first tracker in a process is reported separately), and ``start_task()`` +
  ``stop_task()`` on one running tracker, CodeCarbon's analogue of a window.

    .venv/bin/python benchmarks/bench_meter_latency.py --iterations 200
"""

from __future__ import annotations

import argparse
import logging
import platform
import statistics
import sys
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from frugalml.meter import Meter, MeterConfig
from frugalml.meter._estimate import cpu_model_name


def _stats(name: str, samples_s: list[float]) -> str:
    ms = sorted(s * 1e3 for s in samples_s)
    p90 = statistics.quantiles(ms, n=10)[-1] if len(ms) >= 2 else ms[0]
    return f"{name:<44} median {statistics.median(ms):8.3f} ms   p90 {p90:8.3f} ms   (n={len(ms)})"


def _codecarbon() -> Any:
    try:
        from codecarbon import OfflineEmissionsTracker
    except ImportError:
        return None
    logging.getLogger("codecarbon").setLevel(logging.ERROR)
    return OfflineEmissionsTracker


def _timed(call: Callable[[], Any]) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=200)
    parser.add_argument(
        "--country", default="DEU", help="ISO alpha-3 code for CodeCarbon's offline mode"
    )
    args = parser.parse_args()

    meter = Meter(MeterConfig()).start()
    tracker_cls = _codecarbon()
    first_start_s: float | None = None
    task_tracker = None
    if tracker_cls is not None:
        warm = tracker_cls(country_iso_code=args.country, save_to_file=False, log_level="error")
        first_start_s = _timed(warm.start)
        warm.stop()
        task_tracker = tracker_cls(
            country_iso_code=args.country, save_to_file=False, log_level="error"
        )
        task_tracker.start()

    ours: list[float] = []
    cc_tracker: list[float] = []
    cc_task: list[float] = []
    for i in range(args.iterations):
        start = time.perf_counter()
        window = meter.begin(f"w{i}")
        meter.end(window)
        ours.append(time.perf_counter() - start)
        if tracker_cls is not None and task_tracker is not None:
            tracker = tracker_cls(
                country_iso_code=args.country, save_to_file=False, log_level="error"
            )
            start = time.perf_counter()
            tracker.start()
            tracker.stop()
            cc_tracker.append(time.perf_counter() - start)
            start = time.perf_counter()
            task_tracker.start_task(f"t{i}")
            task_tracker.stop_task()
            cc_task.append(time.perf_counter() - start)
    ticks = [_timed(meter._tick) for _ in range(args.iterations)]  # one poller tick
    meter.close()
    if task_tracker is not None:
        task_tracker.stop()

    print(f"date: {datetime.now(timezone.utc).isoformat(timespec='seconds')}")
    print(f"machine: {cpu_model_name()}, Python {platform.python_version()}")
    print(f"command: {' '.join([Path(sys.executable).name, *sys.argv])}")
    print(f"frugalml backends: {', '.join(b.name for b in meter.backends)}")
    print(_stats("frugalml window begin+end", ours))
    tick_ms = statistics.median(ticks) * 1e3
    print(
        _stats("frugalml poller tick (background)", ticks)
        + f"  every {meter.poll_interval_s:g} s = {tick_ms / (meter.poll_interval_s * 1e3):.4%}"
        " of one CPU"
    )
    if tracker_cls is None:
        print("codecarbon: not installed, skipped (pip install codecarbon)")
        return
    from importlib.metadata import version

    print(f"codecarbon {version('codecarbon')}, offline, country_iso_code={args.country}")
    print(_stats("codecarbon fresh tracker start()+stop()", cc_tracker))
    print(_stats("codecarbon start_task()+stop_task()", cc_task))
    if first_start_s is not None:
        print(
            f"codecarbon first start() in this process (hardware detection): {first_start_s:.3f} s"
        )
    ratio = statistics.median(cc_tracker) / statistics.median(ours)
    print(f"median ratio codecarbon tracker / frugalml window: {ratio:.1f}x")


if __name__ == "__main__":
    main()

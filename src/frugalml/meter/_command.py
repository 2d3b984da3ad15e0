"""``measure_command``: run a command (no shell) and measure its whole process tree.

The command inherits stdin, stdout and stderr. While it runs, the meter's poller follows
its process tree (psutil) for resident memory and CPU time; after it has been waited for,
the exact CPU seconds of the command and every descendant it waited for come from
``getrusage(RUSAGE_CHILDREN)`` deltas (which also count any other child this process waits
for meanwhile, so call it from one thread at a time). Exit codes follow the shell: the
command's own code, ``128 + N`` when a signal ``N`` killed it, 127 when it cannot be
started. SIGINT and SIGTERM sent to this process are passed on to the command instead of
ending the meter (a SIGINT that the terminal already delivered to the command's process
group is not sent twice).
"""

from __future__ import annotations

import logging
import os
import resource
import shlex
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, replace
from types import FrameType

from frugalml.errors import ConfigError
from frugalml.meter._config import MeterConfig
from frugalml.meter._meter import Meter
from frugalml.meter._process import ProcessTreeSampler
from frugalml.meter._types import Measurement

__all__ = ["CommandResult", "measure_command"]

logger = logging.getLogger(__name__)

#: Exit code when the command cannot be started (as in POSIX shells).
EXIT_NOT_STARTED = 127


@dataclass(frozen=True)
class CommandResult:
    """The command's exit code (shell convention) and its measurement.

    ``measurement`` is None only when the command could not be started; ``error`` then
    says why.
    """

    returncode: int
    measurement: Measurement | None
    error: str | None = None


def _terminal_delivers_sigint(pid: int) -> bool:
    """True when ``pid`` is in the terminal's foreground process group (Ctrl-C reached it)."""
    try:
        return os.getpgid(pid) == os.tcgetpgrp(sys.stdin.fileno())
    except (OSError, ValueError, AttributeError):
        return False


@contextmanager
def _forward_signals(proc: subprocess.Popen[bytes]) -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be installed from the main thread
        return

    def forward(signum: int, frame: FrameType | None) -> None:
        if signum == signal.SIGINT and _terminal_delivers_sigint(proc.pid):
            return
        with suppress(OSError):
            proc.send_signal(signum)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _children_usage() -> tuple[float, int]:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime, int(usage.ru_maxrss) * 1024


def measure_command(argv: Sequence[str], config: MeterConfig | None = None) -> CommandResult:
    """Run ``argv`` (a list, never a shell string), wait for it, and measure it."""
    args = [str(a) for a in argv]
    if not args:
        raise ConfigError("no command to measure", fix="e.g. ['python', 'train.py']")
    config = replace(config or MeterConfig(), pid=None)
    process = ProcessTreeSampler(attach_later=True)
    with Meter(config, process=process) as meter:
        cpu_before_s, maxrss_before = _children_usage()
        window = meter.begin(shlex.join(args))
        try:
            proc = subprocess.Popen(args)
        except (FileNotFoundError, PermissionError, NotADirectoryError) as exc:
            meter.end(window, error=str(exc))
            return CommandResult(
                EXIT_NOT_STARTED, None, f"cannot run {args[0]!r}: {exc.strerror or exc}"
            )
        process.attach(proc.pid)
        with _forward_signals(proc):
            code = proc.wait()
        cpu_after_s, maxrss_after = _children_usage()
        process.raise_cpu_floor(max(0.0, cpu_after_s - cpu_before_s))
        measurement = meter.end(window, error=None if code == 0 else f"exit code {code}")
    if maxrss_after > maxrss_before and maxrss_after > (measurement.peak_rss_bytes or 0):
        # getrusage knows the largest single process's peak exactly; polling may miss it.
        measurement = replace(measurement, peak_rss_bytes=maxrss_after)
    returncode = 128 - code if code < 0 else code
    if code < 0:
        try:
            signame = signal.Signals(-code).name
        except ValueError:
            signame = f"signal {-code}"
        measurement = replace(measurement, error=f"killed by {signame}")
    return CommandResult(returncode, measurement)

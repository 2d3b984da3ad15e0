"""Spawned ranks die with their launcher: a study worker killed at its time limit (or by
kill -9) leaves no rank training on. torch's spawn already asks for SIGINT on the parent's
death, which a rank busy in C++ (a collective, a kernel) does not see until it returns to
Python; frugalml's ranks ask for SIGKILL. The ranks here ignore SIGINT to stand for that."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

REPO = Path(__file__).resolve().parents[1]


def _sleep_rank(rank: int, world: int, folder: str) -> None:
    """A rank deaf to SIGINT that says it is up, then waits far longer than the test."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    Path(folder, f"rank{rank}.pid").write_text(str(os.getpid()))
    time.sleep(300)


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@pytest.mark.slow
def test_ranks_die_when_their_launcher_is_killed(tmp_path: Path) -> None:
    launcher = (
        "import sys\n"
        "from frugalml.parallel import spawn\n"
        "from test_parallel_spawn import _sleep_rank\n"
        "if __name__ == '__main__':\n"
        "    spawn(_sleep_rank, 2, sys.argv[1])\n"
    )
    script = tmp_path / "launch.py"
    script.write_text(launcher)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), str(REPO / "tests")])}
    proc = subprocess.Popen([sys.executable, str(script), str(tmp_path)], env=env)
    try:
        pid_files = [tmp_path / f"rank{r}.pid" for r in (0, 1)]
        deadline = time.monotonic() + 240
        while not all(p.exists() and p.read_text() for p in pid_files):
            assert proc.poll() is None, "the launcher ended before its ranks were up"
            assert time.monotonic() < deadline, "the ranks never started"
            time.sleep(0.2)
        pids = [int(p.read_text()) for p in pid_files]
        assert not any(_gone(pid) for pid in pids)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        deadline = time.monotonic() + 30
        while not all(_gone(pid) for pid in pids) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert all(_gone(pid) for pid in pids), "a rank outlived its launcher"
    finally:
        if proc.poll() is None:
            proc.kill()

"""Where a study's trials run: executors behind one small interface.

The study runner claims a trial, hands it to an executor (:meth:`Executor.submit`) and polls
the handle it gets back until the trial has ended (:class:`Finished`). Two executors:

- ``local``: one process per trial on this machine. Warm by default: trials are forked from a
  forkserver that has already imported torch, timm and frugalml (``multiprocessing``'s
  forkserver with preload), so a trial no longer pays the imports (1.8 s median here) yet
  still runs in its own process: a segfault or an exhausted memory limit ends that trial
  only. The worker writes its epochs and result to the store itself, as before.
- ``ray``: each trial is a Ray task (with the resources of :func:`trial_resources`: the
  spec's per trial, and a CPU per rank for a trial with ``parallel:``) that runs the one
  trial runner (:func:`frugalml.study._trial.run_metered_trial`) and returns its outcome
  and per-epoch records; the driver (the runner) alone writes ``DIR/study.db``, so worker
  nodes need no shared filesystem. A Ray worker that dies mid-trial gives the trial back:
  it is retried once, then failed with the reason.

Ray is optional (``pip install 'frugalml[ray]'``) and imported only when the ``ray``
executor is used.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Literal, Protocol

from frugalml.errors import ConfigError

logger = logging.getLogger(__name__)

ExecutorKind = Literal["local", "ray"]
EXECUTOR_KINDS: tuple[ExecutorKind, ...] = ("local", "ray")

#: The module the warm parent imports once (torch, timm, the trial runner), so that a forked
#: trial does not.
PRELOAD = ("frugalml.study._preload",)

#: Test-only hook: ``FRUGALML_TEST_WORKER_FAULT=segfault@TRIAL_ID`` (or ``memory@TRIAL_ID``)
#: makes that trial's warm process segfault (or run under a tiny RLIMIT_AS) before training.
TEST_FAULT_ENV = "FRUGALML_TEST_WORKER_FAULT"

#: How many times a trial runs when its Ray worker dies under it (the first run and one retry).
RAY_ATTEMPTS = 2

_EXECUTOR_KEYS = {
    "kind": "local or ray",
    "address": "Ray cluster address (auto, ray://host:10001, host:6379); default: a local Ray",
    "num_cpus": "CPUs per trial (Ray resources; default 1)",
    "num_gpus": "GPUs per trial, fractions allowed for small models (default 0)",
    "warm": "local executor: fork trials from a warm parent (default true)",
}


@dataclass(frozen=True)
class ExecutorConfig:
    """The spec's ``executor:`` mapping (the command line overrides ``kind`` and ``address``)."""

    kind: ExecutorKind = "local"
    address: str | None = None
    num_cpus: float = 1.0
    num_gpus: float = 0.0
    warm: bool = True

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any] | None) -> ExecutorConfig:
        if data is None:
            return cls()
        if not isinstance(data, Mapping):
            raise ConfigError(
                f"executor must be a mapping, got {data!r}",
                fix="e.g. executor: {kind: ray, num_cpus: 1, num_gpus: 0.5}",
            )
        unknown = sorted(set(data) - set(_EXECUTOR_KEYS))
        if unknown:
            known = "; ".join(f"{k}: {v}" for k, v in _EXECUTOR_KEYS.items())
            raise ConfigError(f"unknown executor key(s) {', '.join(unknown)}", fix=known)
        kind = data.get("kind", "local")
        if kind not in EXECUTOR_KINDS:
            raise ConfigError(f"executor kind {kind!r} is unknown", fix="use local or ray")
        address = data.get("address")
        if address is not None and (not isinstance(address, str) or not address):
            raise ConfigError(
                f"executor address must be text, got {address!r}",
                fix="e.g. address: auto (a running cluster) or ray://head:10001",
            )
        amounts = {}
        for key, default in (("num_cpus", 1.0), ("num_gpus", 0.0)):
            value = data.get(key, default)
            if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
                raise ConfigError(
                    f"executor {key} must be a number of 0 or more, got {value!r}",
                    fix=f"e.g. {key}: 1 (or 0.25 of a GPU for a small model)",
                )
            amounts[key] = float(value)
        if amounts["num_cpus"] == 0 and amounts["num_gpus"] == 0:
            raise ConfigError(
                "executor num_cpus and num_gpus are both 0: Ray would start every trial at once",
                fix="give each trial num_cpus: 1 (or a share of a GPU)",
            )
        warm = data.get("warm", True)
        if not isinstance(warm, bool):
            raise ConfigError("executor warm must be true or false", fix="warm: true")
        return cls(kind, address, amounts["num_cpus"], amounts["num_gpus"], warm)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "address": self.address,
            "num_cpus": self.num_cpus,
            "num_gpus": self.num_gpus,
            "warm": self.warm,
        }

    def replace(self, *, kind: str | None = None, address: str | None = None) -> ExecutorConfig:
        data = self.to_dict()
        if kind is not None:
            data["kind"] = kind
        if address is not None:
            data["address"] = address
        return ExecutorConfig.from_mapping(data)


@dataclass(frozen=True)
class TrialJob:
    """What an executor needs to run one claimed trial."""

    trial_id: str
    store_path: str
    definition: dict[str, Any]
    log_path: str
    threads: int
    workers: int
    #: Local workers only: where the runner's host sampler publishes the trial's share
    #: (the worker's ``--attribution``); a Ray trial keeps its own meter.
    attribution_path: str | None = None


@dataclass(frozen=True)
class Finished:
    """A trial's end as the executor saw it. ``returncode`` follows the worker's exit codes
    (0 complete, 1 failed, 130 given back; negative: killed by that signal); ``outcome`` is
    the trial runner's outcome where the executor brings one back (Ray) and the runner must
    record it; ``error`` says why the executor ended it (a Ray worker that died twice)."""

    returncode: int
    outcome: Any = None
    error: str | None = None


class TrialHandle(Protocol):
    #: The process the store names as the trial's worker (the driver for a Ray task).
    pid: int

    def poll(self) -> Finished | None: ...
    def terminate(self) -> None: ...  # give the trial back (SIGTERM, ray.cancel)
    def kill(self) -> None: ...  # stop it now (a time-out)
    def wait(self, timeout: float | None = None) -> Finished | None: ...
    def close(self) -> None: ...


class Executor(Protocol):
    kind: ExecutorKind

    def start(self) -> None: ...
    def capacity(self) -> int | None: ...  # trials it can run at once, where it knows
    def submit(self, job: TrialJob) -> TrialHandle: ...
    def shutdown(self) -> None: ...


# -- local ------------------------------------------------------------------------------------


def _worker_argv(job: TrialJob, parent_pid: int) -> list[str]:
    return [
        job.store_path,
        job.trial_id,
        "--parent-pid",
        str(parent_pid),
        "--threads",
        str(job.threads),
        "--workers",
        str(job.workers),
        "--spawned-at",
        repr(time.time()),
        *(("--attribution", job.attribution_path) if job.attribution_path else ()),
    ]


class _PopenHandle:
    """A cold worker: ``python -m frugalml.study._worker`` (a chosen interpreter)."""

    def __init__(self, process: subprocess.Popen[bytes], log: IO[bytes]) -> None:
        self.process = process
        self.log = log
        self.pid = process.pid

    def poll(self) -> Finished | None:
        code = self.process.poll()
        return None if code is None else Finished(code)

    def terminate(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.process.kill()

    def wait(self, timeout: float | None = None) -> Finished | None:
        try:
            return Finished(self.process.wait(timeout=timeout))
        except subprocess.TimeoutExpired:
            return None

    def close(self) -> None:
        self.log.close()


class _ForkedHandle:
    """A warm worker forked from the forkserver."""

    def __init__(self, process: Any) -> None:
        self.process = process
        self.pid = int(process.pid)

    def poll(self) -> Finished | None:
        code = self.process.exitcode
        return None if code is None else Finished(int(code))

    def terminate(self) -> None:
        if self.process.exitcode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGTERM)

    def kill(self) -> None:
        if self.process.exitcode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)

    def wait(self, timeout: float | None = None) -> Finished | None:
        self.process.join(timeout)
        return self.poll()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.process.close()


def _warm_trial(
    argv: list[str],
    log_path: str,
    env: dict[str, str],
    cwd: str,
    forkserver_pid: int,
    runner_pid: int,
    fault: str | None,
) -> None:
    """The body of a warm trial process (forked from the forkserver): the worker's own
    ``main``, with the runner's environment, cwd and log, and the same parent-death rule."""
    os.setsid()  # like start_new_session: a Ctrl-C reaches the runner, which gives it back
    fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    os.environ.clear()
    os.environ.update(env)
    os.chdir(cwd)
    if sys.platform.startswith("linux"):
        # Die with the forkserver, which exits as soon as the runner does (kill -9 included):
        # no orphan finishes a trial that a resumed study has handed out again.
        with contextlib.suppress(Exception):
            import ctypes

            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)
    if os.getppid() != forkserver_pid or not pid_alive(runner_pid):
        os._exit(130)  # the runner died before the signal was armed
    if fault:
        _test_fault(fault)
    from frugalml.study._worker import main

    sys.stdout.flush()
    code = main(argv)
    sys.stdout.flush()
    sys.stderr.flush()
    sys.exit(code)


def _test_fault(fault: str) -> None:
    if fault == "segfault":
        os.kill(os.getpid(), signal.SIGSEGV)
    elif fault == "memory":
        import resource

        import psutil
        import torch

        # the address space this process already has plus 256 MiB, then a 1 GiB tensor
        limit = psutil.Process().memory_info().vms + 256 * 2**20
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        torch.ones(2**28, dtype=torch.float32)  # raises: cannot allocate


def _main_is_safe_to_fork() -> bool:
    """A forkserver child re-imports ``__main__`` where it is a plain script file, running
    its top level again unless it has the ``if __name__ == "__main__"`` guard. Warm workers
    are used where that cannot happen: ``python -m ...`` (a ``__main__`` module is not
    re-run), an installed entry point (``frugalml``, ``pytest``: guarded), or no script
    (an interactive session); a user's own script gets cold workers."""
    main = sys.modules.get("__main__")
    if getattr(getattr(main, "__spec__", None), "name", None) is not None:
        return True
    path = getattr(main, "__file__", None)
    if path is None:
        return True
    scripts = Path(sys.executable).parent.resolve()
    safe = Path(path).resolve().parent == scripts
    if not safe:
        logger.info("trials start cold: the main script %s would be re-run by a warm fork", path)
    return safe


def pid_alive(pid: int) -> bool:
    """Whether a process ``pid`` exists (one this user may not signal counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class LocalExecutor:
    """One process per trial on this machine; warm (forked from a forkserver) by default,
    cold (a fresh interpreter) where ``python`` names another interpreter or ``warm`` is off."""

    kind: ExecutorKind = "local"

    def __init__(self, *, python: str | None = None, warm: bool = True) -> None:
        self.python = python or sys.executable
        self.warm = (
            warm
            and sys.platform.startswith("linux")
            and os.path.realpath(self.python) == os.path.realpath(sys.executable)
            and _main_is_safe_to_fork()
        )
        self._context: Any = None

    def start(self) -> None:
        if not self.warm:
            return
        import multiprocessing

        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(list(PRELOAD))
        from multiprocessing import forkserver

        forkserver.ensure_running()  # starts importing now, while the store is set up
        self._context = context

    def capacity(self) -> int | None:
        return None

    def submit(self, job: TrialJob) -> TrialHandle:
        if self.warm and self._context is None:
            self.start()
        if not self.warm:
            return self._submit_cold(job)
        from multiprocessing import forkserver

        fault = None
        hook = os.environ.get(TEST_FAULT_ENV, "")
        if hook.partition("@")[2] == job.trial_id:
            fault = hook.partition("@")[0]
        forkserver.ensure_running()
        server_pid = forkserver._forkserver._forkserver_pid  # type: ignore[attr-defined]
        process = self._context.Process(
            target=_warm_trial,
            args=(
                _worker_argv(job, 0),
                job.log_path,
                dict(os.environ, PYTHONUNBUFFERED="1"),
                os.getcwd(),
                int(server_pid),
                os.getpid(),
                fault,
            ),
            name=f"frugalml-trial-{job.trial_id}",
        )
        process.start()
        return _ForkedHandle(process)

    def _submit_cold(self, job: TrialJob) -> TrialHandle:
        log = open(job.log_path, "ab")  # noqa: SIM115 (closed with the handle)
        argv = [self.python, "-m", "frugalml.study._worker", *_worker_argv(job, os.getpid())]
        env = dict(os.environ)
        env.setdefault("PYTHONUNBUFFERED", "1")
        process = subprocess.Popen(
            argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )
        return _PopenHandle(process, log)

    def shutdown(self) -> None:
        """The forkserver stays for the life of this process (it is cheap to keep and dear
        to start); it exits with it."""


# -- ray --------------------------------------------------------------------------------------


def trial_resources(config: ExecutorConfig, definition: Mapping[str, Any]) -> dict[str, float]:
    """The Ray resources one trial asks for: the spec's ``executor:`` ``num_cpus`` and
    ``num_gpus``; a trial with a ``parallel:`` section of ``nproc >= 2`` ranks (each a
    process of its own, on the node Ray chose) reserves at least one CPU per rank,
    ``num_cpus = max(num_cpus, nproc)``, so Ray does not put more ranks on a node than it has
    CPUs. GPUs stay as given (a rank on CUDA uses its local device: give ``num_gpus: nproc``
    for one GPU per rank)."""
    num_cpus = config.num_cpus
    parallel = definition.get("parallel")
    nproc = parallel.get("nproc", 1) if isinstance(parallel, Mapping) else 1
    if isinstance(nproc, int) and not isinstance(nproc, bool) and nproc >= 2:
        num_cpus = max(num_cpus, float(nproc))
    return {"num_cpus": num_cpus, "num_gpus": config.num_gpus}


def import_ray() -> Any:
    try:
        import ray
    except ImportError as exc:
        raise ConfigError(
            "the ray executor needs Ray, which is not installed",
            fix="pip install 'frugalml[ray]'",
        ) from exc
    return ray


def _ray_trial_task(plan: Any) -> Any:
    """The Ray task: run the one trial runner on whichever node Ray chose."""
    from frugalml.study._trial import run_metered_trial
    from frugalml.train import apply_threads

    apply_threads(plan.threads, option="--threads")  # a reused Ray worker: set per trial
    outcome = run_metered_trial(plan)
    outcome.cause = None  # the exception object stays on the node; error and traceback go
    if outcome.status == "failed" and outcome.error:
        outcome.error = f"on Ray node {socket.gethostname()}: {outcome.error}"
    return outcome


class _RayHandle:
    def __init__(self, executor: RayExecutor, job: TrialJob) -> None:
        self.executor = executor
        self.job = job
        self.pid = os.getpid()  # the store's owner: the driver; its death frees the trial
        self.attempt = 0
        self.stopped: Literal["terminate", "kill"] | None = None
        self.deaths: list[str] = []
        self.ref: Any = None
        self._submit()

    def _submit(self) -> None:
        from frugalml.study._trial import TrialPlan

        self.attempt += 1
        plan = TrialPlan(
            trial_id=self.job.trial_id,
            definition=dict(self.job.definition),
            threads=self.job.threads,
            workers=self.job.workers,
            spawned_at=time.time(),
        )
        resources = trial_resources(self.executor.config, plan.definition)
        self.ref = self.executor.remote.options(**resources).remote(plan)

    def poll(self) -> Finished | None:
        ray = self.executor.ray
        ready, _ = ray.wait([self.ref], timeout=0)
        if not ready:
            return None
        exceptions = ray.exceptions
        try:
            outcome = ray.get(self.ref)
        except exceptions.TaskCancelledError:
            return Finished(130 if self.stopped != "kill" else -signal.SIGKILL)
        except exceptions.RayTaskError as exc:  # the task itself raised (an import on a node)
            cause = getattr(exc, "cause", None) or exc
            if isinstance(cause, KeyboardInterrupt):
                return Finished(130)
            first = str(cause).strip().splitlines()
            return Finished(1, error=f"{type(cause).__name__}: {first[-1] if first else ''}")
        except (exceptions.RayError, OSError) as exc:  # the worker or its node died
            if self.stopped is not None:
                return Finished(130 if self.stopped == "terminate" else -signal.SIGKILL)
            reason = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc) else ''}"
            self.deaths.append(reason)
            if self.attempt < RAY_ATTEMPTS:
                logger.warning("%s: its Ray worker died (%s); retrying", self.job.trial_id, reason)
                self._submit()
                return None
            return Finished(
                -signal.SIGKILL,
                error=f"its Ray worker died {len(self.deaths)} times (retried once): {reason}",
            )
        if outcome.status == "interrupted":
            return Finished(130, outcome)
        return Finished(0 if outcome.status != "failed" else 1, outcome)

    def terminate(self) -> None:
        self.stopped = "terminate"
        with contextlib.suppress(Exception):
            self.executor.ray.cancel(self.ref)  # KeyboardInterrupt in the task: given back

    def kill(self) -> None:
        self.stopped = "kill"
        with contextlib.suppress(Exception):
            self.executor.ray.cancel(self.ref, force=True)

    def wait(self, timeout: float | None = None) -> Finished | None:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            done = self.poll()
            if done is not None or (deadline is not None and time.monotonic() > deadline):
                return done
            time.sleep(0.05)

    def close(self) -> None:
        pass


class RayExecutor:
    """Each trial a Ray task with the spec's resources; a local Ray is started unless an
    address (``auto``, ``RAY_ADDRESS``) names a running cluster. A Ray already initialised in
    this process (a test's, a notebook's) is used as it is and left running."""

    kind: ExecutorKind = "ray"

    def __init__(self, config: ExecutorConfig) -> None:
        self.config = config
        self.ray: Any = None
        self.remote: Any = None
        self._owns_ray = False

    def start(self) -> None:
        ray = import_ray()
        self.ray = ray
        if not ray.is_initialized():
            address = self.config.address or os.environ.get("RAY_ADDRESS") or None
            try:
                ray.init(
                    address=address,
                    include_dashboard=False,
                    log_to_driver=False,
                    configure_logging=False,
                )
            except ConnectionError as exc:
                raise ConfigError(
                    f"cannot reach the Ray cluster at {address}: {exc}",
                    fix=(
                        "start one with 'ray start --head', or drop address=ADDRESS for a local Ray"
                    ),
                ) from exc
            self._owns_ray = True
        # the resources per trial are given at each submit (trial_resources)
        self.remote = ray.remote(
            max_retries=0,  # the handle retries once itself, counting the deaths
            name="frugalml_trial",
        )(_ray_trial_task)

    def capacity(self) -> int | None:
        resources = self.ray.cluster_resources()
        counts = []
        if self.config.num_cpus > 0:
            counts.append(int(resources.get("CPU", 0) // self.config.num_cpus))
        if self.config.num_gpus > 0:
            counts.append(int(resources.get("GPU", 0) // self.config.num_gpus))
        return max(1, min(counts)) if counts else None

    def submit(self, job: TrialJob) -> TrialHandle:
        return _RayHandle(self, job)

    def shutdown(self) -> None:
        if self._owns_ray:
            with contextlib.suppress(Exception):
                self.ray.shutdown()
            self._owns_ray = False


def make_executor(config: ExecutorConfig, *, python: str | None = None) -> Executor:
    if config.kind == "ray":
        return RayExecutor(config)
    return LocalExecutor(python=python, warm=config.warm)


def log_path_for(out_dir: Path, trial_id: str) -> str:
    return str(out_dir / "logs" / f"{trial_id}.log")

"""Optuna's storage in the output directory, and a lock so one tuner works on it at a time.

``DIR/optuna.db`` is an SQLite database through Optuna's RDB storage (SQLAlchemy is an Optuna
dependency); where SQLAlchemy cannot be imported, ``DIR/optuna.journal`` through Optuna's
JournalStorage with a file backend. An existing file of either kind is reopened, so a rerun
continues the same study. A file that cannot be read is a :class:`StoreError` that leaves
the file (and ``DIR/study.db``, which holds every recorded trial) untouched.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from frugalml.errors import ConfigError, StoreError

if TYPE_CHECKING:
    import optuna

logger = logging.getLogger(__name__)

RDB_FILENAME = "optuna.db"
JOURNAL_FILENAME = "optuna.journal"
LOCK_FILENAME = ".tune.lock"


def _sqlalchemy_available() -> bool:
    try:
        import sqlalchemy  # noqa: F401
    except ImportError:
        return False
    return True


def storage_path(out_dir: Path) -> Path:
    """The storage file a tuner in ``out_dir`` uses (an existing one wins)."""
    rdb, journal = out_dir / RDB_FILENAME, out_dir / JOURNAL_FILENAME
    if rdb.exists():
        return rdb
    if journal.exists() or not _sqlalchemy_available():
        return journal
    return rdb


def _corrupt(path: Path, exc: BaseException) -> StoreError:
    detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return StoreError(
        f"{path} is not a readable Optuna storage ({detail})",
        fix=(
            f"move {path.name} away to start a new tuning study in {path.parent}; the trials "
            f"recorded in {path.parent / 'study.db'} are kept, or use another out_dir=DIR"
        ),
    )


def open_storage(out_dir: Path) -> tuple[optuna.storages.BaseStorage, Path]:
    """The Optuna storage of ``out_dir`` and its file; corrupt files raise StoreError."""
    import optuna

    path = storage_path(out_dir)
    try:
        if path.name == RDB_FILENAME:
            storage: optuna.storages.BaseStorage = optuna.storages.RDBStorage(
                f"sqlite:///{path.resolve()}"
            )
        else:
            from optuna.storages.journal import JournalFileBackend

            storage = optuna.storages.JournalStorage(JournalFileBackend(str(path)))
    except Exception as exc:  # SQLAlchemy/JSON errors of a damaged file
        raise _corrupt(path, exc) from exc
    return storage, path


def load_or_create_study(
    out_dir: Path,
    name: str,
    directions: list[str],
    sampler: optuna.samplers.BaseSampler | None = None,
    pruner: optuna.pruners.BasePruner | None = None,
) -> tuple[optuna.Study, Path]:
    """Open (or create) study ``name`` in ``out_dir``'s storage; its objectives must match."""
    import optuna

    storage, path = open_storage(out_dir)
    try:
        study = optuna.create_study(
            storage=storage,
            study_name=name,
            load_if_exists=True,
            directions=directions,  # type: ignore[arg-type]  # "maximize"/"minimize"
            sampler=sampler,
            pruner=pruner,
        )
        existing = [d.name.lower() for d in study.directions]
        _ = study.trials  # reads every trial: a damaged file fails here rather than later
    except Exception as exc:
        raise _corrupt(path, exc) from exc
    if existing != directions:
        raise ConfigError(
            f"the tuning study {name!r} in {path} optimises {existing}, but the spec asks for "
            f"{directions}",
            fix="keep the spec's objective, or use another out_dir=DIR for the new objective",
        )
    return study, path


def load_study(out_dir: Path, name: str | None = None) -> optuna.Study:
    """An existing tuning study in ``out_dir`` (the only one when ``name`` is None)."""
    import optuna

    path = storage_path(out_dir)
    if not path.exists():
        raise StoreError(
            f"no tuning storage in {out_dir}", fix="give the out_dir=DIR that a tuning run wrote"
        )
    storage, path = open_storage(out_dir)
    try:
        names = [s.study_name for s in optuna.get_all_study_summaries(storage)]
    except Exception as exc:
        raise _corrupt(path, exc) from exc
    if name is None:
        if len(names) != 1:
            raise StoreError(
                f"{path} holds {len(names)} studies ({', '.join(names) or 'none'})",
                fix="name the study",
            )
        name = names[0]
    elif name not in names:
        raise StoreError(f"{path} holds no study {name!r}", fix=f"studies: {', '.join(names)}")
    try:
        return optuna.load_study(study_name=name, storage=storage)
    except Exception as exc:
        raise _corrupt(path, exc) from exc


@contextlib.contextmanager
def directory_lock(out_dir: Path) -> Iterator[None]:
    """Hold ``DIR/.tune.lock`` (an advisory ``flock``) while tuning; a second tuner on the
    same directory gets a StoreError instead of racing the first. No-op without fcntl."""
    try:
        import fcntl
    except ImportError:  # not POSIX
        yield
        return
    path = out_dir / LOCK_FILENAME
    handle: Any = open(path, "a+")  # noqa: SIM115 (held for the duration)
    try:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise StoreError(
                f"another 'frugalml tune' is working on {out_dir} (it holds {path})",
                fix="wait for it to finish, or use another out_dir=DIR",
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        yield
    finally:
        handle.close()

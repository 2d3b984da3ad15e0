"""The study store: one SQLite file (WAL mode) per study directory.

Trials are rows that move ``pending -> running -> complete | failed``; a trial is claimed
inside an ``IMMEDIATE`` transaction, so two processes on one store never run the same trial.
A ``running`` trial whose owner process and worker are both gone (``kill -9``, power loss) is
stale and is claimed again. Every epoch and every final result is written the moment it
exists, each in its own short transaction.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import sqlite3
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from frugalml import __version__
from frugalml._types import STORE_STATUSES, StoreStatus
from frugalml.errors import StoreError

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 1
STORE_FILENAME = "study.db"

#: Seconds without a heartbeat after which a trial owned by another host counts as stale.
STALE_AFTER_S = 300.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS trials (
    trial_id TEXT PRIMARY KEY,
    study TEXT NOT NULL,
    position INTEGER NOT NULL,
    label TEXT NOT NULL,
    definition_json TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'pending',
    owner TEXT,
    worker_pid INTEGER,
    heartbeat_at REAL,
    attempts INTEGER NOT NULL DEFAULT 0,
    started_at TEXT,
    finished_at TEXT,
    error TEXT,
    log_path TEXT,
    result_json TEXT
);
CREATE INDEX IF NOT EXISTS trials_status ON trials(status, position);
CREATE TABLE IF NOT EXISTS epochs (
    trial_id TEXT NOT NULL REFERENCES trials(trial_id),
    attempt INTEGER NOT NULL,
    epoch INTEGER NOT NULL,
    record_json TEXT NOT NULL,
    PRIMARY KEY (trial_id, attempt, epoch)
);
CREATE TABLE IF NOT EXISTS specs (
    saved_at TEXT NOT NULL,
    spec_json TEXT NOT NULL
);
"""

STATUSES: tuple[StoreStatus, ...] = STORE_STATUSES


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _process_identity(pid: int) -> str:
    """``host:pid:start`` so that a recycled pid is not mistaken for a live owner."""
    import psutil

    try:
        start = f"{psutil.Process(pid).create_time():.2f}"
    except psutil.Error:
        start = "?"
    return f"{socket.gethostname()}:{pid}:{start}"


def _identity_alive(identity: str | None) -> bool | None:
    """True/False for a process on this host, None for another host (unknown)."""
    import psutil

    if not identity:
        return False
    host, _, rest = identity.partition(":")
    pid_text, _, start = rest.partition(":")
    if host != socket.gethostname():
        return None
    try:
        process = psutil.Process(int(pid_text))
        if process.status() == psutil.STATUS_ZOMBIE:
            return False
        return start == "?" or f"{process.create_time():.2f}" == start
    except (psutil.Error, ValueError):
        return False


@dataclass(frozen=True)
class TrialRow:
    trial_id: str
    position: int
    label: str
    definition: dict[str, Any]
    status: StoreStatus
    attempts: int
    error: str | None
    result: dict[str, Any] | None
    started_at: str | None
    finished_at: str | None
    log_path: str | None


class StudyStore:
    """Access to ``DIR/study.db``. Cheap to open; every method uses short transactions.

    ``read_only=True`` (``status``, ``report``, ``export``) opens the file with SQLite's
    ``mode=ro`` and never writes to it: no WAL switch, no schema, nothing created; where
    SQLite cannot read a WAL store read-only (its directory is not writable), the file is
    opened ``immutable``. Rows that cannot be read (bad JSON, a wrong type) are left out of
    :meth:`trials` and named in :attr:`warnings`; every other row is read.
    """

    def __init__(self, path: str | Path, *, create: bool = True, read_only: bool = False) -> None:
        path = Path(path)
        if path.is_dir() or path.suffix != ".db":
            path = path / STORE_FILENAME
        self.path = path
        self.read_only = read_only
        #: One line per row (or table) that could not be read; see :meth:`trials`.
        self.warnings: list[str] = []
        self._warned: set[str] = set()
        if not path.exists():
            if not create or read_only:
                raise StoreError(
                    f"no study store at {path}",
                    fix="give the out_dir=DIR that a study ran into",
                )
            path.parent.mkdir(parents=True, exist_ok=True)
        elif path.is_file() and path.stat().st_size == 0 and (read_only or not create):
            raise StoreError(
                f"{path} is an empty file (0 bytes), not a study store; it was left as it is",
                fix="give the out_dir=DIR that a study ran into",
            )
        self.identity = _process_identity(os.getpid())
        #: How a read-only store was opened: ``mode=ro``, or ``mode=ro&immutable=1``.
        self.open_mode = "rw"
        self._conn = self._connect_read_only() if read_only else self._connect()
        self._tables: set[str] = set()
        self._init_schema(create and not read_only)

    def _unreadable(self, exc: BaseException) -> StoreError:
        text = str(exc)
        if "not a database" in text or "malformed" in text or "encrypted" in text:
            return StoreError(
                f"{self.path} is not a readable frugalml study store ({text})",
                fix="use another out_dir=DIR, or restore the file from a backup",
            )
        return _store_error(self.path, exc, "read")

    def _connect(self) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
            conn.execute("PRAGMA foreign_keys=ON")
        except sqlite3.DatabaseError as exc:
            raise self._unreadable(exc) from exc
        conn.row_factory = sqlite3.Row
        return conn

    def _set_wal(self) -> None:
        """WAL mode for a store this process may write (never for a foreign file)."""
        # Changing the journal mode can answer "database is locked" at once, without waiting
        # on the busy timeout, while another process is creating the same store: retry within
        # the connection's own 30 s.
        deadline = time.monotonic() + 30.0
        while True:
            try:
                self._conn.execute("PRAGMA journal_mode=WAL")
                self._conn.execute("PRAGMA synchronous=NORMAL")
                return
            except sqlite3.OperationalError as exc:
                text = str(exc).lower()
                if ("locked" in text or "busy" in text) and time.monotonic() < deadline:
                    time.sleep(0.05)
                    continue
                raise _store_error(self.path, exc, "open") from exc
            except sqlite3.DatabaseError as exc:
                raise _store_error(self.path, exc, "open") from exc

    def _connect_read_only(self) -> sqlite3.Connection:
        from urllib.parse import quote

        uri = f"file:{quote(str(self.path.resolve()))}"
        last: sqlite3.DatabaseError | None = None
        # With no -wal file beside it, every commit is in the main file (the last writer
        # closed cleanly) and ``immutable`` reads it without creating -wal/-shm files. With
        # one (a run in progress, or killed), mode=ro reads the latest commits through it;
        # where that fails (read-only media), immutable reads the main file alone.
        wal = self.path.with_name(self.path.name + "-wal")
        queries: tuple[str, ...] = ("?mode=ro", "?mode=ro&immutable=1")
        if not wal.exists():
            queries = ("?mode=ro&immutable=1",)
        for query in queries:
            try:
                conn = sqlite3.connect(uri + query, uri=True, timeout=30.0, isolation_level=None)
                conn.execute("SELECT name FROM sqlite_master LIMIT 1").fetchall()
            except sqlite3.DatabaseError as exc:
                last = exc
                if "not a database" in str(exc) or "malformed" in str(exc):
                    break
                continue
            if query != queries[0]:
                logger.info("%s opened immutable (its -wal file cannot be read)", self.path)
            conn.row_factory = sqlite3.Row
            self.open_mode = query.lstrip("?")
            return conn
        raise self._unreadable(last or sqlite3.DatabaseError("cannot open")) from last

    def _warn(self, message: str) -> None:
        if message not in self._warned:
            self._warned.add(message)
            self.warnings.append(message)
            logger.warning(message)

    def _init_schema(self, create: bool) -> None:
        try:
            tables = {
                r[0]
                for r in self._conn.execute("SELECT name FROM sqlite_master WHERE type='table'")
            }
        except sqlite3.DatabaseError as exc:
            raise self._unreadable(exc) from exc
        self._tables = tables
        if "meta" in tables:
            self._check_version()
            missing = [t for t in ("trials", "epochs", "specs") if t not in tables]
            if "trials" in missing:
                raise StoreError(
                    f"{self.path} is damaged: its 'trials' table is missing, so it holds no "
                    "trial to read; it was left as it is",
                    fix="restore study.db from a backup, or run the study into a new out_dir=DIR",
                )
            if missing and not self.read_only:
                raise StoreError(
                    f"{self.path} is damaged: table(s) {', '.join(missing)} missing; it was "
                    "left as it is",
                    fix="read it with 'frugalml study export', and run into a new out_dir=DIR",
                )
            for table in missing:
                self._warn(f"{self.path}: table '{table}' is missing; read as empty")
            if not self.read_only:
                self._set_wal()
            return
        if tables:
            raise StoreError(
                f"{self.path} is an SQLite file but not a frugalml study store; it was left "
                "as it is",
                fix="use another out_dir=DIR",
            )
        if not create:
            raise StoreError(f"no study store at {self.path}", fix="run 'frugalml study run' first")
        self._set_wal()
        with self.transaction() as conn:
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute(
                "INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),)
            )
            conn.execute(
                "INSERT OR IGNORE INTO meta VALUES ('frugalml_version', ?)", (__version__,)
            )
            conn.execute("INSERT OR IGNORE INTO meta VALUES ('created_at', ?)", (utc_now(),))
        self._tables = {"meta", "trials", "epochs", "specs"}

    def _check_version(self) -> None:
        try:
            row = self._conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
            writer = self._conn.execute(
                "SELECT value FROM meta WHERE key='frugalml_version'"
            ).fetchone()
        except sqlite3.DatabaseError as exc:
            raise self._unreadable(exc) from exc
        raw = row[0] if row else None
        try:
            version = int(raw) if raw is not None else -1
        except (TypeError, ValueError):
            raise StoreError(
                f"{self.path} has an unreadable store schema version {raw!r} (not a number); "
                "it was left as it is",
                fix="restore study.db from a backup, or run the study into a new out_dir=DIR",
            ) from None
        if version != SCHEMA_VERSION:
            raise StoreError(
                f"{self.path} was written by frugalml {writer[0] if writer else '?'} with "
                f"store schema {version}; this frugalml ({__version__}) reads schema "
                f"{SCHEMA_VERSION}",
                fix="use a new out_dir=DIR, or the frugalml version that wrote it",
            )

    @contextmanager
    def transaction(self, immediate: bool = True) -> Iterator[sqlite3.Connection]:
        """A write transaction. An SQLite failure (a full disk, a lock held too long, a
        read-only file) becomes a :class:`StoreError` naming it; the transaction is rolled
        back, so the store keeps what it held."""
        if self.read_only:
            raise StoreError(
                f"{self.path} was opened read-only", fix="open it with read_only=False to write"
            )
        conn = self._conn
        try:
            conn.execute("BEGIN IMMEDIATE" if immediate else "BEGIN")
        except sqlite3.DatabaseError as exc:
            raise _store_error(self.path, exc, "write") from exc
        try:
            yield conn
        except BaseException as exc:
            with suppress(sqlite3.DatabaseError):
                conn.execute("ROLLBACK")
            if isinstance(exc, sqlite3.DatabaseError):
                raise _store_error(self.path, exc, "write") from exc
            raise
        else:
            try:
                conn.execute("COMMIT")
            except sqlite3.DatabaseError as exc:
                with suppress(sqlite3.DatabaseError):
                    conn.execute("ROLLBACK")
                raise _store_error(self.path, exc, "write") from exc

    def _read(self, query: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        try:
            return self._conn.execute(query, tuple(params)).fetchall()
        except sqlite3.DatabaseError as exc:
            raise _store_error(self.path, exc, "read") from exc

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> StudyStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- writing ----------------------------------------------------------------------------

    def save_spec(self, spec: dict[str, Any]) -> None:
        with self.transaction() as conn:
            conn.execute("INSERT INTO specs VALUES (?, ?)", (utc_now(), json.dumps(spec)))

    def add_trials(self, trials: Sequence[tuple[str, str, str, dict[str, Any]]]) -> int:
        """Register ``(trial_id, study, label, definition)`` rows; known ids are left alone.
        Returns how many were new."""
        with self.transaction() as conn:
            start = conn.execute("SELECT COALESCE(MAX(position), -1) + 1 FROM trials").fetchone()[0]
            before = conn.total_changes
            for offset, (trial_id, study, label, definition) in enumerate(trials):
                conn.execute(
                    "INSERT OR IGNORE INTO trials (trial_id, study, position, label, "
                    "definition_json) VALUES (?, ?, ?, ?, ?)",
                    (trial_id, study, start + offset, label, json.dumps(definition)),
                )
            return int(conn.total_changes - before)

    def claim(self, trial_ids: Sequence[str], *, retry_failed: bool = False) -> str | None:
        """Atomically take the first claimable trial among ``trial_ids`` (in store order)."""
        if not trial_ids:
            return None
        wanted = set(trial_ids)
        now = time.time()
        with self.transaction() as conn:
            rows = conn.execute(
                "SELECT trial_id, status, owner, worker_pid, heartbeat_at FROM trials "
                "WHERE status != 'complete' ORDER BY position"
            ).fetchall()
            for row in rows:
                if row["trial_id"] not in wanted:
                    continue
                status = row["status"]
                claimable = status == "pending" or (status == "failed" and retry_failed)
                if status == "running" and self._is_stale(row, now):
                    logger.info("trial %s was left running by a dead process; retrying it", row[0])
                    claimable = True
                if claimable:
                    conn.execute(
                        "UPDATE trials SET status='running', owner=?, worker_pid=NULL, "
                        "heartbeat_at=?, attempts=attempts+1, started_at=?, finished_at=NULL, "
                        "error=NULL WHERE trial_id=?",
                        (self.identity, now, utc_now(), row["trial_id"]),
                    )
                    return str(row["trial_id"])
        return None

    @staticmethod
    def _is_stale(row: sqlite3.Row, now: float) -> bool:
        owner_alive = _identity_alive(row["owner"])
        if owner_alive is None:  # another host: only the heartbeat can tell
            return bool(row["heartbeat_at"] is None or now - row["heartbeat_at"] > STALE_AFTER_S)
        if owner_alive:
            return False
        worker = row["worker_pid"]
        if worker is not None:
            host = str(row["owner"]).split(":", 1)[0]
            return not _identity_alive(f"{host}:{worker}:?")
        return True

    def set_worker(self, trial_id: str, pid: int) -> None:
        with self.transaction() as conn:
            conn.execute("UPDATE trials SET worker_pid=? WHERE trial_id=?", (pid, trial_id))

    def heartbeat(self, trial_ids: Sequence[str]) -> None:
        if not trial_ids:
            return
        with self.transaction() as conn:
            conn.executemany(
                "UPDATE trials SET heartbeat_at=? WHERE trial_id=? AND status='running'",
                [(time.time(), t) for t in trial_ids],
            )

    def record_epoch(self, trial_id: str, epoch: int, record: dict[str, Any]) -> None:
        with self.transaction() as conn:
            attempt = conn.execute(
                "SELECT attempts FROM trials WHERE trial_id=?", (trial_id,)
            ).fetchone()[0]
            conn.execute(
                "INSERT OR REPLACE INTO epochs VALUES (?, ?, ?, ?)",
                (trial_id, attempt, epoch, json.dumps(record)),
            )

    def finish(
        self,
        trial_id: str,
        status: str,
        *,
        result: dict[str, Any] | None = None,
        error: str | None = None,
        only_if_running: bool = False,
    ) -> bool:
        """Mark a trial finished (complete/failed) or give it back (pending)."""
        if status not in STATUSES:
            raise ValueError(f"unknown status {status!r}")
        with self.transaction() as conn:
            query = (
                "UPDATE trials SET status=?, finished_at=?, error=?, "
                "result_json=COALESCE(?, result_json) WHERE trial_id=?"
            )
            if only_if_running:
                query += " AND status='running'"
            cursor = conn.execute(
                query,
                (
                    status,
                    utc_now() if status != "pending" else None,
                    error,
                    json.dumps(result) if result is not None else None,
                    trial_id,
                ),
            )
            return cursor.rowcount > 0

    def merge_result(self, trial_id: str, fields: Mapping[str, Any]) -> bool:
        """Add ``fields`` to the result a trial already holds (a finished trial's), in one
        transaction; every other recorded field stays as it was. Returns False (nothing
        written) when the trial holds no result."""
        with self.transaction() as conn:
            row = conn.execute(
                "SELECT result_json FROM trials WHERE trial_id=?", (trial_id,)
            ).fetchone()
            result = _json_object(row[0]) if row is not None and row[0] else None
            if result is None:
                return False
            result.update(fields)
            conn.execute(
                "UPDATE trials SET result_json=? WHERE trial_id=?",
                (json.dumps(result), trial_id),
            )
            return True

    def set_log_path(self, trial_id: str, log_path: str) -> None:
        with self.transaction() as conn:
            conn.execute("UPDATE trials SET log_path=? WHERE trial_id=?", (log_path, trial_id))

    # -- reading ----------------------------------------------------------------------------

    def trial(self, trial_id: str) -> TrialRow:
        rows = self._read("SELECT * FROM trials WHERE trial_id=?", (trial_id,))
        if not rows:
            raise StoreError(f"no trial {trial_id} in {self.path}", fix="check the trial id")
        row = self._row(rows[0])
        if row is None:
            raise StoreError(
                f"trial {trial_id} in {self.path} cannot be read: {self.warnings[-1]}",
                fix="run the study into a new out_dir=DIR, or delete that row",
            )
        return row

    def trials(self, status: str | None = None) -> list[TrialRow]:
        """The readable trials in store order; unreadable rows are named in :attr:`warnings`."""
        if status is None:
            rows = self._read("SELECT * FROM trials ORDER BY position")
        else:
            rows = self._read("SELECT * FROM trials WHERE status=? ORDER BY position", (status,))
        return [t for r in rows for t in [self._row(r)] if t is not None]

    def trial_ids(self) -> list[str]:
        """Every trial id in the store, readable rows or not."""
        return [str(r[0]) for r in self._read("SELECT trial_id FROM trials ORDER BY position")]

    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = dict.fromkeys(STATUSES, 0)
        for status, n in self._read("SELECT status, COUNT(*) FROM trials GROUP BY status"):
            counts[str(status)] = int(n)
        return counts

    def epochs(self, trial_id: str) -> list[dict[str, Any]]:
        if "epochs" not in self._tables:
            return []
        rows = self._read(
            "SELECT epoch, record_json FROM epochs WHERE trial_id=? AND attempt=("
            "SELECT attempts FROM trials WHERE trial_id=?) ORDER BY epoch",
            (trial_id, trial_id),
        )
        out = []
        for row in rows:
            record = _json_object(row[1])
            if record is None:
                self._warn(
                    f"trial {trial_id}, epoch {row[0]}: the epoch record is not a JSON "
                    "object; left out"
                )
                continue
            out.append(record)
        return out

    def latest_spec(self) -> dict[str, Any] | None:
        if "specs" not in self._tables:
            return None
        for row in self._read("SELECT rowid, spec_json FROM specs ORDER BY rowid DESC"):
            spec = _json_object(row[1])
            if spec is not None:
                return spec
            self._warn(f"saved spec #{row[0]} is not a JSON object; left out")
        return None

    def meta(self) -> dict[str, str]:
        return {str(k): str(v) for k, v in self._read("SELECT key, value FROM meta")}

    def _row(self, row: sqlite3.Row) -> TrialRow | None:
        """A trial row, or None (and a warning naming it) when it cannot be read."""
        trial_id = row["trial_id"]
        name = f"trial {trial_id}" + (f" ({row['label']})" if isinstance(row["label"], str) else "")
        problem: str | None = None
        definition = _json_object(row["definition_json"])
        result: dict[str, Any] | None = None
        if definition is None:
            problem = "its definition is not a JSON object"
        elif row["result_json"]:
            result = _json_object(row["result_json"])
            if result is None:
                problem = "its result is not a JSON object"
            else:
                bad = [k for k, v in result.items() if _numeric_key(k) and not _is_number(v)]
                if bad:
                    problem = "its result has a non-numeric " + ", ".join(
                        f"{k}={result[k]!r}"[:60] for k in bad
                    )
        if problem is None:
            for column, kind in _ROW_TYPES.items():
                value = row[column]
                if value is not None and not isinstance(value, kind):
                    problem = f"its column {column} holds {value!r}"[:120]
                    break
        if problem is None and row["status"] not in STATUSES:
            problem = f"its status {row['status']!r} is not one of {', '.join(STATUSES)}"
        if problem is not None or definition is None:
            self._warn(f"{self.path.name}: {name} cannot be read ({problem}); left out")
            return None
        return TrialRow(
            trial_id=str(trial_id),
            position=row["position"],
            label=row["label"],
            definition=definition,
            status=row["status"],
            attempts=row["attempts"],
            error=row["error"],
            result=result,
            started_at=row["started_at"],
            finished_at=row["finished_at"],
            log_path=row["log_path"],
        )


#: SQLite types a trial row's columns must hold (SQLite itself does not enforce them).
_ROW_TYPES: dict[str, type | tuple[type, ...]] = {
    "trial_id": str,
    "position": int,
    "label": str,
    "attempts": int,
    "error": str,
    "started_at": str,
    "finished_at": str,
    "log_path": str,
}

_NUMERIC_SUFFIXES = ("_j", "_s", "_g", "_kwh", "_bytes", "_params", "_per_s", "_per_kwh")
_NUMERIC_KEYS = frozenset(
    {"accuracy", "balanced_accuracy", "auc", "f1", "params", "flops_per_sample", "epochs", "pue"}
)


#: Keys that end like a number's but hold text (tune_params is the parameters' JSON).
_TEXT_KEYS = frozenset({"tune_params"})


def _numeric_key(key: str) -> bool:
    if key in _TEXT_KEYS:
        return False
    return key in _NUMERIC_KEYS or key.endswith(_NUMERIC_SUFFIXES)


def _is_number(value: Any) -> bool:
    return value is None or (isinstance(value, int | float) and not isinstance(value, bool))


def _json_object(text: Any) -> dict[str, Any] | None:
    if not isinstance(text, str | bytes):
        return None
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def _store_error(path: Path, exc: BaseException, doing: str) -> StoreError:
    """One line for an SQLite failure, with the fix that fits it."""
    text = str(exc)
    lowered = text.lower()
    if "full" in lowered:
        fix = (
            "free disk space, then run the same command again: the store keeps every "
            "result written before, and unfinished trials run again"
        )
    elif "locked" in lowered or "busy" in lowered:
        fix = "another frugalml process holds the store; wait for it, or stop it, and retry"
    elif "readonly" in lowered or "read-only" in lowered:
        fix = "write access is needed to run; read it with 'frugalml study status/export'"
    elif "no such table" in lowered:
        fix = "the store is damaged; run the study into a new --out directory"
    else:
        fix = "check the disk and run the same command again to resume"
    return StoreError(f"could not {doing} the study store {path}: {text}", fix=fix)

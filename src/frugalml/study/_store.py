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
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from frugalml import __version__
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

STATUSES = ("pending", "running", "complete", "failed")


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
    status: str
    attempts: int
    error: str | None
    result: dict[str, Any] | None
    started_at: str | None
    finished_at: str | None
    log_path: str | None


class StudyStore:
    """Access to ``DIR/study.db``. Cheap to open; every method uses short transactions."""

    def __init__(self, path: str | Path, *, create: bool = True) -> None:
        path = Path(path)
        if path.is_dir() or path.suffix != ".db":
            path = path / STORE_FILENAME
        self.path = path
        if not path.exists():
            if not create:
                raise StoreError(
                    f"no study store at {path}",
                    fix="give the --out directory of a 'frugalml study run'",
                )
            path.parent.mkdir(parents=True, exist_ok=True)
        self.identity = _process_identity(os.getpid())
        self._conn = self._connect()
        self._init_schema(create)

    def _connect(self) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA foreign_keys=ON")
        except sqlite3.DatabaseError as exc:
            raise StoreError(
                f"{self.path} is not a readable frugalml study store ({exc})",
                fix="use another --out directory, or restore the file from a backup",
            ) from exc
        conn.row_factory = sqlite3.Row
        return conn

    def _init_schema(self, create: bool) -> None:
        try:
            tables = {
                r[0]
                for r in self._conn.execute("SELECT name FROM sqlite_master WHERE type='table'")
            }
        except sqlite3.DatabaseError as exc:
            raise StoreError(
                f"{self.path} is not a readable frugalml study store ({exc})",
                fix="use another --out directory, or restore the file from a backup",
            ) from exc
        if "meta" in tables:
            row = self._conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
            version = int(row[0]) if row else -1
            if version != SCHEMA_VERSION:
                writer = self._conn.execute(
                    "SELECT value FROM meta WHERE key='frugalml_version'"
                ).fetchone()
                raise StoreError(
                    f"{self.path} was written by frugalml {writer[0] if writer else '?'} with "
                    f"store schema {version}; this frugalml ({__version__}) reads schema "
                    f"{SCHEMA_VERSION}",
                    fix="use a new --out directory, or the frugalml version that wrote it",
                )
            return
        if tables:
            raise StoreError(
                f"{self.path} is an SQLite file but not a frugalml study store",
                fix="use another --out directory",
            )
        if not create:
            raise StoreError(f"no study store at {self.path}", fix="run 'frugalml study run' first")
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

    @contextmanager
    def transaction(self, immediate: bool = True) -> Iterator[sqlite3.Connection]:
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE" if immediate else "BEGIN")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        else:
            conn.execute("COMMIT")

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

    def set_log_path(self, trial_id: str, log_path: str) -> None:
        with self.transaction() as conn:
            conn.execute("UPDATE trials SET log_path=? WHERE trial_id=?", (log_path, trial_id))

    # -- reading ----------------------------------------------------------------------------

    def trial(self, trial_id: str) -> TrialRow:
        row = self._conn.execute("SELECT * FROM trials WHERE trial_id=?", (trial_id,)).fetchone()
        if row is None:
            raise StoreError(f"no trial {trial_id} in {self.path}", fix="check the trial id")
        return self._row(row)

    def trials(self, status: str | None = None) -> list[TrialRow]:
        if status is None:
            rows = self._conn.execute("SELECT * FROM trials ORDER BY position").fetchall()
        else:
            rows = self._conn.execute(
                "SELECT * FROM trials WHERE status=? ORDER BY position", (status,)
            ).fetchall()
        return [self._row(r) for r in rows]

    def counts(self) -> dict[str, int]:
        counts = dict.fromkeys(STATUSES, 0)
        for status, n in self._conn.execute(
            "SELECT status, COUNT(*) FROM trials GROUP BY status"
        ).fetchall():
            counts[str(status)] = int(n)
        return counts

    def epochs(self, trial_id: str) -> list[dict[str, Any]]:
        rows = self._conn.execute(
            "SELECT record_json FROM epochs WHERE trial_id=? AND attempt=("
            "SELECT attempts FROM trials WHERE trial_id=?) ORDER BY epoch",
            (trial_id, trial_id),
        ).fetchall()
        return [json.loads(r[0]) for r in rows]

    def latest_spec(self) -> dict[str, Any] | None:
        row = self._conn.execute(
            "SELECT spec_json FROM specs ORDER BY rowid DESC LIMIT 1"
        ).fetchone()
        return json.loads(row[0]) if row else None

    def meta(self) -> dict[str, str]:
        return {str(k): str(v) for k, v in self._conn.execute("SELECT key, value FROM meta")}

    @staticmethod
    def _row(row: sqlite3.Row) -> TrialRow:
        return TrialRow(
            trial_id=row["trial_id"],
            position=row["position"],
            label=row["label"],
            definition=json.loads(row["definition_json"]),
            status=row["status"],
            attempts=row["attempts"],
            error=row["error"],
            result=json.loads(row["result_json"]) if row["result_json"] else None,
            started_at=row["started_at"],
            finished_at=row["finished_at"],
            log_path=row["log_path"],
        )

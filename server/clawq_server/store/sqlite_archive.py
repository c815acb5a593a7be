"""An archive of finished tasks in a SQLite file: one writer thread, batched inserts."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from clawq_server.model import Task, TaskPage, TaskQuery
from clawq_server.queue import sqlite_reads as reads
from clawq_server.queue.sqlite_schema import COLUMNS, chunks, marks, row_to_task, task_row

T = TypeVar("T")


# The queue's columns (queue/sqlite_schema.py), so rows read back through its row_to_task.
_DDL = """
CREATE TABLE IF NOT EXISTS archived_tasks (
    id            TEXT PRIMARY KEY,
    principal     TEXT NOT NULL,
    tool          TEXT NOT NULL,
    args_json     BLOB NOT NULL,
    state         TEXT NOT NULL,
    side_effect   TEXT NOT NULL,
    attempt       INTEGER NOT NULL,
    max_attempts  INTEGER NOT NULL,
    priority      INTEGER NOT NULL,
    idem_key      TEXT,
    idempotent    INTEGER NOT NULL,
    created       REAL NOT NULL,
    not_before    REAL NOT NULL,
    started       REAL,
    finished      REAL,
    output        BLOB,
    stderr        BLOB,
    result_meta   BLOB,
    error_code    TEXT,
    error_reason  TEXT,
    error_message TEXT
);
CREATE INDEX IF NOT EXISTS ix_archived_principal ON archived_tasks(principal, created, id);
CREATE INDEX IF NOT EXISTS ix_archived_created ON archived_tasks(created, id);
"""
_UPSERT = (
    f"INSERT OR REPLACE INTO archived_tasks ({COLUMNS})"  # noqa: S608  (constant columns)
    f" VALUES ({marks(COLUMNS.count(',') + 1)})"
)


class SqliteArchive:
    """Archive on a SQLite file in WAL mode.

    Writes run on one thread with its own connection, one transaction per put_many;
    reads run on another thread and connection, so a long insert never blocks a lookup.
    """

    def __init__(self, path: Path) -> None:
        self._path = path
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="clawq-archive-writer")
        self._reader = ThreadPoolExecutor(1, thread_name_prefix="clawq-archive-reader")
        self._write_conn: sqlite3.Connection | None = None
        self._read_conn: sqlite3.Connection | None = None

    async def start(self) -> None:
        """Open both connections and create the table."""
        self._path.parent.mkdir(parents=True, exist_ok=True)
        self._write_conn = await self._on(self._writer, self._open_writer)
        self._read_conn = await self._on(self._reader, self._connect)

    async def close(self) -> None:
        """Close the connections after the writes already queued."""
        if self._write_conn is not None:
            await self._on(self._writer, self._write_conn.close)
        if self._read_conn is not None:
            await self._on(self._reader, self._read_conn.close)
        self._writer.shutdown()
        self._reader.shutdown()

    async def put_many(self, tasks: Sequence[Task]) -> None:
        """Insert or replace tasks in one transaction."""
        if tasks:
            rows = [task_row(task) for task in tasks]
            await self._on(self._writer, lambda: self._insert(rows))

    async def get_many(self, ids: Sequence[str], principal: str | None) -> list[Task]:
        """The archived tasks among ids, in the order asked."""
        if not ids:
            return []
        return await self._on(self._reader, lambda: self._select(ids, principal))

    async def list_tasks(self, query: TaskQuery) -> TaskPage:
        """One page, newest first, keyset-paged on (created, id)."""
        return await self._on(self._reader, lambda: self._page(query))

    async def _on(self, pool: ThreadPoolExecutor, call: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(pool, call)

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self._path, check_same_thread=False, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA busy_timeout=5000")
        return conn

    def _open_writer(self) -> sqlite3.Connection:
        conn = self._connect()
        conn.executescript(_DDL)
        return conn

    def _insert(self, rows: list[tuple[Any, ...]]) -> None:
        conn = _started(self._write_conn)
        with conn:
            conn.execute("BEGIN")
            conn.executemany(_UPSERT, rows)

    def _select(self, ids: Sequence[str], principal: str | None) -> list[Task]:
        conn = _started(self._read_conn)
        found: dict[str, Task] = {}
        for part in chunks(sorted(set(ids))):
            rows = conn.execute(
                f"SELECT {COLUMNS} FROM archived_tasks WHERE id IN ({marks(len(part))})",  # noqa: S608
                tuple(part),
            )
            for row in rows:
                if principal is None or row[1] == principal:
                    found[row[0]] = row_to_task(row)
        return [found[task_id] for task_id in ids if task_id in found]

    def _page(self, query: TaskQuery) -> TaskPage:
        return reads.list_tasks(_started(self._read_conn), query, table="archived_tasks")


def _started(conn: sqlite3.Connection | None) -> sqlite3.Connection:
    if conn is None:
        raise RuntimeError("the archive is not started")
    return conn

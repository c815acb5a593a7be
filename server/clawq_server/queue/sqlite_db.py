"""SQLite reached from dedicated threads: one group-committing writer, a pool of readers."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from clawq_server.errors import BackendUnavailable
from clawq_server.model import Task
from clawq_server.offload import Offload

T = TypeVar("T")


@dataclass(slots=True)
class Effects:
    """What a committed batch changed that in-process listeners must hear about."""

    terminal: set[str] = field(default_factory=set)
    work: bool = False
    finished: dict[str, Task] = field(default_factory=dict)  # final rows, for waiters

    def merge(self, other: Effects) -> None:
        """Add other's effects to these."""
        self.terminal |= other.terminal
        self.work = self.work or other.work
        self.finished.update(other.finished)


WriteOp = Callable[[sqlite3.Connection, Effects], Any]
ReadOp = Callable[[sqlite3.Connection], Any]
_Pending = tuple[WriteOp, "asyncio.Future[Any]"]


@contextmanager
def translated() -> Iterator[None]:
    """Turn SQLite's locked, busy and I/O failures into BackendUnavailable."""
    try:
        yield
    except sqlite3.OperationalError as exc:
        raise BackendUnavailable(f"sqlite: {exc}") from exc


def connect(path: Path, busy_timeout: float = 5.0) -> sqlite3.Connection:
    """A connection in autocommit mode (transactions are explicit) with the shared pragmas."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute(f"PRAGMA busy_timeout={int(busy_timeout * 1000)}")
    # WAL with synchronous=NORMAL: a commit survives the process being killed (-9), since
    # the WAL is in the OS page cache; only a power loss can drop the last commits.
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    return conn


class SqliteDb:
    """Runs write operations in group-committed transactions and reads on a reader pool.

    Every write submitted while the previous batch is committing joins the next
    batch, so concurrent callers share one transaction and one fsync-free commit.
    Each operation runs inside its own savepoint: one that raises is rolled back
    alone and gets its exception; the others commit.
    """

    def __init__(
        self,
        path: Path,
        readers: int,
        on_commit: Callable[[Effects], None],
        busy_timeout: float = 5.0,
    ) -> None:
        self._path = path
        self._busy_timeout = busy_timeout
        self._closing = False
        self._on_commit = on_commit
        self._writer = Offload(1, "clawq-sqlite-writer")
        self._readers = Offload(max(readers, 1), "clawq-sqlite-reader")
        self._local = threading.local()
        self._reader_conns: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._wconn: sqlite3.Connection | None = None
        self._pending: asyncio.Queue[_Pending | None] = asyncio.Queue()
        self._loop_task: asyncio.Task[None] | None = None

    async def start(self, schema: Callable[[sqlite3.Connection], None]) -> None:
        """Open the writer connection, apply the schema and start the commit loop."""

        def open_writer() -> None:
            self._wconn = connect(self._path, self._busy_timeout)
            schema(self._wconn)

        with translated():
            await self._writer.run(open_writer)
        self._loop_task = asyncio.create_task(self._commit_loop(), name="clawq-sqlite-commit")

    async def write(self, op: WriteOp) -> Any:
        """Run op in the next group commit; return its value once the commit is durable."""
        if self._closing or self._loop_task is None or self._loop_task.done():
            raise BackendUnavailable("sqlite queue is not running")
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending.put_nowait((op, fut))
        return await fut

    async def read(self, op: ReadOp) -> Any:
        """Run op on a reader connection (a fresh snapshot per statement)."""
        with translated():
            return await self._readers.run(partial(self._run_read, op))

    async def close(self) -> None:
        """Commit what is pending, stop the loop and close every connection."""
        if self._closing:
            return
        self._closing = True  # writes queued from here on would land after the sentinel
        if self._loop_task is not None:
            self._pending.put_nowait(None)
            await self._loop_task
        await self._writer.run(self._close_writer)
        await self._writer.close()
        await self._readers.close()
        with self._lock:
            for conn in self._reader_conns:
                conn.close()
            self._reader_conns.clear()

    def _close_writer(self) -> None:
        if self._wconn is not None:
            self._wconn.close()
            self._wconn = None

    def _run_read(self, op: ReadOp) -> Any:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = connect(self._path, self._busy_timeout)
            conn.execute("PRAGMA query_only=1")
            self._local.conn = conn
            with self._lock:
                self._reader_conns.append(conn)
        return op(conn)

    async def _commit_loop(self) -> None:
        stopping = False
        while not stopping:
            first = await self._pending.get()
            batch: list[_Pending] = []
            if first is None:
                stopping = True
            else:
                batch.append(first)
            while not self._pending.empty():
                item = self._pending.get_nowait()
                if item is None:
                    stopping = True
                else:
                    batch.append(item)
            if batch:
                await self._commit(batch)

    async def _commit(self, batch: list[_Pending]) -> None:
        ops = [op for op, _ in batch]
        try:
            outcomes, effects = await self._writer.run(partial(self._run_batch, ops))
        except Exception as exc:  # the whole transaction failed: every caller hears it
            err = exc
            if isinstance(exc, sqlite3.OperationalError):
                err = BackendUnavailable(f"sqlite: {exc}")
                err.__cause__ = exc
            for _, fut in batch:
                if not fut.done():
                    fut.set_exception(err)
            return
        self._on_commit(effects)
        for (_, fut), (ok, value) in zip(batch, outcomes, strict=True):
            if fut.done():
                continue
            if ok:
                fut.set_result(value)
            else:
                fut.set_exception(value)

    def _run_batch(self, ops: list[WriteOp]) -> tuple[list[tuple[bool, Any]], Effects]:
        conn = self._wconn
        if conn is None:
            raise BackendUnavailable("sqlite queue is closed")
        total = Effects()
        outcomes: list[tuple[bool, Any]] = []
        conn.execute("BEGIN IMMEDIATE")
        try:
            for op in ops:
                outcomes.append(self._run_one(conn, op, total))
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                # A failed ROLLBACK (disk gone) must not hide the original error.
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            raise
        return outcomes, total

    @staticmethod
    def _run_one(conn: sqlite3.Connection, op: WriteOp, total: Effects) -> tuple[bool, Any]:
        effects = Effects()
        conn.execute("SAVEPOINT op")
        try:
            value = op(conn, effects)
        except sqlite3.OperationalError:
            raise  # locked or I/O: the transaction as a whole is in doubt
        except Exception as exc:
            conn.execute("ROLLBACK TO op")
            conn.execute("RELEASE op")
            return False, exc
        conn.execute("RELEASE op")
        total.merge(effects)
        return True, value

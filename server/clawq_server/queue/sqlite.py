"""The embedded task queue on one SQLite file: group-committed writes, leases, waiters."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import sqlite3
import time
from collections.abc import Collection, Sequence
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path

from clawq_server.errors import BackendUnavailable, NotFound
from clawq_server.model import (
    Completion,
    HeartbeatOutcome,
    Lease,
    NewTask,
    QueueStats,
    RetryPolicy,
    SubmitOutcome,
    Task,
    TaskPage,
    TaskQuery,
    TaskState,
)
from clawq_server.queue import sqlite_lease as leasing
from clawq_server.queue import sqlite_ops as ops
from clawq_server.queue import sqlite_reads as reads
from clawq_server.queue.base import Refused, Submissions, submit_one, until_done
from clawq_server.queue.drained import Drained, tool_key
from clawq_server.queue.sqlite_db import SqliteDb, WriteOp
from clawq_server.queue.sqlite_schema import apply_schema
from clawq_server.queue.sqlite_watch import CommitWatch

log = logging.getLogger(__name__)

# UPDATE ... RETURNING arrived in SQLite 3.35.
MIN_SQLITE = (3, 35, 0)
# Waiters re-read this often to see transitions made by another process on the same file.
FALLBACK_POLL_S = 1.0
DEFAULT_RETRY = RetryPolicy()

# What one claim returns: the leased tasks, or when the next one may be ready.
Claimed = tuple[list[Task], float | None]


class SqliteQueue:
    """A TaskQueue on one SQLite file; see queue/base.py for the semantics of each method.

    One writer thread commits every write; concurrent calls share a transaction, so
    a batch of submissions costs one thread hop and one commit. Reads go to a small
    pool of reader threads, each with its own connection (WAL lets them run beside
    the writer). Waiters and idle workers are woken in process by the commits this
    queue makes, and re-check every poll_s for other processes' commits.

    Args:
        path: the database file, created with its schema if missing.
        retry: backoff and default attempt budget of retryable failures.
        max_queued: refuse submissions beyond this many QUEUED tasks (0: unbounded).
        readers: reader threads, each with its own connection.
        sweep_interval: seconds between sweeps for expired leases (0: only when leasing).
        busy_timeout: seconds to wait for another process's lock before
            BackendUnavailable.
        poll_s: the longest a waiter or an idle worker goes without re-reading.
    """

    def __init__(
        self,
        path: str | Path,
        retry: RetryPolicy = DEFAULT_RETRY,
        max_queued: int = 0,
        readers: int = 2,
        *,
        sweep_interval: float = 1.0,
        busy_timeout: float = 5.0,
        poll_s: float = FALLBACK_POLL_S,
    ) -> None:
        if sqlite3.sqlite_version_info < MIN_SQLITE:
            raise RuntimeError(f"SQLite {sqlite3.sqlite_version} is older than 3.35")
        self._retry = retry
        self._max_queued = max_queued
        self._sweep_interval = sweep_interval
        self._watch = CommitWatch()
        self._db = SqliteDb(Path(path), readers, self._watch.on_commit, busy_timeout)
        self._poll_s = poll_s
        self._drained = Drained(poll_s)
        self._sweeper: asyncio.Task[None] | None = None
        self._background: set[asyncio.Future[object]] = set()
        self._submissions = Submissions(self._store)

    async def start(self) -> None:
        """Open the file (creating the schema) and start the expired-lease sweeper."""
        await self._db.start(apply_schema)
        if self._sweep_interval > 0:
            self._sweeper = asyncio.create_task(self._sweep(), name="clawq-sqlite-sweeper")

    async def close(self) -> None:
        """Commit pending writes and close every connection."""
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)
        await self._submissions.drain()
        await self._db.close()

    async def submit(
        self, tasks: Sequence[NewTask], *, atomic: bool = False
    ) -> list[SubmitOutcome | Exception]:
        """Store tasks; returns once they are committed.

        Single tasks submitted concurrently (unary Submit, Execute) share one insert.
        """
        return await self._submissions(tasks, atomic)

    async def _store(
        self, tasks: Sequence[NewTask], atomic: bool
    ) -> list[SubmitOutcome | Exception]:
        if not tasks:
            return []
        op = partial(
            ops.submit,
            tasks=tasks,
            atomic=atomic,
            max_queued=self._max_queued,
            retry=self._retry,
        )
        result: list[SubmitOutcome | Exception] = await self._db.write(op)
        return result

    async def record(self, tasks: Sequence[Task]) -> None:
        """Store tasks that finished without a worker, as they are."""
        if tasks:
            await self._db.write(partial(ops.record, tasks=tasks))

    async def get_many(self, ids: Sequence[str], principal: str | None) -> list[Task]:
        """The tasks that exist (and belong to principal), in the order asked."""
        if not ids:
            return []
        op = partial(reads.get_many, ids=ids, principal=principal)
        tasks: list[Task] = await self._db.read(op)
        return tasks

    async def list_tasks(self, query: TaskQuery) -> TaskPage:
        """Tasks newest first, filtered and paged by query."""
        page: TaskPage = await self._db.read(partial(reads.list_tasks, query=query))
        return page

    async def cancel(self, task_id: str, principal: str | None) -> Task:
        """Cancel a queued task now, or flag a running one for its worker."""
        op = partial(ops.cancel, task_id=task_id, principal=principal, now=time.time())
        task: Task = await self._db.write(op)
        return task

    async def wait(
        self,
        task_id: str,
        principal: str | None,
        timeout: float,
    ) -> Task:
        """The task once terminal, or as it is after timeout seconds."""
        deadline = time.monotonic() + max(timeout, 0.0)
        with self._watch.watching(task_id) as woken:
            look = partial(self._look, task_id, principal)
            return await until_done(look, woken, deadline, self._poll_s)

    async def submit_and_wait(
        self, task: NewTask, timeout: float, *, refused: Refused | None = None
    ) -> Task:
        """Store one task and wait for it, without a first read of the new row."""
        deadline = time.monotonic() + max(timeout, 0.0)
        with self._watch.watching(task.id) as woken:
            outcome = await submit_one(self, task, refused)
            if outcome.task_id == task.id:
                look = partial(self._look, task.id, task.principal)
                return await until_done(look, woken, deadline, self._poll_s, queued=True)
        return await self.wait(outcome.task_id, task.principal, deadline - time.monotonic())

    async def _look(self, task_id: str, principal: str | None) -> Task:
        finished = self._watch.finished(task_id, principal)
        return finished or await self._get_one(task_id, principal)

    async def lease(
        self,
        worker_id: str,
        tools: Collection[str] | None,
        limit: int,
        lease_for: timedelta,
        wait: float = 0.0,
    ) -> list[Lease]:
        """Claim up to limit ready tasks, waiting up to wait seconds for one."""
        deadline = time.monotonic() + max(wait, 0.0)
        key = tool_key(tools)
        await self._drained.settle(key, wait)
        while True:
            signal = self._watch.work
            now = time.time()
            token = secrets.token_hex(16)
            expires = now + lease_for.total_seconds()
            op = partial(
                leasing.lease,
                tools=tools,
                limit=limit,
                now=now,
                expires=expires,
                token=token,
                worker_id=worker_id,
            )
            tasks, next_due = await self._claim(op, token)
            remaining = deadline - time.monotonic()
            if tasks or remaining <= 0:
                self._drained.leased(key, signal, next_due, len(tasks), limit)
                until = datetime.fromtimestamp(expires, UTC)
                return [Lease(task=t, token=token, expires=until) for t in tasks]
            await self._drained.idle(signal, remaining, next_due)

    async def _claim(self, op: WriteOp, token: str) -> Claimed:
        # A worker cancelled (shut down) mid-claim must not strand what the commit leased:
        # a stranded write task would later end FAILED with WORKER_LOST.
        claim = asyncio.ensure_future(self._db.write(op))
        try:
            claimed: Claimed = await asyncio.shield(claim)
        except asyncio.CancelledError:
            claim.add_done_callback(partial(self._give_back, token=token))
            raise
        return claimed

    def _give_back(self, claim: asyncio.Future[Claimed], token: str) -> None:
        if claim.cancelled() or claim.exception() is not None:
            return
        ids = [task.id for task in claim.result()[0]]
        if ids:
            op = partial(leasing.release_many, ids=ids, token=token)
            back = asyncio.ensure_future(self._db.write(op))
            self._background.add(back)
            back.add_done_callback(self._background.discard)

    async def heartbeat(
        self, leases: Sequence[tuple[str, str]], lease_for: timedelta
    ) -> HeartbeatOutcome:
        """Extend leases; report lost ones and ones whose task was cancelled."""
        if not leases:
            return HeartbeatOutcome()
        expires = time.time() + lease_for.total_seconds()
        outcome: HeartbeatOutcome = await self._db.write(
            lambda conn, _fx: leasing.heartbeat(conn, leases, expires)
        )
        return outcome

    async def complete(self, task_id: str, token: str, completion: Completion) -> TaskState:
        """Record a leased task's outcome, fenced by its token."""
        op = partial(
            leasing.complete,
            task_id=task_id,
            token=token,
            completion=completion,
            now=time.time(),
            retry=self._retry,
        )
        state: TaskState = await self._db.write(op)
        return state

    async def release(self, task_id: str, token: str) -> None:
        """Give a leased task back without counting the attempt."""
        op = partial(leasing.release, task_id=task_id, token=token, now=time.time())
        await self._db.write(op)

    async def stats(self) -> QueueStats:
        """Depths and counts."""
        result: QueueStats = await self._db.read(partial(reads.stats, now=time.time()))
        return result

    async def count_queued(self, principal: str) -> int:
        """How many of principal's tasks are QUEUED."""
        count: int = await self._db.read(partial(reads.count_queued, principal=principal))
        return count

    async def requeue_dead(self, ids: Sequence[str] | None) -> int:
        """Put DEAD tasks back in the queue; the count moved."""
        moved: int = await self._db.write(partial(ops.requeue_dead, ids=ids, now=time.time()))
        return moved

    async def _get_one(self, task_id: str, principal: str | None) -> Task:
        found = await self.get_many([task_id], principal)
        if not found:
            raise NotFound(f"task {task_id} not found")
        return found[0]

    async def _sweep(self) -> None:
        # Without it, a lost lease would be settled only when a worker next asks for work.
        while True:
            await asyncio.sleep(self._sweep_interval)
            try:
                await self._db.write(partial(leasing.reclaim_expired, now=time.time()))
            except BackendUnavailable as exc:
                log.warning("expired-lease sweep failed: %s", exc)

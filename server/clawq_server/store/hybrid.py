"""A TaskQueue on Redis whose finished tasks are copied to an archive and read back from it.

All live work goes to Redis. The Redis scripts that finish tasks feed their ids to an
archive stream (queue/redis_archive.py); a background archiver copies those tasks into
the archive in batches and only then acknowledges them, so a crash re-copies, never
loses. Lookups ask Redis first and the archive for the rest: a finished task keeps
answering GetTask and ListTasks after Redis retention has dropped it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
import time
from collections.abc import Collection, Sequence
from datetime import timedelta

from clawq_server.errors import BackendUnavailable, NotFound, TaskAlreadyFinished
from clawq_server.model import (
    Completion,
    HeartbeatOutcome,
    Lease,
    NewTask,
    QueueStats,
    SubmitOutcome,
    Task,
    TaskPage,
    TaskQuery,
    TaskState,
)
from clawq_server.queue.base import Refused
from clawq_server.queue.redis import RedisQueue
from clawq_server.store.base import Archive
from clawq_server.store.merge import merge_pages

log = logging.getLogger(__name__)

# Feed entries per archiver round; each holds the ids one script call finished.
BATCH = 200
# Archivers of processes gone for this long leave the group (checked every TIDY_EVERY_S).
IDLE_ARCHIVER_MS = 3_600_000
TIDY_EVERY_S = 60.0


class HybridQueue:
    """TaskQueue: Redis for live tasks, an Archive for finished ones.

    live must have been built with archive=True. claim_idle is how long an entry taken
    by an archiver that stopped (a crash) waits before another archiver takes it over.
    """

    def __init__(
        self,
        live: RedisQueue,
        archive: Archive,
        *,
        interval: float = 0.5,
        claim_idle: timedelta = timedelta(seconds=30),
        group: str = "archive",
    ) -> None:
        if not live.archives:
            raise ValueError("HybridQueue needs a RedisQueue built with archive=True")
        self.live = live
        self.archive = archive
        self._feed = live.archive_feed(group)
        self._interval = interval
        self._claim_idle_ms = int(claim_idle.total_seconds() * 1000)
        self._consumer = f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(4)}"
        self._stopping = asyncio.Event()
        self._archiver: asyncio.Task[None] | None = None
        self._closed = False

    async def start(self) -> None:
        """Open Redis and the archive, then start the archiver."""
        await self.archive.start()
        await self.live.start()
        await self._feed.open()
        self._archiver = asyncio.create_task(self._run(), name="clawq-archiver")

    async def close(self) -> None:
        """Stop the archiver after its current round, then close both stores (once)."""
        if self._closed:
            return
        self._closed = True
        self._stopping.set()
        if self._archiver is not None:
            await self._archiver
        await self.live.close()
        await self.archive.close()

    async def archive_once(self) -> int:
        """Copy one batch of finished tasks into the archive; the count of ids handled."""
        entries = await self._feed.take(self._consumer, BATCH, self._claim_idle_ms)
        if not entries:
            return 0
        ids = list(dict.fromkeys(task_id for _, batch in entries for task_id in batch))
        found = await self.live.get_many(ids, None)
        # A task requeued since (dead letters) is archived again when it finishes again.
        await self.archive.put_many([task for task in found if task.done])
        if len(found) < len(ids):
            log.warning(
                "%d finished tasks expired before they were archived", len(ids) - len(found)
            )
        await self._feed.done([entry_id for entry_id, _ in entries])
        return len(ids)

    async def submit(
        self, tasks: Sequence[NewTask], *, atomic: bool = False
    ) -> list[SubmitOutcome | Exception]:
        """Store tasks in Redis."""
        return await self.live.submit(tasks, atomic=atomic)

    async def record(self, tasks: Sequence[Task]) -> None:
        """Store in Redis; they reach the archive like every finished task."""
        await self.live.record(tasks)

    async def get_many(self, ids: Sequence[str], principal: str | None) -> list[Task]:
        """Tasks from Redis, and from the archive for those Redis no longer holds."""
        found = {task.id: task for task in await self.live.get_many(ids, None)}
        missing = [task_id for task_id in ids if task_id not in found]
        if missing:
            found.update((t.id, t) for t in await self.archive.get_many(missing, None))
        tasks = (found[task_id] for task_id in ids if task_id in found)
        return [t for t in tasks if principal is None or t.principal == principal]

    async def list_tasks(self, query: TaskQuery) -> TaskPage:
        """One page merged from both stores; a task Redis still holds is Redis's version."""
        live_page = await self.live.list_tasks(query)
        archived = await self.archive.list_tasks(query)
        seen = {task.id for task in live_page.tasks}
        candidates = [task.id for task in archived.tasks if task.id not in seen]
        still_live = {task.id for task in await self.live.get_many(candidates, None)}
        kept = [t for t in archived.tasks if t.id not in seen and t.id not in still_live]
        return merge_pages(
            live_page, TaskPage(kept, archived.next_cursor), max(min(query.limit, 1000), 1)
        )

    async def cancel(self, task_id: str, principal: str | None) -> Task:
        """Cancel in Redis; an archived task is already finished."""
        try:
            return await self.live.cancel(task_id, principal)
        except NotFound:
            if await self.archive.get_many([task_id], principal):
                raise TaskAlreadyFinished(f"task {task_id} is already finished") from None
            raise

    async def wait(self, task_id: str, principal: str | None, timeout: float) -> Task:
        """Wait in Redis; an archived task is returned at once."""
        try:
            return await self.live.wait(task_id, principal, timeout)
        except NotFound:
            return await self._archived(task_id, principal)

    async def submit_and_wait(
        self, task: NewTask, timeout: float, *, refused: Refused | None = None
    ) -> Task:
        """Store in Redis and wait there; a task archived meanwhile is read from the archive."""
        try:
            return await self.live.submit_and_wait(task, timeout, refused=refused)
        except NotFound:
            return await self._archived(task.id, task.principal)

    async def _archived(self, task_id: str, principal: str | None) -> Task:
        """The archived task, or the NotFound of a task no store holds."""
        found = await self.archive.get_many([task_id], principal)
        if not found:
            raise NotFound(f"task {task_id} not found")
        return found[0]

    async def lease(
        self,
        worker_id: str,
        tools: Collection[str] | None,
        limit: int,
        lease_for: timedelta,
        wait: float = 0.0,
    ) -> list[Lease]:
        """Lease from Redis."""
        return await self.live.lease(worker_id, tools, limit, lease_for, wait)

    async def heartbeat(
        self, leases: Sequence[tuple[str, str]], lease_for: timedelta
    ) -> HeartbeatOutcome:
        """Extend leases in Redis."""
        return await self.live.heartbeat(leases, lease_for)

    async def complete(self, task_id: str, token: str, completion: Completion) -> TaskState:
        """Complete in Redis; the archiver copies the task once it is finished."""
        return await self.live.complete(task_id, token, completion)

    async def release(self, task_id: str, token: str) -> None:
        """Release in Redis."""
        await self.live.release(task_id, token)

    async def stats(self) -> QueueStats:
        """Redis's depths and counts."""
        return await self.live.stats()

    async def count_queued(self, principal: str) -> int:
        """Queued tasks are live, so Redis knows."""
        return await self.live.count_queued(principal)

    async def requeue_dead(self, ids: Sequence[str] | None) -> int:
        """Requeue dead letters Redis still holds."""
        return await self.live.requeue_dead(ids)

    async def _run(self) -> None:
        tidied = time.monotonic()
        while not self._stopping.is_set():
            try:
                if time.monotonic() - tidied > TIDY_EVERY_S:
                    tidied = time.monotonic()
                    await self._feed.tidy(IDLE_ARCHIVER_MS)
                if await self.archive_once() > 0:
                    continue
            except BackendUnavailable as exc:
                log.warning("archiver: %s", exc)
            except Exception:  # an archive error must not stop archiving for good
                log.exception("archiver round failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self._interval)

"""The cluster task queue on Redis: streams per priority and tool, Lua transitions, pub/sub.

Layout (names in queue/keys.py, all under one hash tag):
- a hash per task holds its record and state, lease token and lease expiry;
- ready tasks are entries of one stream per (priority, tool), read through a consumer
  group; a lease takes the oldest entries of the highest priority among the tools the
  worker offers, so a worker offering some tools never takes, hides or starves others';
- delayed tasks (not_before, retry backoff) wait in a sorted set and move to their
  stream when due; RUNNING tasks sit in a ``leases`` sorted set scored by expiry, which
  heartbeats move exactly (XAUTOCLAIM's idle time cannot be extended by a heartbeat);
- dead letters are a sorted set; indexes for listing are sorted sets by created time.
Every transition is one Lua script (lua/*.lua), so one call is one round trip and
atomic; transitions are published on the queue's channel to wake waiters anywhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Collection, Sequence
from datetime import timedelta
from functools import partial
from typing import Any

from redis.asyncio import Redis

from clawq_server.errors import (
    BackendUnavailable,
    NotFound,
    ResourceExhausted,
    TaskAlreadyFinished,
)
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
from clawq_server.queue.base import Refused, Submissions, submit_one, until_done
from clawq_server.queue.keys import QueueKeys
from clawq_server.queue.redis_archive import ArchiveFeed
from clawq_server.queue.redis_args import list_args, record_args, submit_batch
from clawq_server.queue.redis_codec import (
    key_reused,
    outcomes,
    pairs,
    read_task,
    to_stats,
    to_task,
)
from clawq_server.queue.redis_events import Events, Watch
from clawq_server.queue.redis_lease import RedisLeases
from clawq_server.queue.redis_scripts import ScriptCalls, Scripts, open_pool, translated

log = logging.getLogger(__name__)

DEFAULT_RETRY = RetryPolicy()
DEFAULT_RETENTION = timedelta(days=7)
# Waiters and idle workers re-read this often in case a pub/sub message was missed.
POLL_S = 1.0
# How often the sweeper removes idle consumers from the ready streams' groups.
TIDY_EVERY_S = 60.0
MAX_PAGE = 1000
# Tasks read per script call: bounds how long one read keeps Redis busy.
GET_CHUNK = 1000


class RedisQueue:
    """A TaskQueue on Redis; see queue/base.py for the semantics of each method.

    Any number of processes may share one queue. Each instance keeps one bounded pool
    (connections are health-checked, time out after socket_timeout and are not retried,
    so an outage surfaces as BackendUnavailable within the caller's deadline and the
    pool reconnects once Redis is back), a pub/sub subscriber per channel it hears (see
    redis_events.py), and a sweeper that settles expired leases and due delayed tasks
    every sweep_interval seconds. With watch_results off (a process that only runs
    workers), waits learn of results only by their periodic re-read, every poll_s seconds.
    """

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "clawq",
        queue: str = "default",
        retry: RetryPolicy = DEFAULT_RETRY,
        max_queued: int = 0,
        pool_size: int = 32,
        socket_timeout: float = 5.0,
        retention: timedelta = DEFAULT_RETENTION,
        sweep_interval: float = 1.0,
        archive: bool = False,
        consumer_idle: timedelta = timedelta(hours=1),
        watch_results: bool = True,
        poll_s: float = POLL_S,
    ) -> None:
        self.keys = QueueKeys(prefix, queue)
        self._archiving = archive
        self._retry = retry
        self._max_queued = max_queued
        self._sweep_interval = sweep_interval
        self._consumer_idle_ms = int(consumer_idle.total_seconds() * 1000)
        self._pool = open_pool(url, pool_size, socket_timeout)
        self._client = Redis(connection_pool=self._pool)
        self._scripts = Scripts.register(self._client)
        self._call = ScriptCalls(self.keys.base, retention, archive)
        # A worker-only process waits on no task: it skips the terminal-task messages,
        # which arrive for every completion of every worker.
        done = self.keys.done if watch_results else None
        self._events = Events(self._client, self.keys.events, done)
        self._leases = RedisLeases(self._call, self._scripts, self._events, retry, poll_s)
        self._sweeper: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self._submissions = Submissions(self._store)
        self._poll_s = poll_s

    async def start(self) -> None:
        """Check Redis answers, then start the subscriber and the sweeper."""
        with translated():
            await self._client.ping()
        self._events.start()
        if self._sweep_interval > 0:
            self._sweeper = asyncio.create_task(self._sweep(), name="clawq-redis-sweeper")

    async def close(self) -> None:
        """Stop background work and close every connection."""
        # A flag, not cancel(): redis-py may turn a cancellation that lands mid-command
        # into a connection error, which the loops below would survive.
        self._stopping.set()
        if self._sweeper is not None:
            await self._sweeper
        await self._leases.drain()
        await self._submissions.drain()
        await self._events.close()
        await self._client.aclose()
        await self._pool.disconnect()

    async def submit(
        self, tasks: Sequence[NewTask], *, atomic: bool = False
    ) -> list[SubmitOutcome | Exception]:
        """Store tasks in one script call; they are acknowledged once Redis has them.

        Single tasks submitted concurrently (unary Submit, Execute) share script calls.
        """
        return await self._submissions(tasks, atomic)

    async def _store(
        self, tasks: Sequence[NewTask], atomic: bool
    ) -> list[SubmitOutcome | Exception]:
        if not tasks:
            return []
        fields, records = submit_batch(tasks, self._retry.default_max_attempts)
        reply = await self._call(
            self._scripts.submit, [int(atomic), self._max_queued, fields, records]
        )
        if reply[0] == b"CONFLICT":
            clash = tasks[int(reply[1]) - 1]
            raise key_reused(clash)
        if reply[0] == b"FULL":
            raise ResourceExhausted(
                f"the queue holds {int(reply[1])} of at most {self._max_queued} tasks",
                retry_after=1.0,
            )
        return outcomes(tasks, reply)

    async def record(self, tasks: Sequence[Task]) -> None:
        """Store tasks that finished without a worker, as they are."""
        if tasks:
            await self._call(self._scripts.record, record_args(tasks))

    async def get_many(self, ids: Sequence[str], principal: str | None) -> list[Task]:
        """The tasks that exist (and belong to principal), in the order asked."""
        found: list[Task | None] = []
        for start in range(0, len(ids), GET_CHUNK):
            chunk = list(ids[start : start + GET_CHUNK])
            found += map(read_task, await self._call(self._scripts.get, chunk, read=True))
        return [
            t for t in found if t is not None and (principal is None or t.principal == principal)
        ]

    async def list_tasks(self, query: TaskQuery) -> TaskPage:
        """Tasks newest first, filtered and paged by query."""
        reply = await self._call(self._scripts.list, list_args(query, MAX_PAGE), read=True)
        ids = [raw.decode() for raw in reply[2:]]
        found = {task.id: task for task in await self.get_many(ids, None)}
        tasks = [found[task_id] for task_id in ids if task_id in found]
        next_cursor = None if not reply[0] else (float(reply[0]), reply[1].decode())
        return TaskPage(tasks=tasks, next_cursor=next_cursor)

    async def cancel(self, task_id: str, principal: str | None) -> Task:
        """Cancel a queued task now; flag a running one for its worker."""
        args = [task_id, int(principal is not None), principal or ""]
        reply = await self._call(self._scripts.cancel, args)
        if reply[0] == b"NOT_FOUND":
            raise NotFound(f"task {task_id} not found")
        if reply[0] == b"FINISHED":
            raise TaskAlreadyFinished(f"task {task_id} is already {reply[1].decode()}")
        return to_task(pairs(reply[1]))

    async def wait(self, task_id: str, principal: str | None, timeout: float) -> Task:
        """The task once terminal, or as it is after timeout seconds."""
        deadline = time.monotonic() + max(timeout, 0.0)
        with self._events.watching(task_id) as watch:
            look = partial(self._look, watch, principal)
            return await until_done(look, watch.woken, deadline, self._poll_s)

    async def submit_and_wait(
        self, task: NewTask, timeout: float, *, refused: Refused | None = None
    ) -> Task:
        """Store one task and wait for it, without a first read of the new record."""
        deadline = time.monotonic() + max(timeout, 0.0)
        with self._events.watching(task.id) as watch:
            outcome = await submit_one(self, task, refused)
            if outcome.task_id == task.id:
                look = partial(self._look, watch, task.principal)
                return await until_done(look, watch.woken, deadline, self._poll_s, queued=True)
        return await self.wait(outcome.task_id, task.principal, deadline - time.monotonic())

    async def _look(self, watch: Watch, principal: str | None) -> Task:
        """The finished task the done message carried, else the task as stored now."""
        task = watch.task
        if task is not None and (principal is None or task.principal == principal):
            return task
        return await self._get_one(watch.task_id, principal)

    async def _get_one(self, task_id: str, principal: str | None) -> Task:
        found = await self.get_many([task_id], principal)
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
        """Claim up to limit ready tasks, waiting up to wait seconds for one."""
        return await self._leases.lease(worker_id, tools, limit, lease_for, wait)

    async def heartbeat(
        self, leases: Sequence[tuple[str, str]], lease_for: timedelta
    ) -> HeartbeatOutcome:
        """Extend leases; report lost ones and ones whose task was cancelled."""
        return await self._leases.heartbeat(leases, lease_for)

    async def complete(self, task_id: str, token: str, completion: Completion) -> TaskState:
        """Record a leased task's outcome, fenced by its token."""
        return await self._leases.complete(task_id, token, completion)

    async def release(self, task_id: str, token: str) -> None:
        """Give a leased task back without counting the attempt."""
        await self._leases.release(task_id, token)

    async def stats(self) -> QueueStats:
        """Depths and counts."""
        return to_stats(await self._call(self._scripts.stats, [], read=True))

    async def count_queued(self, principal: str) -> int:
        """The size of the principal's QUEUED index."""
        with translated():
            return int(
                await self._client.zcard(self.keys.index_principal_state(principal, "QUEUED"))
            )

    async def requeue_dead(self, ids: Sequence[str] | None) -> int:
        """Put DEAD tasks back in the queue; the count moved."""
        args: list[Any] = ["1"] if ids is None else ["0", *ids]
        return int(await self._call(self._scripts.requeue, args))

    @property
    def archives(self) -> bool:
        """True when finished task ids are fed to the archive stream."""
        return self._archiving

    def archive_feed(self, group: str = "archive") -> ArchiveFeed:
        """The finished-task stream as read by group, over this queue's pool."""
        return ArchiveFeed(self._client, self.keys.archive, group)

    async def tidy_consumers(self) -> int:
        """Remove consumers with nothing pending, idle past consumer_idle; the count."""
        return int(await self._call(self._scripts.tidy, [self._consumer_idle_ms]))

    async def _sweep(self) -> None:
        # Without it, a lost lease would be settled only when a worker next asks for work.
        tidied = time.monotonic()
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self._sweep_interval)
                return
            try:
                await self._call(self._scripts.sweep, [])
                if time.monotonic() - tidied > TIDY_EVERY_S:
                    tidied = time.monotonic()
                    await self.tidy_consumers()
            except BackendUnavailable as exc:
                log.warning("queue sweep failed: %s", exc)

"""The task queue protocol every backend implements; one behaviour suite tests them all."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Collection, Sequence
from datetime import timedelta
from functools import partial
from typing import Protocol

from clawq_server.errors import BackendUnavailable, ClawqError
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
from clawq_server.queue.coalescer import Coalescer

log = logging.getLogger(__name__)


class TaskQueue(Protocol):
    """A durable queue that also stores every task it has seen.

    ``principal=None`` means an unscoped (admin or worker) lookup; otherwise a task of
    another principal behaves as if it did not exist.
    """

    async def start(self) -> None:
        """Open connections and create what the backend needs."""

    async def close(self) -> None:
        """Release connections; pending writes are committed first."""

    async def submit(
        self, tasks: Sequence[NewTask], *, atomic: bool = False
    ) -> list[SubmitOutcome | Exception]:
        """Store tasks, acknowledging each only once it is durable.

        An idempotency key already used by the same principal with the same args_hash
        yields the existing task (existing=True); with another args_hash it yields an
        IdempotencyKeyReused in that task's place. With atomic=True any such conflict
        raises it and stores nothing. Raises ResourceExhausted when the queue is full.
        """
        ...

    async def record(self, tasks: Sequence[Task]) -> None:
        """Store tasks that finished without a worker (calls answered from the cache) as
        they are, so they can be read, listed and archived like any other; an id already
        stored is left alone."""
        ...

    async def get_many(self, ids: Sequence[str], principal: str | None) -> list[Task]:
        """The tasks that exist (and belong to principal), in the order asked."""
        ...

    async def list_tasks(self, query: TaskQuery) -> TaskPage:
        """Tasks newest first, filtered and paged by query."""
        ...

    async def cancel(self, task_id: str, principal: str | None) -> Task:
        """Cancel a queued task at once, or ask the worker of a running one to stop.

        Raises NotFound, or TaskAlreadyFinished for a terminal task.
        """
        ...

    async def wait(self, task_id: str, principal: str | None, timeout: float) -> Task:
        """The task once terminal, or as it is when timeout seconds have passed."""
        ...

    async def submit_and_wait(
        self, task: NewTask, timeout: float, *, refused: Refused | None = None
    ) -> Task:
        """Store one task (atomically) and wait for it like wait().

        The waiter is in place before the task is stored, so no read is spent on a task
        known to be queued. A task that reuses an idempotency key waits on the earlier task.
        refused(error) sees an error of the store before it is raised: one raised while
        waiting comes after the task was stored.
        """
        ...

    async def lease(
        self,
        worker_id: str,
        tools: Collection[str] | None,
        limit: int,
        lease_for: timedelta,
        wait: float = 0.0,
    ) -> list[Lease]:
        """Hand out up to limit ready tasks of the given tools (None: any), highest
        priority first, waiting up to wait seconds for one. Expired leases are reclaimed
        first: read-only or idempotent tasks go back to the queue, others end FAILED
        with reason WORKER_LOST."""
        ...

    async def heartbeat(
        self, leases: Sequence[tuple[str, str]], lease_for: timedelta
    ) -> HeartbeatOutcome:
        """Extend (task_id, token) leases; report lost ones and cancelled ones."""
        ...

    async def complete(self, task_id: str, token: str, completion: Completion) -> TaskState:
        """Record the outcome of a leased task, fenced by token (LeaseLost if stale).

        A retryable error requeues with backoff until max_attempts, then DEAD.
        """
        ...

    async def release(self, task_id: str, token: str) -> None:
        """Give a leased task back without counting the attempt (graceful shutdown)."""
        ...

    async def stats(self) -> QueueStats:
        """Depths and counts."""
        ...

    async def count_queued(self, principal: str) -> int:
        """How many of principal's tasks are QUEUED (delayed ones included)."""
        ...

    async def requeue_dead(self, ids: Sequence[str] | None) -> int:
        """Put DEAD tasks (all when ids is None) back in the queue; the count moved."""
        ...


# Told of a store's refusal of a task before it is raised (see submit_and_wait).
Refused = Callable[[ClawqError], None]
Store = Callable[[Sequence[NewTask], bool], Awaitable[list[SubmitOutcome | Exception]]]


async def submit_together(
    store: Store, tasks: Sequence[NewTask]
) -> Sequence[SubmitOutcome | Exception]:
    """One-task submits of concurrent callers, stored by one non-atomic store call (each
    outcome as if stored alone: idempotency keys are resolved in order). When the call
    fails as a whole (the queue too full for all of them, say), each is tried on its own,
    so those that fit still go in and one bad task fails only its own caller."""
    if len(tasks) == 1:
        return await store(tasks, True)
    try:
        return await store(tasks, False)
    except BackendUnavailable:
        raise  # each alone would fail the same way
    except Exception:  # e.g. full, or too large together: nothing was stored
        alone: list[SubmitOutcome | Exception] = []
        for task in tasks:
            try:
                alone += await store([task], True)
            except Exception as error:
                alone.append(error)
        return alone


class Submissions:
    """A queue's submit over its store: single tasks submitted atomically by concurrent
    callers (unary Submit, Execute) are stored together (submit_together), batches as
    they come."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._singles: Coalescer[NewTask, SubmitOutcome] = Coalescer(
            partial(submit_together, store)
        )

    async def __call__(
        self, tasks: Sequence[NewTask], atomic: bool
    ) -> list[SubmitOutcome | Exception]:
        """The outcome of each task, as TaskQueue.submit returns them."""
        if atomic and len(tasks) == 1:
            return [await self._singles(tasks[0])]
        return await self._store(tasks, atomic)

    async def drain(self) -> None:
        """Wait until every single submit gathered so far is stored."""
        await self._singles.drain()


async def submit_one(
    queue: TaskQueue, task: NewTask, refused: Refused | None = None
) -> SubmitOutcome:
    """Store one task atomically: its outcome, or the refusal raised (shown to refused first)."""
    try:
        [outcome] = await queue.submit([task], atomic=True)
        if isinstance(outcome, Exception):  # atomic submits raise rather than return errors
            raise outcome
    except ClawqError as error:
        if refused is not None:
            refused(error)
        raise
    return outcome


async def give_back(queue: TaskQueue, leases: Sequence[Lease]) -> None:
    """Release leases unrun; one that cannot be released expires and is reclaimed."""
    for lease in leases:
        try:
            await queue.release(lease.task.id, lease.token)
        except ClawqError as error:
            log.warning("giving back %s failed: %s", lease.task.id, error.message)


async def until_done(
    look: Callable[[], Awaitable[Task]],
    woken: asyncio.Event,
    deadline: float,
    poll_s: float,
    *,
    queued: bool = False,
) -> Task:
    """The task look() returns once it is terminal, or as it is at deadline (monotonic).

    Looks again whenever woken is set, and every poll_s in case a wake-up was missed.
    queued: the caller has just stored the task, so the first look is skipped.
    """
    while True:
        if not queued:
            woken.clear()
            task = await look()
            if task.done or deadline <= time.monotonic():
                return task
        queued = False
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(woken.wait(), min(deadline - time.monotonic(), poll_s))

"""Stores calls answered from the cache in the background, in batches, after the answer."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from clawq_server.errors import ClawqError
from clawq_server.model import Task
from clawq_server.queue.base import TaskQueue

log = logging.getLogger(__name__)
# How long hits gather before one write stores them all.
GATHER_S = 0.05


class Recorder:
    """Queues finished tasks for the store without making their caller wait.

    A cache hit is answered at once; its task is written with the other hits of the
    next GATHER_S (one transaction or script call per batch, rather than a commit per hit
    competing with the next answers), so GetTask, ListTasks and the archive see it a
    moment later. A batch the store refuses is logged and dropped: the call is still in
    the audit log, and its answer was already given.
    """

    def __init__(self, queue: TaskQueue) -> None:
        self._queue = queue
        self._pending: list[Task] = []
        self._flusher: asyncio.Task[None] | None = None
        self._closing = asyncio.Event()

    def add(self, task: Task) -> None:
        """Store task soon."""
        self._pending.append(task)
        if self._flusher is None:
            self._flusher = asyncio.create_task(self._flush(), name="clawq-recorder")

    async def close(self) -> None:
        """Store everything queued so far, without waiting out the gathering pause."""
        self._closing.set()
        if self._flusher is not None:
            await self._flusher
        await self._store_pending()

    async def _flush(self) -> None:
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closing.wait(), GATHER_S)
            await self._store_pending()
        finally:
            self._flusher = None

    async def _store_pending(self) -> None:
        while self._pending:
            batch, self._pending = self._pending, []
            try:
                await self._queue.record(batch)
            except ClawqError as error:
                log.warning("%d answers from the cache not stored: %s", len(batch), error)

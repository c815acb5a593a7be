"""One pub/sub subscriber per Redis queue that wakes in-process waiters on transitions."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from redis.asyncio import Redis
from redis.exceptions import RedisError

from clawq_server.model import Task
from clawq_server.queue.redis_codec import done_entries, done_task

log = logging.getLogger(__name__)

# Between reconnect attempts while Redis is away.
RECONNECT_S = 0.5


@dataclass(eq=False, slots=True)
class Watch:
    """A local waiter on one task: woken when it is reported terminal, with the finished
    task when the report carried it (then the waiter need not read it back)."""

    task_id: str
    woken: asyncio.Event = field(default_factory=asyncio.Event)
    task: Task | None = None


class Events:
    """Listens on the queue's channels and wakes local waiters.

    Messages: ``w`` (new work) and ``c <id>`` (cancel requested) on the work channel,
    ``T`` and entries of finished tasks, records included (lib.lua's done_entry), on the
    done channel. A message lost while the subscriber reconnects is covered by the
    waiters' own periodic re-read; after a reconnect every waiter is woken once so it
    re-reads at once.
    """

    def __init__(self, client: Redis, channels: Sequence[str]) -> None:
        self._client = client
        self._channels = channels
        self._waiters: dict[str, set[Watch]] = {}
        self._work = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    def start(self) -> None:
        """Start listening in the background."""
        self._task = asyncio.create_task(self._run(), name="clawq-redis-events")

    async def close(self) -> None:
        """Stop listening."""
        self._stopping = True
        if self._task is not None:
            # The flag ends the loop even if redis-py turns the cancellation into an error.
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    @property
    def work(self) -> asyncio.Event:
        """An event set on the next new-work message; replaced after each one."""
        return self._work

    @contextlib.contextmanager
    def watching(self, task_id: str) -> Iterator[Watch]:
        """A watch woken when task_id is reported terminal (or on a reconnect)."""
        watch = Watch(task_id)
        self._waiters.setdefault(task_id, set()).add(watch)
        try:
            yield watch
        finally:
            waiters = self._waiters.get(task_id)
            if waiters is not None:
                waiters.discard(watch)
                if not waiters:
                    del self._waiters[task_id]

    def dispatch(self, data: bytes) -> None:
        """Wake whoever a message concerns."""
        if data == b"w":
            self._wake_workers()
        elif data[:1] == b"T":
            for task_id, record in done_entries(data):
                waiters = self._waiters.get(task_id)
                if not waiters:
                    continue
                task = done_task(record) if record is not None else None
                for watch in waiters:
                    watch.task = task
                    watch.woken.set()

    def _wake_workers(self) -> None:
        self._work.set()
        self._work = asyncio.Event()

    def _wake_all(self) -> None:
        self._wake_workers()
        for waiters in self._waiters.values():
            for watch in waiters:
                watch.woken.set()

    async def _run(self) -> None:
        while not self._stopping:
            try:
                await self._listen()
            except (RedisError, OSError) as exc:
                if self._stopping:
                    return
                log.warning("queue event subscriber lost Redis: %s", exc)
            await asyncio.sleep(RECONNECT_S)

    async def _listen(self) -> None:
        pubsub = self._client.pubsub()
        try:
            await pubsub.subscribe(*self._channels)
            # Anything published while we were away is only seen by re-reading.
            self._wake_all()
            while not self._stopping:
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                if message is not None and message["type"] == "message":
                    self.dispatch(message["data"])
        finally:
            with contextlib.suppress(RedisError, OSError):
                await pubsub.aclose()  # type: ignore[no-untyped-call]  # untyped upstream

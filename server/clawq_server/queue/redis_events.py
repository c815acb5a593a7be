"""One pub/sub subscriber per Redis queue that wakes in-process waiters on transitions."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from redis.asyncio import Redis
from redis.exceptions import RedisError

from clawq_server.model import Task
from clawq_server.queue.redis_codec import done_entries, done_task

log = logging.getLogger(__name__)

# Between reconnect attempts while Redis is away; longest wait for a subscription's reply.
RECONNECT_S = 0.5
SUBSCRIBE_S = 5.0


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
    done channel. Each channel has its own subscriber. The done channel is heard from
    start() when a done channel is given; the work channel from the first use of work, so
    a process that never leases (a server without workers) is not sent every submit's
    announcement. A message lost while a subscriber reconnects is covered by the waiters'
    own periodic re-read; after each (re)subscription its waiters are woken once so they
    re-read at once.
    """

    def __init__(self, client: Redis, work_channel: str, done_channel: str | None) -> None:
        self._client = client
        self._work_channel = work_channel
        self._done_channel = done_channel
        self._waiters: dict[str, set[Watch]] = {}
        self._work = asyncio.Event()
        self._listeners: dict[str, asyncio.Task[None]] = {}
        self._stopping = False

    def start(self) -> None:
        """Start listening for finished tasks (when there is a done channel)."""
        if self._done_channel is not None:
            self._listen_on(self._done_channel, self._wake_waiters)

    async def close(self) -> None:
        """Stop listening."""
        self._stopping = True
        for task in self._listeners.values():
            # The flag ends the loop even if redis-py turns the cancellation into an error.
            task.cancel()
        for task in self._listeners.values():
            with contextlib.suppress(asyncio.CancelledError):
                await task

    @property
    def work(self) -> asyncio.Event:
        """An event set on the next new-work message; replaced after each one."""
        if self._work_channel not in self._listeners and not self._stopping:
            self._listen_on(self._work_channel, self._wake_workers)
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
                if waiters:
                    self._finished(waiters, record)
        elif data[:2] == b"t ":  # ids only: scripts of an earlier clawq, mid-upgrade
            for task_id in data[2:].decode().split():
                self._finished(self._waiters.get(task_id, set()), None)

    def _finished(self, waiters: set[Watch], record: bytes | None) -> None:
        task = None
        if record is not None:
            try:
                task = done_task(record)
            except Exception:  # the waiters read the task instead
                log.exception("unreadable finished-task record")
        for watch in waiters:
            watch.task = task
            watch.woken.set()

    def _dispatch_safely(self, data: bytes) -> None:
        try:
            self.dispatch(data)
        except Exception:  # a malformed message must not end the listener
            log.exception("unreadable queue event message")
            self._wake_waiters()

    def _wake_workers(self) -> None:
        self._work.set()
        self._work = asyncio.Event()

    def _wake_waiters(self) -> None:
        for waiters in self._waiters.values():
            for watch in waiters:
                watch.woken.set()

    def _listen_on(self, channel: str, subscribed: Callable[[], None]) -> None:
        self._listeners[channel] = asyncio.create_task(
            self._run(channel, subscribed), name=f"clawq-redis-events {channel}"
        )

    async def _run(self, channel: str, subscribed: Callable[[], None]) -> None:
        while not self._stopping:
            try:
                await self._listen(channel, subscribed)
            except (RedisError, OSError, TimeoutError) as exc:
                if self._stopping:
                    return
                log.warning("queue event subscriber lost Redis: %s", exc)
            await asyncio.sleep(RECONNECT_S)

    async def _listen(self, channel: str, subscribed: Callable[[], None]) -> None:
        pubsub = self._client.pubsub()
        try:
            await pubsub.subscribe(channel)
            # Only once Redis confirms are its messages sure to arrive; anything published
            # before that, or while we were away, is seen by re-reading.
            async with asyncio.timeout(SUBSCRIBE_S):
                while (await pubsub.get_message(timeout=SUBSCRIBE_S) or {}).get(
                    "type"
                ) != "subscribe":
                    pass
            subscribed()
            while not self._stopping:
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                if message is not None and message["type"] == "message":
                    self._dispatch_safely(message["data"])
        finally:
            with contextlib.suppress(RedisError, OSError):
                await pubsub.aclose()  # type: ignore[no-untyped-call]  # untyped upstream

"""One pub/sub subscriber per Redis queue that wakes in-process waiters on transitions."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator, Sequence

from redis.asyncio import Redis
from redis.exceptions import RedisError

log = logging.getLogger(__name__)

# Between reconnect attempts while Redis is away.
RECONNECT_S = 0.5


class Events:
    """Listens on the queue's channels and sets the asyncio events of local waiters.

    Messages: ``w`` (new work) and ``c <id>`` (cancel requested) on the work channel,
    ``t <id> <id> ...`` (tasks became terminal) on the done channel. A message lost while
    the subscriber reconnects is covered by the waiters' own periodic re-read; after a
    reconnect every waiter is woken once so it re-reads at once.
    """

    def __init__(self, client: Redis, channels: Sequence[str]) -> None:
        self._client = client
        self._channels = channels
        self._waiters: dict[str, set[asyncio.Event]] = {}
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
    def watching(self, task_id: str) -> Iterator[asyncio.Event]:
        """An event set when task_id is reported terminal (or on a reconnect)."""
        woken = asyncio.Event()
        self._waiters.setdefault(task_id, set()).add(woken)
        try:
            yield woken
        finally:
            waiters = self._waiters.get(task_id)
            if waiters is not None:
                waiters.discard(woken)
                if not waiters:
                    del self._waiters[task_id]

    def dispatch(self, data: bytes) -> None:
        """Wake whoever a message concerns."""
        kind, _, rest = data.partition(b" ")
        if kind == b"w":
            self._wake_workers()
        elif kind == b"t":
            for task_id in rest.decode().split():
                for woken in self._waiters.get(task_id, ()):
                    woken.set()

    def _wake_workers(self) -> None:
        self._work.set()
        self._work = asyncio.Event()

    def _wake_all(self) -> None:
        self._wake_workers()
        for waiters in self._waiters.values():
            for woken in waiters:
                woken.set()

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

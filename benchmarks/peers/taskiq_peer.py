"""taskiq-redis: Task.kiq on a list-queue broker, and a one-process `taskiq worker`."""

from __future__ import annotations

import sys

import redis.asyncio
from taskiq_redis import ListQueueBroker

from benchmarks.peers.base import ARG, DONE, redis_url

broker = ListQueueBroker(url=redis_url(), queue_name="bench")
_client: list[redis.asyncio.Redis] = []


@broker.task(task_name="counted")
async def counted(path: str) -> None:
    """Count one completion."""
    if not _client:
        _client.append(redis.asyncio.Redis.from_url(redis_url()))
    await _client[0].incr(DONE)


class TaskiqPeer:
    """taskiq on the private Redis; it has no bulk enqueue."""

    name = "taskiq-redis"
    bulk = ""

    def __init__(self) -> None:
        self._started = False

    def worker_argv(self) -> list[str]:
        """One worker process."""
        taskiq = [sys.executable, "-m", "taskiq", "worker", f"{__name__}:broker"]
        return [*taskiq, "--workers", "1", "--no-configure-logging"]

    async def enqueue(self, count: int) -> None:
        """Task.kiq count times."""
        if not self._started:
            await broker.startup()
            self._started = True
        for _ in range(count):
            await counted.kiq(ARG)

    async def enqueue_bulk(self, count: int) -> None:
        """taskiq has no bulk enqueue."""
        raise NotImplementedError

    async def close(self) -> None:
        """Shut the broker down."""
        if self._started:
            await broker.shutdown()

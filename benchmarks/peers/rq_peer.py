"""RQ: Queue.enqueue, Queue.enqueue_many, and an `rq worker` (SimpleWorker: no fork per job)."""

from __future__ import annotations

import asyncio
import sys

import redis
from rq import Queue

from benchmarks.peers.base import ARG, redis_url
from benchmarks.peers.tasks import counted

QUEUE = "bench"


class RqPeer:
    """RQ on the private Redis."""

    name = "RQ"
    bulk = "enqueue_many"

    def __init__(self) -> None:
        self._client = redis.Redis.from_url(redis_url())
        self._queue = Queue(QUEUE, connection=self._client)

    def worker_argv(self) -> list[str]:
        """One SimpleWorker process (the default Worker forks for every job)."""
        rq = [sys.executable, "-m", "rq.cli", "worker", "--url", redis_url()]
        return [*rq, "--worker-class", "rq.worker.SimpleWorker", "--quiet", QUEUE]

    async def enqueue(self, count: int) -> None:
        """Queue.enqueue count times."""
        await asyncio.to_thread(self._one_by_one, count)

    def _one_by_one(self, count: int) -> None:
        for _ in range(count):
            self._queue.enqueue(counted, ARG)

    async def enqueue_bulk(self, count: int) -> None:
        """Queue.enqueue_many, 1,000 jobs a call."""
        await asyncio.to_thread(self._bulk, count)

    def _bulk(self, count: int) -> None:
        for start in range(0, count, 1000):
            size = min(1000, count - start)
            self._queue.enqueue_many([Queue.prepare_data(counted, (ARG,)) for _ in range(size)])

    async def close(self) -> None:
        """Close the connection pool."""
        self._client.close()

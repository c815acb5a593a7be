"""Celery: Task.delay on the Redis broker, and a solo-pool `celery worker` (one process)."""

from __future__ import annotations

import asyncio
import sys

from celery import Celery  # type: ignore[import-untyped]

from benchmarks.peers import tasks
from benchmarks.peers.base import ARG, redis_url

app = Celery("bench", broker=redis_url())
app.conf.update(task_ignore_result=True, worker_hijack_root_logger=False, broker_pool_limit=4)
counted = app.task(name="bench.counted")(tasks.counted)


class CeleryPeer:
    """Celery on the private Redis; it has no bulk enqueue."""

    name = "Celery"
    bulk = ""

    def worker_argv(self) -> list[str]:
        """One solo-pool worker: tasks run in the worker process itself."""
        celery = [sys.executable, "-m", "celery", "-A", __name__, "worker", "--pool", "solo"]
        return [
            *celery,
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            "--loglevel",
            "WARNING",
        ]

    async def enqueue(self, count: int) -> None:
        """Task.delay count times."""
        await asyncio.to_thread(self._one_by_one, count)

    def _one_by_one(self, count: int) -> None:
        for _ in range(count):
            counted.delay(ARG)

    async def enqueue_bulk(self, count: int) -> None:
        """Celery has no bulk enqueue."""
        raise NotImplementedError

    async def close(self) -> None:
        """Nothing: the app's pool is reused if the peer is measured again."""

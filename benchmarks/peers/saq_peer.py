"""SAQ: Queue.enqueue and Queue.apply (a round trip), and a one-process `saq` worker."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from typing import Any

import redis.asyncio
from saq import Queue

from benchmarks.peers.base import ARG, DONE, redis_url

queue = Queue.from_url(redis_url(), name="bench")
_client: list[redis.asyncio.Redis] = []


async def counted(ctx: dict[str, Any], *, path: str) -> None:
    """Count one completion."""
    if not _client:
        _client.append(redis.asyncio.Redis.from_url(redis_url()))
    await _client[0].incr(DONE)


settings = {"queue": queue, "functions": [counted], "concurrency": 10}


class SaqPeer:
    """SAQ on the private Redis; it has no bulk enqueue."""

    name = "SAQ"
    bulk = ""

    def worker_argv(self) -> list[str]:
        """One worker process."""
        return [sys.executable, "-m", "saq", f"{__name__}.settings", "--workers", "1", "--quiet"]

    async def enqueue(self, count: int) -> None:
        """Queue.enqueue count times."""
        for _ in range(count):
            await queue.enqueue("counted", path=ARG)

    async def enqueue_bulk(self, count: int) -> None:
        """SAQ has no bulk enqueue."""
        raise NotImplementedError

    async def round_trip(self) -> None:
        """Enqueue one job and wait for its completion notice (apply would poll every 0.5 s)."""
        job = await queue.enqueue("counted", path=ARG)
        if job is None:
            raise RuntimeError("SAQ did not enqueue the job")
        async with asyncio.timeout(30):
            while not job.completed:
                # SAQ reads the job before it subscribes to its notices: a job finishing in
                # between is only seen by reading again, after the quiet second.
                with contextlib.suppress(TimeoutError):
                    await job.refresh(until_complete=1.0)

    async def close(self) -> None:
        """Disconnect the queue."""
        await queue.disconnect()

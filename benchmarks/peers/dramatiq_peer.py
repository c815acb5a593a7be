"""Dramatiq: Actor.send on the Redis broker, and a one-process `dramatiq` worker."""

from __future__ import annotations

import asyncio
import sys

import dramatiq
from dramatiq.brokers.redis import RedisBroker

from benchmarks.peers import tasks
from benchmarks.peers.base import ARG, redis_url

broker = RedisBroker(url=redis_url())  # type: ignore[no-untyped-call]
dramatiq.set_broker(broker)
counted = dramatiq.actor(actor_name="counted", max_retries=0)(tasks.counted)


class DramatiqPeer:
    """Dramatiq on the private Redis; it has no bulk enqueue."""

    name = "Dramatiq"
    bulk = ""

    def worker_argv(self) -> list[str]:
        """One worker process with eight threads (its default is two processes)."""
        return [sys.executable, "-m", "dramatiq", __name__, "--processes", "1", "--threads", "8"]

    async def enqueue(self, count: int) -> None:
        """Actor.send count times."""
        await asyncio.to_thread(self._one_by_one, count)

    def _one_by_one(self, count: int) -> None:
        for _ in range(count):
            counted.send(ARG)

    async def enqueue_bulk(self, count: int) -> None:
        """Dramatiq has no bulk enqueue."""
        raise NotImplementedError

    async def close(self) -> None:
        """Close the broker's connections."""
        broker.close()

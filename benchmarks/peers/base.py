"""What bench_peers needs of each peer library: enqueue one at a time, in bulk, and a worker."""

from __future__ import annotations

import os
from typing import Protocol

import redis

DONE = "bench:done"
ARG = "a.txt"


def redis_url() -> str:
    """The private Redis every peer uses, set by the benchmark run for its children too."""
    return os.environ["CLAWQ_BENCH_REDIS_URL"]


def completed() -> int:
    """How many counted tasks have finished since the counter was last reset."""
    with redis.Redis.from_url(redis_url()) as client:
        return int(client.get(DONE) or 0)


class Peer(Protocol):
    """One peer task queue as the benchmark drives it."""

    name: str
    #: The name of its bulk enqueue ("" when it has none).
    bulk: str

    def worker_argv(self) -> list[str]:
        """The command line of one worker process."""
        ...

    async def enqueue(self, count: int) -> None:
        """Enqueue count counted tasks one call at a time."""
        ...

    async def enqueue_bulk(self, count: int) -> None:
        """Enqueue count counted tasks with the library's bulk call, 1,000 a call."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...

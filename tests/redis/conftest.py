"""Fixtures of the Redis-only tests: a private redis-server per test and queues on it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import pytest

from clawq_server.queue.redis import RedisQueue
from tests.redis_support import MakeRedisQueue, RedisServer, redis_server, unique_prefix


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of this test alone, with an append-only file, killed at the end."""
    with redis_server(tmp_path / "redis", durable=True) as server:
        yield server


@pytest.fixture
async def make_redis_queue(private_redis: RedisServer) -> AsyncIterator[MakeRedisQueue]:
    """Opens started RedisQueues on the private server (one prefix unless given)."""
    prefix = unique_prefix()
    async with AsyncExitStack() as stack:

        async def make(**options: Any) -> RedisQueue:
            options.setdefault("prefix", prefix)
            options.setdefault("sweep_interval", 0.1)
            queue = RedisQueue(private_redis.url, **options)
            await queue.start()
            stack.push_async_callback(queue.close)
            return queue

        yield make

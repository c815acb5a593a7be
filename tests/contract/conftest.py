"""Fixtures of the queue behaviour suite: one factory per backend, all run by every test."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from clawq_server.queue.base import TaskQueue
from clawq_server.queue.redis import RedisQueue
from clawq_server.queue.sqlite import SqliteQueue
from tests.redis_support import cleaned, shared_redis_url
from tests.store.factories import hybrid_queue

from .helpers import MakeQueue, QueueOptions

QueueFactory = Callable[[Path, QueueOptions], AbstractAsyncContextManager[TaskQueue]]


@asynccontextmanager
async def sqlite_queue(tmp: Path, options: QueueOptions) -> AsyncIterator[TaskQueue]:
    """A SqliteQueue on a fresh file, started and closed around the test."""
    queue = SqliteQueue(
        tmp / "queue.db", retry=options.retry, max_queued=options.max_queued, sweep_interval=0.1
    )
    await queue.start()
    try:
        yield queue
    finally:
        await queue.close()


@asynccontextmanager
async def redis_queue(tmp: Path, options: QueueOptions) -> AsyncIterator[TaskQueue]:
    """A RedisQueue under a fresh key prefix on the test Redis; its keys deleted after."""
    with shared_redis_url(tmp) as url:
        async with cleaned(url) as prefix:
            queue = RedisQueue(
                url,
                prefix=prefix,
                retry=options.retry,
                max_queued=options.max_queued,
                sweep_interval=0.1,
            )
            await queue.start()
            try:
                yield queue
            finally:
                await queue.close()


# Every backend the suite runs against; add a name and an async context factory.
QUEUE_FACTORIES: dict[str, QueueFactory] = {
    "sqlite": sqlite_queue,
    "redis": redis_queue,
    "hybrid": hybrid_queue,
}


@pytest.fixture(params=sorted(QUEUE_FACTORIES))
def backend(request: pytest.FixtureRequest) -> str:
    """The name of the backend under test."""
    name: str = request.param
    return name


@pytest.fixture
async def make_queue(backend: str, tmp_path: Path) -> AsyncIterator[MakeQueue]:
    """Opens queues of the backend under test with given options; all closed at the end."""
    async with AsyncExitStack() as stack:
        count = 0

        async def make(**options: Any) -> TaskQueue:
            nonlocal count
            count += 1
            folder = tmp_path / f"q{count}"
            folder.mkdir()
            factory = QUEUE_FACTORIES[backend](folder, QueueOptions(**options))
            return await stack.enter_async_context(factory)

        yield make


@pytest.fixture
async def queue(make_queue: MakeQueue) -> TaskQueue:
    """A queue of the backend under test with the default test options."""
    return await make_queue()

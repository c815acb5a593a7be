"""Fixtures of the hybrid store tests: hybrid queues on the test Redis, archives in tmp."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import pytest

from clawq_server.store.hybrid import HybridQueue
from tests.redis_support import cleaned, shared_redis_url

from .factories import build_hybrid

# Opens a started HybridQueue; keyword arguments go to build_hybrid.
MakeHybrid = Callable[..., Awaitable[HybridQueue]]


@pytest.fixture
async def redis_url(tmp_path: Path) -> AsyncIterator[str]:
    """The test Redis (shared or private)."""
    with shared_redis_url(tmp_path) as url:
        yield url


@pytest.fixture
async def make_hybrid(redis_url: str, tmp_path: Path) -> AsyncIterator[MakeHybrid]:
    """Opens started HybridQueues on one key prefix and one archive file, closed at the end."""
    async with cleaned(redis_url) as prefix, AsyncExitStack() as stack:

        async def make(**options: Any) -> HybridQueue:
            queue = build_hybrid(redis_url, prefix, tmp_path / "archive.db", **options)
            await queue.start()
            stack.push_async_callback(queue.close)
            return queue

        yield make

"""Hybrid queues for tests: a RedisQueue under a fresh prefix with a SQLite archive."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

from clawq_server.queue.base import TaskQueue
from clawq_server.queue.redis import RedisQueue
from clawq_server.store.hybrid import HybridQueue
from clawq_server.store.sqlite_archive import SqliteArchive
from tests.contract.helpers import QueueOptions
from tests.redis_support import cleaned, shared_redis_url


def build_hybrid(url: str, prefix: str, archive_path: Path, **options: Any) -> HybridQueue:
    """A HybridQueue (not started); options go to RedisQueue, hybrid_* ones to HybridQueue."""
    hybrid = {
        k.removeprefix("hybrid_"): options.pop(k) for k in list(options) if k.startswith("hybrid_")
    }
    hybrid.setdefault("interval", 0.05)
    hybrid.setdefault("claim_idle", timedelta(milliseconds=200))
    options.setdefault("sweep_interval", 0.1)
    live = RedisQueue(url, prefix=prefix, archive=True, **options)
    return HybridQueue(live, SqliteArchive(archive_path), **hybrid)


@asynccontextmanager
async def hybrid_queue(tmp: Path, options: QueueOptions) -> AsyncIterator[TaskQueue]:
    """A HybridQueue under a fresh key prefix on the test Redis, archiving to tmp."""
    with shared_redis_url(tmp) as url:
        async with cleaned(url) as prefix:
            queue = build_hybrid(
                url,
                prefix,
                tmp / "archive.db",
                retry=options.retry,
                max_queued=options.max_queued,
            )
            await queue.start()
            try:
                yield queue
            finally:
                await queue.close()

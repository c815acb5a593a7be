"""The whole service works the same over each backend: SQLite, Redis, Redis with an archive."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

import clawq
from tests.conftest import Served, ServerFactory
from tests.redis_support import cleaned, shared_redis_url


@pytest.fixture(params=["sqlite", "redis", "redis+archive"])
async def backend_server(
    request: pytest.FixtureRequest, server_factory: ServerFactory, tmp_path: Path
) -> AsyncIterator[Served]:
    """A server over each backend, with in-process workers."""
    if request.param == "sqlite":
        async with server_factory() as served:
            yield served
        return
    with shared_redis_url(tmp_path) as url:
        async with cleaned(url) as prefix:
            archive = f"?archive={tmp_path / 'archive.db'}" if request.param.endswith("e") else ""
            async with server_factory(backend_url=url + archive, redis_prefix=prefix) as served:
                yield served


async def test_execute_submit_wait_list_and_cache(backend_server: Served) -> None:
    """Execute, a batch, waits, listing and a cache hit all work over the backend."""
    (backend_server.root / "a.txt").write_text("alpha")
    async with clawq.AsyncClient(backend_server.target) as client:
        first = await client.execute("read_file", path="a.txt")
        assert first.output == "alpha"
        ids = await client.submit_batch(
            [clawq.Call("write_file", path="b.txt", text="beta"), clawq.Call("list_directory")]
        )
        done = [await client.wait(i, timeout=20) for i in ids]
        assert [t.state for t in done] == ["SUCCEEDED", "SUCCEEDED"]
        assert (backend_server.root / "b.txt").read_text() == "beta"
        # A file changed within the last few milliseconds is not cached (it could change
        # again within one timestamp tick), so the first hit comes a moment later.
        deadline = time.monotonic() + 5
        while not (hit := await client.execute("read_file", path="a.txt")).cached:
            assert time.monotonic() < deadline, "read_file was never served from the cache"
        # The answer from the cache is stored too, a moment after it was given.
        stored = await _eventually_found(client, hit.task_id)
        assert stored.state == "SUCCEEDED"
        assert stored.result == hit
        listed = [t.id async for page in client.list_tasks(page_size=2) for t in page]
        assert {*ids, hit.task_id} <= set(listed)
        stats = await client.queue_stats()
        assert stats.in_flight == 0


async def _eventually_found(client: clawq.AsyncClient, task_id: str) -> clawq.Task:
    deadline = time.monotonic() + 5
    while True:
        try:
            return await client.get(task_id)
        except clawq.NotFound:
            assert time.monotonic() < deadline, f"task {task_id} was never stored"
            await asyncio.sleep(0.02)

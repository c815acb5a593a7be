"""Redis-only housekeeping: idle consumers leave the ready streams' groups."""

from __future__ import annotations

from datetime import timedelta

from redis.asyncio import Redis

from clawq_server.model import Completion
from tests.contract.helpers import eventually, new_task
from tests.redis_support import MakeRedisQueue, RedisServer

LONG = timedelta(seconds=30)


async def consumers(url: str, stream: str) -> set[str]:
    """The consumer names of the workers group of one ready stream."""
    client = Redis.from_url(url, decode_responses=True)
    try:
        found = await client.xinfo_consumers(stream, "workers")
    finally:
        await client.aclose()
    return {entry["name"] for entry in found}


async def test_idle_consumers_without_pending_entries_are_removed(
    make_redis_queue: MakeRedisQueue, private_redis: RedisServer
) -> None:
    """A worker that finished its work and went quiet leaves the group; one still holding
    a task stays, however long it has been idle."""
    queue = await make_redis_queue(consumer_idle=timedelta(milliseconds=50), sweep_interval=0)
    await queue.submit([new_task(), new_task()])
    [done] = await queue.lease("finished-worker", None, 1, LONG)
    await queue.complete(done.task.id, done.token, Completion())
    [_] = await queue.lease("busy-worker", None, 1, LONG)
    stream = queue.keys.stream(0, "read_file")
    assert await consumers(private_redis.url, stream) == {"finished-worker", "busy-worker"}
    await eventually(queue.tidy_consumers, lambda removed: removed == 1)
    assert await consumers(private_redis.url, stream) == {"busy-worker"}
    assert await queue.tidy_consumers() == 0

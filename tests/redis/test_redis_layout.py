"""Redis-only behaviour: one round trip per batch, key layout, retention TTLs."""

from __future__ import annotations

from datetime import timedelta

from redis.asyncio import Redis

from clawq_server.model import Completion, TaskState, ToolResult
from tests.contract.helpers import new_task
from tests.redis_support import MakeRedisQueue, RedisServer

LONG = timedelta(seconds=30)


async def command_calls(url: str, command: str) -> int:
    """How many times the server has run command since it started."""
    client = Redis.from_url(url)
    try:
        stats = await client.info("commandstats")
    finally:
        await client.aclose()
    entry = stats.get(f"cmdstat_{command}")
    return 0 if entry is None else int(entry["calls"])


async def all_keys(url: str) -> list[str]:
    """Every key on the server."""
    client = Redis.from_url(url, decode_responses=True)
    try:
        return [key async for key in client.scan_iter(count=1000)]
    finally:
        await client.aclose()


async def test_a_batch_of_a_thousand_is_one_script_call(
    make_redis_queue: MakeRedisQueue, private_redis: RedisServer
) -> None:
    """Submitting 1,000 tasks runs exactly one EVALSHA and no per-task command."""
    queue = await make_redis_queue(sweep_interval=0)
    await queue.submit([new_task()])  # loads the script once
    before = {c: await command_calls(private_redis.url, c) for c in ("evalsha", "hset", "xadd")}
    outcomes = await queue.submit([new_task(key=f"k{i}") for i in range(1000)])
    assert len(outcomes) == 1000
    assert await command_calls(private_redis.url, "evalsha") == before["evalsha"] + 1
    # Commands run inside a script are counted too, so the writes all happened there.
    assert await command_calls(private_redis.url, "xadd") == before["xadd"] + 1000


async def test_every_key_carries_the_prefix_and_one_hash_tag(
    make_redis_queue: MakeRedisQueue, private_redis: RedisServer
) -> None:
    """Every key the queue writes starts with {prefix:queue}, so one queue is one slot."""
    queue = await make_redis_queue(prefix="pfx", queue="jobs")
    await queue.submit(
        [new_task(key="a"), new_task("write_file", delay=60), new_task(max_attempts=1)]
    )
    [held] = await queue.lease("w1", ["read_file"], 1, LONG)
    await queue.complete(held.task.id, held.token, Completion(result=ToolResult(b"x")))
    keys = await all_keys(private_redis.url)
    assert keys
    assert all(key.startswith("{pfx:jobs}:") for key in keys), keys


async def test_finished_records_expire_after_retention(
    make_redis_queue: MakeRedisQueue, private_redis: RedisServer
) -> None:
    """A finished task's record and idempotency key get the retention TTL; live ones none."""
    queue = await make_redis_queue(retention=timedelta(hours=2))
    done, waiting = new_task(key="d"), new_task(key="w", priority=-1)
    await queue.submit([done, waiting])
    [held] = await queue.lease("w1", None, 1, LONG)
    assert held.task.id == done.id
    assert await queue.complete(done.id, held.token, Completion()) == TaskState.SUCCEEDED
    client = Redis.from_url(private_redis.url)
    try:
        keys = queue.keys
        assert 7000 < await client.ttl(keys.task(done.id)) <= 7200
        assert 7000 < await client.ttl(keys.idempotency("alice", "d")) <= 7200
        assert await client.ttl(keys.task(waiting.id)) == -1
        assert await client.ttl(keys.idempotency("alice", "w")) == -1
    finally:
        await client.aclose()


async def test_a_worker_offering_some_tools_leaves_the_others_in_place(
    make_redis_queue: MakeRedisQueue,
) -> None:
    """Leasing one tool never takes, hides or reorders tasks of other tools."""
    queue = await make_redis_queue()
    writes = [new_task("write_file") for _ in range(3)]
    reads = [new_task("read_file") for _ in range(3)]
    await queue.submit([writes[0], reads[0], writes[1], reads[1], writes[2], reads[2]])
    only_reads = await queue.lease("w1", ["read_file"], 10, LONG)
    assert [lease.task.id for lease in only_reads] == [t.id for t in reads]
    rest = await queue.lease("w2", None, 10, LONG)
    assert [lease.task.id for lease in rest] == [t.id for t in writes]

"""Redis-only: the per-state listing indexes follow every transition exactly."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from redis.asyncio import Redis

from clawq_server.model import Completion, TaskError, TaskState
from clawq_server.queue.redis import RedisQueue
from tests.contract.helpers import new_task
from tests.redis_support import MakeRedisQueue, RedisServer

LONG = timedelta(seconds=30)


async def state_index(url: str, queue: RedisQueue) -> dict[str, set[str]]:
    """For each state, the task ids in alice's index of that state."""
    client = Redis.from_url(url, decode_responses=True)
    try:
        found: dict[str, set[str]] = {}
        for state in TaskState:
            key = f"{queue.keys.base}:idx:ps:5:alice:{state.value}"
            members = await client.zrange(key, 0, -1)
            found[state.value] = {str(member) for member in members}
    finally:
        await client.aclose()
    return found


async def test_each_task_sits_in_the_index_of_its_state_only(
    make_redis_queue: MakeRedisQueue, private_redis: RedisServer
) -> None:
    """After leases, completions, a retry, a cancel and a lease that reclaims and re-leases
    the same task in one call, every task is indexed under exactly its current state."""
    queue = await make_redis_queue(sweep_interval=0)
    tasks = [new_task(max_attempts=3) for _ in range(5)]
    await queue.submit(tasks)
    held = await queue.lease("w1", None, 3, LONG)
    await queue.complete(held[0].task.id, held[0].token, Completion())
    retry = Completion(error=TaskError("UNAVAILABLE", "FLAKY", "again"), retryable=True)
    await queue.complete(held[1].task.id, held[1].token, retry)
    await queue.cancel(tasks[4].id, "alice")
    [short] = await queue.lease("w2", None, 1, timedelta(milliseconds=1))
    await asyncio.sleep(0.01)  # the lease must expire; the next call reclaims it itself
    again = await queue.lease("w3", None, 10, LONG)
    assert short.task.id in {lease.task.id for lease in again}
    current = {
        task.id: task.state.value for task in await queue.get_many([t.id for t in tasks], None)
    }
    index = await state_index(private_redis.url, queue)
    for task_id, state in current.items():
        assert [s for s, ids in index.items() if task_id in ids] == [state], task_id

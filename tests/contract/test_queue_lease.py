"""Behaviour suite, worker side: leasing order, delays, expiry, fencing, retries."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta

import pytest

from clawq_server.errors import LeaseLost
from clawq_server.model import (
    Completion,
    HeartbeatOutcome,
    Lease,
    RetryPolicy,
    TaskError,
    TaskState,
    ToolResult,
)
from clawq_server.queue.base import TaskQueue

from .helpers import MakeQueue, eventually, new_task

LONG = timedelta(seconds=30)
SHORT = timedelta(seconds=0.2)
BOOM = TaskError(code="UNAVAILABLE", reason="FLAKY", message="try again")


async def lease_one(queue: TaskQueue, lease_for: timedelta = LONG, wait: float = 5.0) -> Lease:
    """Leases exactly one task, waiting for it."""
    [leased] = await queue.lease("w1", None, 1, lease_for, wait=wait)
    return leased


async def test_higher_priority_first_then_oldest(queue: TaskQueue) -> None:
    """Leases go by priority, highest first, and by age within a priority."""
    low, old, new, high = (new_task(priority=p) for p in (0, 5, 5, 9))
    await queue.submit([low, old])
    await queue.submit([new, high])
    leases = await queue.lease("w1", None, 10, LONG)
    assert [lease.task.id for lease in leases] == [high.id, old.id, new.id, low.id]
    assert all(lease.task.state == TaskState.RUNNING for lease in leases)
    assert all(lease.task.attempt == 1 for lease in leases)


async def test_lease_respects_limit(queue: TaskQueue) -> None:
    """A lease hands out at most limit tasks, each only once."""
    await queue.submit([new_task() for _ in range(5)])
    first = await queue.lease("w1", None, 3, LONG)
    second = await queue.lease("w2", None, 3, LONG)
    assert (len(first), len(second)) == (3, 2)
    assert not {lease.task.id for lease in first} & {lease.task.id for lease in second}
    assert await queue.lease("w3", None, 3, LONG) == []


async def test_delayed_task_waits_for_not_before(queue: TaskQueue) -> None:
    """A delayed task is not leased early, and is leased once its time has come."""
    task = new_task(delay=0.3)
    await queue.submit([task])
    assert await queue.lease("w1", None, 1, LONG) == []
    stats = await queue.stats()
    assert (stats.delayed, stats.ready_by_priority.get(0, 0)) == (1, 0)
    leased = await lease_one(queue, wait=3.0)
    assert leased.task.id == task.id
    assert time.time() >= task.not_before.timestamp()
    # The waiting lease woke for the due time, not on a later poll.
    assert time.time() - task.not_before.timestamp() < 0.5


async def test_lease_filters_by_tool(queue: TaskQueue) -> None:
    """A worker only gets tasks of the tools it offers."""
    reader, writer = new_task("read_file"), new_task("write_file")
    await queue.submit([reader, writer])
    assert await queue.lease("w1", [], 10, LONG) == []
    leases = await queue.lease("w1", ["write_file", "delete_file"], 10, LONG)
    assert [lease.task.id for lease in leases] == [writer.id]


async def test_waiting_lease_wakes_on_submit(queue: TaskQueue) -> None:
    """A lease waiting for work returns soon after a task is submitted."""
    waiting = asyncio.create_task(queue.lease("w1", None, 1, LONG, wait=10.0))
    await asyncio.sleep(0.05)
    task = new_task()
    started = time.monotonic()
    await queue.submit([task])
    [leased] = await asyncio.wait_for(waiting, 5)
    assert leased.task.id == task.id
    assert time.monotonic() - started < 0.5


async def test_waiting_lease_gives_up_after_wait(queue: TaskQueue) -> None:
    """With no work, a lease returns nothing once its wait is over."""
    started = time.monotonic()
    assert await queue.lease("w1", None, 1, LONG, wait=0.3) == []
    assert 0.25 <= time.monotonic() - started < 2.0


async def test_expired_read_only_lease_is_redelivered(queue: TaskQueue) -> None:
    """A read-only task whose lease expired is leased again with attempt 2."""
    await queue.submit([new_task("read_file")])
    first = await lease_one(queue, SHORT)
    second = await lease_one(queue, LONG)
    assert second.task.id == first.task.id
    assert second.task.attempt == 2
    assert second.token != first.token


async def test_stale_token_is_refused(queue: TaskQueue) -> None:
    """After redelivery, the first worker's completion is refused; the second wins."""
    await queue.submit([new_task("read_file")])
    first = await lease_one(queue, SHORT)
    second = await lease_one(queue, LONG)
    with pytest.raises(LeaseLost):
        await queue.complete(first.task.id, first.token, Completion(result=ToolResult(b"x")))
    with pytest.raises(LeaseLost):
        await queue.complete(first.task.id, "not-a-token", Completion(result=ToolResult()))
    done = await queue.complete(second.task.id, second.token, Completion(result=ToolResult()))
    assert done == TaskState.SUCCEEDED
    with pytest.raises(LeaseLost):
        await queue.complete(second.task.id, second.token, Completion(result=ToolResult()))


async def test_lost_non_idempotent_write_fails_with_worker_lost(queue: TaskQueue) -> None:
    """A side-effecting task whose worker vanished ends FAILED, never runs twice."""
    task = new_task("write_file")
    await queue.submit([task])
    await lease_one(queue, SHORT)

    async def probe() -> TaskState:
        await queue.lease("w2", None, 1, LONG, wait=0.05)
        return (await queue.get_many([task.id], None))[0].state

    assert await eventually(probe, lambda s: s != TaskState.RUNNING) == TaskState.FAILED
    [failed] = await queue.get_many([task.id], None)
    assert failed.error is not None
    assert (failed.error.code, failed.error.reason) == ("ABORTED", "WORKER_LOST")
    assert failed.finished is not None


async def test_lost_idempotent_write_is_redelivered(queue: TaskQueue) -> None:
    """A side-effecting task marked idempotent is retried after a lost lease."""
    task = new_task("write_file", idempotent=True)
    await queue.submit([task])
    await lease_one(queue, SHORT)
    again = await lease_one(queue, LONG)
    assert (again.task.id, again.task.attempt) == (task.id, 2)


async def test_lost_lease_on_last_attempt_goes_dead(queue: TaskQueue) -> None:
    """A redeliverable task that lost its lease on its last attempt is DEAD."""
    task = new_task("read_file", max_attempts=1)
    await queue.submit([task])
    await lease_one(queue, SHORT)

    async def probe() -> TaskState:
        await queue.lease("w2", None, 1, LONG, wait=0.05)
        return (await queue.get_many([task.id], None))[0].state

    assert await eventually(probe, lambda s: s != TaskState.RUNNING) == TaskState.DEAD
    assert (await queue.stats()).dead == 1


async def test_heartbeat_keeps_the_lease(queue: TaskQueue) -> None:
    """Heartbeats extend a lease past its first expiry; unknown leases are reported lost."""
    await queue.submit([new_task("read_file")])
    held = await lease_one(queue, timedelta(seconds=0.3))
    for _ in range(4):
        beat = await queue.heartbeat([(held.task.id, held.token)], timedelta(seconds=0.3))
        assert beat == HeartbeatOutcome()
        assert await queue.lease("w2", None, 1, LONG) == []
        await asyncio.sleep(0.15)
    beat = await queue.heartbeat([(held.task.id, "stale")], LONG)
    assert beat.lost == {held.task.id}
    assert await queue.complete(held.task.id, held.token, Completion()) == TaskState.SUCCEEDED


async def test_success_stores_the_result(queue: TaskQueue) -> None:
    """A completed task is SUCCEEDED with its whole result and a finish time."""
    await queue.submit([new_task()])
    held = await lease_one(queue)
    result = ToolResult(
        output=b"\x00out",
        truncated=True,
        stderr=b"err",
        stderr_truncated=True,
        exit_code=0,
        signal=0,
        payload={"n": [1, 2]},
    )
    assert await queue.complete(held.task.id, held.token, Completion(result=result)) == (
        TaskState.SUCCEEDED
    )
    [done] = await queue.get_many([held.task.id], None)
    assert (done.state, done.result, done.error) == (TaskState.SUCCEEDED, result, None)
    assert done.started is not None
    assert done.finished is not None
    assert done.finished >= done.started


async def test_non_retryable_error_fails_at_once(queue: TaskQueue) -> None:
    """A non-retryable error ends the task FAILED with that error, result kept."""
    await queue.submit([new_task(max_attempts=5)])
    held = await lease_one(queue)
    error = TaskError("NOT_FOUND", "FILE_NOT_FOUND", "no such file")
    outcome = Completion(result=ToolResult(exit_code=1), error=error)
    assert await queue.complete(held.task.id, held.token, outcome) == TaskState.FAILED
    [done] = await queue.get_many([held.task.id], None)
    assert (done.error, done.result) == (error, ToolResult(exit_code=1))


async def test_retryable_error_retries_with_backoff_then_dead(queue: TaskQueue) -> None:
    """Retryable errors requeue the task until max_attempts, then it is DEAD."""
    task = new_task(max_attempts=3)
    await queue.submit([task])
    states = []
    for attempt in (1, 2, 3):
        held = await lease_one(queue, wait=5.0)
        assert held.task.attempt == attempt
        failure = Completion(error=BOOM, retryable=True)
        states.append(await queue.complete(task.id, held.token, failure))
    assert states == [TaskState.QUEUED, TaskState.QUEUED, TaskState.DEAD]
    [dead] = await queue.get_many([task.id], None)
    assert (dead.state, dead.error, dead.attempt) == (TaskState.DEAD, BOOM, 3)


async def test_retry_waits_out_a_jittered_backoff(make_queue: MakeQueue) -> None:
    """Retried tasks come back after a delay drawn up to the backoff ceiling."""
    slow = RetryPolicy(3, timedelta(seconds=30), timedelta(seconds=30))
    queue = await make_queue(retry=slow)
    tasks = [new_task(max_attempts=3) for _ in range(20)]
    await queue.submit(tasks)
    before = time.time()
    for held in await queue.lease("w1", None, 20, LONG):
        await queue.complete(held.task.id, held.token, Completion(error=BOOM, retryable=True))
    retried = await queue.get_many([t.id for t in tasks], None)
    assert {t.state for t in retried} == {TaskState.QUEUED}
    delays = [t.not_before.timestamp() - before for t in retried]
    assert all(0 <= d <= 31 for d in delays)
    assert max(delays) > 1.0  # all 20 under 1 s has odds of (1/30)**20
    leased = await queue.lease("w1", None, 20, LONG)
    assert len(leased) <= sum(d <= time.time() - before for d in delays)


async def test_requeue_dead_gives_tasks_a_new_life(queue: TaskQueue) -> None:
    """requeue_dead moves DEAD tasks back to QUEUED, by id or all, and counts them."""
    tasks = [new_task(max_attempts=1) for _ in range(3)]
    await queue.submit(tasks)
    for held in await queue.lease("w1", None, 3, LONG):
        await queue.complete(held.task.id, held.token, Completion(error=BOOM, retryable=True))
    assert (await queue.stats()).dead == 3
    assert await queue.requeue_dead([tasks[0].id, "unknown"]) == 1
    assert await queue.requeue_dead(None) == 2
    assert await queue.requeue_dead(None) == 0
    leases = await queue.lease("w1", None, 3, LONG)
    assert sorted(lease.task.id for lease in leases) == sorted(t.id for t in tasks)
    assert all(lease.task.attempt == 1 for lease in leases)


async def test_release_returns_the_task_uncounted(queue: TaskQueue) -> None:
    """A released task is QUEUED again and its next lease is still attempt 1."""
    await queue.submit([new_task("write_file")])
    held = await lease_one(queue)
    await queue.release(held.task.id, held.token)
    with pytest.raises(LeaseLost):
        await queue.release(held.task.id, held.token)
    again = await lease_one(queue)
    assert (again.task.id, again.task.attempt) == (held.task.id, 1)


async def test_stats_count_each_kind(queue: TaskQueue) -> None:
    """stats reports ready tasks per priority, running, delayed and dead."""
    await queue.submit(
        [
            new_task(priority=1),
            new_task(priority=1),
            new_task(priority=2),
            new_task(delay=60),
            new_task(max_attempts=1, priority=7),
        ]
    )
    [dead] = await queue.lease("w1", None, 1, LONG)
    await queue.complete(dead.task.id, dead.token, Completion(error=BOOM, retryable=True))
    await queue.lease("w1", None, 1, LONG)
    stats = await queue.stats()
    assert stats.ready_by_priority == {1: 2}
    assert (stats.in_flight, stats.delayed, stats.dead) == (1, 1, 1)

"""Behaviour suite, waiting: wait and submit_and_wait see completions and honour deadlines."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta

import pytest

from clawq_server.errors import ClawqError, IdempotencyKeyReused, NotFound, ResourceExhausted
from clawq_server.model import Completion, TaskState, ToolResult
from clawq_server.queue.base import TaskQueue

from .helpers import MakeQueue, new_task

LONG = timedelta(seconds=30)


async def run_one(queue: TaskQueue, output: bytes) -> None:
    """Act as a worker: lease the next task and complete it with output."""
    [lease] = await queue.lease("w1", None, 1, LONG, wait=5.0)
    await queue.complete(lease.task.id, lease.token, Completion(ToolResult(output=output)))


async def test_submit_and_wait_returns_the_finished_task(queue: TaskQueue) -> None:
    """The task comes back finished, with the worker's result, as soon as it completes."""
    task = new_task()
    worker = asyncio.create_task(run_one(queue, b"done"))
    finished = await queue.submit_and_wait(task, timeout=10.0)
    await worker
    assert finished.id == task.id
    assert finished.state is TaskState.SUCCEEDED
    assert finished.result is not None
    assert finished.result.output == b"done"
    assert (await queue.get_many([task.id], "alice"))[0].state is TaskState.SUCCEEDED


async def test_submit_and_wait_returns_the_queued_task_at_its_deadline(queue: TaskQueue) -> None:
    """With no worker the task is stored and returned queued once the timeout passes."""
    task = new_task()
    started = time.monotonic()
    found = await queue.submit_and_wait(task, timeout=0.3)
    assert 0.25 <= time.monotonic() - started < 5.0
    assert (found.id, found.state) == (task.id, TaskState.QUEUED)
    [lease] = await queue.lease("w1", None, 1, LONG)
    assert lease.task.id == task.id


async def test_submit_and_wait_with_a_used_key_waits_on_the_earlier_task(
    queue: TaskQueue,
) -> None:
    """A repeated idempotency key runs nothing new: the earlier task's outcome comes back."""
    first = new_task(key="k1")
    await queue.submit([first])
    await run_one(queue, b"first")
    again = await queue.submit_and_wait(new_task(key="k1"), timeout=5.0)
    assert again.id == first.id
    assert again.result is not None
    assert again.result.output == b"first"
    assert await queue.lease("w1", None, 5, LONG) == []


async def test_submit_and_wait_refusals_raise_and_store_nothing(make_queue: MakeQueue) -> None:
    """A reused key with other arguments, or a full queue, raises (shown to refused first);
    nothing is stored. A task stored and then waited on is no refusal."""
    queue = await make_queue(max_queued=2)
    await queue.submit([new_task(key="k1", args={"path": "a"})])
    seen: list[ClawqError] = []
    stored = await queue.submit_and_wait(new_task(), timeout=0.1, refused=seen.append)
    assert (stored.state, seen) == (TaskState.QUEUED, [])
    clash = new_task(key="k1", args={"path": "b"})
    with pytest.raises(IdempotencyKeyReused) as reused:
        await queue.submit_and_wait(clash, timeout=1.0, refused=seen.append)
    overflow = new_task()
    with pytest.raises(ResourceExhausted) as full:
        await queue.submit_and_wait(overflow, timeout=1.0, refused=seen.append)
    assert seen == [reused.value, full.value]
    assert await queue.get_many([clash.id, overflow.id], None) == []


async def test_wait_sees_a_completion_and_scopes_to_the_principal(queue: TaskQueue) -> None:
    """wait returns once the task finishes; another principal's wait finds nothing."""
    task = new_task()
    await queue.submit([task])
    waiting = asyncio.create_task(queue.wait(task.id, "alice", 10.0))
    await run_one(queue, b"x")
    assert (await waiting).state is TaskState.SUCCEEDED
    with pytest.raises(NotFound):
        await queue.wait(task.id, "mallory", 0.1)

"""Behaviour suite, caller side: cancellation, waiting, listing and paging."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta

import pytest

from clawq_server.errors import NotFound, TaskAlreadyFinished
from clawq_server.model import Completion, TaskQuery, TaskState, ToolResult, utcnow
from clawq_server.queue.base import TaskQueue

from .helpers import new_task

LONG = timedelta(seconds=30)


async def test_cancel_queued_task_is_immediate(queue: TaskQueue) -> None:
    """A queued task is CANCELLED at once and never leased."""
    task = new_task()
    await queue.submit([task])
    cancelled = await queue.cancel(task.id, "alice")
    assert cancelled.state == TaskState.CANCELLED
    assert cancelled.finished is not None
    assert await queue.lease("w1", None, 1, LONG) == []


async def test_cancel_running_task_asks_the_worker(queue: TaskQueue) -> None:
    """A running task stays RUNNING, its heartbeat says cancelled, and it ends CANCELLED."""
    task = new_task("write_file")
    await queue.submit([task])
    [held] = await queue.lease("w1", None, 1, LONG)
    assert (await queue.cancel(task.id, None)).state == TaskState.RUNNING
    beat = await queue.heartbeat([(task.id, held.token)], LONG)
    assert beat.cancelled == {task.id}
    state = await queue.complete(task.id, held.token, Completion(result=ToolResult(b"partial")))
    assert state == TaskState.CANCELLED
    assert (await queue.get_many([task.id], None))[0].state == TaskState.CANCELLED


async def test_released_task_that_was_cancelled_ends_cancelled(queue: TaskQueue) -> None:
    """A running task cancelled and then given back by its worker is CANCELLED, not requeued."""
    task = new_task()
    await queue.submit([task])
    [held] = await queue.lease("w1", None, 1, LONG)
    await queue.cancel(task.id, "alice")
    await queue.release(task.id, held.token)
    assert (await queue.get_many([task.id], None))[0].state == TaskState.CANCELLED
    assert await queue.lease("w1", None, 1, LONG) == []


async def test_cancel_finished_or_unknown_task_is_refused(queue: TaskQueue) -> None:
    """Cancelling a terminal task is TaskAlreadyFinished; unknown or foreign is NotFound."""
    task = new_task()
    await queue.submit([task])
    await queue.cancel(task.id, "alice")
    with pytest.raises(TaskAlreadyFinished):
        await queue.cancel(task.id, "alice")
    with pytest.raises(NotFound):
        await queue.cancel("missing", None)
    other = new_task(principal="bob")
    await queue.submit([other])
    with pytest.raises(NotFound):
        await queue.cancel(other.id, "alice")
    assert (await queue.get_many([other.id], None))[0].state == TaskState.QUEUED


async def test_wait_wakes_when_the_task_finishes(queue: TaskQueue) -> None:
    """A waiter returns the terminal task soon after its completion, well before timeout."""
    task = new_task()
    await queue.submit([task])
    waiter = asyncio.create_task(queue.wait(task.id, "alice", 30.0))
    [held] = await queue.lease("w1", None, 1, LONG)
    await asyncio.sleep(0.05)
    started = time.monotonic()
    await queue.complete(task.id, held.token, Completion(result=ToolResult(b"ok")))
    done = await asyncio.wait_for(waiter, 5)
    assert time.monotonic() - started < 0.5
    assert done.state == TaskState.SUCCEEDED
    assert done.result is not None
    assert done.result.output == b"ok"


async def test_wait_times_out_with_the_current_task(queue: TaskQueue) -> None:
    """With no progress, wait returns the unfinished task once its timeout passes."""
    task = new_task()
    await queue.submit([task])
    started = time.monotonic()
    got = await queue.wait(task.id, "alice", 0.3)
    assert got.state == TaskState.QUEUED
    assert 0.25 <= time.monotonic() - started < 2.0


async def test_wait_on_unknown_or_foreign_task_is_not_found(queue: TaskQueue) -> None:
    """Waiting on a task that does not exist or is another principal's is NotFound."""
    other = new_task(principal="bob")
    await queue.submit([other])
    with pytest.raises(NotFound):
        await queue.wait("missing", None, 0.1)
    with pytest.raises(NotFound):
        await queue.wait(other.id, "alice", 0.1)


async def test_wait_returns_a_finished_task_at_once(queue: TaskQueue) -> None:
    """Waiting on a terminal task answers without waiting."""
    task = new_task()
    await queue.submit([task])
    await queue.cancel(task.id, None)
    started = time.monotonic()
    assert (await queue.wait(task.id, None, 10.0)).state == TaskState.CANCELLED
    assert time.monotonic() - started < 0.5


async def test_list_is_newest_first_and_filtered(queue: TaskQueue) -> None:
    """list_tasks orders newest first and applies principal, state, tool and time filters."""
    read = new_task("read_file")
    write = new_task("write_file")
    theirs = new_task(principal="bob")
    for task in (read, write, theirs):
        await queue.submit([task])
    await queue.cancel(read.id, None)
    mine = await queue.list_tasks(TaskQuery(principal="alice"))
    assert [t.id for t in mine.tasks] == [write.id, read.id]
    assert mine.next_cursor is None
    everyone = await queue.list_tasks(TaskQuery(principal=None))
    assert {t.id for t in everyone.tasks} == {read.id, write.id, theirs.id}
    by_state = await queue.list_tasks(TaskQuery("alice", states=frozenset({TaskState.QUEUED})))
    assert [t.id for t in by_state.tasks] == [write.id]
    by_tool = await queue.list_tasks(TaskQuery("alice", tool="read_file"))
    assert [t.id for t in by_tool.tasks] == [read.id]
    after = await queue.list_tasks(TaskQuery("alice", created_after=write.created))
    assert [t.id for t in after.tasks] == [write.id]
    before = await queue.list_tasks(TaskQuery("alice", created_before=write.created))
    assert [t.id for t in before.tasks] == [read.id]
    future = await queue.list_tasks(TaskQuery(None, created_after=utcnow() + LONG))
    assert future.tasks == []


async def test_paging_visits_every_task_once(queue: TaskQueue) -> None:
    """Following next_cursor pages through all tasks, newest first, no gaps or repeats."""
    tasks = [new_task() for _ in range(23)]
    for start in range(0, 23, 5):
        await queue.submit(tasks[start : start + 5])
    await queue.submit([new_task(principal="bob")])
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        page = await queue.list_tasks(TaskQuery("alice", limit=4, cursor=cursor))
        seen.extend(t.id for t in page.tasks)
        pages += 1
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert pages == 6
    assert sorted(seen) == sorted(t.id for t in tasks)
    assert len(seen) == len(set(seen))
    created = [t.created for t in await queue.get_many(seen, None)]
    assert created == sorted(created, reverse=True)


async def test_paging_survives_identical_creation_times(queue: TaskQueue) -> None:
    """Tasks created in the same instant are still paged without gaps, ordered by id."""
    first = new_task()
    same = [new_task(task_id=f"t{i:02d}")._replace(created=first.created) for i in range(7)]
    await queue.submit(same)
    seen: list[str] = []
    cursor = None
    while True:
        page = await queue.list_tasks(TaskQuery("alice", limit=3, cursor=cursor))
        seen.extend(t.id for t in page.tasks)
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert seen == sorted((t.id for t in same), reverse=True)

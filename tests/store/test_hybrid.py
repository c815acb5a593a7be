"""The hybrid store: finished tasks outlive Redis retention in the SQLite archive."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from clawq_server.errors import TaskAlreadyFinished
from clawq_server.model import Completion, TaskError, TaskQuery, TaskState, ToolResult
from clawq_server.queue.base import TaskQueue
from clawq_server.store.hybrid import HybridQueue
from tests.contract.helpers import eventually, new_task
from tests.redis_support import cleaned

from .conftest import MakeHybrid
from .factories import build_hybrid

LONG = timedelta(seconds=30)


async def finish(queue: TaskQueue, count: int, output: bytes = b"done") -> list[str]:
    """Submit, lease and complete count read_file tasks; their ids, oldest first."""
    tasks = [new_task() for _ in range(count)]
    await queue.submit(tasks)
    held = await queue.lease("w1", None, count, LONG)
    for lease in held:
        await queue.complete(lease.task.id, lease.token, Completion(result=ToolResult(output)))
    return [task.id for task in tasks]


async def archived(queue: HybridQueue, ids: list[str]) -> int:
    """How many of ids the archive holds."""
    return len(await queue.archive.get_many(ids, None))


async def test_a_task_past_redis_retention_is_read_from_the_archive(
    make_hybrid: MakeHybrid,
) -> None:
    """Once Redis has expired a finished record, get_many, list_tasks, wait and cancel
    still answer for it from the archive, with its result."""
    queue = await make_hybrid(retention=timedelta(seconds=1))
    [task_id] = await finish(queue, 1, b"kept")
    await eventually(lambda: archived(queue, [task_id]), lambda n: n == 1)
    await eventually(lambda: queue.live.get_many([task_id], None), lambda found: not found)
    [task] = await queue.get_many([task_id], "alice")
    assert task.state == TaskState.SUCCEEDED
    assert task.result is not None
    assert task.result.output == b"kept"
    assert await queue.get_many([task_id], "bob") == []
    page = await queue.list_tasks(TaskQuery("alice"))
    assert [t.id for t in page.tasks] == [task_id]
    assert (await queue.wait(task_id, "alice", 0.0)).state == TaskState.SUCCEEDED
    with pytest.raises(TaskAlreadyFinished):
        await queue.cancel(task_id, "alice")


async def test_a_task_in_both_stores_is_listed_once(make_hybrid: MakeHybrid) -> None:
    """While Redis and the archive both hold finished tasks, each is listed and read once,
    across pages, merged newest first with tasks only Redis holds."""
    queue = await make_hybrid()
    done = await finish(queue, 5)
    await eventually(lambda: archived(queue, done), lambda n: n == 5)
    waiting = [new_task() for _ in range(3)]
    await queue.submit(waiting)
    listed: list[str] = []
    cursor = None
    while True:
        page = await queue.list_tasks(TaskQuery("alice", limit=3, cursor=cursor))
        listed += [t.id for t in page.tasks]
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert listed == [t.id for t in reversed(waiting)] + list(reversed(done))
    assert [t.id for t in await queue.get_many(done, None)] == done


async def test_archiving_resumes_after_a_restart(
    make_hybrid: MakeHybrid, redis_url: str, tmp_path: Path
) -> None:
    """Tasks finished while no archiver ran, and a batch taken by an archiver that died
    before acknowledging it, are archived by the next one."""
    first = await make_hybrid()
    await first.close()
    # A server without an archiver of its own finishes tasks while none runs.
    other = build_hybrid(redis_url, first.live.keys.prefix, tmp_path / "unused.db").live
    await other.start()
    try:
        taken_ids = await finish(other, 3)
        feed = other.archive_feed()
        stolen = await feed.take("crashed-archiver", 100, 60_000)  # never acknowledged
        assert sorted(i for _, batch in stolen for i in batch) == sorted(taken_ids)
        later_ids = await finish(other, 2)
        revived = await make_hybrid()
        everything = taken_ids + later_ids
        await eventually(lambda: archived(revived, everything), lambda n: n == 5, within=10.0)
        await eventually(feed.backlog, lambda n: n == 0)
    finally:
        await other.close()


async def test_requeued_dead_letters_are_not_answered_from_the_archive(
    make_hybrid: MakeHybrid,
) -> None:
    """A dead task requeued from Redis is listed with its live state, not its archived one."""
    queue = await make_hybrid()
    task = new_task(max_attempts=1)
    await queue.submit([task])
    [held] = await queue.lease("w1", None, 1, LONG)
    failure = Completion(error=TaskError("UNAVAILABLE", "FLAKY", "try again"), retryable=True)
    assert await queue.complete(task.id, held.token, failure) == TaskState.DEAD
    await eventually(lambda: archived(queue, [task.id]), lambda n: n == 1)
    assert await queue.requeue_dead([task.id]) == 1
    dead = await queue.list_tasks(TaskQuery("alice", states=frozenset({TaskState.DEAD})))
    assert dead.tasks == []
    [live] = (await queue.list_tasks(TaskQuery("alice"))).tasks
    assert live.state == TaskState.QUEUED


async def test_idle_archivers_leave_the_group(redis_url: str, tmp_path: Path) -> None:
    """An archiver that holds nothing and has been idle long enough is removed from the
    archive group; one holding an unacknowledged entry stays."""
    async with cleaned(redis_url) as prefix:
        live = build_hybrid(redis_url, prefix, tmp_path / "unused.db").live
        await live.start()
        try:
            feed = live.archive_feed()
            await feed.open()
            await finish(live, 1)
            await finish(live, 1)  # a second script call: a second feed entry
            assert len(await feed.take("holding-archiver", 1, 60_000)) == 1
            [(copied, _)] = await feed.take("idle-archiver", 1, 60_000)
            await feed.done([copied])
            await eventually(lambda: feed.tidy(50), lambda removed: removed == 1)
            found = await feed.client.xinfo_consumers(feed.stream, feed.group)
            assert [c["name"] for c in found] == [b"holding-archiver"]
        finally:
            await live.close()

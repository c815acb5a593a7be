"""Behaviour suite, recorded tasks: calls answered without a worker are stored whole."""

from __future__ import annotations

from datetime import timedelta

from clawq_server.model import SideEffect, Task, TaskQuery, TaskState, ToolResult, utcnow
from clawq_server.queue.base import TaskQueue

from .helpers import new_task


def answered(task_id: str, output: bytes = b"cached text") -> Task:
    """A read answered from the cache, as the server builds it."""
    now = utcnow().replace(microsecond=250_000)
    return Task(
        id=task_id,
        principal="alice",
        tool="read_file",
        args={"path": "notes/a.txt", "offset": 0, "limit": 0},
        state=TaskState.SUCCEEDED,
        side_effect=SideEffect.READ_ONLY,
        attempt=1,
        max_attempts=3,
        priority=2,
        idempotency_key="",
        idempotent=False,
        created=now,
        not_before=now,
        started=now + timedelta(milliseconds=1),
        finished=now + timedelta(milliseconds=2),
        result=ToolResult(output=output, payload={"size": len(output)}, cached=True),
    )


async def test_a_recorded_task_reads_back_whole(queue: TaskQueue) -> None:
    """get_many returns the recorded task field for field, result included."""
    task = answered("rec-1")
    await queue.record([task])
    assert await queue.get_many(["rec-1"], "alice") == [task]
    assert await queue.get_many(["rec-1"], "mallory") == []
    assert (await queue.wait("rec-1", "alice", 5.0)) == task


async def test_recorded_tasks_are_listed_by_state_and_tool(queue: TaskQueue) -> None:
    """ListTasks finds recorded tasks under their state and tool, beside queued ones."""
    queued = new_task()
    await queue.submit([queued])
    await queue.record([answered("rec-2")])
    done = await queue.list_tasks(TaskQuery("alice", states=frozenset({TaskState.SUCCEEDED})))
    assert [t.id for t in done.tasks] == ["rec-2"]
    by_tool = await queue.list_tasks(TaskQuery("alice", tool="read_file"))
    assert {t.id for t in by_tool.tasks} == {"rec-2", queued.id}


async def test_recording_an_id_again_keeps_the_first(queue: TaskQueue) -> None:
    """A second record of the same id changes nothing, and nothing becomes leasable."""
    await queue.record([answered("rec-3", b"first")])
    await queue.record([answered("rec-3", b"second"), answered("rec-4")])
    first, fourth = await queue.get_many(["rec-3", "rec-4"], "alice")
    assert first.result is not None
    assert first.result.output == b"first"
    assert fourth.state is TaskState.SUCCEEDED
    assert await queue.lease("w1", None, 10, timedelta(seconds=30)) == []

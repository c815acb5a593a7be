"""The SQLite archive on its own: idempotent copies, durable across reopen, keyset paging."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from clawq_server.model import SideEffect, Task, TaskError, TaskQuery, TaskState, ToolResult, utcnow
from clawq_server.store.sqlite_archive import SqliteArchive


def finished(n: int, principal: str = "alice", tool: str = "read_file") -> Task:
    """A finished task created n seconds after a fixed origin."""
    created = utcnow().replace(microsecond=0) + timedelta(seconds=n)
    return Task(
        id=f"t{n:03d}",
        principal=principal,
        tool=tool,
        args={"path": f"{n}.txt"},
        state=TaskState.SUCCEEDED if n % 2 else TaskState.FAILED,
        side_effect=SideEffect.READ_ONLY,
        attempt=1,
        max_attempts=3,
        priority=0,
        idempotency_key=f"k{n}",
        idempotent=False,
        created=created,
        not_before=created,
        started=created,
        finished=created + timedelta(seconds=1),
        result=ToolResult(output=b"out", stderr=b"err", exit_code=0),
        error=None if n % 2 else TaskError("ABORTED", "WORKER_LOST", "gone"),
    )


async def test_copies_replace_and_survive_a_reopen(tmp_path: Path) -> None:
    """Putting a task twice keeps one row with the latest copy, and a reopened file has it."""
    archive = SqliteArchive(tmp_path / "a.db")
    await archive.start()
    first = finished(1)
    await archive.put_many([first, finished(2)])
    await archive.put_many([first._replace(attempt=2)])
    await archive.close()
    reopened = SqliteArchive(tmp_path / "a.db")
    await reopened.start()
    try:
        got = await reopened.get_many(["t002", "t001", "missing"], None)
        assert got == [finished(2), first._replace(attempt=2)]
        assert await reopened.get_many(["t001"], "bob") == []
    finally:
        await reopened.close()


async def test_listing_filters_and_pages_newest_first(tmp_path: Path) -> None:
    """list_tasks applies principal, state and tool filters and pages without gaps."""
    archive = SqliteArchive(tmp_path / "a.db")
    await archive.start()
    try:
        await archive.put_many([finished(n) for n in range(10)] + [finished(99, "bob")])
        seen: list[str] = []
        cursor = None
        while True:
            page = await archive.list_tasks(TaskQuery("alice", limit=4, cursor=cursor))
            seen += [t.id for t in page.tasks]
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
        assert seen == [f"t{n:03d}" for n in reversed(range(10))]
        failed = await archive.list_tasks(TaskQuery("alice", states=frozenset({TaskState.FAILED})))
        assert [t.id for t in failed.tasks] == [f"t{n:03d}" for n in (8, 6, 4, 2, 0)]
        assert (await archive.list_tasks(TaskQuery(None, tool="write_file"))).tasks == []
    finally:
        await archive.close()

"""SQLite only: lock translation, shutdown, and two processes' queues on one file."""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import timedelta
from pathlib import Path

import pytest

from clawq_server.errors import BackendUnavailable
from clawq_server.model import Completion, SubmitOutcome, TaskState, ToolResult
from clawq_server.queue.sqlite import SqliteQueue

from .helpers import new_task


async def test_a_locked_file_is_backend_unavailable_then_recovers(tmp_path: Path) -> None:
    """A write blocked past busy_timeout raises BackendUnavailable; later writes succeed."""
    queue = SqliteQueue(tmp_path / "q.db", busy_timeout=0.1, sweep_interval=0)
    await queue.start()
    other = sqlite3.connect(tmp_path / "q.db", isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        with pytest.raises(BackendUnavailable):
            await queue.submit([new_task()])
        other.execute("ROLLBACK")
        task = new_task()
        assert await queue.submit([task]) == [SubmitOutcome(task.id)]
    finally:
        other.close()
        await queue.close()


async def test_close_commits_what_was_submitted(tmp_path: Path) -> None:
    """Submissions in flight when close() starts are committed; later ones are refused."""
    queue = SqliteQueue(tmp_path / "q.db")
    await queue.start()
    batches = [[new_task() for _ in range(100)] for _ in range(10)]
    pending = [asyncio.create_task(queue.submit(b)) for b in batches]
    await asyncio.sleep(0)
    await queue.close()
    await queue.close()
    results = await asyncio.gather(*pending)
    assert all(len(r) == 100 for r in results)
    with pytest.raises(BackendUnavailable):
        await queue.submit([new_task()])
    reopened = SqliteQueue(tmp_path / "q.db")
    await reopened.start()
    try:
        ids = [t.id for b in batches for t in b]
        assert len(await reopened.get_many(ids, None)) == 1000
    finally:
        await reopened.close()


async def test_waiter_sees_a_completion_made_by_another_queue(tmp_path: Path) -> None:
    """wait() notices a transition committed through another connection to the file."""
    mine = SqliteQueue(tmp_path / "q.db")
    theirs = SqliteQueue(tmp_path / "q.db")
    await mine.start()
    await theirs.start()
    try:
        task = new_task()
        await mine.submit([task])
        waiter = asyncio.create_task(mine.wait(task.id, None, 30.0))
        [held] = await theirs.lease("w1", None, 1, timedelta(seconds=30))
        await theirs.complete(task.id, held.token, Completion(result=ToolResult()))
        done = await asyncio.wait_for(waiter, 5)
        assert done.state == TaskState.SUCCEEDED
    finally:
        await theirs.close()
        await mine.close()


async def test_sweeper_settles_a_lost_lease_without_any_worker(tmp_path: Path) -> None:
    """With no worker asking for work, the sweep still fails a lost non-idempotent task."""
    queue = SqliteQueue(tmp_path / "q.db", sweep_interval=0.05)
    await queue.start()
    try:
        task = new_task("write_file")
        await queue.submit([task])
        await queue.lease("w1", None, 1, timedelta(seconds=0.1))
        done = await queue.wait(task.id, None, 5.0)
        assert done.state == TaskState.FAILED
        assert done.error is not None
        assert done.error.reason == "WORKER_LOST"
    finally:
        await queue.close()


async def test_a_lease_cancelled_mid_claim_gives_its_tasks_back(tmp_path: Path) -> None:
    """A worker cancelled while its claim commits leaves nothing stranded RUNNING."""
    queue = SqliteQueue(tmp_path / "q.db", sweep_interval=0)
    await queue.start()
    try:
        task = new_task("write_file")
        await queue.submit([task])
        claim = asyncio.create_task(queue.lease("w1", None, 1, timedelta(seconds=30)))
        await asyncio.sleep(0)  # the claim is now queued for the next commit
        claim.cancel()
        with pytest.raises(asyncio.CancelledError):
            await claim
        # Woken by the give-back; attempt 1 shows the stranded claim was not counted.
        [again] = await queue.lease("w2", None, 1, timedelta(seconds=30), wait=5.0)
        assert (again.task.id, again.task.attempt) == (task.id, 1)
    finally:
        await queue.close()

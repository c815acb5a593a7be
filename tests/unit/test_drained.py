"""A lease after one that emptied the queue waits for new work, or a due time, before asking."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from pathlib import Path

from clawq_server.model import Lease
from clawq_server.queue.drained import MAX_NOTES, Drained, tool_key
from clawq_server.queue.sqlite import Claimed, SqliteQueue
from clawq_server.queue.sqlite_db import WriteOp
from tests.contract.helpers import new_task

LONG = timedelta(seconds=30)


async def test_settle_waits_for_the_signal_noted() -> None:
    """After a note, settle returns once the signal is set, not before."""
    drained, signal = Drained(poll_s=10.0), asyncio.Event()
    drained.note(tool_key(None), signal, None)
    settling = asyncio.create_task(drained.settle(tool_key(None), wait=10.0))
    await asyncio.sleep(0.05)
    assert not settling.done()
    signal.set()
    await asyncio.wait_for(settling, 1.0)


async def test_settle_returns_at_once_without_a_note_for_those_tools() -> None:
    """Nothing noted, another tool filter, a forgotten note, a set signal or no wait: no pause."""
    drained = Drained(poll_s=10.0)
    await asyncio.wait_for(drained.settle(tool_key(None), wait=10.0), 0.5)
    drained.note(tool_key(["read_file"]), asyncio.Event(), None)
    await asyncio.wait_for(drained.settle(tool_key(["list_directory"]), wait=10.0), 0.5)
    drained.note(tool_key(None), asyncio.Event(), None)
    drained.forget(tool_key(None))
    await asyncio.wait_for(drained.settle(tool_key(None), wait=10.0), 0.5)
    done = asyncio.Event()
    done.set()
    drained.note(tool_key(None), done, None)
    await asyncio.wait_for(drained.settle(tool_key(None), wait=10.0), 0.5)
    drained.note(tool_key(None), asyncio.Event(), None)
    await asyncio.wait_for(drained.settle(tool_key(None), wait=0.0), 0.5)


async def test_an_old_note_or_one_pushed_out_is_not_waited_on() -> None:
    """A note older than the poll interval is stale; notes are bounded in number."""
    drained = Drained(poll_s=0.05)
    drained.note(tool_key(None), asyncio.Event(), None)
    await asyncio.sleep(0.1)
    await asyncio.wait_for(drained.settle(tool_key(None), wait=10.0), 0.5)
    drained = Drained(poll_s=10.0)
    for i in range(MAX_NOTES + 1):
        drained.note(tool_key([f"tool{i}"]), asyncio.Event(), None)
    await asyncio.wait_for(drained.settle(tool_key(["tool0"]), wait=10.0), 0.5)


async def test_settle_ends_at_the_due_time() -> None:
    """A task falling due (delayed, or a lease expiring) ends the wait without a signal."""
    drained = Drained(poll_s=10.0)
    drained.note(tool_key(None), asyncio.Event(), time.time() + 0.1)
    await asyncio.wait_for(drained.settle(tool_key(None), wait=10.0), 2.0)


class CountingQueue(SqliteQueue):
    """A real SQLite queue that counts the lease transactions it runs."""

    claims = 0

    async def _claim(self, op: WriteOp, token: str) -> Claimed:
        self.claims += 1
        return await super()._claim(op, token)


async def test_sqlite_lease_after_a_short_one_waits_for_work_before_asking(
    tmp_path: Path,
) -> None:
    """On SQLite too, the lease after one that emptied the queue runs one transaction."""
    queue = CountingQueue(tmp_path / "q.db", poll_s=30.0)  # no periodic re-read in the test
    await queue.start()
    try:
        await queue.submit([new_task()])
        assert len(await queue.lease("w1", None, 4, LONG)) == 1
        before = queue.claims
        waiting = asyncio.create_task(queue.lease("w1", None, 4, LONG, wait=10.0))
        await asyncio.sleep(0.2)  # time for a lease that asks at once to do so
        assert queue.claims == before
        task = new_task()
        await queue.submit([task])
        held: list[Lease] = await asyncio.wait_for(waiting, 5.0)
        assert [lease.task.id for lease in held] == [task.id]
        assert queue.claims == before + 1
    finally:
        await queue.close()

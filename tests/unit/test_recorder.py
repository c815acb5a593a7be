"""The recorder stores answers from the cache in batches and survives a store that refuses."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from pathlib import Path

import pytest

from clawq_server.model import Task
from clawq_server.queue.sqlite import SqliteQueue
from clawq_server.recorder import Recorder
from tests.contract.test_queue_record import answered


async def test_tasks_added_together_are_stored_by_close(tmp_path: Path) -> None:
    """Every task added is readable once close returns."""
    queue = SqliteQueue(tmp_path / "q.db")
    await queue.start()
    try:
        recorder = Recorder(queue)
        for i in range(50):
            recorder.add(answered(f"r{i}"))
        await recorder.close()
        stored = await queue.get_many([f"r{i}" for i in range(50)], "alice")
        assert len(stored) == 50
    finally:
        await queue.close()


async def test_a_refused_batch_is_logged_and_the_recorder_keeps_going(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A store that is down loses each batch it refuses; the caller never sees an error."""
    down = SqliteQueue(tmp_path / "down.db")  # never started: every write is refused
    recorder = Recorder(down)
    recorder.add(answered("lost"))
    with caplog.at_level(logging.WARNING, logger="clawq_server.recorder"):
        await recorder.close()
    assert "1 answers from the cache not stored" in caplog.text
    recorder.add(answered("again"))
    await recorder.close()
    assert caplog.text.count("not stored") == 2


async def test_hits_arriving_one_by_one_are_stored_in_one_write(tmp_path: Path) -> None:
    """Hits within the gathering pause share a single write, however they trickle in."""
    writes: list[int] = []

    class CountingQueue(SqliteQueue):
        async def record(self, tasks: Sequence[Task]) -> None:
            writes.append(len(tasks))
            await super().record(tasks)

    queue = CountingQueue(tmp_path / "q.db")
    await queue.start()
    try:
        recorder = Recorder(queue)
        for i in range(10):
            recorder.add(answered(f"t{i}"))
            await asyncio.sleep(0)  # let the loop run between hits
        await recorder.close()
    finally:
        await queue.close()
    assert writes == [10]

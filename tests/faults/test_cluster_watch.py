"""WaitTask and WatchTasks on one server wake when a worker ends a task submitted via another."""

from __future__ import annotations

import asyncio
import time

import pytest

import clawq
from tests.faults.conftest import Cluster

pytestmark = pytest.mark.slow

TASKS = 40
DELAY_S = 1.5  # the waiters park before any task may run
LAG_S = 0.5  # well under the 1 s re-read a missed wake-up would fall back on


async def test_waiters_on_one_server_wake_for_work_submitted_via_another(
    cluster: Cluster,
) -> None:
    """Each WaitTask and the WatchTasks stream on server A return within LAG_S of the
    finish time of tasks submitted through server B and run by a worker."""
    (cluster.root / "a.txt").write_text("hello")
    near, far = await cluster.serve(), await cluster.serve()
    await cluster.worker(concurrency=4)
    async with (
        clawq.AsyncClient(near.target, timeout=10.0) as waiter,
        clawq.AsyncClient(far.target, timeout=10.0) as submitter,
    ):
        calls = [clawq.Call("read_file", path="a.txt", delay=DELAY_S) for _ in range(TASKS)]
        ids = await submitter.submit_batch(calls)

        async def wait(task_id: str) -> tuple[clawq.Task, float]:
            task = await waiter.wait(task_id, timeout=20.0)
            return task, time.time()

        async def watch() -> dict[str, float]:
            seen: dict[str, float] = {}
            async for task in waiter.watch(ids):
                if task.done:
                    seen.setdefault(task.id, time.time())
            return seen

        watched = asyncio.create_task(watch())
        woken = await asyncio.gather(*(wait(task_id) for task_id in ids))
        seen = await asyncio.wait_for(watched, 20.0)
    lags = []
    for task, returned in woken:
        assert task.state == "SUCCEEDED"
        assert task.finished is not None
        lags += [returned - task.finished.timestamp(), seen[task.id] - task.finished.timestamp()]
    assert max(lags) < LAG_S, sorted(lags)[-5:]

"""The in-process worker leases in batches under load and still takes single tasks when idle."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Collection
from datetime import timedelta
from pathlib import Path

from clawq_server.config import default_principal
from clawq_server.model import Lease, TaskState, ToolResult
from clawq_server.queue.sqlite import SqliteQueue
from clawq_server.tools import builtin
from clawq_server.worker.middleware import ToolInvocation
from clawq_server.worker.runner import LEASE_BATCH_DIVISOR, Worker, WorkerSettings
from tests.contract.helpers import eventually, new_task

CONCURRENCY = 8


class RecordingQueue(SqliteQueue):
    """A real SQLite queue that notes how many tasks each lease asked for."""

    limits: list[int]
    leased = 0

    async def lease(
        self,
        worker_id: str,
        tools: Collection[str] | None,
        limit: int,
        lease_for: timedelta,
        wait: float = 0.0,
    ) -> list[Lease]:
        """Record limit, then lease as usual (noting what was handed out)."""
        self.limits.append(limit)
        leases = await super().lease(worker_id, tools, limit, lease_for, wait)
        self.leased += len(leases)
        return leases


async def test_a_busy_worker_leases_a_quarter_of_its_slots_at_a_time(tmp_path: Path) -> None:
    """With every slot taken, finishing runs one by one never triggers a lease of one task."""
    queue = RecordingQueue(tmp_path / "q.db")
    queue.limits = []
    await queue.start()
    gates: dict[str, asyncio.Event] = {}

    async def held(call: ToolInvocation) -> ToolResult:
        await gates.setdefault(call.task.id, asyncio.Event()).wait()
        return ToolResult(output=b"ok")

    principal = default_principal([tmp_path])
    tools = builtin.build("subreaper")
    # A gathering pause far longer than the test: any lease of one task would be a bug.
    settings = WorkerSettings(concurrency=CONCURRENCY, lease_s=30.0, lease_gather_s=60.0)
    worker = Worker(queue, tools.registry, lambda _: principal, held, settings)

    async def running() -> list[str]:
        return [task_id for task_id, gate in gates.items() if not gate.is_set()]

    tasks = [new_task(principal=principal.name) for _ in range(CONCURRENCY * 3)]
    await queue.submit(tasks)
    await worker.start()
    try:
        await eventually(running, lambda ids: len(ids) == CONCURRENCY)
        for _ in tasks:  # finish the runs one at a time
            task_id = (await eventually(running, bool))[0]
            gates[task_id].set()
            finished = await queue.wait(task_id, None, 5.0)
            assert finished.state is TaskState.SUCCEEDED
    finally:
        await worker.stop()
        await queue.close()
    batch = CONCURRENCY // LEASE_BATCH_DIVISOR
    assert queue.limits[0] == CONCURRENCY
    assert len(queue.limits) > 2
    assert min(queue.limits) >= batch


async def test_a_lone_free_slot_is_filled_while_long_runs_hold_the_others(
    tmp_path: Path,
) -> None:
    """Batching never leaves a slot idle: with every other slot held by a run that does not
    end, a task queued later still starts."""
    queue = SqliteQueue(tmp_path / "q.db")
    await queue.start()
    release = asyncio.Event()
    started: list[str] = []

    async def held(call: ToolInvocation) -> ToolResult:
        started.append(call.task.id)
        await release.wait()
        return ToolResult()

    principal = default_principal([tmp_path])
    settings = WorkerSettings(concurrency=CONCURRENCY, lease_s=30.0)
    worker = Worker(queue, builtin.build("subreaper").registry, lambda _: principal, held, settings)
    await queue.submit([new_task(principal=principal.name) for _ in range(CONCURRENCY - 1)])
    await worker.start()
    try:
        await eventually(_count(started), lambda n: n == CONCURRENCY - 1)
        last = new_task(principal=principal.name)
        await queue.submit([last])
        await eventually(_count(started), lambda n: n == CONCURRENCY)
        assert started[-1] == last.id
    finally:
        release.set()
        await worker.stop()
        await queue.close()


def _count(items: list[str]) -> Callable[[], Awaitable[int]]:
    async def probe() -> int:
        return len(items)

    return probe


async def test_a_worker_held_back_mid_lease_gives_the_tasks_back(tmp_path: Path) -> None:
    """may_lease() turning false while a lease waits: what it brings is released unrun
    (attempt not counted) and run once leasing may go on."""
    queue = RecordingQueue(tmp_path / "q.db")
    queue.limits = []
    await queue.start()
    ran: list[str] = []

    async def run(call: ToolInvocation) -> ToolResult:
        ran.append(call.task.id)
        return ToolResult(output=b"ok")

    principal = default_principal([tmp_path])
    allowed = [True]
    worker = Worker(
        queue,
        builtin.build("subreaper").registry,
        lambda _: principal,
        run,
        WorkerSettings(concurrency=1),
        may_lease=lambda: allowed[0],
    )
    await worker.start()
    try:
        await eventually(lambda: asyncio.sleep(0, queue.limits), bool)  # a lease is waiting
        allowed[0] = False
        task = new_task(principal=principal.name)
        await queue.submit([task])
        await eventually(lambda: asyncio.sleep(0, queue.leased), bool)
        back = await eventually(
            lambda: queue.get_many([task.id], None), lambda t: t[0].state is TaskState.QUEUED
        )
        assert (back[0].attempt, ran) == (0, [])
        allowed[0] = True
        assert (await queue.wait(task.id, None, 5.0)).state is TaskState.SUCCEEDED
        assert ran == [task.id]
    finally:
        await worker.stop()
        await queue.close()

"""Redis restarted under load: no acknowledged task lost, callers get UNAVAILABLE, work resumes."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import pytest

import clawq
from tests.faults.conftest import Cluster, lines, settle, wait_for

pytestmark = pytest.mark.slow

DEADLINE_S = 3.0  # each RPC's deadline
BATCH = 20
LEASE_S = 5.0  # several times the outage


@dataclass
class Load:
    """Two producers submitting reads and one-line appends until told to stop."""

    client: clawq.AsyncClient
    acked: list[tuple[str, clawq.Call]] = field(default_factory=list)
    errors: list[clawq.Error] = field(default_factory=list)
    slowest: float = 0.0
    stopping: bool = False

    async def produce(self, name: str) -> None:
        """Submit a batch about every 20 ms, recording acks, errors and the slowest call."""
        n = 0
        while not self.stopping:
            calls = [self.call(f"{name}-{n}-{j}", j) for j in range(BATCH)]
            n += 1
            started = time.monotonic()
            try:
                ids = await self.client.submit_batch(calls)
            except clawq.Error as error:
                self.errors.append(error)
            else:
                self.acked.extend(zip(ids, calls, strict=True))
            self.slowest = max(self.slowest, time.monotonic() - started)
            await asyncio.sleep(0.02)

    @staticmethod
    def call(key: str, j: int) -> clawq.Call:
        """Half reads, half appends to a file named after the call."""
        if j % 2:
            return clawq.Call("read_file", path="a.txt")
        return clawq.Call("write_file", path=f"w/{key}.txt", text="x\n", mode="WRITE_MODE_APPEND")


async def reads_fail_fast(client: clawq.AsyncClient, task_id: str) -> None:
    """GetTask and WaitTask raise Unavailable within their deadlines while Redis is down."""
    for call in (client.get(task_id), client.wait(task_id, timeout=1.0)):
        started = time.monotonic()
        with pytest.raises(clawq.Unavailable):
            await call
        assert time.monotonic() - started < DEADLINE_S + 1.0


async def test_redis_restart_under_load_loses_nothing_and_recovers(cluster: Cluster) -> None:
    """kill -9 of Redis (AOF, fsync always) under load: calls fail fast with Unavailable,
    every acknowledged task survives and ends, and the same clawq processes carry on."""
    (cluster.root / "a.txt").write_text("hello")
    (cluster.root / "w").mkdir()
    server = await cluster.serve()
    worker = await cluster.worker(concurrency=8, lease=LEASE_S)
    async with clawq.AsyncClient(server.target, timeout=DEADLINE_S) as client:
        load = Load(client)
        producers = [asyncio.create_task(load.produce(f"p{i}")) for i in range(2)]
        await wait_for(lambda: len(load.acked) >= 400, 20.0, "load before the outage")
        await asyncio.to_thread(cluster.redis.stop, kill=True)
        await wait_for(lambda: len(load.errors) >= 4, 20.0, "callers to see the outage")
        await reads_fail_fast(client, load.acked[0][0])
        await asyncio.to_thread(cluster.redis.start)
        after = len(load.acked)
        await wait_for(lambda: len(load.acked) >= after + 400, 30.0, "submits to resume")
        load.stopping = True
        await asyncio.gather(*producers)
        final = await settle(client, [task_id for task_id, _ in load.acked], 40.0)
    assert server.alive
    assert worker.alive
    assert {type(e) for e in load.errors} == {clawq.Unavailable}
    assert load.slowest < DEADLINE_S + 1.0
    unrun: set[str] = set()
    for task_id, call in load.acked:
        task = final[task_id]
        ran = lines(cluster.root / call.args["path"]) if call.tool == "write_file" else 1
        assert ran <= 1, task  # never twice
        assert task.state != "SUCCEEDED" or ran == 1, task
        if task.state != "SUCCEEDED" and ran == 0:
            # Leased as Redis died, the reply lost on the way: the worker never knew.
            assert task.error is not None
            assert task.error.reason == "WORKER_LOST"
            unrun.add(task_id)
    assert {final[task_id].state for task_id, _ in load.acked[after:]} == {"SUCCEEDED"}
    # The outage is far shorter than a lease: a worker that finished a task during it still
    # holds the lease afterwards, so its completion must land (not WORKER_LOST).
    failed = [t for t in final.values() if t.state != "SUCCEEDED" and t.id not in unrun]
    assert failed == []

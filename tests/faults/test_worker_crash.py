"""kill -9 of a worker: read-only work is redelivered, writes are never run twice by surprise."""

from __future__ import annotations

import pytest

import clawq
from tests.faults.conftest import Cluster, append_once_then, fetch, lines, settle, wait_for

pytestmark = pytest.mark.slow

READS = 3000


async def test_reads_in_flight_are_redelivered_to_another_worker(cluster: Cluster) -> None:
    """Read-only tasks a killed worker held are redelivered to a second one and succeed."""
    (cluster.root / "a.txt").write_text("hello")
    server = await cluster.serve()
    first = await cluster.worker(concurrency=8)
    async with clawq.AsyncClient(server.target, timeout=10.0) as client:
        calls = [
            clawq.Call("read_file", path="a.txt")
            if i % 2
            else clawq.Call("list_directory", path=".")
            for i in range(READS)
        ]
        ids = [ack.task_id async for ack in client.submit_stream(calls, batch_size=500)]

        async def some_done() -> bool:
            done = await fetch(client, ids[:600])
            return sum(t.state == "SUCCEEDED" for t in done.values()) >= 100

        await wait_for(some_done, 30.0, "the first worker to get going")
        held: list[str] = []

        async def frozen_holding() -> bool:
            # Frozen, the worker cannot finish what it holds; a completion it sent just
            # before has landed by the second read.
            first.pause()
            await fetch(client, ids)
            held[:] = [t.id for t in (await fetch(client, ids)).values() if t.state == "RUNNING"]
            if not held:
                first.pause(False)
            return bool(held)

        await wait_for(frozen_holding, 30.0, "the first worker to hold tasks in flight")
        await first.kill()
        await cluster.worker(concurrency=8)
        final = await settle(client, ids, 40.0)
    assert {t.state for t in final.values()} == {"SUCCEEDED"}
    assert all(final[i].attempt == 2 for i in held)
    read = final[ids[1]].result
    assert read is not None
    assert read.output == "hello"


async def test_writes_in_flight_fail_worker_lost_unless_idempotent(cluster: Cluster) -> None:
    """A non-idempotent command running at kill -9 ends FAILED/WORKER_LOST having run once;
    an idempotent one is run again by a second worker and succeeds."""
    server = await cluster.serve()
    first = await cluster.worker(concurrency=4)
    slow = {"timeout_s": 60, "idle_timeout_s": 60}
    async with clawq.AsyncClient(server.target, timeout=10.0) as client:
        once = await client.submit("execute_command", argv=append_once_then("once.txt", 30), **slow)
        again = await client.submit(
            "execute_command", argv=append_once_then("again.txt", 30), idempotent=True, **slow
        )
        await wait_for(
            lambda: lines(cluster.root / "once.txt") == lines(cluster.root / "again.txt") == 1,
            20.0,
            "both commands to start",
        )
        await first.kill()
        await cluster.worker(concurrency=4)
        final = await settle(client, [once, again], 30.0)
    lost, retried = final[once], final[again]
    assert (lost.state, lost.attempt, lines(cluster.root / "once.txt")) == ("FAILED", 1, 1)
    assert lost.error is not None
    assert lost.error.reason == "WORKER_LOST"
    assert (retried.state, retried.attempt, lines(cluster.root / "again.txt")) == (
        "SUCCEEDED",
        2,
        2,
    )
    assert retried.result is not None
    assert retried.result.output.strip() == "2"
    assert lines(cluster.root / "again.txt") == 2

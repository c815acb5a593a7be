"""kill -9 of a server mid SubmitStream: acked tasks stay, resubmitting them adds nothing twice."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

import clawq
from tests.faults.conftest import Cluster, Proc, fetch, lines, settle

pytestmark = pytest.mark.slow

CALLS = 4000
BATCH = 200
KILL_AT = 1200  # acks received before the kill
IN_FLIGHT = 3  # batches sent ahead of their acks, so some are unanswered at the kill


def append_call(i: int) -> clawq.Call:
    """A non-idempotent append of one line to a file of its own, under its own key."""
    return clawq.Call(
        "write_file", path=f"s/{i}.txt", text="x\n", mode="WRITE_MODE_APPEND",
        idempotency_key=f"stream-{i}",
    )  # fmt: skip


async def stream_until_killed(server: Proc, acked: dict[int, str]) -> None:
    """Stream every call to server, a few batches ahead of the acks (recorded in acked),
    and kill -9 the server once KILL_AT calls are acked; raises what the stream raises."""
    progress = asyncio.Event()

    async def paced() -> AsyncIterator[clawq.Call]:
        for i in range(CALLS):
            while i % BATCH == 0 and len(acked) < i - IN_FLIGHT * BATCH:
                progress.clear()
                await progress.wait()
            yield append_call(i)

    async with clawq.AsyncClient(server.target, timeout=10.0) as client:
        async for ack in client.submit_stream(paced(), batch_size=BATCH):
            assert ack.accepted, ack.error
            acked[ack.index] = ack.task_id
            progress.set()
            if len(acked) == KILL_AT:
                await server.kill()


async def test_kill_mid_stream_keeps_acked_tasks_and_dedups_resubmission(cluster: Cluster) -> None:
    """After kill -9 mid-stream every acked task exists; resubmitting all calls with the same
    keys to another server returns the acked tasks again, and every file is written once."""
    (cluster.root / "s").mkdir()
    first, second = await cluster.serve(), await cluster.serve()
    await cluster.worker(concurrency=8)
    acked: dict[int, str] = {}
    with pytest.raises(clawq.Unavailable):
        await stream_until_killed(first, acked)
    assert KILL_AT <= len(acked) < CALLS
    async with clawq.AsyncClient(second.target, timeout=10.0) as client:
        assert len(await fetch(client, list(acked.values()))) == len(acked)
        again = [a async for a in client.submit_stream(map(append_call, range(CALLS)))]
        assert all(a.accepted for a in again)
        assert all(again[i].existing and again[i].task_id == acked[i] for i in acked)
        ids = [a.task_id for a in again]
        assert len(set(ids)) == CALLS
        final = await settle(client, ids, 50.0)
    assert {t.state for t in final.values()} == {"SUCCEEDED"}
    assert [i for i in range(CALLS) if lines(cluster.root / "s" / f"{i}.txt") != 1] == []

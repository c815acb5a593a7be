"""Two servers, three workers, two clients streaming 20,000 mixed tasks: all end, writes once."""

from __future__ import annotations

import asyncio

import pytest

import clawq
from tests.faults.conftest import Cluster, lines, settle

pytestmark = pytest.mark.slow

PER_CLIENT = 10_000


def mixed(client: int, i: int) -> clawq.Call:
    """Reads, listings and one-line appends to distinct files, a quarter of those idempotent."""
    kind = i % 5
    if kind in (0, 1):
        return clawq.Call("read_file", path=f"r/{i % 10}.txt")
    if kind == 2:
        return clawq.Call("list_directory", path="r")
    return clawq.Call(
        "write_file",
        path=f"w/{client}-{i}.txt",
        text="x\n",
        mode="WRITE_MODE_APPEND",
        idempotent=i % 4 == 3,
        idempotency_key=f"{client}-{i}" if i % 2 else "",
    )


async def stream(target: str, client: int) -> list[str]:
    """Submit this client's share through SubmitStream; the task ids in call order."""
    async with clawq.AsyncClient(target, timeout=30.0) as c:
        calls = (mixed(client, i) for i in range(PER_CLIENT))
        acks = [ack async for ack in c.submit_stream(calls, batch_size=1000)]
    assert all(ack.accepted for ack in acks)
    return [ack.task_id for ack in acks]


async def test_two_servers_three_workers_twenty_thousand_tasks(cluster: Cluster) -> None:
    """Every task of two concurrent streams through two servers ends SUCCEEDED, and every
    append ran exactly once across three workers."""
    for folder in ("r", "w"):
        (cluster.root / folder).mkdir()
    for i in range(10):
        (cluster.root / "r" / f"{i}.txt").write_text(f"file {i}\n")
    servers = [await cluster.serve(), await cluster.serve()]
    for _ in range(3):
        await cluster.worker(concurrency=16, lease=10.0)
    first, second = await asyncio.gather(stream(servers[0].target, 0), stream(servers[1].target, 1))
    ids = first + second
    assert len(set(ids)) == 2 * PER_CLIENT
    async with clawq.AsyncClient(servers[0].target, timeout=30.0) as client:
        final = await settle(client, ids, 150.0)
    assert {t.state for t in final.values()} == {"SUCCEEDED"}
    written = list((cluster.root / "w").iterdir())
    assert len(written) == 2 * PER_CLIENT * 2 // 5
    assert [p.name for p in written if lines(p) != 1] == []

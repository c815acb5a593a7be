"""A 10,000-call SubmitStream is acknowledged call by call and every task runs."""

from __future__ import annotations

import asyncio
import time

import clawq
from tests.conftest import Served


async def test_ten_thousand_calls_stream_in_and_all_complete(served: Served) -> None:
    """Acks come back in order with one id each, and all 10,000 tasks reach SUCCEEDED."""
    for i in range(10):
        (served.root / f"f{i}.txt").write_text(str(i))
    calls = [clawq.Call("read_file", path=f"f{i % 10}.txt") for i in range(10_000)]
    async with clawq.AsyncClient(served.target) as client:
        acks = [ack async for ack in client.submit_many(calls, batch_size=1000)]
        assert [a.index for a in acks] == list(range(10_000))
        assert all(a.error is None for a in acks)
        ids = [a.task_id for a in acks]
        assert len(set(ids)) == 10_000
        deadline = time.monotonic() + 90
        pending = ids
        while pending:
            assert time.monotonic() < deadline, f"{len(pending)} tasks still not done"
            tasks = await client.get_many(pending[:5000])
            pending = [t.id for t in tasks if not t.done] + pending[5000:]
            await asyncio.sleep(0.2)
        states = {t.state for t in await client.get_many(ids[:5000])}
        states |= {t.state for t in await client.get_many(ids[5000:])}
        assert states == {"SUCCEEDED"}

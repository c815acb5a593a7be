"""Figure 6: the server's peak RSS while a client streams 1,000,000 calls, and with them queued."""

from __future__ import annotations

import asyncio

import clawq
from benchmarks.harness import Figure, Target
from benchmarks.payloads import stream_requests, stub, submit_stream
from benchmarks.services import Context, Group, rss_sampler, server_args
from benchmarks.services import clawq as clawq_process

STREAMING = "server RSS peak while a client streams the calls (SQLite)"
QUEUED = "server RSS peak with the calls queued (SQLite)"
LIMIT_MB = 300.0
QUEUED_SAMPLE_S = 3.0


async def memory_figures(ctx: Context) -> list[Figure]:
    """One run (it is the slow one): stream memory_tasks calls, then hold them queued."""
    count = ctx.sizes.memory_tasks
    async with clawq_process(server_args(ctx, "sqlite", workers=0)) as server:
        pid = server.proc.pid
        async with rss_sampler(pid) as streaming, stub(server.target) as tasks:
            acked = await submit_stream(tasks, stream_requests(count, ctx.sizes.batch))
        if acked != count:
            raise RuntimeError(f"only {acked} of {count} calls acknowledged")
        async with rss_sampler(pid) as queued, clawq.AsyncClient(server.target) as client:
            stats = await client.queue_stats()
            await asyncio.sleep(QUEUED_SAMPLE_S)
        if stats.ready != count:
            raise RuntimeError(f"{stats.ready} tasks ready, {count} expected")
    note = f"{count:,} read_file calls; sampled every 0.1 s; one run"
    return [
        _figure(STREAMING, max(streaming), note),
        _figure(QUEUED, max(queued), note),
    ]


def _figure(name: str, peak: int, note: str) -> Figure:
    return Figure.measured(
        name, peak / (1 << 20), "MB",
        baseline=("limit", LIMIT_MB), target=Target(1.0, at_least=False), note=note,
    )  # fmt: skip


GROUPS = [Group((STREAMING, QUEUED), memory_figures)]
